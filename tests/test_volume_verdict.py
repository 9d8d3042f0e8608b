"""The verdict on a tomogram mask: collapsed, flooded and uncertain masks are suspect, with
stable reason codes; a correct mask is ok."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nwwatch.segment.session import Segmenter
from nwwatch.volume import MIN_LABELED_PIXELS, REASON_CODES, assess_mask, segment_volume
from nwwatch.volume.crosscheck import blurred_volume
from nwwatch.volume.verdict import labels_threshold_share


def test_a_correct_mask_is_ok():
    verdict = assess_mask(0.15, 0.02, 0.85, 0.16, 0.14, {"pore": 400, "solid": 300})
    assert (verdict.status, verdict.reason_codes, verdict.reason_code) == ("ok", (), "")


@pytest.mark.parametrize("solid_fraction", [0.0, 0.01])
def test_an_empty_mask_under_two_percent_solid_is_collapsed(solid_fraction):
    # The held-out failure: everything called pore, the agreement not computed (NaN).
    verdict = assess_mask(solid_fraction, 0.06, math.nan, 0.08, 0.05)
    assert verdict.status == "suspect" and verdict.reason_codes == ("mask_collapsed",)
    assert "references suggest 5.00%-8.00%" in verdict.why[0]


def test_a_flooded_mask_is_collapsed_and_a_doubled_one_mismatched():
    assert assess_mask(0.97, 0.0, 0.2, 0.15, 0.2).reason_codes == ("mask_collapsed",
                                                                  "threshold_disagreement")
    doubled = assess_mask(0.45, 0.0, 0.6, 0.15, 0.2)
    assert doubled.reason_codes == ("solid_fraction_mismatch",)
    assert doubled.why[0] == ("solid fraction 45.00% is above 2x the higher of the "
                              "references' 15.00%-20.00%")
    halved = assess_mask(0.05, 0.0, 0.6, 0.15, 0.2)
    assert halved.reason_codes == ("solid_fraction_mismatch",)
    # Too little solid is said to be too little, not "beyond 2x".
    assert halved.why[0] == ("solid fraction 5.00% is below 1/2 of the lower of the "
                             "references' 15.00%-20.00%")


def test_no_verdict_on_the_solid_share_without_references():
    assert assess_mask(0.0, 0.0, math.nan, math.nan, math.nan).status == "ok"
    # A volume that shows no solid to either reference: an empty mask may well be right.
    assert assess_mask(0.0, 0.0, math.nan, 0.001, math.nan).status == "ok"


def test_uncertain_disagreeing_and_few_labels_each_have_a_code():
    verdict = assess_mask(0.15, 0.4, 0.3, 0.15, 0.15, {"pore": 800, "solid": 11})
    assert verdict.reason_codes == ("uncertain", "threshold_disagreement", "few_labeled_pixels")
    assert "11 labeled solid pixels" in verdict.why[2]
    assert "label one more patch of solid," in verdict.why[2]  # what to do, as training says
    both = assess_mask(0.15, 0.0, 0.8, 0.15, 0.15, {"pore": 9, "solid": 11})
    assert both.why[0] == ("the model was trained on only 9 labeled pore pixels, 11 labeled "
                           "solid pixels: label one more patch of pore and one of solid, on "
                           "the labeled slice or another one, and train again")
    one = assess_mask(0.15, 0.0, 0.8, 0.15, 0.15, {"pore": 1, "solid": 900})
    assert one.why[0].startswith("the model was trained on only 1 labeled pore pixel: ")
    assert set(verdict.reason_codes) <= set(REASON_CODES)
    assert assess_mask(0.15, 0.0, 0.8, 0.15, 0.15,
                       {"solid": MIN_LABELED_PIXELS, "pore": 900}).status == "ok"


def test_a_method_the_labels_could_not_check_is_suspect():
    unchecked = {"method": "threshold", "grouping": "none", "folds": 0}
    verdict = assess_mask(0.15, 0.02, 0.85, 0.16, 0.14, selection=unchecked)
    assert verdict.reason_codes == ("method_unvalidated",)
    assert "threshold" in verdict.why[0] and "two separate patches" in verdict.why[0]
    checked = {"method": "threshold", "grouping": "patches", "folds": 3}
    assert assess_mask(0.15, 0.02, 0.85, 0.16, 0.14, selection=checked).status == "ok"


def test_labels_threshold_share_cuts_half_way_between_the_class_means():
    volume = np.zeros((2, 10, 10), np.float32)
    volume[:, :3] = 1.0  # 30 % bright
    blurred = blurred_volume(volume, 0.0)
    share = labels_threshold_share(blurred, (0.0, 1.0), {"pore": -0.9, "solid": 0.9})
    assert share == pytest.approx(0.3)
    # Bright-field contrast: solid is the dark class.
    assert labels_threshold_share(blurred, (0.0, 1.0), {"pore": 0.9, "solid": -0.9}) == \
        pytest.approx(0.7)
    assert math.isnan(labels_threshold_share(blurred, (0.0, 1.0), {"solid": 0.9}))


def test_labels_threshold_share_counts_voxels_without_data_in_the_whole():
    # As the mask's solid share and the reference's do, the numbers it is compared with.
    volume = np.zeros((2, 10, 20), np.float32)
    volume[:, :3, :10] = 1.0  # 30 % of the data bright, 15 % of the volume
    volume[:, :, 10:] = np.nan
    blurred = blurred_volume(volume, 0.0)
    share = labels_threshold_share(blurred, (0.0, 1.0), {"pore": -0.9, "solid": 0.9})
    assert share == pytest.approx(0.15)


def test_a_good_mask_of_a_padded_volume_is_ok(tmp_path):
    # +inf padding beside the grain was solid in both references: a false mask_collapsed
    # and threshold_disagreement on a correct mask.
    from onnx_models import TOMOGRAM_GREY, build_threshold_model

    volume = np.full((10, 40, 48), TOMOGRAM_GREY[0], np.float32)
    volume[:, 8:20, 10:24] = TOMOGRAM_GREY[1]
    padded = volume.copy()
    padded[:, :, 30:] = np.inf
    good = build_threshold_model(
        tmp_path / "good.onnx", kind="tomogram",
        metadata={"extra": {"class_mean_intensity": {"pore": -0.9, "solid": 0.9}}})
    segmenter = Segmenter(good, providers=("cpu",))
    clean = segment_volume(segmenter, volume)
    seg = segment_volume(segmenter, padded)
    assert seg.verdict.solid_fraction == pytest.approx(0.0875)
    assert (seg.verdict.status, seg.verdict.reason_codes) == ("ok", ())
    assert seg.verdict.reference_solid_fraction == pytest.approx(
        clean.verdict.reference_solid_fraction)
    assert seg.verdict.labels_solid_fraction == pytest.approx(0.0875, abs=0.02)
    assert seg.threshold_agreement == pytest.approx(clean.threshold_agreement)


def test_a_model_that_calls_everything_pore_gives_a_suspect_segmentation(tmp_path):
    from onnx_models import TOMOGRAM_GREY, build_threshold_model

    volume = np.full((10, 40, 48), TOMOGRAM_GREY[0], np.uint8)
    volume[:, 8:20, 10:24] = TOMOGRAM_GREY[1]  # 8.75 % solid
    # Solid's centre beyond the brightest grey: every voxel is closer to the pore centre.
    collapsed = build_threshold_model(
        tmp_path / "collapsed.onnx", kind="tomogram", centres=(-1.0, 8.0),
        metadata={"extra": {"class_mean_intensity": {"pore": -0.9, "solid": 0.9},
                            "class_pixel_counts": {"pore": 900, "solid": 11}}})
    seg = segment_volume(Segmenter(collapsed, providers=("cpu",)), volume)
    assert not seg.mask.any() and math.isnan(seg.threshold_agreement)
    assert seg.verdict.status == "suspect"
    assert seg.verdict.reason_codes == ("mask_collapsed", "few_labeled_pixels")
    assert seg.verdict.reference_solid_fraction == pytest.approx(0.0875, abs=0.02)
    good = build_threshold_model(
        tmp_path / "good.onnx", kind="tomogram",
        metadata={"extra": {"class_mean_intensity": {"pore": -0.9, "solid": 0.9}}})
    seg = segment_volume(Segmenter(good, providers=("cpu",)), volume)
    assert seg.verdict.status == "ok" and seg.verdict.solid_fraction == pytest.approx(0.0875)


def test_solid_far_from_the_thresholds_solid_is_suspect():
    # The docs' workflow example (128³, seed 0): the kept network's mask agreed 0.70 with the
    # threshold and was `ok`, while 10.7 % of its solid lay in vacuum slices and beside the
    # grain where no threshold finds solid; its IoU was 0.59 against the threshold's 0.77.
    from nwwatch.volume.verdict import BEYOND_WARN_ABOVE

    verdict = assess_mask(0.24, 0.02, 0.70, 0.17, 0.16, solid_beyond_reference=0.107)
    assert verdict.reason_codes == ("solid_beyond_threshold",)
    assert verdict.why[0].startswith("10.7% of the mask's solid lies more than 4 px from any")
    assert assess_mask(0.24, 0.02, 0.70, 0.17, 0.16,
                       solid_beyond_reference=BEYOND_WARN_ABOVE).status == "ok"
    # no verdict without the number, or when the reference itself finds (almost) no solid
    assert assess_mask(0.24, 0.02, 0.70, 0.17, 0.16).status == "ok"
    assert assess_mask(0.01, 0.02, math.nan, 0.001, math.nan,
                       solid_beyond_reference=1.0).status == "ok"


def test_solid_beyond_reference_counts_in_plane_distance_and_empty_slices():
    from nwwatch.volume.crosscheck import solid_beyond_reference

    reference = np.zeros((4, 40, 40), bool)
    reference[:3, 10:20, 10:20] = True  # slice 3: the threshold finds no solid
    mask = reference.copy()
    assert solid_beyond_reference(mask, reference) == 0.0
    mask[0, 10:20, 23] = True  # 4 px from the reference's last column, 19: within
    assert solid_beyond_reference(mask, reference) == 0.0
    mask[0, 10:20, 25] = True  # 6 px: beyond
    mask[3, 0:10, 0] = True    # a slice without reference solid: all beyond
    assert solid_beyond_reference(mask, reference) == pytest.approx(20 / (300 + 30))
    assert math.isnan(solid_beyond_reference(np.zeros_like(mask), reference))
    with pytest.raises(ValueError, match="shape"):
        solid_beyond_reference(mask[:, :, :30], reference)


def test_a_model_that_calls_vacuum_solid_gives_a_suspect_segmentation(tmp_path):
    from onnx_models import TOMOGRAM_GREY, build_threshold_model

    volume = np.full((10, 40, 48), TOMOGRAM_GREY[0], np.uint8)
    volume[:, 8:20, 10:24] = TOMOGRAM_GREY[1]
    good = build_threshold_model(
        tmp_path / "good.onnx", kind="tomogram",
        metadata={"extra": {"class_mean_intensity": {"pore": -0.9, "solid": 0.9}}})
    segmenter = Segmenter(good, providers=("cpu",))
    assert segment_volume(segmenter, volume).verdict.status == "ok"
    # a faint haze in the vacuum, far from the grain: a threshold puts it with the pore, a model
    # whose solid starts just above the vacuum's grey calls it solid
    hazy = volume.copy()
    hazy[:, 26:32, 30:44] = 60
    low = build_threshold_model(
        tmp_path / "low.onnx", kind="tomogram", centres=(-1.0, -0.5),
        metadata={"extra": {"class_mean_intensity": {"pore": -0.9, "solid": 0.9}}})
    assert segment_volume(segmenter, hazy).verdict.status == "ok"
    seg = segment_volume(Segmenter(low, providers=("cpu",)), hazy)
    assert seg.verdict.reason_codes == ("solid_beyond_threshold",)


# The walkthrough's numbers (64³ synthetic volumes, a feature forest trained on seed 0):
# the training volume cut at the labels' class means is 3.60 pooled standard deviations apart,
# its solid side 1.81 x as variable as the rest.
TRAINED = (3.60, 1.81, 0.151)


def _contrast(separation: float, ratio: float, share: float):
    from nwwatch.volume.crosscheck import ClassContrast

    return ClassContrast(separation, ratio, share)


def test_an_inverted_and_a_contrastless_volume_are_suspect_a_normal_one_is_not():
    trained = _contrast(*TRAINED)
    normal = assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, contrast=_contrast(3.42, 2.05, 0.134),
                         trained=trained)
    assert normal.status == "ok"
    # inverted grey levels: the model calls the vacuum solid, which is bright and flat now
    inverted = assess_mask(0.927, 0.12, 0.94, 0.89, 0.89,
                           contrast=_contrast(3.65, 0.79, 0.927), trained=trained)
    assert inverted.reason_codes == ("contrast_inverted",)
    assert "standard deviation 0.79 x the rest's" in inverted.why[0]
    # vacuum only: the model's solid is the bright half of the noise
    vacuum = assess_mask(0.113, 0.13, 0.55, 0.10, 0.10, contrast=_contrast(1.79, 2.35, 0.113),
                         trained=trained)
    assert vacuum.reason_codes == ("no_contrast",)
    assert "1.79 pooled standard deviations apart" in vacuum.why[0]
    # a mask whose solid is darker than its pore while the labels' solid is brighter
    darker = assess_mask(0.2, 0.05, math.nan, 0.2, 0.2, contrast=_contrast(-1.0, 2.0, 0.2),
                         trained=trained)
    assert darker.reason_codes == ("contrast_inverted",)
    # the cut itself: 0.55 x 3.60 = 1.98
    assert assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, contrast=_contrast(1.99, 2.0, 0.134),
                       trained=trained).status == "ok"
    assert assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, contrast=_contrast(1.97, 2.0, 0.134),
                       trained=trained).reason_codes == ("no_contrast",)


def test_contrast_verdicts_follow_the_labels_direction_and_need_both_numbers():
    # bright-field: the labels' solid is the dark class; the same rules mirrored
    trained = _contrast(-3.6, 1.81, 0.151)
    assert assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, contrast=_contrast(-3.4, 2.0, 0.134),
                       trained=trained).status == "ok"
    assert assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, contrast=_contrast(3.4, 2.0, 0.134),
                       trained=trained).reason_codes == ("contrast_inverted",)
    # a training volume whose solid side was not clearly the more variable: no spread test
    flat = _contrast(3.6, 1.1, 0.151)
    assert assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, contrast=_contrast(3.4, 0.8, 0.134),
                       trained=flat).status == "ok"
    # the reverse: the training solid clearly the flatter, the mask's the more variable and
    # the majority (odds 7 x the training volume's: not the shares' test alone)
    assert assess_mask(0.55, 0.05, 0.9, 0.55, 0.55, contrast=_contrast(3.4, 1.2, 0.55),
                       trained=_contrast(3.6, 0.7, 0.151)).reason_codes == ("contrast_inverted",)
    assert assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, contrast=_contrast(3.4, 1.2, 0.134),
                       trained=_contrast(3.6, 0.7, 0.151)).status == "ok"
    # a model without the training volume's numbers: today's verdict
    assert assess_mask(0.113, 0.13, 0.55, 0.10, 0.10,
                       contrast=_contrast(1.79, 2.35, 0.113)).status == "ok"
    # an (almost) empty mask is the collapse check's case
    assert assess_mask(0.001, 0.0, math.nan, 0.0005, 0.0005, contrast=_contrast(0.5, 1.0, 0.001),
                       trained=_contrast(*TRAINED)).status == "ok"


def test_a_right_mask_whose_solid_is_the_flatter_minority_is_not_called_inverted():
    # A forest trained on 8 patches of slice 32 of the 64³ synthetic volume (solid 1.74 x as
    # variable as the rest, 14.4 % solid) gave right masks of volumes with little quiet
    # vacuum or other noise a flatter solid: each was `contrast_inverted`. Their solid is
    # still the minority, as the grain's is; the vacuum an inverted volume's mask calls solid
    # makes it the majority.
    trained = _contrast(3.67, 1.74, 0.144)
    for name, separation, ratio, share in (("central 16 slices", 2.72, 0.98, 0.219),
                                           ("central 8 slices", 2.69, 0.96, 0.241),
                                           ("crop inside the grain", 2.53, 0.84, 0.447),
                                           ("SIRT", 4.86, 0.87, 0.076),
                                           ("binned 2x", 4.04, 0.87, 0.073)):
        verdict = assess_mask(share, 0.05, 0.9, share, share,
                              contrast=_contrast(separation, ratio, share), trained=trained)
        assert verdict.status == "ok", name
    # the central 8 slices inverted: the mask calls 63 % solid, the flat vacuum among it
    inverted = assess_mask(0.631, 0.05, 0.9, 0.6, 0.6, contrast=_contrast(3.04, 0.64, 0.631),
                           trained=trained)
    assert inverted.reason_codes == ("contrast_inverted",)
    assert "0.64 x the rest's) and the majority (63.1%)" in inverted.why[0]
    assert "the more variable (1.74 x) and the minority (14.4%)" in inverted.why[0]
    # an inverted volume whose mask's solid stays a minority is not seen by the spread
    assert assess_mask(0.37, 0.05, 0.9, 0.37, 0.37, contrast=_contrast(2.23, 0.79, 0.37),
                       trained=trained).status == "ok"


def _truth_patches(truth_slice: np.ndarray, per_class: int = 4, side: int = 6) -> np.ndarray:
    """Labels of ``per_class`` patches of mostly solid and of mostly pore, ``side`` px, apart
    from each other (random places, seed 1): a user's few patches painted on the truth."""
    rng = np.random.default_rng(1)
    height, width = truth_slice.shape
    labels = np.full((height, width), 255, np.uint8)
    solid = pore = 0
    for _ in range(5000):
        if solid >= per_class and pore >= per_class:
            break
        y, x = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
        if (labels[max(0, y - 2):y + side + 2, max(0, x - 2):x + side + 2] != 255).any():
            continue
        patch = truth_slice[y:y + side, x:x + side]
        if patch.mean() > 0.7 and solid < per_class:
            labels[y:y + side, x:x + side], solid = patch, solid + 1
        elif patch.mean() < 0.3 and pore < per_class:
            labels[y:y + side, x:x + side], pore = patch, pore + 1
    return labels


