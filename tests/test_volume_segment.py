"""segment_volume with tiny threshold ONNX models (tests/onnx_models.py): exact answers."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_models import TOMOGRAM_GREY, build_threshold_model
from scipy import ndimage as ndi

from nwwatch.normalize import intensity_range, normalize_image
from nwwatch.segment.session import Segmenter
from nwwatch.volume import (
    UNCERTAIN_BAND,
    VolumeModelError,
    clean_mask,
    segment_volume,
    smooth_along_z,
)


def _easy_volume(shape=(24, 40, 56), seed=0):
    """Large smooth blobs painted with the model's class greys, and their truth."""
    field = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 4.0)
    truth = field > 0
    volume = np.where(truth, TOMOGRAM_GREY[1], TOMOGRAM_GREY[0]).astype(np.uint8)
    return volume, truth.astype(np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "plain": Segmenter(build_threshold_model(root / "plain.onnx", kind="tomogram"),
                           providers=("cpu",), threads=1),
        "smooth": Segmenter(build_threshold_model(root / "smooth.onnx", kind="tomogram",
                                                  smooth=True, size_multiple=8),
                            providers=("cpu",), threads=1),
        "image": Segmenter(build_threshold_model(root / "image.onnx", kind="tomogram",
                                                 metadata={"normalization_scope": "image"}),
                           providers=("cpu",), threads=1),
        "insitu": Segmenter(build_threshold_model(root / "insitu.onnx", kind="insitu"),
                            providers=("cpu",), threads=1),
    }


def test_plain_slicing_recovers_the_painted_truth(models):
    volume, truth = _easy_volume()
    result = segment_volume(models["plain"], volume, min_component_voxels=0, batch_size=5)
    assert result.mask.dtype == np.uint8 and result.mask.shape == volume.shape
    np.testing.assert_array_equal(result.mask, truth)
    assert result.solid_probability is None
    assert result.threshold_agreement > 0.99  # two clean greys; the blur moves a few edges


def test_probability_is_returned_and_thresholds_to_the_mask(models):
    volume, truth = _easy_volume()
    result = segment_volume(models["plain"], volume, min_component_voxels=0,
                            return_probability=True)
    p = result.solid_probability
    assert p is not None and p.dtype == np.float32 and p.shape == volume.shape
    np.testing.assert_array_equal(p > 0.5, truth.astype(bool))


@pytest.mark.parametrize("model", ["plain", "smooth"])
def test_triplanar_agrees_with_plain_slicing_on_an_easy_volume(models, model):
    volume, truth = _easy_volume()
    plain = segment_volume(models[model], volume, min_component_voxels=0).mask
    fused = segment_volume(models[model], volume, triplanar=True, min_component_voxels=0).mask
    if model == "plain":  # a pointwise model sees the same voxel from every direction
        np.testing.assert_array_equal(fused, plain)
    else:  # the 3x3 filter differs by direction only on the thinnest structures
        assert (fused == plain).mean() > 0.995
        assert (fused == truth).mean() > 0.995


@pytest.mark.parametrize("margin_px", [0, 16])
@pytest.mark.parametrize("model", ["plain", "smooth"])
def test_tiling_agrees_with_whole_slices(models, model, margin_px):
    volume, _ = _easy_volume(shape=(6, 70, 90))
    whole = segment_volume(models[model], volume, min_component_voxels=0, return_probability=True,
                           margin_px=margin_px)
    tiled = segment_volume(models[model], volume, tile=32, tile_overlap=8, margin_px=margin_px,
                           min_component_voxels=0, return_probability=True, batch_size=3)
    if model == "plain" or margin_px:
        # With a margin the 3x3 filter never reaches a zero-padded edge in either path.
        np.testing.assert_array_equal(tiled.mask, whole.mask)
    if model == "plain":
        np.testing.assert_allclose(tiled.solid_probability, whole.solid_probability, atol=1e-6)
    else:
        # Without a margin the 3x3 filter's zero padding meets the slice border in a tile but
        # the runtime's reflect padding (to size_multiple) in the whole slice.
        inner = (slice(None), slice(1, -1), slice(1, -1))
        np.testing.assert_array_equal(tiled.mask[inner], whole.mask[inner])


