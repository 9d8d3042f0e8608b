"""Segmenter.require_kind: a model of another kind is refused naming the file, kind and task."""

from __future__ import annotations

import pytest


def test_require_kind_names_the_file_the_kind_and_the_task(tmp_path):
    from onnx_models import build_threshold_model

    from nwwatch.segment.session import ModelLoadError, Segmenter

    model = tmp_path / "tomo.onnx"
    build_threshold_model(model, kind="tomogram")
    segmenter = Segmenter(model, providers=("cpu",))
    segmenter.require_kind("tomogram", "segmenting volumes")  # the right kind: no error
    with pytest.raises(ModelLoadError) as err:
        segmenter.require_kind("insitu", "labelling frames")
    assert str(err.value) == (f"{model}: a 'tomogram' model; labelling frames needs an "
                              "in-situ model")
    insitu = tmp_path / "insitu.onnx"
    build_threshold_model(insitu, kind="insitu")
    with pytest.raises(ModelLoadError) as err:
        Segmenter(insitu, providers=("cpu",)).require_kind("tomogram", "segmenting volumes")
    assert str(err.value) == (f"{insitu}: an 'insitu' model; segmenting volumes needs a "
                              "tomogram model")


def test_tensorrt_is_asked_for_only_when_its_libraries_load(monkeypatch):
    # Without libnvinfer, listing TensorRT first slowed every change of input shape ~5x on an
    # H200 (docs/models.md); the provider list leaves it out instead.
    from nwwatch.segment import session

    monkeypatch.setattr(session, "_nvidia_device_present", lambda: True)
    monkeypatch.setattr(session, "tensorrt_loadable", lambda: False)
    names = [p if isinstance(p, str) else p[0]
             for p in session._provider_list(("tensorrt", "cuda", "cpu"), None)]
    assert names == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(session, "tensorrt_loadable", lambda: True)
    names = [p if isinstance(p, str) else p[0]
             for p in session._provider_list(("tensorrt", "cuda", "cpu"), None)]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_tensorrt_loadable_tries_the_libraries_the_provider_links(monkeypatch):
    from nwwatch.segment import session

    tried = []

    def fake_cdll(name):
        tried.append(name)
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(session.ctypes, "CDLL", fake_cdll)
    session.tensorrt_loadable.cache_clear()
    try:
        assert session.tensorrt_loadable() is False
        assert tried == ["libnvinfer.so.10"]
    finally:
        session.tensorrt_loadable.cache_clear()


@pytest.mark.parametrize(("names", "built_as", "says"), [
    (("background", "nanowire", "droplet", "carbon"), ("background", "nanowire", "droplet",
                                                       "carbon"),
     "classes ['background', 'nanowire', 'droplet', 'carbon']: an in-situ model has three "
     "classes"),
    (("background", "nanowire"), "tomogram",
     "classes ['background', 'nanowire']: an in-situ model needs 0 background, 1 nanowire, "
     "2 droplet"),
    (("background", "droplet", "nanowire"), "insitu",
     "classes ['background', 'droplet', 'nanowire'] name 'nanowire' as class 2, but in-situ "
     "labels are read as 0 background, 1 nanowire, 2 droplet"),
])
def test_an_insitu_model_the_measurement_cannot_read_is_refused(tmp_path, names, built_as,
                                                                says):
    # before: `nwwatch measure --model` of a 2-class in-situ model (nwwatch train on a DATA
    # folder whose dataset.toml named two classes) stopped with an IndexError traceback and
    # `replay` failed every frame alike; a reordered model was measured as the canonical one
    import numpy as np
    import tifffile
    from click.testing import CliRunner
    from onnx_models import build_threshold_model

    from nwwatch.cli import main
    from nwwatch.segment.session import ModelLoadError, Segmenter

    # before, a fourth class: `measure --model` stopped with a traceback after its first
    # rows, `replay` failed every frame as unexpected
    if isinstance(built_as, tuple):  # a model of these classes
        model = build_threshold_model(tmp_path / "m.onnx", class_names=built_as,
                                      centres=(0.8, -0.8, 0.0, 0.4))
    else:
        model = build_threshold_model(tmp_path / "m.onnx", kind=built_as,  # its class count
                                      metadata={"kind": "insitu", "class_names": names})
    with pytest.raises(ModelLoadError) as err:
        Segmenter(model, providers=("cpu",)).require_kind("insitu", "measuring raw frames")
    assert str(err.value).startswith(f"{model}: {says}")
    frame = tmp_path / "acq" / "f.tif"
    frame.parent.mkdir()
    tifffile.imwrite(frame, np.random.default_rng(0).integers(0, 4000, (64, 64), np.uint16))
    result = CliRunner().invoke(main, ["measure", str(frame), "--model", str(model),
                                       "--out", str(tmp_path / "a.parquet")])
    assert result.exit_code == 2 and says in result.output, result.output
    assert not (tmp_path / "a.parquet").exists()
    result = CliRunner().invoke(main, ["replay", str(frame.parent), "--model", str(model),
                                       "--out", str(tmp_path / "results")])
    assert result.exit_code == 1, result.output
    assert f"cannot measure frames: {model}: {says}" in result.output