def test_a_forest_flags_no_thin_slab_sirt_or_binned_copy_as_inverted(tmp_path):
    pytest.importorskip("torch")
    import cv2

    from nwwatch.io import write_volume_tiff
    from nwwatch.synth.tomogram import simulate_tomogram
    from training.config import TrainConfig
    from training.volume_select import select_and_train

    sim = simulate_tomogram(64, seed=0)
    volume = sim.volume.astype(np.float32)
    volume_path = write_volume_tiff(tmp_path / "volume.tif", volume)
    cv2.imwrite(str(tmp_path / "labels.png"), _truth_patches(sim.truth[32].astype(np.uint8)))
    config = TrainConfig(out=str(tmp_path / "forest.onnx"), volume=str(volume_path),
                         slice_index=32, labels=str(tmp_path / "labels.png"), threads=1,
                         device="cpu", val_fraction=0.0)
    selection, out = select_and_train(config, ("threshold", "features"))
    assert selection.method == "features"
    segmenter = Segmenter(out, providers=("cpu",))
    assert segmenter.metadata.extra["contrast"]["volume"]["solid_sd_ratio"] > 1.25
    binned = volume.reshape(32, 2, 32, 2, 32, 2).mean(axis=(1, 3, 5))
    sirt = simulate_tomogram(64, seed=0, reconstruction="sirt").volume
    for name, data in (("slices 24-39", volume[24:40]), ("slices 28-35", volume[28:36]),
                       ("SIRT", sirt), ("binned 2x", binned)):
        seg = segment_volume(segmenter, data)
        assert "contrast_inverted" not in seg.verdict.reason_codes, (name, seg.verdict.why)
        truth = sim.truth[24:40] if name == "slices 24-39" else None
        if truth is not None:  # a right mask: as good as on the training volume
            assert np.count_nonzero(seg.mask & truth) / np.count_nonzero(seg.mask | truth) > 0.6
    # the same slab inverted is still flagged
    inverted = segment_volume(segmenter, -volume[24:40])
    assert inverted.verdict.reason_codes == ("contrast_inverted",)