@pytest.mark.parametrize("margin_px", [1, 16, 40])
def test_mirror_margin_does_not_change_a_pointwise_model(models, margin_px):
    volume, truth = _easy_volume(shape=(5, 24, 32))
    bare = segment_volume(models["plain"], volume, min_component_voxels=0, margin_px=0,
                          return_probability=True)
    padded = segment_volume(models["plain"], volume, min_component_voxels=0,
                            margin_px=margin_px, return_probability=True, triplanar=True)
    np.testing.assert_array_equal(padded.mask, truth)
    np.testing.assert_allclose(padded.solid_probability, bare.solid_probability, atol=1e-6)


def test_mirror_margin_keeps_a_zero_padded_border_from_being_misread(tmp_path):
    # A model whose 3x3 box filter pulls a solid pixel on the slice border (zero padding
    # outside) below its pore/solid decision level (0.75 with centres 0.5 and 1.0): the bare
    # border of an all-solid region is called pore, the way a network that never saw a
    # labeled border invents one. Mirroring the slice first shows it solid around the border.
    model = Segmenter(build_threshold_model(tmp_path / "edge.onnx", kind="tomogram",
                                            centres=(0.5, 1.0), smooth=True),
                      providers=("cpu",), threads=1)
    volume = np.full((4, 32, 32), TOMOGRAM_GREY[1], dtype=np.uint8)
    volume[:, 12:20, 12:20] = TOMOGRAM_GREY[0]  # a pore, so the volume has both greys
    bare = segment_volume(model, volume, min_component_voxels=0, margin_px=0).mask
    mirrored = segment_volume(model, volume, min_component_voxels=0).mask
    ring = np.ones((32, 32), dtype=bool)
    ring[1:-1, 1:-1] = False
    assert not bare[:, ring].any()
    assert mirrored[:, ring].all()
    inner = (slice(None), slice(1, -1), slice(1, -1))
    np.testing.assert_array_equal(mirrored[inner], bare[inner])
    assert not mirrored[:, 12:20, 12:20].any()


def _with_extra(metadata, **extra):
    from dataclasses import replace

    return replace(metadata, extra={**metadata.extra, **extra})


class _NeedsWideInput:
    """A pointwise model that, like the feature forest's graph (ONNX Runtime's reflect Pad),
    refuses images narrower than its ``extra["min_input_px"]``."""

    def __init__(self, inner: Segmenter, min_input: int) -> None:
        self.inner, self.min_input, self.model_path = inner, min_input, inner.model_path
        self.metadata = _with_extra(inner.metadata, min_input_px=min_input)
        self.sides: set[int] = set()

    def segment(self, images, probabilities=False):
        side = min(images.shape[-2:])
        self.sides.add(side)
        if side < self.min_input:
            raise RuntimeError(f"Pad reflect: pre-pad exceeds maximum allowed ({side} px)")
        return self.inner.segment(images, probabilities=probabilities)


def test_a_thin_volume_is_mirrored_wide_enough_for_the_model(models):
    # 6 slices: along Y and X (tri-planar fusion) the slices are 6 px high, 38 px with the
    # 16 px margin, narrower than the 49 px the forest's widest kernel needs.
    volume, truth = _easy_volume(shape=(6, 40, 56))
    wide = _NeedsWideInput(models["plain"], 49)
    seg = segment_volume(wide, volume, triplanar=True, min_component_voxels=0)
    np.testing.assert_array_equal(seg.mask, truth)  # pointwise: the margin changes nothing
    assert min(wide.sides) == 50  # 6 + 2 * 22: the margin grew just enough
    assert 40 + 32 in wide.sides  # slices wide enough keep the 16 px margin
    tiled = segment_volume(wide, volume, tile=16, min_component_voxels=0)  # tiles widened too
    np.testing.assert_array_equal(tiled.mask, truth)
    bad = _NeedsWideInput(models["plain"], 49)
    bad.metadata = _with_extra(bad.metadata, min_input_px=0)
    with pytest.raises(VolumeModelError, match="min_input_px"):
        segment_volume(bad, volume)