def test_segment_refuses_raw_frames_and_bad_shapes_naming_them(tmp_path):
    # before: uint16 counts were cast to float32 and segmented into nonsense without a word;
    # segment_native failed on (H, W), float64 or a list with low-level errors
    import numpy as np
    from onnx_models import build_threshold_model

    from nwwatch.segment.session import Segmenter

    seg = Segmenter(build_threshold_model(tmp_path / "m.onnx"), providers=("cpu",), threads=1)
    raw = np.random.default_rng(0).integers(0, 4000, (32, 32)).astype(np.uint16)
    for call in (seg.segment, seg.segment_native):
        with pytest.raises(ValueError, match="images must be float normalize_image output"):
            call(raw)
        with pytest.raises(ValueError, match=r"got values from \d+ to \d+ \(raw frames"):
            call(raw.astype(np.float32))
        with pytest.raises(ValueError, match=r"\(N, H, W\) or \(H, W\)"):
            call(np.zeros((1, 1, 8, 8), np.float32))
        frame = np.zeros((32, 32))  # float64, (H, W), and as a list
        assert call(frame).labels.shape == (1, 32, 32)
        assert call([frame.astype(np.float32)]).labels.shape == (1, 32, 32)
        empty = call(np.zeros((0, 32, 32), np.float32))  # the GPU path raised on it
        assert empty.labels.shape == (0, 32, 32) and empty.probabilities.shape == (0, 3, 32, 32)


def test_segment_names_unusual_frames_instead_of_failing_deep_or_silently(tmp_path):
    # before: (H, W, 1) was taken for H frames one pixel wide, without a word; an empty
    # frame failed in the working scale (ZeroDivisionError) or in OpenCV; a NaN or inf pixel
    # read "got values from nan to nan (raw frames: normalize_image first)"
    import numpy as np
    from onnx_models import build_threshold_model

    from nwwatch.segment.session import Segmenter

    seg = Segmenter(build_threshold_model(tmp_path / "m.onnx"), providers=("cpu",), threads=1)
    for call in (seg.segment, seg.segment_native):
        with pytest.raises(ValueError, match=r"an \(H, W, 1\) frame .* give images\[\.\.\., 0\]"):
            call(np.zeros((32, 32, 1), np.float32))
        for empty in ((0, 0), (1, 0, 5)):
            with pytest.raises(ValueError, match="frames of at least one pixel"):
                call(np.zeros(empty, np.float32))
        # a 2-D frame one pixel wide is a frame, not an (H, W, 1) image
        assert call(np.zeros((64, 1), np.float32)).labels.shape == (1, 64, 1)
        for bad in (np.nan, np.inf):
            frame = np.zeros((32, 32), np.float32)
            frame[3, 4] = bad
            with pytest.raises(ValueError, match=r"images hold \d+ NaN or infinite value"):
                call(frame)
