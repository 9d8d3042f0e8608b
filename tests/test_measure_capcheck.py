"""Labels checked against the measured cap: a stretch of wire labelled droplet, which moves the
facet line deep into the wire while the circle still fits the free surface, puts droplet
labels beyond the cap and the triple points inside the wire; it must not pass as a precise
angle. Exact labels carry neither term."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ideal_caps import axis_vectors, render_ideal_cap

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.capcheck import (
    TRIPLE_TOLERANCE_PX,
    TRIPLE_WINDOW_PX,
    cap_excess_px,
    cap_excess_sigma_deg,
    triple_depth_sigma_deg,
    triple_point_depth_px,
)
from nwwatch.synth.geometry import WireSpec, droplet_geometry
from nwwatch.synth.labels import scene_labels

SHAPE = (256, 256)


def _cap(theta: float, axis: float, a: float = 45.0):
    u, _ = axis_vectors(axis)
    return render_ideal_cap(SHAPE, theta, a, axis, tuple(np.array([128.0, 128.0]) - 0.3 * a * u))


def _wire_called_droplet(cap, depth_px: float) -> np.ndarray:
    """The cap's labels with the wire's last ``depth_px`` below the facet labelled droplet."""
    u, _ = axis_vectors(cap.wire_axis_deg)
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    along = (rows - cap.facet_center_rc[0]) * u[0] + (cols - cap.facet_center_rc[1]) * u[1]
    labels = cap.labels.copy()
    labels[(labels == NANOWIRE) & (along > -depth_px)] = DROPLET
    return labels


@pytest.mark.parametrize("theta", [100.0, 120.0, 140.0])
@pytest.mark.parametrize("axis", [90.0, 17.0, -120.0])
def test_exact_labels_have_nothing_beyond_the_cap(theta, axis):
    cap = _cap(theta, axis)
    r = measure_contact_angle(cap.labels)
    assert r.angle_valid, r.reason
    centre = np.array([r.circle_center_row, r.circle_center_col])
    foot = np.array([r.facet_row, r.facet_col])
    normal = (centre - foot) / np.hypot(*(centre - foot))  # above 90 deg the centre is beyond
    droplet = cap.labels == DROPLET
    excess = cap_excess_px(droplet, (0, 0), centre, r.droplet_radius_px, foot, normal,
                           r.base_half_width_px, r.fit_residual_rms_px)
    assert excess == 0.0
    assert r.cap_excess_px == 0.0
    assert r.triple_depth_px is not None and r.triple_depth_px <= TRIPLE_TOLERANCE_PX


@pytest.mark.parametrize("axis", [90.0, 17.0, -120.0])
def test_wire_labelled_droplet_is_not_a_precise_angle(axis):
    """15 px of wire called droplet: the interface line follows the labels 15 px into the wire
    and the angle is far off; sigma must name the droplet beyond its cap and cover the error,
    or the angle is refused."""
    cap = _cap(120.0, axis)
    r = measure_contact_angle(_wire_called_droplet(cap, 15.0))
    assert r.contact_angle_deg is not None
    error = abs(r.contact_angle_deg - cap.contact_angle_deg)
    assert error > 5.0  # the case is what it claims: a badly placed facet line
    assert not r.angle_valid
    assert r.reason_code == "angle_uncertain"
    assert "beyond the fitted cap" in r.reason or "triple points inside" in r.reason
    assert r.cap_excess_px > 0.5 and r.triple_depth_px > 5.0
    assert r.contact_angle_uncertainty_deg >= error / 2


def test_triple_depth_reads_the_union_and_leaves_the_frame_border_out():
    """A 40 x 60 block of wire below a 40 x 60 block of droplet, in a 100 x 120 frame whose
    crop starts at (20, 30): a point on the union's outline is 0-1 px deep, one in the middle
    as deep as the nearest background, one beside the frame's border undecidable."""
    wire = np.zeros((80, 60), bool)
    droplet = np.zeros((80, 60), bool)
    droplet[0:40, :] = True
    wire[40:80, :] = True
    offset, frame = (20, 30), (100, 90)  # the crop reaches the frame's bottom and right
    edge = np.array([60.0, 30.0])  # row 60, the union's left edge at col 30
    assert triple_point_depth_px(wire, droplet, offset, frame, (edge, edge)) <= 1.0
    middle = np.array([60.0, 50.0])  # 20 px from the left edge; the right edge is the border
    depth = triple_point_depth_px(wire, droplet, offset, frame, (middle, middle))
    assert depth == pytest.approx(20.0, abs=1.0)
    near_border = np.array([97.0, 80.0])  # 3 px from the bottom border, deeper than that
    assert triple_point_depth_px(wire, droplet, offset, frame, (near_border, near_border)) \
        is None
    # A point in the frame but beyond the crop lies in background.
    beyond = np.array([5.0, 5.0])
    assert triple_point_depth_px(wire, droplet, offset, frame, (middle, beyond)) == 0.0
    # The smaller of two decidable depths; depths saturate at the window.
    assert triple_point_depth_px(wire, droplet, offset, frame, (edge, middle)) <= 1.0
    big = np.ones((200, 200), bool)
    centre = np.array([150.0, 150.0])
    assert triple_point_depth_px(big, big, (50, 50), (400, 400), (centre, centre)) == \
        TRIPLE_WINDOW_PX
    assert triple_depth_sigma_deg(None, 40.0) == 0.0
    assert triple_depth_sigma_deg(TRIPLE_TOLERANCE_PX, 40.0) == 0.0
    assert triple_depth_sigma_deg(TRIPLE_TOLERANCE_PX + 2.0, 40.0) == pytest.approx(
        math.degrees(2.0 / 40.0))