def test_volume_scope_normalises_every_slice_with_the_volume_range(models):
    volume, truth = _easy_volume(shape=(8, 32, 32))
    volume[3] = TOMOGRAM_GREY[1]  # a slice of pure solid
    truth[3] = 1
    by_volume = segment_volume(models["plain"], volume, min_component_voxels=0).mask
    np.testing.assert_array_equal(by_volume, truth)
    # Normalised on its own, a constant slice maps to -1: the "image" model calls it pore.
    by_image = segment_volume(models["image"], volume, min_component_voxels=0).mask
    assert not by_image[3].any()
    np.testing.assert_array_equal(np.delete(by_image, 3, 0), np.delete(truth, 3, 0))


def test_cleanup_removes_a_speck_and_fills_a_pinhole(models):
    volume, truth = _easy_volume()
    solid_z, solid_y, solid_x = np.argwhere(ndi.binary_erosion(truth, iterations=3))[0]
    pore_z, pore_y, pore_x = np.argwhere(ndi.binary_erosion(1 - truth, iterations=3))[0]
    volume[solid_z, solid_y, solid_x] = TOMOGRAM_GREY[0]  # pinhole in solid
    volume[pore_z, pore_y, pore_x] = TOMOGRAM_GREY[1]  # speck in a pore
    raw = segment_volume(models["plain"], volume, min_component_voxels=0).mask
    assert raw[solid_z, solid_y, solid_x] == 0 and raw[pore_z, pore_y, pore_x] == 1
    cleaned = segment_volume(models["plain"], volume).mask
    np.testing.assert_array_equal(cleaned, truth)


