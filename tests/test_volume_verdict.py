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
    assert assess_mask(0.45, 0.0, 0.6, 0.15, 0.2).reason_codes == ("solid_fraction_mismatch",)
    assert assess_mask(0.05, 0.0, 0.6, 0.15, 0.2).reason_codes == ("solid_fraction_mismatch",)


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
