"""A constant fill (zero, a uint16 export's 0 or 65535, int16's -32768) is no data, as NaN
is: found by nwwatch.volume.fill, never solid, out of the grey range and the references, in
the service's segmentation and in ``nwwatch train --volume``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage as ndi

from nwwatch.io import write_volume_tiff
from nwwatch.segment.session import Segmenter
from nwwatch.volume import segment_volume
from nwwatch.volume.fill import constant_fill, without_constant_fill

SHAPE = (12, 48, 48)
Z = 6
X = np.arange(SHAPE[2])
PAD = (X < 8) | (X >= 42)  # 29 % of the voxels: two bands of columns through every slice


def _truth(seed: int = 0) -> np.ndarray:
    """bool (Z, Y, X): smooth random solid in the columns with data only."""
    field = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(SHAPE), 3.0)
    solid = field > np.quantile(field, 0.6)
    solid[:, :, X < 12] = solid[:, :, X >= 38] = False
    return solid


def _haadf(truth: np.ndarray, seed: int = 1) -> np.ndarray:
    """uint16 (Z, Y, X): solid bright, noisy."""
    rng = np.random.default_rng(seed)
    grey = 20000 + 8000 * truth + rng.normal(0, 2500, SHAPE)
    return np.clip(grey, 1, 65534).astype(np.uint16)


def _padded(volume: np.ndarray, value: int) -> np.ndarray:
    out = volume.copy()
    out[:, :, PAD] = value
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


@pytest.mark.parametrize("dtype, value", [(np.uint16, 0), (np.uint16, 65535),
                                          (np.int16, -32768), (np.float32, -1.0)])
def test_a_constant_border_is_found_and_becomes_nan(dtype, value):
    grey = _haadf(_truth()).astype(np.float32) - (30000 if dtype == np.int16 else 0)
    if dtype == np.float32:
        grey = grey / 1000
    padded = _padded(grey.astype(dtype), value)
    mask, fills = constant_fill(padded)
    assert len(fills) == 1 and fills[0].value == value
    assert np.array_equal(mask[:, :, PAD], np.ones_like(mask[:, :, PAD]))
    # the data's own voxels of that value (a few, at most) are not the fill
    assert np.count_nonzero(mask[:, :, ~PAD]) <= 0.001 * mask.size
    out, _ = without_constant_fill(padded)
    assert out.dtype == np.float32 and np.isnan(out[mask]).all()
    assert np.array_equal(out[~mask], padded[~mask].astype(np.float32))
    # no fill: the same array, no copy
    unpadded = grey.astype(dtype)
    assert without_constant_fill(unpadded)[0] is unpadded


def test_clipped_noisy_vacuum_and_a_saturated_grain_inside_are_not_fill():
    rng = np.random.default_rng(2)
    # HAADF vacuum clipped at 0: 70 % zeros, as speckle
    vacuum = np.clip(rng.normal(-0.52, 1, (32, 64, 64)) * 1000, 0, None).astype(np.uint16)
    assert np.mean(vacuum == 0) > 0.65
    assert constant_fill(vacuum) == (None, ())
    # bright field, a dark grain saturated at 0 inside the volume (8 % of it)
    grain = np.clip(rng.normal(30000, 2000, (32, 64, 64)), 1, None).astype(np.uint16)
    zz, yy, xx = np.indices(grain.shape)
    inside = (zz - 16) ** 2 / 100 + (yy - 32) ** 2 / 400 + (xx - 32) ** 2 / 400 < 1
    grain[inside] = 0
    assert np.mean(inside) > 0.05
    assert constant_fill(grain) == (None, ())
    # a constant strip through every slice along a side is padding: found
    grain[:, :, :4] = 0
    assert constant_fill(grain)[1]


def _bright_field(shape, centre, radius, mean=-30.0, seed=0):
    """uint8 (Z, Y, X) bright field: a dark ball saturated at 0 in a bright noisy matrix."""
    zz, yy, xx = np.indices(shape)
    grain = sum((i - c) ** 2 for i, c in zip((zz, yy, xx), centre, strict=True)) < radius ** 2
    grey = np.where(grain, mean, 200) + np.random.default_rng(seed).normal(0, 12, shape)
    return np.clip(grey, 0, 255).astype(np.uint8), grain


@pytest.mark.parametrize("shape, centre, radius, mean", [
    ((40, 64, 64), (20, 32, 60), 12, -30.0),  # cut by the x face
    ((40, 64, 64), (20, 60, 32), 12, -300.0),  # cut by the y face, no voxel escapes the clip
    ((12, 64, 64), (6, 32, 60), 24, -300.0),  # through every slice of a crop, cut by a side
    ((16, 64, 64), (8, 32, 32), 12, -30.0),  # through every slice of a crop
    ((3, 64, 64), (1, 32, 32), 12, -30.0),  # a volume of few slices
    ((2, 64, 64), (0, 32, 60), 12, -30.0)])
def test_a_saturated_grain_reaching_a_face_is_never_fill(shape, centre, radius, mean):
    volume, grain = _bright_field(shape, centre, radius, mean)
    assert np.mean(volume[grain] == 0) > 0.99
    assert constant_fill(volume) == (None, ())


def test_a_saturated_prism_through_every_slice_is_fill_only_along_half_a_side():
    # no voxel escapes the clip, the same section in every slice: only the side it covers
    # tells it from padding (docs/tomography.md, "Constant fill": what is taken although data)
    for radius, found in ((12, False), (15, False), (20, True)):
        _, grain = _bright_field((16, 64, 64), (8, 32, 63), radius)
        prism = np.broadcast_to(grain[8], grain.shape)
        grey = np.where(prism, -300, 200) + np.random.default_rng(1).normal(0, 12, grain.shape)
        assert bool(constant_fill(np.clip(grey, 0, 255).astype(np.uint8))[1]) == found


def _haadf_clipped(vacuum_mean_sd: float, shape=(24, 64, 64), seed=3):
    """uint8 HAADF: 30 % bright solid, a vacuum of mean ``vacuum_mean_sd`` noise sd, clipped
    at 0; and the solid."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.standard_normal(shape), 4)
    solid = field > np.quantile(field, 0.7)
    grey = np.where(solid, 150, 20 * vacuum_mean_sd) + rng.normal(0, 20, shape)
    return np.clip(grey, 0, 255).astype(np.uint8), solid