def test_clean_mask_keeps_components_at_the_threshold():
    mask = np.zeros((10, 10, 10), dtype=bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels
    mask[6, 6, 6] = True
    out = clean_mask(mask, 8)
    assert out[1:3, 1:3, 1:3].all() and not out[6, 6, 6]


def test_refuses_models_and_inputs_it_cannot_use(models):
    volume, _ = _easy_volume(shape=(4, 16, 16))
    with pytest.raises(VolumeModelError, match="insitu"):
        segment_volume(models["insitu"], volume)
    with pytest.raises(ValueError, match="3D"):
        segment_volume(models["plain"], volume[0])
    with pytest.raises(ValueError, match="tile"):
        segment_volume(models["plain"], volume, tile=4)
    with pytest.raises(ValueError, match="batch_size"):
        segment_volume(models["plain"], volume, batch_size=0)
    with pytest.raises(ValueError, match="margin_px"):
        segment_volume(models["plain"], volume, margin_px=-1)


def test_flip_averaging_cancels_a_direction_bias(tmp_path):
    # A model that reads each pixel's upper-left neighbour: its mask is the truth moved one
    # pixel down and right. Averaging the four flips spreads that bias evenly over the
    # directions, so a mirror-symmetric solid gives a mirror-symmetric mask again.
    shift = np.zeros((3, 3), dtype=np.float32)
    shift[0, 0] = 1.0
    model = Segmenter(build_threshold_model(tmp_path / "shift.onnx", kind="tomogram",
                                            kernel=shift), providers=("cpu",), threads=1)
    volume = np.full((3, 24, 24), TOMOGRAM_GREY[0], dtype=np.uint8)
    volume[:, 8:16, 8:16] = TOMOGRAM_GREY[1]
    truth = volume == TOMOGRAM_GREY[1]
    biased = segment_volume(model, volume, min_component_voxels=0).mask.astype(bool)
    np.testing.assert_array_equal(biased[:, 9:17, 9:17], truth[:, 8:16, 8:16])
    averaged = segment_volume(model, volume, min_component_voxels=0, flips=True,
                              return_probability=True)
    p = averaged.solid_probability
    np.testing.assert_allclose(p, np.flip(p, 1), atol=1e-6)
    np.testing.assert_allclose(p, np.flip(p, 2), atol=1e-6)
    assert (averaged.mask.astype(bool) == truth).mean() > (biased == truth).mean()


@pytest.mark.parametrize("model", ["plain", "smooth"])
def test_flip_averaging_does_not_change_a_symmetric_model(models, model):
    volume, _ = _easy_volume(shape=(4, 30, 36))
    once = segment_volume(models[model], volume, min_component_voxels=0, return_probability=True)
    four = segment_volume(models[model], volume, min_component_voxels=0, flips=True,
                          triplanar=True, return_probability=True)
    three = segment_volume(models[model], volume, min_component_voxels=0, triplanar=True,
                           return_probability=True)
    np.testing.assert_allclose(four.solid_probability, three.solid_probability, atol=1e-6)
    if model == "plain":
        np.testing.assert_allclose(four.solid_probability, once.solid_probability, atol=1e-6)


@pytest.mark.parametrize("fusion", [{}, {"triplanar": True}, {"flips": True}, {"tile": 16}])
def test_uncertain_fraction_counts_the_voxels_the_model_is_unsure_about(models, fusion):
    # Pore and solid greys normalise onto the class centres (p(solid) ~ 0 or 1); the grey
    # halfway between them normalises to 0, where the threshold model says p = 0.5.
    volume, _ = _easy_volume(shape=(12, 30, 34))
    unsure = np.zeros(volume.shape, dtype=bool)
    unsure[3:7, 5:20, 8:30] = True
    volume[unsure] = (TOMOGRAM_GREY[0] + TOMOGRAM_GREY[1]) // 2
    result = segment_volume(models["plain"], volume, min_component_voxels=0,
                            return_probability=True, **fusion)
    assert result.uncertain_fraction == pytest.approx(unsure.mean(), abs=1e-12)
    p = result.solid_probability
    low, high = UNCERTAIN_BAND
    assert result.uncertain_fraction == np.count_nonzero((p > low) & (p < high)) / p.size


def test_uncertain_fraction_is_zero_for_a_confident_model(models):
    volume, _ = _easy_volume()
    assert segment_volume(models["plain"], volume).uncertain_fraction == 0.0


def test_smooth_along_z_is_a_mirrored_gaussian_along_the_first_axis():
    impulse = np.zeros((21, 3, 4), np.float32)
    impulse[10] = 1.0
    z = np.arange(21) - 10
    weights = np.where(abs(z) <= 6, np.exp(-0.5 * (z / 1.5) ** 2), 0.0)  # truncated at 4 sigma
    np.testing.assert_allclose(smooth_along_z(impulse, 1.5)[:, 1, 2], weights / weights.sum(),
                               atol=1e-6)
    ramp = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None], (6, 2, 2))
    out = smooth_along_z(ramp, 1.0)
    # Mirrored ends (the slice below the first is the second): the first slice moves up.
    assert out[0, 0, 0] > 0 and out[3, 0, 0] == pytest.approx(3.0, abs=1e-2)
    np.testing.assert_array_equal(smooth_along_z(ramp, 0.0), ramp)
    constant = np.full((5, 4, 4), 7.0)
    np.testing.assert_allclose(smooth_along_z(constant, 2.0), 7.0, rtol=1e-6)


def test_a_model_with_z_sigma_sees_slices_blurred_along_z(tmp_path):
    volume, _ = _easy_volume()
    noisy = volume + np.random.default_rng(3).normal(0, 30, volume.shape)
    path = build_threshold_model(tmp_path / "z.onnx", kind="tomogram",
                                 metadata={"extra": {"z_sigma_px": 1.5}})
    model = Segmenter(path, providers=("cpu",), threads=1)
    got = segment_volume(model, noisy, min_component_voxels=0, return_probability=True,
                         margin_px=0).solid_probability
    # What the runtime must feed: the volume normalised with its range, blurred along Z.
    fed = smooth_along_z(normalize_image(noisy, intensity_range(noisy)), 1.5)
    want = model.segment(fed, probabilities=True).probabilities[:, 1]
    np.testing.assert_allclose(got, want, atol=1e-5)
    plain = segment_volume(Segmenter(build_threshold_model(tmp_path / "p.onnx",
                                                           kind="tomogram"),
                                     providers=("cpu",), threads=1), noisy,
                           min_component_voxels=0, return_probability=True, margin_px=0)
    assert not np.allclose(plain.solid_probability, got, atol=1e-3)
    # Tri-planar fusion slices the same Z-blurred volume along Y and X.
    fused = segment_volume(model, noisy, min_component_voxels=0, triplanar=True,
                           return_probability=True, margin_px=0).solid_probability
    np.testing.assert_allclose(fused, want, atol=1e-5)  # a pointwise model: the same


