"""training.interpolate: weight-space interpolation of two checkpoints of one architecture."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nwwatch.filehash import file_sha256
from nwwatch.segment.contract import ModelMetadata
from nwwatch.segment.session import Segmenter
from training.checkpoint import load_checkpoint, load_inference_model, save_checkpoint
from training.export import export_onnx
from training.interpolate import (
    InterpolationError,
    interpolate_checkpoints,
    interpolate_states,
    main,
)
from training.models import build_model

torch.set_num_threads(1)
TINY = {"arch": "unet", "in_channels": 1, "num_classes": 3, "widths": [4, 8],
        "encoder_convs": [1, 1], "decoder_convs": [1]}
SCALE = {"droplet_radius_px": [14.0, 207.6], "frame_px": 512, "min_frame_px": 384}


def _weights(path, seed, config=TINY):
    torch.manual_seed(seed)
    model = build_model(**config)
    # Distinct running statistics too, so that buffers are interpolated like weights.
    for name, tensor in model.state_dict().items():
        if "running" in name:
            tensor.uniform_(0.5, 1.5)
    save_checkpoint(path, {"inference": {"type": "segmentation", "config": dict(config)},
                           "inference_state": model.state_dict(),
                           "class_names": ["background", "nanowire", "droplet"],
                           "kind": "insitu", "source": f"seed {seed}"})
    return path


def test_alpha_0_and_1_reproduce_the_inputs_exactly_and_half_is_the_midpoint(tmp_path):
    a, b = _weights(tmp_path / "a.pt", 1), _weights(tmp_path / "b.pt", 2)
    state_a = load_checkpoint(a)["inference_state"]
    state_b = load_checkpoint(b)["inference_state"]
    for alpha, expected in ((0.0, state_a), (1.0, state_b)):
        out = interpolate_checkpoints(a, b, alpha, tmp_path / f"c{alpha}.pt")
        state = load_checkpoint(out)["inference_state"]
        assert state.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(state[key], value), key
    half = interpolate_states(state_a, state_b, 0.5)
    weight = "encoder.levels.0.0.0.weight"
    assert weight in half and not torch.equal(state_a[weight], state_b[weight])
    for key, value in half.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (state_a[key] + state_b[key]) / 2)


def test_mismatched_architectures_are_refused_naming_the_key(tmp_path):
    a = _weights(tmp_path / "a.pt", 1)
    wider = _weights(tmp_path / "wide.pt", 2, {**TINY, "widths": [4, 16]})
    with pytest.raises(InterpolationError, match=r"wide\.pt.*model option 'widths'"):
        interpolate_checkpoints(a, wider, 0.5, tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()
    # Two architectures: named by 'arch' (before: "model option 'act' is None vs 'relu'").
    psp = _weights(tmp_path / "psp.pt", 3, {"arch": "pspnet", "in_channels": 1,
                                            "num_classes": 3, "layers": [1, 1, 1, 1],
                                            "base_width": 4, "ppm_channels": 8})
    relu = _weights(tmp_path / "relu.pt", 1, {**TINY, "act": "relu"})  # as a run saves it
    with pytest.raises(InterpolationError, match=r"model option 'arch' is 'unet' vs 'pspnet'"):
        interpolate_checkpoints(relu, psp, 0.5, tmp_path / "c.pt")
    state = load_checkpoint(a)["inference_state"]
    last = list(state)[-1]
    renamed = {(f"{k}.renamed" if k == last else k): v for k, v in state.items()}
    with pytest.raises(InterpolationError, match=f"'{last}"):
        interpolate_states(state, renamed, 0.5)
    shaped = dict(state, **{last: torch.zeros(1)})
    with pytest.raises(InterpolationError, match=f"'{last}'"):
        interpolate_states(state, shaped, 0.5)
    with pytest.raises(InterpolationError, match="alpha"):
        interpolate_states(state, state, 1.5)


def _exported(weights, onnx, **metadata):
    """``weights`` exported (legacy exporter) to ``onnx`` as an in-situ UNet with
    ``metadata``; returns ``onnx``."""
    model = load_inference_model(weights)
    export_onnx(model, onnx, ModelMetadata(
        kind="insitu", class_names=("background", "nanowire", "droplet"), arch="unet",
        paradigm="supervised", size_multiple=model.size_multiple, **metadata),
        exporter="legacy")
    return onnx


def test_round_trip_to_onnx_keeps_the_working_scale_and_names_the_inputs(tmp_path):
    a, b = _weights(tmp_path / "a.pt", 1), _weights(tmp_path / "b.pt", 2)
    base = _exported(a, tmp_path / "a.onnx", training_command="nwwatch train ...",
                     training_data_sha256="f" * 64, validation_metrics={"val_mean_iou": 0.9},
                     extra={"working_scale": SCALE, "epochs": 3, "seed": 0})
    code = main([str(a), str(b), "--alpha", "0.3", "--out", str(tmp_path / "c.pt"),
                 "--onnx", str(tmp_path / "c.onnx"), "--metadata-from", str(base),
                 "--exporter", "legacy"])
    assert code == 0
    metadata = Segmenter(tmp_path / "c.onnx", providers=("cpu",), threads=1).metadata
    assert metadata.extra["working_scale"] == SCALE
    assert "epochs" not in metadata.extra and metadata.validation_metrics == {}
    record = metadata.extra["interpolation"]
    assert record["alpha"] == 0.3
    assert record["a"] == {"path": str(a), "sha256": file_sha256(a)}
    assert record["b"] == {"path": str(b), "sha256": file_sha256(b)}
    assert "training.interpolate" in metadata.training_command and "0.3" in \
        metadata.training_command
    # The ONNX file computes the interpolated network.
    model_c = load_inference_model(tmp_path / "c.pt")
    image = np.random.default_rng(0).normal(size=(1, 1, 64, 96)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(["probabilities"], {"image": image})[0]
    with torch.no_grad():
        expected = torch.softmax(model_c(torch.from_numpy(image)), dim=1).numpy()
        of_a = torch.softmax(load_inference_model(a)(torch.from_numpy(image)), 1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert not np.allclose(expected, of_a, atol=1e-3)


def test_cli_reports_a_mismatch_as_an_error_naming_the_key(tmp_path, capsys):
    a = _weights(tmp_path / "a.pt", 1)
    deeper = _weights(tmp_path / "deep.pt", 2, {**TINY, "encoder_convs": [1, 2]})
    assert main([str(a), str(deeper), "--alpha", "0.5", "--out", str(tmp_path / "c.pt")]) == 2
    assert "'encoder_convs'" in capsys.readouterr().err


def test_cli_never_writes_over_its_inputs(tmp_path, capsys):
    # before: --out A.pt replaced the weights interpolated from (and --onnx the model whose
    # metadata it copies) without a word
    a, b = _weights(tmp_path / "a.pt", 1), _weights(tmp_path / "b.pt", 2)
    before = a.read_bytes()
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        main([str(a), str(b), "--alpha", "0.5", "--out", str(a)])
    assert usage.value.code == 2
    assert "--out" in capsys.readouterr().err and a.read_bytes() == before
    base = tmp_path / "base.onnx"
    base.write_bytes(b"model")
    with pytest.raises(SystemExit) as usage:
        main([str(a), str(b), "--alpha", "0.5", "--out", str(tmp_path / "c.pt"),
              "--onnx", str(base), "--metadata-from", str(base)])
    assert usage.value.code == 2
    assert "--onnx" in capsys.readouterr().err and base.read_bytes() == b"model"
    assert not (tmp_path / "c.pt").exists()


@pytest.mark.slow
def test_the_export_drops_the_exporter_noise_nwwatch_train_drops(tmp_path):
    # before: `python -m training.interpolate ... --onnx` (dynamo) printed torch's pytree
    # FutureWarning, which `nwwatch train` filters as known noise
    import re
    import warnings

    from training.exportnoise import KNOWN_HARMLESS_WARNINGS

    a, b = _weights(tmp_path / "a.pt", 1), _weights(tmp_path / "b.pt", 2)
    base = _exported(a, tmp_path / "a.onnx", extra={"working_scale": SCALE})
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert main([str(a), str(b), "--alpha", "0.5", "--out", str(tmp_path / "c.pt"),
                     "--onnx", str(tmp_path / "c.onnx"), "--metadata-from", str(base)]) == 0
    noise = [str(w.message) for w in shown for category, message in KNOWN_HARMLESS_WARNINGS
             if issubclass(w.category, category) and re.match(message, str(w.message))]
    assert noise == []


def test_metadata_from_a_model_of_other_options_is_refused(tmp_path, capsys):
    # before: its model_config (widths [16, 32]) was written beside [4, 8] weights, the
    # export verified all the same; another size multiple ended in a ValueError traceback
    a, b = _weights(tmp_path / "a.pt", 1), _weights(tmp_path / "b.pt", 2)
    other = {**TINY, "widths": [16, 32]}
    base = _exported(_weights(tmp_path / "o.pt", 3, other), tmp_path / "o.onnx",
                     extra={"model_config": other})
    code = main([str(a), str(b), "--alpha", "0.5", "--out", str(tmp_path / "c.pt"),
                 "--onnx", str(tmp_path / "c.onnx"), "--metadata-from", str(base),
                 "--exporter", "legacy"])
    assert code == 2 and not (tmp_path / "c.onnx").exists()
    err = capsys.readouterr().err
    assert "o.onnx: its network (unet" in err and "is not the one of" in err