def test_mask_contrast_is_in_normalised_units_and_leaves_out_voxels_without_data():
    from nwwatch.volume.crosscheck import mask_contrast

    rng = np.random.default_rng(0)
    volume = rng.normal(100.0, 2.0, (6, 30, 30)).astype(np.float32)
    mask = np.zeros(volume.shape, bool)
    mask[:, 10:20, 10:20] = True
    volume[mask] += rng.normal(20.0, 4.0, int(mask.sum())).astype(np.float32)
    contrast = mask_contrast(volume, mask)
    # the separation and the ratio are those of the raw values: normalisation is affine
    # (the clipping to the 0.5-99.5 percentiles moves them a little)
    solid, rest = volume[mask].astype(np.float64), volume[~mask].astype(np.float64)
    pooled = math.sqrt(((solid.size - 1) * solid.var(ddof=1) + (rest.size - 1) * rest.var(ddof=1))
                       / (solid.size + rest.size - 2))
    assert contrast.separation_sd == pytest.approx((solid.mean() - rest.mean()) / pooled,
                                                   rel=0.05)
    assert contrast.solid_sd_ratio == pytest.approx(solid.std() / rest.std(), rel=0.1)
    assert contrast.solid_share == pytest.approx(mask.mean())
    # NaN voxels (no data) count on neither side
    padded = volume.copy()
    padded[0] = np.nan
    assert mask_contrast(padded, mask).solid_share == pytest.approx(mask.mean())
    assert math.isnan(mask_contrast(volume, np.zeros(volume.shape, bool)).separation_sd)
    with pytest.raises(ValueError, match="shape"):
        mask_contrast(volume, mask[:, :, :20])