@pytest.mark.parametrize("vacuum_mean_sd", [-1.0, -1.2, -1.5, -3.0])
def test_a_haadf_vacuum_clipped_at_zero_is_never_fill(vacuum_mean_sd):
    volume, solid = _haadf_clipped(vacuum_mean_sd)
    assert np.mean(volume[~solid] == 0) > 0.84
    assert constant_fill(volume) == (None, ())


def test_a_haadf_vacuum_clipped_keeps_its_pore_labels_in_training(tmp_path):
    pytest.importorskip("torch")
    from training.data import load_volume_slice

    volume, solid = _haadf_clipped(-1.2)
    labels = solid[12].astype(np.uint8)  # every pixel labeled
    volume_path, labels_path = _write(tmp_path, volume, labels, "haadf")
    data = load_volume_slice(volume_path, 12, labels_path)
    assert np.array_equal(data.labeled[0].label, labels) and data.valid is None


@pytest.mark.parametrize("vacuum_mean_sd", [0.0, -0.8, -1.2])
def test_a_border_is_found_beside_a_vacuum_clipped_inside_the_range(vacuum_mean_sd):
    # int16: the vacuum clipped at 0 (up to 89 % of it), the border -32768
    rng = np.random.default_rng(3)
    shape = (16, 64, 64)
    solid = ndi.gaussian_filter(rng.standard_normal(shape), 4) > 0.3
    grey = np.where(solid, 3000, 400 * vacuum_mean_sd) + rng.normal(0, 400, shape)
    volume = np.clip(grey, 0, None).astype(np.int16)
    volume[:, :, :6] = volume[:, :, -6:] = -32768
    mask, fills = constant_fill(volume)
    assert [f.value for f in fills] == [-32768.0]
    assert mask[:, :, :6].all() and mask[:, :, -6:].all() and not mask[:, :, 6:-6].any()


