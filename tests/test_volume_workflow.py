"""The tomogram workflow end to end on a tiny synthetic volume.

Label a few patches of one slice -> train (contrastive, a few steps) -> segment the volume ->
write the mask -> measure. The training is far too short to be accurate; the test checks that
every piece connects: each output is recomputed from the one before it.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from nwwatch.normalize import intensity_range, normalize_image
from nwwatch.segment.session import Segmenter
from nwwatch.synth.tomogram import simulate_tomogram
from nwwatch.volume import VOLUME_METRIC_FIELDS, segment_volume, volume_metrics
from nwwatch.volume.crosscheck import threshold_agreement
from nwwatch.volume.segment import DEFAULT_MARGIN_PX, DEFAULT_MIN_COMPONENT_VOXELS, clean_mask

train_api = pytest.importorskip("training.engine")
from training_helpers import capture_train  # noqa: E402

from training.config import TrainConfig  # noqa: E402  (after the skip guard)


@pytest.mark.slow
def test_label_train_segment_measure(tmp_path):
    from nwwatch.io import read_volume, write_volume_tiff

    sim = simulate_tomogram(32, seed=5)
    volume_path = write_volume_tiff(tmp_path / "volume.tif", sim.volume, voxel_size_nm=1.5)
    z = 16
    labels = np.full(sim.truth.shape[1:], 255, dtype=np.uint8)
    for rows in (slice(4, 12), slice(18, 26)):  # two labeled bands of the slice
        labels[rows, 4:28] = sim.truth[z, rows, 4:28]
    assert {0, 1} <= set(np.unique(labels))
    labels_path = tmp_path / f"slice{z}.png"
    cv2.imwrite(str(labels_path), labels)

    config = TrainConfig(
        out=str(tmp_path / "model.onnx"), paradigm="contrastive", arch="unet-paper",
        model_options={"widths": [8, 16], "dropout": 0.0}, volume=str(volume_path),
        slice_index=z, labels=str(labels_path), epochs=1, steps_per_epoch=1, batch_size=2,
        crop=32, device="cpu", classifier_steps=1, exporter="legacy",
    )
    result = train_api.train(config, progress=False, echo=lambda *a, **k: None)
    segmenter = Segmenter(result.out, providers=("cpu",), threads=2)
    assert segmenter.metadata.kind == "tomogram"
    assert segmenter.metadata.normalization_scope == "volume"
    # The labeled pixels' mean normalised intensity per class, for the runtime's cross-check
    # (which class is bright): recomputed here from the labels and the volume.
    image = normalize_image(sim.volume[z], intensity_range(sim.volume))
    means = segmenter.metadata.extra["class_mean_intensity"]
    assert means["pore"] == pytest.approx(image[labels == 0].mean(), abs=1e-5)
    assert means["solid"] == pytest.approx(image[labels == 1].mean(), abs=1e-5)
    assert means["solid"] > means["pore"]  # HAADF: solid is bright
    # For the contrast verdicts: the labeled classes' separation in pooled standard
    # deviations, and the whole volume's at the cut half-way between the class means.
    contrast = segmenter.metadata.extra["contrast"]
    assert contrast["labels"]["separation_sd"] == pytest.approx(
        _separation(image[labels == 1], image[labels == 0]), rel=1e-3)
    whole = normalize_image(sim.volume, intensity_range(sim.volume))
    blurred = np.stack([cv2.GaussianBlur(page, (0, 0), 1.0) for page in whole])
    side = blurred > 0.5 * (means["solid"] + means["pore"])
    assert contrast["volume"]["separation_sd"] == pytest.approx(
        _separation(whole[side], whole[~side]), rel=1e-3)
    assert contrast["volume"]["solid_sd_ratio"] == pytest.approx(
        whole[side].std() / whole[~side].std(), rel=1e-3)
    assert contrast["volume"]["solid_share"] == pytest.approx(side.mean(), abs=1e-6)

    volume = read_volume(volume_path)
    seg = segment_volume(segmenter, volume.data, return_probability=True)
    # The pieces agree with each other, recomputed here from what segment_volume returned:
    # the probability is the network's softmax on the volume's normalised slices, the mask
    # its cleaned threshold, the warning signs those of that mask.
    p = seg.solid_probability
    solid = segmenter.metadata.class_names.index("solid")
    scale = intensity_range(volume.data)
    m = DEFAULT_MARGIN_PX  # slices extended by mirroring
    slices = np.pad(np.stack([normalize_image(s, scale) for s in volume.data]),
                    ((0, 0), (m, m), (m, m)), mode="reflect")
    direct = segmenter.segment_native(slices).probabilities[:, solid, m:-m, m:-m]
    np.testing.assert_allclose(p, direct, atol=0.02)
    np.testing.assert_array_equal(
        seg.mask, clean_mask(p > 0.5, DEFAULT_MIN_COMPONENT_VOXELS).astype(np.uint8))
    assert seg.uncertain_fraction == np.count_nonzero((p > 0.2) & (p < 0.8)) / p.size
    np.testing.assert_equal(seg.threshold_agreement,
                            threshold_agreement(volume.data, seg.mask, solid_brighter=True))

    mask_path = write_volume_tiff(tmp_path / "mask.tif", seg.mask,
                                  voxel_size_nm=volume.voxel_size_nm)
    back = read_volume(mask_path)
    np.testing.assert_array_equal(back.data, seg.mask)

    row = volume_metrics(back.data, back.voxel_size_nm).as_row()
    assert list(row) == [f.name for f in VOLUME_METRIC_FIELDS]
    assert row["voxel_size_z_nm"] == pytest.approx(1.5)
    assert row["solid_fraction"] == pytest.approx(seg.mask.mean())


def _separation(solid: np.ndarray, rest: np.ndarray) -> float:
    """(mean solid - mean rest) / pooled sample standard deviation."""
    a, b = solid.astype(np.float64), rest.astype(np.float64)
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                     / (a.size + b.size - 2))
    return float((a.mean() - b.mean()) / pooled)


def test_the_recorded_contrast_leaves_out_voxels_without_data(tmp_path):
    from nwwatch.io import write_volume_tiff
    from training.data import load_volume_slices
    from training.exporting import class_contrast

    sim = simulate_tomogram(32, seed=5)
    labels = np.full(sim.truth.shape[1:], 255, dtype=np.uint8)
    labels[4:12, 4:28] = sim.truth[16, 4:12, 4:28]
    labels[18:26, 4:28] = sim.truth[16, 18:26, 4:28]
    cv2.imwrite(str(tmp_path / "l.png"), labels)
    plain = class_contrast(load_volume_slices(
        write_volume_tiff(tmp_path / "plain.tif", sim.volume), [(16, tmp_path / "l.png")]))
    # NaN slices (the padding of an aligned reconstruction) become the darkest grey: counted,
    # they would add a block of flat "pore" to the training volume's statistics
    padded = sim.volume.astype(np.float32).copy()
    padded[:3] = np.nan
    data = load_volume_slices(write_volume_tiff(tmp_path / "padded.tif", padded),
                              [(16, tmp_path / "l.png")])
    assert data.valid is not None
    recorded = class_contrast(data)["volume"]
    whole = normalize_image(padded, intensity_range(padded))[3:]
    blurred = np.stack([cv2.GaussianBlur(page, (0, 0), 1.0) for page in whole])
    image = whole[16 - 3]
    means = (image[labels == 1].mean(), image[labels == 0].mean())
    side = blurred > 0.5 * sum(means)
    assert recorded["separation_sd"] == pytest.approx(_separation(whole[side], whole[~side]),
                                                      rel=1e-3)
    assert recorded["solid_share"] == pytest.approx(side.mean(), abs=1e-6)
    assert plain["volume"]["separation_sd"] != pytest.approx(recorded["separation_sd"],
                                                              rel=1e-3)


@pytest.fixture()
def small_volume(tmp_path):
    from nwwatch.io import write_volume_tiff

    rng = np.random.default_rng(0)
    volume = rng.normal(size=(6, 20, 24)).astype(np.float32)
    return write_volume_tiff(tmp_path / "v.tif", volume)


def _labels(tmp_path, array, name="l.png"):
    path = tmp_path / name
    cv2.imwrite(str(path), array.astype(np.uint8))
    return path


def test_workflow_errors_name_the_file_and_the_reason(tmp_path, small_volume):
    from training.data import DatasetLayoutError, load_volume_slice

    good = np.full((20, 24), 255, dtype=np.uint8)
    good[:5, :5] = 0
    good[10:15, 10:15] = 1
    with pytest.raises(DatasetLayoutError, match="out of range"):
        load_volume_slice(small_volume, 6, _labels(tmp_path, good))
    with pytest.raises(DatasetLayoutError, match="shape") as info:
        load_volume_slice(small_volume, 2, _labels(tmp_path, good[:, :20], "small.png"))
    assert "transposed" not in info.value.reason
    # (X, Y) for a (Y, X) slice: a label image saved from a column-major array
    with pytest.raises(DatasetLayoutError, match="transposed"):
        load_volume_slice(small_volume, 2, _labels(tmp_path, good.T.copy(), "t.png"))
    only_pore = np.where(good == 1, 255, good)
    with pytest.raises(DatasetLayoutError, match="class 1"):
        load_volume_slice(small_volume, 2, _labels(tmp_path, only_pore, "pore.png"))
    data = load_volume_slice(small_volume, 2, _labels(tmp_path, good, "good.png"))
    assert len(data.labeled) == 1 and len(data.unlabeled) == 5


def test_several_labeled_slices(tmp_path, small_volume):
    from training.data import DatasetLayoutError, load_volume_slices

    solid_and_pore = np.full((20, 24), 255, dtype=np.uint8)
    solid_and_pore[:5, :5] = 0
    solid_and_pore[10:15, 10:15] = 1
    only_pore = np.full((20, 24), 255, dtype=np.uint8)
    only_pore[:4, :4] = 0  # e.g. vacuum above the grain: no solid in this slice
    a = _labels(tmp_path, solid_and_pore, "a.png")
    b = _labels(tmp_path, only_pore, "b.png")
    data = load_volume_slices(small_volume, [(4, b), (1, a)])
    assert [item.stem for item in data.labeled] == ["v_z00001", "v_z00004"]
    assert len(data.unlabeled) == 4 and data.source.endswith("#z=1,4")
    np.testing.assert_array_equal(data.labeled[1].label, only_pore)
    # a class only has to be labeled somewhere, but every slice is checked on its own
    with pytest.raises(DatasetLayoutError, match="class 1"):
        load_volume_slices(small_volume, [(4, b), (2, b)])
    with pytest.raises(DatasetLayoutError, match="labeled twice"):
        load_volume_slices(small_volume, [(1, a), (1, b)])
    with pytest.raises(DatasetLayoutError, match="out of range"):
        load_volume_slices(small_volume, [(1, a), (9, b)])
    with pytest.raises(DatasetLayoutError, match="no labeled slice"):
        load_volume_slices(small_volume, [])


def test_train_cli_takes_several_slices_in_pairs(tmp_path, small_volume, monkeypatch):
    from click.testing import CliRunner

    import training.engine
    from nwwatch.cli import main

    seen = capture_train(monkeypatch)
    labels = np.full((20, 24), 255, dtype=np.uint8)
    labels[:5, :5] = 0
    labels[10:15, 10:15] = 1
    a, b = _labels(tmp_path, labels, "a.png"), _labels(tmp_path, labels, "b.png")
    base = ["train", "--volume", str(small_volume), "--out", str(tmp_path / "m.onnx"),
            "--paradigm", "contrastive"]
    result = CliRunner().invoke(main, [*base, "--slice", "1", "--labels", str(a),
                                       "--slice", "4", "--labels", str(b)])
    assert "captured" in result.output, result.output
    data = training.engine.load_training_data(seen["config"])
    assert seen["config"].slice_index == [1, 4] and len(data.labeled) == 2
    command = seen["config"].command  # options grouped by name; pairs keep their order
    assert "--slice 1 --slice 4" in command and f"--labels {a} --labels {b}" in command
    mismatch = CliRunner().invoke(main, [*base, "--slice", "1", "--slice", "4",
                                         "--labels", str(a)])
    assert mismatch.exit_code == 2 and "2 --slice but 1 --labels" in mismatch.output