def test_a_bad_contrast_value_in_the_model_is_refused_naming_the_file_and_key(tmp_path):
    from onnx_models import build_threshold_model

    from nwwatch.volume import VolumeModelError, check_volume_model

    bad = build_threshold_model(
        tmp_path / "bad.onnx", kind="tomogram",
        metadata={"extra": {"contrast": {"volume": {"separation_sd": "wide"}}}})
    with pytest.raises(VolumeModelError, match=r'bad\.onnx: extra\["contrast"\]\["volume"\]'):
        check_volume_model(Segmenter(bad, providers=("cpu",)))
    zero = build_threshold_model(
        tmp_path / "zero.onnx", kind="tomogram",
        metadata={"extra": {"contrast": {"volume": {"separation_sd": 0.0,
                                                    "solid_sd_ratio": 1.0}}}})
    with pytest.raises(VolumeModelError, match="non-zero separation_sd"):
        check_volume_model(Segmenter(zero, providers=("cpu",)))
    # labels' numbers only (no volume part): nothing to check, no contrast verdict
    labels_only = build_threshold_model(
        tmp_path / "labels.onnx", kind="tomogram",
        metadata={"extra": {"contrast": {"labels": {"separation_sd": 4.0}}}})
    check_volume_model(Segmenter(labels_only, providers=("cpu",)))