def test_a_bad_z_sigma_is_refused_naming_the_model(tmp_path):
    path = build_threshold_model(tmp_path / "bad.onnx", kind="tomogram",
                                 metadata={"extra": {"z_sigma_px": -1}})
    with pytest.raises(VolumeModelError, match="bad.onnx.*z_sigma_px"):
        segment_volume(Segmenter(path, providers=("cpu",), threads=1), np.zeros((4, 8, 8)))


def test_a_model_without_min_input_px_runs_thin_slices_mirrored_wider(tmp_path):
    # Models exported before extra["min_input_px"] existed (a forest's 48 px reflect pads)
    # failed in ONNX Runtime on a thin volume's Y and X slices under tri-planar fusion, and
    # the service retried the error as unexpected. The runner now widens the mirror margin.
    volume = np.random.default_rng(0).normal(0, 1, (6, 40, 40)).astype(np.float32)
    old = Segmenter(build_threshold_model(tmp_path / "old.onnx", kind="tomogram",
                                          reflect_pad_px=40), providers=("cpu",), threads=1)
    assert "min_input_px" not in old.metadata.extra
    new = Segmenter(build_threshold_model(tmp_path / "new.onnx", kind="tomogram",
                                          reflect_pad_px=40,
                                          metadata={"extra": {"min_input_px": 41}}),
                    providers=("cpu",), threads=1)
    got = segment_volume(old, volume, triplanar=True)
    np.testing.assert_array_equal(got.mask, segment_volume(new, volume, triplanar=True).mask)
    # A graph that fails even at the widest input tried: a reason naming the model.
    wide = Segmenter(build_threshold_model(tmp_path / "wide.onnx", kind="tomogram",
                                           reflect_pad_px=300), providers=("cpu",), threads=1)
    with pytest.raises(VolumeModelError, match="wide.onnx: ONNX Runtime cannot run the model "
                                               "on slices of 40 x 40 px, even mirrored to 256"):
        segment_volume(wide, volume)


def test_an_onnxruntime_error_on_slices_that_needed_no_widening_is_not_the_models_fault(
        tmp_path):
    # Slices already 256 px or more as the model sees them were reported as "cannot run the
    # model on slices of ... even mirrored to ...": widening had nothing to try, and the
    # service would stop for what may be a passing runtime error. The error stays as it is.
    wide = Segmenter(build_threshold_model(tmp_path / "wide.onnx", kind="tomogram",
                                           reflect_pad_px=300), providers=("cpu",), threads=1)
    volume = np.random.default_rng(0).normal(0, 1, (2, 260, 260)).astype(np.float32)
    with pytest.raises(Exception) as error:
        segment_volume(wide, volume)
    assert not isinstance(error.value, VolumeModelError)
    assert type(error.value).__module__.startswith("onnxruntime"), repr(error.value)


@pytest.mark.parametrize("fusion", [{}, {"triplanar": True}])
def test_voxels_without_data_are_never_solid_where_the_solid_is_dark(tmp_path, fusion):
    # Bright-field contrast (solid dark): normalisation made NaN the darkest grey, which
    # such a model called solid, so the NaN padding of an aligned reconstruction came out
    # as slabs of solid in an "ok" mask.
    model = Segmenter(build_threshold_model(tmp_path / "dark.onnx", kind="tomogram",
                                            centres=(1.0, -1.0)), providers=("cpu",), threads=1)
    volume, truth = _easy_volume(shape=(12, 32, 32))
    dark = np.where(truth == 1, 30.0, 220.0).astype(np.float32)
    dark[:2] = np.nan
    dark[6, :, :5] = np.nan
    result = segment_volume(model, dark, min_component_voxels=0, return_probability=True,
                            **fusion)
    no_data = ~np.isfinite(dark)
    assert not result.mask[no_data].any()
    assert not result.solid_probability[no_data].any()
    np.testing.assert_array_equal(result.mask[2:6], truth[2:6])