def test_triple_depth_is_the_precise_distance_transform_at_the_point():
    """The depth found among the window's background pixels is the value of OpenCV's precise
    Euclidean distance transform of the padded union at the point's pixel (exact between
    pixel centres, rounded once to float32), up to TRIPLE_WINDOW_PX: on random unions of
    discs and bars, far from the frame's border."""
    import cv2

    rng = np.random.default_rng(5)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(30, 140, 2))
        rows, cols = np.mgrid[:h, :w]
        union = np.zeros((h, w), bool)
        for _ in range(int(rng.integers(1, 4))):
            r, c, radius = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 50)
            union |= (rows - r) ** 2 + (cols - c) ** 2 < radius ** 2
        bar = int(rng.integers(0, w // 2)), int(rng.integers(w // 2, w))  # a wire's end
        union[int(rng.integers(0, h)):, bar[0]:bar[1]] = True
        wire = union & (rng.random((h, w)) < 0.5)
        droplet = union & ~wire
        padded = np.zeros((h + 2, w + 2), np.uint8)
        padded[1:-1, 1:-1] = union
        exact = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        offset, frame = (100, 100), (h + 300, w + 300)
        for _ in range(10):
            point = np.array([rng.uniform(0, h - 1), rng.uniform(0, w - 1)]) + offset
            i, j = int(round(point[0])) - offset[0] + 1, int(round(point[1])) - offset[1] + 1
            squared = round(float(exact[i, j]) ** 2)
            expected = min(float(np.sqrt(np.float32(squared))), float(TRIPLE_WINDOW_PX))
            assert triple_point_depth_px(wire, droplet, offset, frame, (point, point)) \
                == expected


@settings(max_examples=30, deadline=None)
@given(theta=st.floats(40.0, 170.0), a=st.floats(15.0, 60.0), axis=st.floats(-180.0, 180.0),
       shift=st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)),
       wire_ratio=st.sampled_from([1.0, 1.3, 0.85]), probability=st.booleans())
def test_exact_labels_are_a_cap_for_any_angle_size_and_base(theta, a, axis, shift,
                                                             wire_ratio, probability):
    """Exact labels of any angle (40-170 deg), size (a = 15-60 px), in-plane
    orientation, sub-pixel position and base (on the wire's edge, narrower or wider than the
    wire), from the mask or the coverage as probability: no droplet pixel beyond the cap; up
    to 150 deg the triple points on the outline (steeper: a known limit, the test below)."""
    a = min(a, 100.0 * math.sin(math.radians(theta)))  # R <= 100 px: the cap fits the frame
    u, _ = axis_vectors(axis)
    radius = a / math.sin(math.radians(theta))
    facet = np.array([128.0, 128.0]) + np.array(shift) - 0.3 * radius * u
    cap = render_ideal_cap(SHAPE, theta, a, axis, tuple(facet), wire_radius_px=wire_ratio * a)
    r = measure_contact_angle(cap.labels, cap.droplet_coverage if probability else None)
    if cap.cap_height_px >= 10.0:  # flatter caps may have too few free-surface points
        assert r.cap_excess_px is not None, r.reason  # the measurement reached the cap check
    if r.cap_excess_px is None:
        return
    assert r.cap_excess_px == 0.0
    if r.angle_valid and theta <= 150.0:
        assert r.triple_depth_px is not None
        assert r.triple_depth_px <= TRIPLE_TOLERANCE_PX


def test_sigma_term_is_the_excess_as_a_facet_shift():
    assert cap_excess_sigma_deg(0.0, 40.0) == 0.0
    assert cap_excess_sigma_deg(2.0, 40.0) == pytest.approx(math.degrees(2.0 / 40.0))


def test_a_sliver_beyond_the_circle_counts_above_the_line_only():
    """A 10 x 4 px block of droplet outside a circle of radius 20: counted above the facet line,
    not below it (where a tilted wire's elliptical facet holds droplet)."""
    yy, xx = np.mgrid[0:80, 0:80]
    droplet = (yy - 40.0) ** 2 + (xx - 40.0) ** 2 <= 20.0**2
    droplet &= yy <= 50
    block = droplet.copy()
    block[30:34, 62:72] = True  # beyond the circle, above the line (rows < 50)
    centre, normal, foot = np.array([40.0, 40.0]), np.array([-1.0, 0.0]), np.array([50.0, 40.0])
    a = math.sqrt(20.0**2 - 10.0**2)
    base = cap_excess_px(droplet, (0, 0), centre, 20.0, foot, normal, a, 0.0)
    with_block = cap_excess_px(block, (0, 0), centre, 20.0, foot, normal, a, 0.0)
    assert base == 0.0
    # The block's pixels more than 1.5 px outside the circle, as rasterised (about 30 of 40).
    assert 25.0 / (2 * a) <= with_block <= 40.0 / (2 * a)
    below = droplet.copy()
    below[54:58, 62:72] = True  # beyond the circle but below the line
    assert cap_excess_px(below, (10, 5), centre + (10, 5), 20.0, foot + (10, 5), normal, a,
                         0.0) == 0.0