def test_the_fill_is_found_once_whatever_the_path(tmp_path):
    from onnx_models import build_threshold_model

    # 0 on the left is the fill; a constant 1000 on the right, once the 0 is NaN, would be
    # the lowest value and pass for a fill too if it were looked for again
    volume = _haadf(_truth())
    volume[:, :, :6] = 0
    volume[:, :, 44:] = 1000
    once, fill = without_constant_fill(volume)
    assert [f.value for f in fill] == [0.0]
    assert constant_fill(once)[1]  # what a second search would find
    model = Segmenter(build_threshold_model(tmp_path / "m.onnx", kind="tomogram", smooth=True),
                      providers=("cpu",))
    direct = segment_volume(model, volume)
    service = segment_volume(model, once, fill=fill)  # as nwwatch.service.volumes hands it on
    assert direct.fill == service.fill == fill
    assert np.array_equal(direct.mask, service.mask)
    assert np.isfinite(once[:, :, 44:]).all()  # the 1000 columns stay data


def _folder(tmp_path, volume: np.ndarray, labels: np.ndarray, toml: str):
    from nwwatch.io import write_frame_tiff

    for sub in ("images", "labels", "unlabeled"):
        (tmp_path / sub).mkdir()
    (tmp_path / "dataset.toml").write_text(toml)
    write_volume_tiff(tmp_path / "unlabeled" / "volume.tif", volume)
    write_frame_tiff(tmp_path / "images" / "s.tif", volume[Z])
    cv2.imwrite(str(tmp_path / "labels" / "s.png"), labels)


def test_a_tomogram_folder_of_scope_image_is_read_as_the_runtime_reads_it(tmp_path):
    pytest.importorskip("torch")
    from nwwatch.normalize import NAN_FILL, normalize_image
    from training.data import load_folder

    truth = _truth()
    volume = _padded(_haadf(truth), 0)
    _folder(tmp_path, volume, _labels(truth), 'kind = "tomogram"\nnormalization_scope = "image"\n')
    data = load_folder(tmp_path)
    assert data.notes[0].startswith("volume.tif: constant fill 0 (29.2 % of the voxels)")
    item = data.labeled[0]
    assert np.all(item.label[:, PAD] == 255)
    # segment_volume of a model of scope "image": each slice of the NaN copy on its own
    runtime = normalize_image(without_constant_fill(volume)[0][Z], None,
                              nan_fill=NAN_FILL["tomogram"])
    np.testing.assert_allclose(item.image, runtime, atol=1e-6)


def test_evaluate_leaves_labels_on_the_fill_out_as_training_does(tmp_path):
    from onnx_models import build_threshold_model

    from nwwatch.evaluate import evaluate_folder

    truth = np.zeros(SHAPE, bool)
    truth[:, 10:30, 14:36] = True
    grey = 20000 + 8000 * truth + np.random.default_rng(1).normal(0, 1500, SHAPE)
    volume = _padded(np.clip(grey, 1, 65534).astype(np.uint16), 0)
    labels = truth[Z].astype(np.uint8)
    labels[:, :8] = 1  # the padding labelled solid
    _folder(tmp_path, volume, labels, 'kind = "tomogram"\n')
    model = build_threshold_model(tmp_path / "m.onnx", kind="tomogram", smooth=True)
    report = evaluate_folder(model, tmp_path, angles=False)
    assert report.metrics.pixels == labels.size - np.count_nonzero(PAD) * SHAPE[1]
    assert report.metrics.mean_iou > 0.95


def test_a_fill_inside_the_range_and_a_noise_free_volume_are_not_fill():
    # zero in a signed volume sets neither end of the grey range: not looked for
    signed = _padded((_haadf(_truth()).astype(np.int32) - 30000).astype(np.int16), 0)
    assert constant_fill(signed) == (None, ())
    # two grey levels, no noise: the vacuum's constant blocks are content, not a fill
    clean = np.where(_truth(), 200, 10).astype(np.uint8)
    assert constant_fill(clean) == (None, ())


def _write(tmp_path, volume: np.ndarray, labels: np.ndarray, name: str):
    volume_path = write_volume_tiff(tmp_path / f"{name}.tif", volume)
    labels_path = tmp_path / f"{name}_labels.png"
    cv2.imwrite(str(labels_path), labels)
    return volume_path, labels_path