def test_single_voxels_without_data_amid_solid_stay_no_solid_after_the_cleanup(tmp_path):
    # bad pixels (a few NaN voxels inside the solid) are a small pore, which the cleanup
    # filled: 98 of 100 came out solid in the mask, counted in its solid fraction
    model = Segmenter(build_threshold_model(tmp_path / "m.onnx", kind="tomogram"),
                      providers=("cpu",), threads=1)
    volume, truth = _easy_volume(shape=(12, 32, 32))
    holes = volume.astype(np.float32)
    inside = np.argwhere(ndi.binary_erosion(truth == 1, iterations=2))[::7][:40]
    assert len(inside) == 40
    holes[tuple(inside.T)] = np.nan
    result = segment_volume(model, holes, min_component_voxels=8)
    assert not result.mask[tuple(inside.T)].any()


def test_the_z_blur_leaves_voxels_without_data_out():
    # NaN slices became the darkest grey and the blur along Z carried it into the slices
    # next to them: on a bright-field volume (solid dark) slice 3 under a NaN slab came out
    # 62 % solid where the truth has none (docs/tomography.md).
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 1, (12, 5, 6)).astype(np.float32)
    valid = np.ones(volume.shape, bool)
    valid[:3] = False
    valid[7, 1:3] = False
    filled = np.where(valid, volume, -1.0).astype(np.float32)
    got = smooth_along_z(filled, 1.0, valid=valid)
    weights = ndi.gaussian_filter1d(valid.astype(np.float64), 1.0, axis=0, mode="mirror",
                                    truncate=4.0)
    sums = ndi.gaussian_filter1d(np.where(valid, volume, 0.0), 1.0, axis=0, mode="mirror",
                                 truncate=4.0)
    np.testing.assert_allclose(got[valid], (sums / weights)[valid], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[~valid], filled[~valid])  # no data stays as it was
    # every voxel with data: the plain blur
    np.testing.assert_array_equal(smooth_along_z(volume, 1.0, valid=np.ones_like(valid)),
                                  smooth_along_z(volume, 1.0))


def test_a_nan_slab_does_not_make_its_neighbours_solid_through_the_z_blur(tmp_path):
    path = build_threshold_model(tmp_path / "dark_z.onnx", kind="tomogram", centres=(1.0, -1.0),
                                 metadata={"extra": {"z_sigma_px": 1.0}})
    model = Segmenter(path, providers=("cpu",), threads=1)
    truth = np.zeros((12, 32, 32), np.uint8)
    truth[4:9, 8:24, 8:24] = 1
    dark = np.where(truth == 1, 30.0, 220.0).astype(np.float32)
    dark[:3] = np.nan
    result = segment_volume(model, dark, min_component_voxels=0)
    np.testing.assert_array_equal(result.mask[3:], truth[3:])


def test_a_model_call_holds_at_most_max_call_pixels(models, monkeypatch):
    # The feature forest needs ~500 bytes a pixel while it runs: 8 slices of 820 x 820 px
    # per call took 2795 MiB where one took 563 MiB. The batch is cut by pixels, not only by
    # slices; the probabilities stay the same.
    from nwwatch.volume import runner

    volume, _ = _easy_volume(shape=(6, 40, 40))
    whole = segment_volume(models["smooth"], volume, return_probability=True, batch_size=8)
    sizes = []
    segment = models["smooth"].segment

    def counting(images, **kwargs):
        sizes.append(int(np.prod(images.shape[:1])))
        return segment(images, **kwargs)

    monkeypatch.setattr(models["smooth"], "segment", counting)
    monkeypatch.setattr(runner, "MAX_CALL_PIXELS", 2 * 72 * 72)  # slices of 40 + 2 x 16 px
    cut = segment_volume(models["smooth"], volume, return_probability=True, batch_size=8)
    assert sizes == [2, 2, 2]
    np.testing.assert_array_equal(cut.solid_probability, whole.solid_probability)
    sizes.clear()
    segment_volume(models["smooth"], volume, tile=24, tile_overlap=0, batch_size=8)
    assert max(sizes) * 24 * 24 <= 2 * 72 * 72  # tiles too