def _without_contrast(path, out):
    """A copy of the model at ``path`` whose metadata lacks ``extra["contrast"]`` (a model
    exported before it was recorded)."""
    import json

    import onnx

    from nwwatch.segment.contract import METADATA_KEY

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            meta = json.loads(prop.value)
            del meta["extra"]["contrast"]
            prop.value = json.dumps(meta, sort_keys=True)
    onnx.save(model, str(out))
    return out


def test_trained_models_flag_an_inverted_and_a_vacuum_volume(tmp_path):
    pytest.importorskip("torch")
    import cv2

    from nwwatch.io import write_volume_tiff
    from nwwatch.synth.tomo_labels import patch_labels
    from nwwatch.synth.tomogram import simulate_tomogram
    from training.config import TrainConfig
    from training.volume_select import select_and_train

    sim = simulate_tomogram(64, seed=0)
    volume_path = write_volume_tiff(tmp_path / "volume.tif", sim.volume.astype(np.float32))
    labels = patch_labels(sim.truth[32], 0.25, np.random.default_rng(0), grain=sim.grain[32])
    cv2.imwrite(str(tmp_path / "labels.png"), labels)
    models = {}
    for method in ("threshold", "features"):
        config = TrainConfig(out=str(tmp_path / f"{method}.onnx"), volume=str(volume_path),
                             slice_index=32, labels=str(tmp_path / "labels.png"), threads=1,
                             device="cpu", val_fraction=0.0)
        selection, out = select_and_train(config, (method,))
        assert selection.grouping == "patches"
        models[method] = Segmenter(out, providers=("cpu",))
        recorded = models[method].metadata.extra["contrast"]
        assert recorded["labels"]["separation_sd"] > 0 < recorded["volume"]["separation_sd"]
        assert recorded["volume"]["solid_sd_ratio"] > 1.25  # the grain is the textured class

    other = simulate_tomogram(64, seed=1)
    empty = np.flatnonzero(sim.truth.reshape(sim.truth.shape[0], -1).max(axis=1) == 0)
    for segmenter in models.values():
        assert segment_volume(segmenter, other.volume).verdict.status == "ok"
    # grey levels inverted: the threshold calls the vacuum solid
    inverted = segment_volume(models["threshold"], -other.volume)
    assert inverted.verdict.solid_fraction > 0.8
    assert inverted.verdict.reason_codes == ("contrast_inverted",)
    # the 21 slices of vacuum above and below the grain: the forest calls 13 % of them solid,
    # its classes 0.49 x as far apart as the training volume's (the threshold's 0.55 x: not
    # flagged, docs/tomography.md "Limits")
    vacuum = segment_volume(models["features"], sim.volume[empty])
    assert vacuum.verdict.solid_fraction > 0.1
    assert vacuum.verdict.reason_codes == ("no_contrast",)

    # the same models without the record: the verdicts of models exported before it
    older = {name: Segmenter(_without_contrast(segmenter.model_path, tmp_path / f"{name}0.onnx"),
                             providers=("cpu",)) for name, segmenter in models.items()}
    assert segment_volume(older["threshold"], -other.volume).verdict.status == "ok"
    assert segment_volume(older["features"], sim.volume[empty]).verdict.status == "ok"