def _labels(truth: np.ndarray) -> np.ndarray:
    """Patches on slice Z, three of them on the fill columns (x < 8)."""
    labels = np.full(SHAPE[1:], 255, np.uint8)
    for r, c in [(r, c) for r in (3, 21, 39) for c in (2, 16, 26)]:
        labels[r:r + 6, c:c + 6] = truth[Z, r:r + 6, c:c + 6]
    return labels


@pytest.mark.parametrize("bright_field", [False, True])
def test_a_padded_volume_gets_the_mask_of_its_data_and_an_honest_verdict(tmp_path,
                                                                        bright_field):
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.volume_select import select_and_train

    truth = _truth()
    volume = _haadf(truth)
    if bright_field:  # solid dark
        volume = (65535 - volume).astype(np.uint16)
    labels = _labels(truth)
    labels[:, :8] = 255  # trained on the volume without padding: no label there
    volume_path, labels_path = _write(tmp_path, volume, labels, "plain")
    config = TrainConfig(out=str(tmp_path / "model.onnx"), volume=str(volume_path),
                         slice_index=Z, labels=str(labels_path), device="cpu", threads=1,
                         exporter="legacy")
    _, out = select_and_train(config, ("threshold",))
    segmenter = Segmenter(out, providers=("cpu",))
    plain = segment_volume(segmenter, volume)
    padded = segment_volume(segmenter, _padded(volume, 0))
    assert plain.fill == () and len(padded.fill) == 1
    assert padded.fill[0].value == 0 and padded.fill[0].share == pytest.approx(PAD.mean())
    data = padded.mask[:, :, ~PAD].astype(bool)
    assert not padded.mask[:, :, PAD].any()  # no data is never solid
    # Within a slice the model sees no data as the nearest data's grey, as NaN
    # (docs/tomography.md): the data's first column beside it is segmented as without the
    # padding (as the darkest grey, a bright-field model's solid grew into it: truth IoU 0.829,
    # `solid_beyond_threshold`). The grey range is the data's, not the whole unpadded
    # volume's: nearly the same cut.
    assert _iou(data, plain.mask[:, :, ~PAD] > 0) > 0.97  # measured: 0.981 both
    truth_iou = _iou(data, truth[:, :, ~PAD])
    # measured: HAADF 0.948, bright field 0.950, against 0.940 and 0.942 unpadded
    assert truth_iou > _iou(plain.mask[:, :, ~PAD].astype(bool), truth[:, :, ~PAD]) - 0.02
    assert padded.verdict.status == "ok", padded.verdict.why
    # measured: 0.956 (HAADF, 0.953 unpadded), 0.958 (bright field, 0.954 unpadded)
    assert padded.threshold_agreement > plain.threshold_agreement - 0.02


def test_training_on_a_padded_volume_leaves_labels_on_the_fill_out_and_warns(tmp_path):
    pytest.importorskip("torch")
    from training.config import TrainConfig
    from training.data import label_warnings, load_volume_slice
    from training.volume_select import select_and_train

    truth = _truth()
    volume = _padded(_haadf(truth), 0)
    labels = _labels(truth)  # three patches lie on x < 8: 3 x 6 x 6 pixels on the fill
    volume_path, labels_path = _write(tmp_path, volume, labels, "padded")
    data = load_volume_slice(volume_path, Z, labels_path)
    assert data.valid is not None and not data.valid[:, :, PAD].any()
    assert np.all(data.labeled[0].label[:, :8] == 255)
    warnings = label_warnings(data)
    assert "padded.tif: constant fill 0 (29.2 % of the voxels) taken as no data" in warnings[0]
    assert warnings[1].startswith("108 labeled pixels of padded_labels.png lie on the constant "
                                  "fill of slice 6")
    config = TrainConfig(out=str(tmp_path / "model.onnx"), volume=str(volume_path),
                         slice_index=Z, labels=str(labels_path), device="cpu", threads=1,
                         exporter="legacy")
    selection, out = select_and_train(config, ("threshold",))
    assert selection.warnings[:2] == warnings[:2]
    seg = segment_volume(Segmenter(out, providers=("cpu",)), volume)
    assert _iou(seg.mask[:, :, ~PAD].astype(bool), truth[:, :, ~PAD]) > 0.7
    assert seg.verdict.status == "ok", seg.verdict.why