def test_the_normalised_copy_is_let_go_before_the_cleanup_and_the_cross_check(tmp_path):
    # The Z-blurred copy a model with z_sigma_px is fed was held to the end of
    # segment_volume, through the cleanup's labels and the cross-check's blurred copy.
    import tracemalloc

    path = build_threshold_model(tmp_path / "z.onnx", kind="tomogram",
                                 metadata={"extra": {"z_sigma_px": 1.0}})
    model = Segmenter(path, providers=("cpu",), threads=1)
    # over 1M voxels: the grey range's sample (nwwatch.normalize) is then a bounded grid, not
    # the whole of a small volume
    volume = np.random.default_rng(0).normal(0, 1, (16, 256, 288)).astype(np.float32)
    segment_volume(model, volume[:2, :32, :32], margin_px=0)  # the session's first run
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        segment_volume(model, volume, margin_px=0, batch_size=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / volume.size <= 17.0  # 15 measured; 19 with the copy held


def test_segment_volume_beats_after_every_model_call(models):
    # The service's watchdog ping (systemd WatchdogSec=120) came only between files: a
    # tomogram whose segmentation took longer than that got the service killed and, after
    # max_attempts kills, itself quarantined.
    volume, _ = _easy_volume(shape=(6, 24, 24))
    beats = []
    segment_volume(models["plain"], volume, batch_size=2, heartbeat=lambda: beats.append(1))
    assert len(beats) >= 3  # three calls of two slices
    beats.clear()
    segment_volume(models["plain"], volume, batch_size=2, triplanar=True,
                   heartbeat=lambda: beats.append(1))
    assert len(beats) >= 3 + 12 + 12  # along Z, then 24 slices along Y and along X


def test_a_volume_spanning_float32s_whole_range_is_segmented(models):
    # Values at -3.4e38 and +3.4e38 (float32's largest): the normalisation and the cross
    # check's Otsu histogram overflowed, and the service failed the file with an IndexError.
    volume, truth = _easy_volume()
    top = np.finfo(np.float32).max
    huge = np.where(truth == 1, top, -top).astype(np.float32)
    result = segment_volume(models["plain"], huge, min_component_voxels=0)
    np.testing.assert_array_equal(result.mask, truth)
    assert result.threshold_agreement > 0.99


#: A 3x3 filter that reads each pixel's left neighbour: the smallest in-plane receptive field
#: that reaches across the edge of a no-data region (as a forest's blur or a network does).
_LEFT_NEIGHBOUR = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0]], np.float32)