def test_a_volume_inverted_where_both_classes_are_equally_noisy_is_flagged_by_its_shares():
    # Was `ok`: a filtered back-projection spreads the noise over both classes, so the
    # training volume's solid was not the more variable one (ratio 1.08) and the spread test
    # stayed silent, while the inverted volume's mask called 84.8 % solid against 12 %.
    trained = _contrast(3.6, 1.08, 0.12)
    inverted = assess_mask(0.848, 0.05, 0.97, 0.85, 0.85, contrast=_contrast(3.5, 0.95, 0.848),
                           trained=trained)
    assert inverted.reason_codes == ("contrast_inverted",)
    assert "84.8% of the volume solid, the majority" in inverted.why[0]
    assert "12.0%" in inverted.why[0]
    # more solid than in training, but still the minority, or odds under 10 x apart: ok
    for share in (0.45, 0.55):
        assert assess_mask(share, 0.05, 0.9, share, share,
                           contrast=_contrast(3.5, 1.0, share), trained=trained).status == "ok"
    assert assess_mask(0.6, 0.05, 0.9, 0.6, 0.6, contrast=_contrast(3.5, 1.0, 0.6),
                       trained=trained).reason_codes == ("contrast_inverted",)
    # the reverse: solid the majority in training, a minority now
    assert assess_mask(0.1, 0.05, 0.9, 0.1, 0.1, contrast=_contrast(3.5, 1.0, 0.1),
                       trained=_contrast(3.6, 1.0, 0.88)).reason_codes == ("contrast_inverted",)
    # a training volume without a share recorded: no share test
    assert assess_mask(0.848, 0.05, 0.97, 0.85, 0.85, contrast=_contrast(3.5, 0.95, 0.848),
                       trained=_contrast(3.6, 1.08, math.nan)).status == "ok"


