"""The interface-band check (bench/bench_interface_band.py): a band centred on the line and
a step with a fringe pair are told apart, and the hand-drawn interface of a label map with an
unsure band is found where it was drawn."""

from __future__ import annotations

import numpy as np

from bench.bench_interface_band import band_summary, hand_line

DIST = np.arange(-10.0, 10.5, 0.5)


def test_a_centred_dark_band_reads_as_a_band():
    # Wire 700, droplet 680, a 3 px wide band 120 deep centred on the line.
    profile = np.where(DIST < 0, 700.0, 680.0) - 120.0 * np.exp(-0.5 * (DIST / 1.3) ** 2)
    s = band_summary(DIST, profile)
    assert s["darkest_px"] == 0.0
    assert s["band_depth_over_step"] > 4.0


def test_a_step_with_a_fringe_pair_has_its_dark_and_bright_fringes_on_opposite_sides():
    # Wire darker (70) than droplet (84); dark fringe inside the wire, bright one outside.
    profile = (np.where(DIST < 0, 70.0, 84.0) - 15.0 * np.exp(-0.5 * ((DIST + 1.5) / 0.7) ** 2)
               + 12.0 * np.exp(-0.5 * ((DIST - 0.5) / 0.7) ** 2))
    s = band_summary(DIST, profile)
    assert s["darkest_px"] < 0.0 < s["brightest_px"]
    assert np.isclose(s["plateau_wire"], 70.0, atol=0.5)
    assert np.isclose(s["plateau_droplet"], 84.0, atol=0.5)


def test_hand_line_finds_the_drawn_interface_and_points_into_the_droplet():
    labels = np.zeros((80, 80), np.uint8)
    labels[40:, 15:65] = 1  # wire below row 40
    labels[10:40, 15:65] = 2  # droplet above it
    labels[38:42, 15:65] = 255  # the unsure band about the drawn boundary (row 39.5)
    labels[8:12, 15:65] = 255
    line, (lo, hi) = hand_line(labels)
    assert np.isclose(abs(line.direction[1]), 1.0, atol=1e-6)
    assert np.allclose(line.normal, [-1.0, 0.0], atol=1e-6)
    assert np.isclose(line.point[0], 39.5, atol=0.01)
    assert hi - lo > 0.5 * 49