@pytest.mark.parametrize("no_data", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("solid_dark", [True, False], ids=["bright_field", "haadf"])
@pytest.mark.parametrize("z_sigma_px", [0.0, 1.0])
@pytest.mark.parametrize("fusion", [{}, {"triplanar": True}])
def test_no_data_beside_the_data_leaves_the_mask_as_without_it(tmp_path, solid_dark,
                                                                z_sigma_px, fusion, no_data):
    # Padding without data (x < 6 in every slice, as after alignment) became the darkest
    # grey (NaN), or the brightest or darkest (+inf, -inf: clipped, never filled), and a
    # model that looks at its neighbours carried it onto the data beside it: a wall of solid
    # along the padding for a bright-field model (solid dark), solid eaten there for a HAADF
    # one, in rows called `ok`. The padding takes the nearest data's grey.
    centres = (1.0, -1.0) if solid_dark else (-1.0, 1.0)
    model = Segmenter(build_threshold_model(tmp_path / "m.onnx", kind="tomogram",
                                            centres=centres, kernel=_LEFT_NEIGHBOUR,
                                            metadata={"extra": {"z_sigma_px": z_sigma_px}}),
                      providers=("cpu",), threads=1)
    _, truth = _easy_volume(shape=(10, 24, 32))
    truth[:, :, :10] = truth[:, :, 6:7]  # each row one class up to x = 9, across the edge
    truth[:, 4:8, :10] = 1  # solid against the padding in some rows, pore in others
    truth[:, 12:16, :10] = 0
    solid, pore = (30.0, 220.0) if solid_dark else (220.0, 30.0)
    volume = np.where(truth == 1, solid, pore).astype(np.float32)
    volume += np.random.default_rng(1).normal(0, 5, volume.shape).astype(np.float32)
    padded = volume.copy()
    padded[:, :, :6] = no_data
    kwargs = {"min_component_voxels": 0, **fusion}
    full = segment_volume(model, volume, **kwargs).mask
    got = segment_volume(model, padded, **kwargs).mask
    assert not got[:, :, :6].any()
    np.testing.assert_array_equal(got[:, :, 6:], full[:, :, 6:])
    assert got[:, 4:8, 6].all() and not got[:, 12:16, 6].any()


#: A 3x3 filter that reads each pixel's upper neighbour: in tri-planar fusion's Y and X passes
#: (the volume sliced along Y and X) the upper neighbour is the slice before.
_UPPER_NEIGHBOUR = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], np.float32)


@pytest.mark.parametrize("solid_dark", [True, False], ids=["bright_field", "haadf"])
@pytest.mark.parametrize("z_sigma_px", [0.0, 1.0])
def test_slices_without_data_leave_the_slices_beside_them_as_without_them(tmp_path,
                                                                          solid_dark,
                                                                          z_sigma_px):
    # Slices 0-2 and 7 without any data (NaN), as at the ends of an aligned stack. A model
    # with a Z blur is fed the volume normalised once, a slice at a time: a slice without
    # data had none to copy and stayed the darkest grey, which the Y and X passes of
    # tri-planar fusion read as a dark row beside the data: slices 3 and 8 turned solid
    # for a bright-field model (768 voxels, `solid_beyond_threshold`), their solid eaten
    # for a HAADF one. A slice without data takes the nearest data slice's grey.
    centres = (1.0, -1.0) if solid_dark else (-1.0, 1.0)
    model = Segmenter(build_threshold_model(tmp_path / "m.onnx", kind="tomogram",
                                            centres=centres, kernel=_UPPER_NEIGHBOUR,
                                            metadata={"extra": {"z_sigma_px": z_sigma_px}}),
                      providers=("cpu",), threads=1)
    solid, pore = (30.0, 220.0) if solid_dark else (220.0, 30.0)
    volume = np.full((12, 24, 32), pore, np.float32)
    volume[:, 8:16, 8:20] = solid
    volume += np.random.default_rng(1).normal(0, 5, volume.shape).astype(np.float32)
    padded = volume.copy()
    padded[[0, 1, 2, 7]] = np.nan
    kwargs = {"min_component_voxels": 0, "triplanar": True}
    full = segment_volume(model, volume, **kwargs)
    got = segment_volume(model, padded, **kwargs)
    assert not got.mask[[0, 1, 2, 7]].any()
    data = [3, 4, 5, 6, 8, 9, 10, 11]
    np.testing.assert_array_equal(got.mask[data], full.mask[data])
    assert got.verdict.status == "ok", got.verdict.why


def test_threshold_agreement_of_a_volume_in_a_block_of_padding(models):
    # under 2 % of the whole solid, about half of the data: the agreement was NaN (no
    # threshold_disagreement possible) in an `ok` row
    volume, truth = _easy_volume(shape=(12, 24, 24))
    padded = np.full((12, 24, 24 * 32), np.nan, np.float32)
    padded[:, :, :24] = volume
    result = segment_volume(models["plain"], padded, min_component_voxels=0)
    assert result.mask.mean() < 0.02 < truth.mean()
    np.testing.assert_array_equal(result.mask[:, :, :24], truth)
    assert result.threshold_agreement == pytest.approx(
        segment_volume(models["plain"], volume, min_component_voxels=0).threshold_agreement,
        abs=0.01)