def test_a_blank_volume_called_mostly_solid_is_named_without_contrast():
    # The shares test comes after no_contrast: a blank volume whose mask calls 70 % solid
    # (a model trained on 12 %) is a volume without contrast, not an inverted one.
    verdict = assess_mask(0.7, 0.05, 0.9, 0.7, 0.7, contrast=_contrast(1.0, 1.0, 0.7),
                          trained=_contrast(3.6, 1.08, 0.12))
    assert verdict.reason_codes == ("no_contrast",)


def test_a_volume_of_another_voxel_size_than_the_training_ones_is_suspect():
    def codes(sizes, trained=(0.32, 0.32, 0.32)):
        return assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, voxel_size_nm=sizes,
                           trained_voxel_size_nm=trained).reason_codes

    assert codes((0.32, 0.32, 0.32)) == ()
    assert codes((0.48, 0.48, 0.48)) == ()  # 1.5 x: the limit itself
    assert codes((0.2134, 0.2134, 0.2134)) == ()  # 1/1.5 x
    assert codes((0.49, 0.49, 0.49)) == ("voxel_size_mismatch",)
    assert codes((0.16, 0.16, 0.16)) == ("voxel_size_mismatch",)  # finer, 0.5 x
    assert codes((1.0, 0.32, 0.32)) == ("voxel_size_mismatch",)  # one axis is enough
    # without either size: no verdict on it
    assert codes(None) == ()
    assert codes((1.28, 1.28, 1.28), trained=None) == ()
    verdict = assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, voxel_size_nm=(0.16, 0.16, 0.16),
                          trained_voxel_size_nm=(0.32, 0.32, 0.32))
    assert verdict.status == "suspect"
    assert "0.5 x the training volume's 0.32 x 0.32 x 0.32 nm" in verdict.why[0]


