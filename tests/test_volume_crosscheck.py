"""The label-free cross-check of a tomogram mask: Otsu as scikit-image computes it, the
reference mask's polarity, and the agreement (IoU) on volumes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from nwwatch.volume import otsu_threshold, reference_mask, threshold_agreement
from nwwatch.volume.crosscheck import MIN_SOLID_SHARE, agreement_with, solid_is_brighter


@pytest.mark.parametrize("seed", range(5))
def test_otsu_matches_scikit_image(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(rng.uniform(-5, 0), 1, rng.integers(200, 3000)),
                             rng.normal(rng.uniform(1, 6), 2, rng.integers(200, 3000))])
    assert otsu_threshold(values) == pytest.approx(threshold_otsu(values), rel=1e-9)


def test_otsu_of_a_constant_and_of_non_finite_values():
    assert otsu_threshold(np.full(10, 3.5)) == 3.5
    assert otsu_threshold(np.array([0.0, np.nan, 10.0, np.inf, 0.0, 10.0])) == \
        pytest.approx(threshold_otsu(np.array([0.0, 10.0, 0.0, 10.0])))
    with pytest.raises(ValueError, match="finite"):
        otsu_threshold(np.array([np.nan]))


def _blobs(shape=(10, 40, 48), seed=0):
    field = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 3.0)
    truth = field > field.std()  # about 15 % solid
    noise = np.random.default_rng(seed + 1).normal(0, 0.15, shape)
    return truth, truth.astype(np.float32) + noise.astype(np.float32)


def test_reference_mask_finds_both_polarities():
    truth, bright = _blobs()
    assert (reference_mask(bright, solid_brighter=True) == truth).mean() > 0.98
    assert (reference_mask(-bright, solid_brighter=False) == truth).mean() > 0.98


def test_agreement_is_one_for_the_reference_and_low_for_a_collapse():
    truth, volume = _blobs()
    reference = reference_mask(volume, True)
    assert threshold_agreement(volume, reference, True) == 1.0
    assert threshold_agreement(volume, truth, True) > 0.9
    # The failure the check is for: most of the background called solid.
    collapsed = truth | (np.random.default_rng(2).random(truth.shape) < 0.8)
    expected = np.count_nonzero(collapsed & reference) / np.count_nonzero(collapsed | reference)
    assert threshold_agreement(volume, collapsed, True) == pytest.approx(expected)
    assert expected < 0.4
    # Otsu cannot find a class that small: no verdict rather than a false alarm.
    assert np.isnan(threshold_agreement(volume, np.zeros_like(truth), True))
    with pytest.raises(ValueError, match="shape"):
        threshold_agreement(volume, truth[:, :10], True)


def test_polarity_from_the_labels_first_then_from_the_mask():
    truth, volume = _blobs()
    assert solid_is_brighter(volume, truth) is True
    assert solid_is_brighter(-volume, truth) is False
    # The labeled pixels' means win over the mask (a mask can be wrong, labels are not).
    assert solid_is_brighter(volume, truth, {"pore": 0.4, "solid": -0.2}) is False
    assert solid_is_brighter(volume, ~truth, {"pore": -0.5, "solid": 0.3}) is True
    assert solid_is_brighter(volume, np.ones_like(truth)) is True  # nothing to compare


def test_a_sparse_correct_mask_is_not_judged():
    # One small particle in a noisy field: Otsu splits the noise, not particle from vacuum.
    rng = np.random.default_rng(3)
    truth = np.zeros((8, 64, 64), dtype=bool)
    truth[2:6, 30:36, 30:36] = True  # 0.7 % of the volume
    volume = truth + rng.normal(0, 0.6, truth.shape).astype(np.float32)
    assert truth.mean() < MIN_SOLID_SHARE
    assert np.isnan(threshold_agreement(volume, truth, True))


def test_one_hot_voxel_does_not_break_the_reference():
    truth, volume = _blobs()
    clean = threshold_agreement(volume, truth, True)
    volume[0, 0, 0] = 1e5  # a cosmic ray: outside the range the model sees
    assert threshold_agreement(volume, truth, True) == pytest.approx(clean, abs=0.01)
    assert clean > 0.9


def test_non_finite_voxels():
    truth, volume = _blobs()
    volume[0, 0, 0] = np.nan
    # Polarity from the mask ignores the NaN voxel (a NaN mean would invert it).
    assert solid_is_brighter(volume, truth) is True
    assert threshold_agreement(volume, truth, True) > 0.9
    assert np.isnan(threshold_agreement(np.full(truth.shape, np.nan), truth, True))


def test_polarity_with_other_class_names():
    truth, volume = _blobs()
    means = {"vacuum": -0.8, "zeolite": 0.6, "metal": 0.9}
    assert solid_is_brighter(volume, truth, means, solid_name="zeolite") is True
    assert solid_is_brighter(volume, truth, means, solid_name="vacuum") is False


def test_otsu_of_values_spanning_more_than_float32_holds():
    # numpy's histogram subtracted the minimum in float32: inf, then an IndexError that
    # failed the tomogram in the service ("unexpected error").
    top = np.finfo(np.float32).max
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(-1.0, -0.8, 500), rng.uniform(0.8, 1.0, 500)])
    threshold = otsu_threshold((values * top).astype(np.float32))
    assert np.isfinite(threshold)
    assert threshold / top == pytest.approx(otsu_threshold(values), abs=0.01)


@pytest.mark.parametrize(("fill", "brighter"), [(np.nan, True), (np.inf, True), (-np.inf, False)])
def test_voxels_without_data_beside_the_data_change_nothing(fill, brighter):
    # Padding of an aligned reconstruction: never solid in the reference (clipped, +inf was
    # the brightest grey), and no ring of the data lost to it (a NaN spread over the blur's
    # kernel, 4 px, where the reference then had no solid).
    truth, volume = _blobs()
    volume = volume if brighter else -volume
    clean = threshold_agreement(volume, truth, brighter)
    padded = np.concatenate([volume, np.full((10, 40, 24), fill, np.float32)], axis=2)
    padded_truth = np.concatenate([truth, np.zeros((10, 40, 24), bool)], axis=2)
    reference = reference_mask(padded, brighter)
    assert not reference[:, :, 48:].any()
    assert reference[:, :, 44:48].sum() == pytest.approx(truth[:, :, 44:48].sum(), rel=0.1)
    assert threshold_agreement(padded, padded_truth, brighter) == pytest.approx(clean, abs=0.01)


@pytest.mark.parametrize("fill", [np.nan, np.inf])
def test_the_solid_share_floor_counts_only_the_voxels_with_data(fill):
    # A volume inside a block of padding sixteen times its size: its mask is 22 % solid where
    # there is data, under 2 % of the whole, and the agreement (with threshold_disagreement)
    # was switched off in an `ok` row.
    truth, volume = _blobs()
    assert truth.mean() > MIN_SOLID_SHARE
    clean = threshold_agreement(volume, truth, True)
    pad = np.full((10, 40, 15 * 48), fill, np.float32)
    padded = np.concatenate([volume, pad], axis=2)
    padded_truth = np.concatenate([truth, np.zeros(pad.shape, bool)], axis=2)
    assert padded_truth.mean() < MIN_SOLID_SHARE
    assert threshold_agreement(padded, padded_truth, True) == pytest.approx(clean, abs=0.01)
    # the reference is still there for a mask sparse among the data too
    sparse = np.zeros_like(padded_truth)
    sparse[2:6, 30:36, 30:36] = True
    assert np.isnan(threshold_agreement(padded, sparse, True))
    from nwwatch.volume.crosscheck import count_with_data

    assert count_with_data(padded) == volume.size
    assert count_with_data(truth.astype(np.uint8)) == truth.size
    reference = reference_mask(padded, True)
    assert agreement_with(reference, padded_truth, volume.size) == pytest.approx(clean,
                                                                                abs=0.01)
    assert np.isnan(agreement_with(reference, padded_truth))  # the whole as the share's base
