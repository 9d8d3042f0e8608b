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