def test_only_the_axes_both_volumes_declare_are_compared():
    # A Fiji tomogram saved without a voxel depth declares none (its reader leaves z None):
    # Fiji's default 1 um against a training volume's 0.32 nm was flagged as a mismatch.
    def verdict(sizes, trained=(0.32, 0.32, 0.32)):
        return assess_mask(0.134, 0.05, 0.9, 0.13, 0.13, voxel_size_nm=sizes,
                           trained_voxel_size_nm=trained)

    assert verdict((None, 0.32, 0.32)).reason_codes == ()
    # the reverse: a model trained on such a file recorded no depth
    assert verdict((0.32, 0.32, 0.32), trained=(None, 0.32, 0.32)).reason_codes == ()
    assert verdict((1000.0, 0.32, 0.32), trained=(None, 0.32, 0.32)).reason_codes == ()
    # the axes both declare still count, and the reason names what was not compared
    binned = verdict((None, 0.64, 0.64))
    assert binned.reason_codes == ("voxel_size_mismatch",)
    assert ("the volume's voxels are ? x 0.64 x 0.64 nm (z x y x x), 2 x the training "
            "volume's 0.32 x 0.32 x 0.32 nm (z not compared: not declared by both)"
            ) in binned.why[0]
    assert "1 / 2 x (y / x)" in verdict((0.32, 0.32, 0.64),
                                        trained=(None, 0.32, 0.32)).why[0]
    # no axis in common: no verdict on the voxel size
    assert verdict((0.64, None, None), trained=(None, 0.32, 0.32)).reason_codes == ()


def test_trained_voxel_size_reads_an_axis_recorded_as_null():
    from nwwatch.volume.verdict import trained_voxel_size

    assert trained_voxel_size({"voxel_size_nm": [None, 0.32, 0.32]}) == (None, 0.32, 0.32)
    assert trained_voxel_size({"voxel_size_nm": [None, None, None]}) is None
    assert trained_voxel_size({"voxel_size_nm": None}) is None
    assert trained_voxel_size({}) is None
    with pytest.raises(ValueError, match=r'extra\["voxel_size_nm"\]'):
        trained_voxel_size({"voxel_size_nm": [None, 0.0, 0.32]})


def test_a_bad_voxel_size_in_the_model_is_refused_naming_the_file_and_key(tmp_path):
    from onnx_models import build_threshold_model

    from nwwatch.volume import VolumeModelError, check_volume_model

    for bad in ([0.32, 0.32], [0.32, -1.0, 0.32], "0.32", [0.32, "x", 0.32]):
        path = build_threshold_model(tmp_path / "bad.onnx", kind="tomogram",
                                     metadata={"extra": {"voxel_size_nm": bad}})
        with pytest.raises(VolumeModelError, match=r'bad\.onnx: extra\["voxel_size_nm"\]'):
            check_volume_model(Segmenter(path, providers=("cpu",)))
    null = build_threshold_model(tmp_path / "null.onnx", kind="tomogram",
                                 metadata={"extra": {"voxel_size_nm": None}})
    check_volume_model(Segmenter(null, providers=("cpu",)))
    # null on an axis the training volume did not declare
    partial = build_threshold_model(tmp_path / "partial.onnx", kind="tomogram",
                                    metadata={"extra": {"voxel_size_nm": [None, 0.32, 0.32]}})
    check_volume_model(Segmenter(partial, providers=("cpu",)))
