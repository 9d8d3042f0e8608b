"""The wiggled-label benches: the block-sandwich circle variance
(bench/bench_degraded_block_sigma.py) and the split of an error into the circle's and the
facet line's parts (bench/bench_wiggle_limits.py)."""

from __future__ import annotations

import math

import numpy as np

from bench.bench_contact_angle import real_wire, render
from bench.bench_degraded_block_sigma import block_circle_variance
from bench.bench_wiggle_limits import split_error
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.circle import geometric_fit


def _arc(rng: np.random.Generator, span_rad: float, n: int, noise_px: float,
         smooth_px: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Points on an arc of R = 60 px with independent or smoothed radial noise."""
    ang = np.linspace(0.0, span_rad, n)
    noise = rng.normal(0.0, noise_px, n)
    if smooth_px > 0:  # correlated along the arc: a moving average over smooth_px of arc
        k = max(int(smooth_px / (60.0 * span_rad / n)), 1)
        noise = np.convolve(noise, np.ones(k) / math.sqrt(k), mode="same")
    radius = 60.0 + noise
    return np.column_stack([100 + radius * np.sin(ang), 100 + radius * np.cos(ang)]), ang


def _variances(points: np.ndarray, block_px: float) -> tuple[float, float]:
    fit = geometric_fit(points)
    res = np.hypot(*(points - fit.center).T) - fit.radius
    ang = np.arctan2(points[:, 0] - fit.center[0], points[:, 1] - fit.center[1])
    grad = np.array([0.0, 0.0, 1.0])  # the radius alone
    return block_circle_variance(fit, grad, res, ang, block_px), float(fit.covariance[2, 2])


def test_block_variance_matches_the_fit_for_independent_residuals_and_grows_when_correlated():
    rng = np.random.default_rng(3)
    ratios = []
    for _ in range(20):
        block, plain = _variances(_arc(rng, math.radians(240), 600, 0.5)[0], 16.0)
        ratios.append(block / plain)
    assert 0.6 < float(np.median(ratios)) < 1.6
    correlated = []
    for _ in range(20):
        block, plain = _variances(_arc(rng, math.radians(240), 600, 0.5, smooth_px=8.0)[0], 16.0)
        correlated.append(block / plain)
    assert float(np.median(correlated)) > 2.0 * float(np.median(ratios))


def test_block_variance_is_infinite_with_three_blocks_or_fewer():
    points, _ = _arc(np.random.default_rng(0), math.radians(40), 60, 0.3)  # 42 px of arc
    block, _ = _variances(points, 16.0)
    assert math.isinf(block)


def test_split_error_is_small_on_exact_labels():
    rng = np.random.default_rng(0)
    wire = real_wire(rng, "default mix (untilted)")
    r = measure_contact_angle(render(wire)[0])
    circle, line = split_error(r, wire)
    assert r.angle_valid
    assert abs(circle) < 0.3 and abs(line) < 0.3