@pytest.mark.xfail(strict=True, reason="known limit (docs/measurement.md, Limits): exact "
                   "labels of a steep cap on a facet wider than its base read 3-7 px deep "
                   "and are charged; the wedge tolerance that fixes it passes tilted-wire "
                   "errors (tried, not kept)")
@pytest.mark.parametrize(("theta", "a", "axis", "probability"),
                         [(155.0, 20.0, 90.0, False), (165.0, 20.0, 90.0, False),
                          (165.0, 30.0, 17.0, True)])
def test_a_steep_cap_on_a_wider_facet_closes_the_background_wedge(theta, a, axis, probability):
    """Above ~150 deg on a facet wider than the base, the background between droplet and
    facet is a wedge of 180 deg - theta that a mask fills near its apex: exact triple points
    then read 3 px deep or more. That is the labels' grid, not a misplaced line, yet the
    term charges it."""
    u, _ = axis_vectors(axis)
    radius = a / math.sin(math.radians(theta))
    facet = tuple(np.array([128.0, 128.0]) - 0.3 * radius * u)
    cap = render_ideal_cap(SHAPE, theta, a, axis, facet, wire_radius_px=1.3 * a)
    r = measure_contact_angle(cap.labels, cap.droplet_coverage if probability else None)
    assert r.cap_excess_px == 0.0
    assert abs(r.contact_angle_deg - cap.contact_angle_deg) < 1.0  # the angle is right
    assert r.triple_depth_px > TRIPLE_TOLERANCE_PX  # the case is what it claims
    assert triple_depth_sigma_deg(r.triple_depth_px, r.base_half_width_px) == 0.0


def test_pixels_within_the_tolerance_of_the_circle_or_the_line_are_not_counted():
    """A ring 0.6-1.0 px outside the circle, and droplet 0-1 px above the facet line beyond
    the circle, are within the 1.5 px tolerance: nothing counted. The same labels 3 px further
    out are counted."""
    yy, xx = np.mgrid[0:80, 0:80]
    dist = np.hypot(yy - 40.0, xx - 40.0)
    centre, normal, foot = np.array([40.0, 40.0]), np.array([-1.0, 0.0]), np.array([50.0, 40.0])
    a = math.sqrt(20.0**2 - 10.0**2)
    droplet = (dist <= 20.0) & (yy <= 50)
    ring = droplet | ((dist > 20.6) & (dist < 21.0) & (yy < 45))
    assert cap_excess_px(ring, (0, 0), centre, 20.0, foot, normal, a, 0.0) == 0.0
    far_ring = droplet | ((dist > 23.6) & (dist < 24.0) & (yy < 45))
    assert cap_excess_px(far_ring, (0, 0), centre, 20.0, foot, normal, a, 0.0) > 0.0
    on_line = droplet.copy()
    on_line[49:51, 61:65] = True  # 3-5 px beyond the circle, 0-1 px above the line
    assert cap_excess_px(on_line, (0, 0), centre, 20.0, foot, normal, a, 0.0) == 0.0
    above = droplet.copy()
    above[45:47, 62:66] = True  # 4-5 px above the line, 2.6-6 px beyond the circle
    assert cap_excess_px(above, (0, 0), centre, 20.0, foot, normal, a, 0.0) == pytest.approx(
        8.0 / (2 * a))


def test_a_steep_cap_on_a_tilted_wire_with_a_deep_triple_point_is_refused():
    """Why the closed wedge may not widen the tolerance: this steep cap (164.3 deg apparent,
    wire tilted 10.3 deg) is measured 2.6 deg too steep with its triple point 5.4 px deep;
    the 2.5 px refuse it, a wedge tolerance at that angle (5.1 px) would pass it at
    sigma 0.6 deg."""
    wire = WireSpec(facet_row=217.44010519541598, facet_col=239.37525642355683,
                    axis_deg=-66.2963655402588, radius_px=37.68559541090339,
                    tilt_deg=10.306468212868248, theta_deg=164.33124296799616)
    labels, coverage = scene_labels((wire,), (512, 512), factor=1, fine=10)
    r = measure_contact_angle(labels, coverage)
    assert abs(r.contact_angle_deg - droplet_geometry(wire).theta_apparent_deg) > 2.0
    assert r.triple_depth_px > 5.0
    assert not r.angle_valid
    assert "triple points inside" in r.reason
