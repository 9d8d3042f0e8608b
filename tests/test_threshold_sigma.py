"""The smoothed-threshold candidate keeps the reference blur (1 px) unless the labeled pixels
are many enough to show another to be better."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from training import volume_models  # noqa: E402  (after the skip guard)
from training.volume_models import SIGMA_MARGIN, fit_threshold, sigma_margin  # noqa: E402


def _noisy_halves(seed: int = 0) -> np.ndarray:
    """float32 (5, 64, 64): solid (1) in columns < 32, pore (0) beyond, Gaussian noise sd 0.95:
    a 1 px blur misclassifies a few % of the pixels, a wider one almost none."""
    rng = np.random.default_rng(seed)
    volume = np.zeros((5, 64, 64), np.float32)
    volume[:, :, :32] = 1.0
    return volume + rng.normal(0.0, 0.95, volume.shape).astype(np.float32)


def _labels(rows: slice, solid_cols: slice, pore_cols: slice) -> np.ndarray:
    labels = np.full((64, 64), 255, np.uint8)
    labels[rows, solid_cols] = 1
    labels[rows, pore_cols] = 0
    return labels


def test_the_margin_is_the_standard_error_of_the_rarer_class_with_a_floor():
    few = np.array([1] * 100 + [0] * 400)
    assert sigma_margin(few) == pytest.approx(0.05)
    assert sigma_margin(np.array([1] * 10_000 + [0] * 20_000)) == SIGMA_MARGIN
    assert sigma_margin(np.array([0] * 50)) == 0.5  # one class only: nothing to compare


def test_one_patch_per_class_keeps_1_px_where_many_labels_choose_a_wider_blur(monkeypatch):
    volume = _noisy_halves()
    # One 10x10 patch per class, far from the boundary (100 pixels each: margin 0.05).
    few = [(volume[2], _labels(slice(27, 37), slice(8, 18), slice(46, 56)))]
    # The halves' interiors (56 x 20 = 1120 pixels each: margin 0.015).
    many = [(volume[2], _labels(slice(4, 60), slice(4, 24), slice(40, 60)))]
    assert fit_threshold(volume, few).config["sigma_px"] == 1.0
    assert fit_threshold(volume, many).config["sigma_px"] > 1.0
    # The fixed 0.01 margin moved the blur on the same 200 pixels: what the rule prevents.
    monkeypatch.setattr(volume_models, "sigma_margin", lambda labels: SIGMA_MARGIN)
    assert fit_threshold(volume, few).config["sigma_px"] > 1.0


def test_voxels_without_data_are_left_out_of_the_thresholds_otsu():
    # before: a volume padded with NaN (filled with the darkest value, -1) moved Otsu's split
    # to "padding against data": a third padded, 92 % of the data called solid
    rng = np.random.default_rng(4)
    volume = rng.normal(-0.5, 0.05, (6, 40, 40)).astype(np.float32)
    volume[:, 10:30, 10:30] = rng.normal(0.3, 0.05, (6, 20, 20))
    labels = np.full((40, 40), 255, np.uint8)
    labels[15:20, 15:20], labels[2:7, 2:7] = 1, 0
    plain = fit_threshold(volume, [(volume[3], labels)], sigmas_px=(1.0,))
    padded = np.full((6, 40, 60), -1.0, np.float32)
    padded[:, :, :40] = volume
    valid = np.zeros(padded.shape, bool)
    valid[:, :, :40] = True
    wide = np.full((40, 60), 255, np.uint8)
    wide[:, :40] = labels
    kept = fit_threshold(padded, [(padded[3], wide)], sigmas_px=(1.0,), valid=valid)
    assert kept.config["threshold"] == pytest.approx(plain.config["threshold"], abs=0.02)
