"""The label conventions of bench/bench_label_bands.py redraw what they say: a background
band of the stated width centred on the facet line, a droplet shrunk inside or grown over
its rim without touching the wire."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.bench_contact_angle import real_geometry_frames
from bench.bench_label_bands import band, rim, unsure_band
from nwwatch.classes import DROPLET, NANOWIRE, nearest_labeled, unsure_band_problem


@pytest.fixture(scope="module")
def frame():
    _, wire, labels, _ = real_geometry_frames(np.random.default_rng(3), 1)[0]
    return wire, labels


def _distance_between(labels: np.ndarray) -> float:
    """Smallest distance (px) from a droplet pixel centre to a wire pixel centre."""
    not_wire = (labels != NANOWIRE).astype(np.uint8)
    dist = cv2.distanceTransform(not_wire, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return float(dist[labels == DROPLET].min())


@pytest.mark.parametrize("width_px", [4, 8, 12])
def test_a_band_opens_a_gap_of_its_width_between_wire_and_droplet(frame, width_px):
    wire, labels = frame
    out = band(labels, wire, width_px)
    assert _distance_between(labels) <= 1.5
    assert width_px <= _distance_between(out) <= width_px + 2.0
    # Only wire and droplet pixels near the line became background; nothing was added.
    assert np.all((out == labels) | (out == 0))


def test_rims_shrink_or_grow_the_droplet_only(frame):
    _, labels = frame
    inside, outside = rim(labels, 3, True), rim(labels, 3, False)
    drop = labels == DROPLET
    assert (inside == DROPLET).sum() < drop.sum() < (outside == DROPLET).sum()
    assert np.array_equal(inside == NANOWIRE, labels == NANOWIRE)
    assert np.array_equal(outside == NANOWIRE, labels == NANOWIRE)
    assert not ((inside == DROPLET) & ~drop).any()


def test_a_centred_unsure_band_straddles_every_boundary_and_fills_back(frame):
    _, labels = frame
    out = unsure_band(labels, (2.0, 2.0, 2.0))
    unsure = out == 255
    # only pixels next to another class were taken, every boundary pixel among them
    assert np.all((out == labels) | unsure)
    kernel = np.ones((3, 3), np.uint8)
    for cls in (0, NANOWIRE, DROPLET):
        mine = (labels == cls).astype(np.uint8)
        boundary = (mine == 1) & (cv2.dilate(1 - mine, kernel) == 1)
        assert unsure[boundary].all()
        assert not unsure[(cv2.erode(mine, np.ones((7, 7), np.uint8)) == 1)].any()
    # given the nearest class back, only a few pixels near corners differ from the labels
    assert unsure_band_problem(out) is None
    assert np.count_nonzero(nearest_labeled(out) != labels) < 0.02 * np.count_nonzero(unsure)