def test_a_data_folder_volume_with_a_fill_is_read_as_train_volume_reads_it(tmp_path):
    pytest.importorskip("torch")
    from nwwatch.io import write_frame_tiff
    from nwwatch.normalize import intensity_range
    from training.data import load_folder

    truth = _truth()
    volume = _padded(_haadf(truth), 0)
    for sub in ("images", "labels", "unlabeled"):
        (tmp_path / sub).mkdir()
    (tmp_path / "dataset.toml").write_text('kind = "tomogram"\n')
    write_volume_tiff(tmp_path / "unlabeled" / "volume.tif", volume)
    write_frame_tiff(tmp_path / "images" / "s.tif", volume[Z])
    cv2.imwrite(str(tmp_path / "labels" / "s.png"), _labels(truth))
    data = load_folder(tmp_path)
    assert data.notes[0].startswith("volume.tif: constant fill 0 (29.2 % of the voxels)")
    assert data.notes[1].startswith("108 labeled pixels of s.png lie on the constant fill")
    item = data.labeled[0]
    assert np.all(item.label[:, PAD] == 255)
    # the fill takes the nearest data's grey in its slice, as the runtime gives it
    np.testing.assert_array_equal(item.image[:, X < 8], np.repeat(item.image[:, 8:9], 8, axis=1))
    np.testing.assert_array_equal(item.image[:, X >= 42],
                                  np.repeat(item.image[:, 41:42], 6, axis=1))
    # the data's grey range, as the runtime normalises the volume
    low, high = intensity_range(without_constant_fill(volume)[0])
    expected = np.clip(2 * (volume[Z][:, ~PAD].astype(np.float32) - low) / (high - low) - 1,
                       -1, 1)
    np.testing.assert_allclose(item.image[:, ~PAD], expected, atol=1e-5)


def test_fills_at_both_ends_a_circular_mask_and_nan_over_a_fill_are_found():
    """A fill at each end: the other end's stayed in the sample whose range sized the gap
    window (the whole dtype's), so one was missed and skewed the grey range; the inscribed
    circle of a reconstruction mask: its corners cover 0.43 of each of two sides, none half
    of one; NaN over a fill's columns in one slice lost the whole fill."""
    rng = np.random.default_rng(0)
    grey = np.clip(rng.normal(1000, 200, (16, 96, 96)), 100, 2000).astype(np.uint16)
    both = grey.copy()
    both[:, :, :15], both[:, :, -15:] = 0, 65535
    assert [f.value for f in constant_fill(both)[1]] == [0.0, 65535.0]
    rows, cols = np.mgrid[0:96, 0:96]
    outside = np.hypot(rows - 47.5, cols - 47.5) > 48
    circle = grey.copy()
    circle[:, outside] = 0
    mask, fills = constant_fill(circle)
    assert len(fills) == 1 and np.array_equal(mask[0], outside)
    floats = grey.astype(np.float32)
    floats[:, :, :15] = 0.0  # one fill, at the low end
    floats[0, :, :5] = np.nan  # no data over part of it in one slice
    mask, fills = constant_fill(floats)
    assert [f.value for f in fills] == [0.0] and mask[:, :, :15].all()


def test_a_grain_in_a_corner_and_nan_slices_do_not_make_a_fill():
    """Summing a region's cover over the sides took a saturated grain in a corner (0.3 of
    two sides) for fill; NaN slices counted in a fill's voxels loosened the 1 % floor and
    the gap check (a clipped strip in 8 slices of 100 was 'fill 25 %')."""
    rng = np.random.default_rng(4)
    n = 64
    rows, cols = np.mgrid[0:n, 0:n]
    grain = np.hypot(rows, cols) < 0.3 * n  # a quarter disc in the corner
    grey = rng.normal(1000, 150, (16, n, n))
    grey[:, grain] = 70000  # saturated, the same section through every slice
    assert not constant_fill(np.clip(grey, 0, 65535).astype(np.uint16))[1]
    strip = rng.normal(200, 60, (8, n, n)).astype(np.float32)
    strip[:, :, :8] = 0.0
    near = rng.random(strip.shape) < 0.03 * 8 / n * 8  # a tail just above the clip
    strip[near & (strip > 0)] = 0.5
    assert not constant_fill(strip)[1]
    padded = np.concatenate([strip, np.full((92, n, n), np.nan, np.float32)])
    assert not constant_fill(padded)[1]
