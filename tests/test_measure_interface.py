"""The facet line from an interface that is not one clean line — a stretch labelled over
annotation text, a curved wire tip, a stepped wire top: never a wrong angle marked valid (the
line from all points is refused, or its angle is within 2 sigma of the truth)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from ideal_caps import render_ideal_cap

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure import measure_contact_angle

SHAPE = (256, 256)
DATA = Path(__file__).resolve().parent / "data"


def _with_text_on_the_interface(cap, start: float, stop: float, height_px: float,
                                seed: int = 0):
    """``cap``'s labels with wire drawn into the droplet over [start, stop] of the base
    (0: left triple point, 1: right): glyph-like blobs (discs of 1.5-3.5 px radius at random
    heights up to ``height_px`` above the facet, joined to it), as a label drawn over
    annotation text burned into the frame there."""
    rng = np.random.default_rng(seed)
    labels = cap.labels.copy()
    left, right = np.array(cap.triple_left_rc), np.array(cap.triple_right_rc)
    up = np.array(cap.circle_center_rc) - np.array(cap.facet_center_rc)
    up /= np.hypot(*up)
    mask = np.zeros(SHAPE, np.uint8)
    chord = float(np.hypot(*(right - left)))
    for s in np.arange(start, stop, 2.0 / chord):
        foot = left + s * (right - left)
        rise = rng.uniform(0.3, 1.0) * height_px
        for h in np.arange(-2.0, rise, 1.0):  # the glyph's stem, from inside the wire
            p = foot + h * up
            cv2.circle(mask, (round(p[1]), round(p[0])), 1, 1, -1)
        if rng.random() < 0.4:
            p = foot + rise * up
            cv2.circle(mask, (round(p[1]), round(p[0])), int(rng.integers(2, 4)), 1, -1)
    labels[(mask > 0) & (labels == DROPLET)] = NANOWIRE
    return labels


def _refused_or_covered(r, truth_deg: float) -> None:
    """The product's rule: a wrong angle is never marked valid."""
    if r.angle_valid:
        err = abs(r.contact_angle_deg - truth_deg)
        assert err <= 2.0 * r.contact_angle_uncertainty_deg, (r.contact_angle_deg, truth_deg)


@pytest.mark.parametrize("theta,axis,start,stop,height", [
    (120.0, 90.0, 0.05, 0.4, 9.0),
    (135.0, 90.0, 0.1, 0.45, 9.0),
    pytest.param(100.0, 23.0, 0.6, 0.95, 7.0, marks=pytest.mark.xfail(
        strict=True, reason="known limit (docs/measurement.md, Limits): text a few px high "
        "over a third of the base tilts the line from all points consistently, and sigma "
        "does not see it")),
    (110.0, -140.0, 0.05, 0.35, 12.0),
])
def test_text_on_the_interface_is_refused_or_covered(theta, axis, start, stop, height):
    """Annotation text labelled as wire over a third of the base: the line from all points
    tilts towards it and scatters, and is refused rather than given a wrong angle."""
    cap = render_ideal_cap(SHAPE, theta, 35.0, axis, (150.3, 128.6))
    r = measure_contact_angle(_with_text_on_the_interface(cap, start, stop, height))
    _refused_or_covered(r, cap.contact_angle_deg)


@pytest.mark.parametrize("gap_px", [2, 3])
@pytest.mark.parametrize("start,stop,height", [(0.05, 0.4, 9.0), (0.55, 0.95, 12.0)])
def test_text_across_a_thin_gap_is_refused_or_covered(gap_px, start, stop, height):
    """The droplet lifted 2-3 px off the wire (a background gap) and text labelled as wire
    rising from the wire top: the wire/droplet boundary exists only along the text, the
    facet lies in the gap below it."""
    cap = render_ideal_cap(SHAPE, 120.0, 40.0, 90.0, (150.3, 128.6))
    drop = cap.labels == DROPLET
    labels = cap.labels.copy()
    labels[drop] = 0
    labels[np.roll(drop, -gap_px, axis=0)] = DROPLET
    text = (_with_text_on_the_interface(cap, start, stop, height) == NANOWIRE) & ~(
        cap.labels == NANOWIRE)
    labels[text & (labels != 0)] = NANOWIRE
    labels[text & (labels == 0)] = NANOWIRE
    _refused_or_covered(measure_contact_angle(labels), cap.contact_angle_deg)


@pytest.mark.parametrize("sagitta_px", [12.0, 16.0])
def test_a_curved_interface_is_still_refused(sagitta_px):
    """A droplet on a rounded wire tip: no line holds half the interface."""
    labels = np.zeros(SHAPE, np.uint8)
    cv2.circle(labels, (130, 100), 30, DROPLET, -1)
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    rho = (30.0**2 + sagitta_px**2) / (2.0 * sagitta_px)
    body = (cols >= 100) & (cols < 160)
    tip = body & (rows >= 120 - sagitta_px) & (
        (rows - (120 - sagitta_px + rho)) ** 2 + (cols - 130) ** 2 <= rho**2)
    labels[tip | (body & (rows >= 120))] = NANOWIRE
    r = measure_contact_angle(labels)
    assert r.reason_code == "interface_not_line", (r.reason_code, r.reason)


_AVERAGED = pytest.mark.xfail(strict=True, reason="known limit (docs/measurement.md, Limits): "
                              "a 3 px step over half the base or more is averaged, not refused")


@pytest.mark.parametrize("depth_px,split", [
    (3, 0.2), pytest.param(3, 0.5, marks=_AVERAGED), pytest.param(3, 0.75, marks=_AVERAGED),
    (5, 0.2), (5, 0.5), (5, 0.75), (8, 0.2), (8, 0.5), (8, 0.75),
])
def test_a_stepped_interface_in_two_pieces_is_refused(depth_px, split):
    """The droplet on a wire top (row 120, the cap's base cols 108-152) with a step: right
    of ``split`` of the base the wire top lies ``depth_px`` lower and the droplet fills the
    lower level. Two facet levels, neither known to be the facet: no valid angle."""
    labels = np.zeros(SHAPE, np.uint8)
    cv2.circle(labels, (130, 100), 30, DROPLET, -1)
    labels[120:250, 100:160] = NANOWIRE
    col = round(108 + split * 44)
    labels[120 : 120 + depth_px, col:160] = 0  # the lower level, beyond the cap: background
    labels[120 : 120 + depth_px, col:152] = DROPLET  # under the cap: droplet
    assert (labels[120 : 120 + depth_px, col] == DROPLET).all()  # a real step is drawn
    r = measure_contact_angle(labels)
    assert not r.angle_valid, (r.contact_angle_deg, r.contact_angle_uncertainty_deg)


def test_fig1_crop_model_labels_are_refused():
    """The shipped model's labels of the fig1 crop with phi = 120 deg
    (``bench/data/real/images/fig1-120deg.png``; hand labels 124.7 deg): the model labels the
    annotation text on the interface as wire, a third to a half of the interface wanders up
    to 14 px into the droplet, and the line from all points is refused."""
    labels = cv2.imread(str(DATA / "fig1_120deg_model_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels is not None and labels.dtype == np.uint8
    r = measure_contact_angle(labels)
    assert r.reason_code == "interface_not_line", (r.reason_code, r.reason)


def test_the_shared_edges_counted_without_their_points_are_as_many():
    """interface_points counts the wire/droplet pixel edges (without making their points)
    where the iso-line gives the interface: the count is the number of points
    _shared_edges makes, on random masks (touching, apart, overlapping, empty)."""
    from nwwatch.measure.interface import _n_shared_edges, _shared_edges

    rng = np.random.default_rng(2)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        a = rng.random((h, w)) < rng.uniform(0.0, 0.9)
        b = (rng.random((h, w)) < rng.uniform(0.0, 0.9)) & (~a if rng.random() < 0.8 else True)
        assert _n_shared_edges(a, b) == len(_shared_edges(a, b)[0])


def _overlapping_polygons(cap, on_top: int, depth_px: float, stretch_px: float) -> np.ndarray:
    """``cap``'s labels redrawn as two overlapping shapes, ``on_top`` (DROPLET or NANOWIRE)
    drawn last: the top class's edge along the facet is moved by a square wave of
    +-``depth_px`` along the facet normal, in stretches of ``stretch_px`` px, so that it reaches
    into the other class over half the base (and wins there) and falls short of it over the
    other half (a background gap opens). Its mean over the base is the true facet line."""
    m = np.array(cap.circle_center_rc) - np.array(cap.facet_center_rc)
    m /= np.hypot(*m)  # facet normal, into the droplet
    d = np.array([-m[1], m[0]])
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    rel = np.stack([rows - cap.facet_center_rc[0], cols - cap.facet_center_rc[1]], axis=-1)
    t, s = rel @ m, rel @ d
    wave = np.where(np.floor(s / stretch_px) % 2 == 0, depth_px, -depth_px)
    labels = cap.labels.copy()
    base = np.abs(s) < cap.base_half_width_px - 3.0  # away from the triple points
    drop, wire = base & (cap.labels == DROPLET), base & (cap.labels == NANOWIRE)
    if on_top == DROPLET:  # the droplet's drawn bottom edge lies at t = wave
        labels[drop & (t <= wave)] = 0
        labels[wire & (t > wave)] = DROPLET
    else:  # the wire's drawn top edge lies at t = -wave
        labels[wire & (t >= -wave)] = 0
        labels[drop & (t < -wave)] = NANOWIRE
    return labels


@pytest.mark.parametrize("on_top", [DROPLET, NANOWIRE])
@pytest.mark.parametrize("theta,axis", [(120.0, 90.0), (100.0, 23.0), (140.0, -140.0)])
def test_overlapping_polygons_with_gaps_give_the_facet_between_them(on_top, theta, axis):
    """Wire and droplet drawn as separate shapes, one over the other, whose edges along the
    facet miss each other by 1.5 px on either side in 8 px stretches: the shared pixel edges
    are only where the top class reaches into the other (1.5 px off the facet), the gaps'
    sides carry the rest. The facet line and the angle come out as the true cap's; a line
    through the shared edges alone lies 1.1-1.8 px into the class underneath and gave
    `ok` angles 1.6-2.6 deg off at 1 sigma 0.25-0.86 deg."""
    cap = render_ideal_cap(SHAPE, theta, 40.0, axis, (150.3, 128.6))
    labels = _overlapping_polygons(cap, on_top, 1.5, 8.0)
    assert ((labels == 0) & (cap.labels != 0)).sum() > 20  # gaps opened
    r = measure_contact_angle(labels)
    m = np.array(cap.circle_center_rc) - np.array(cap.facet_center_rc)
    m /= np.hypot(*m)
    foot_offset_px = float((np.array([r.facet_row, r.facet_col]) - cap.facet_center_rc) @ m)
    assert abs(foot_offset_px) < 0.35, foot_offset_px
    assert r.angle_valid, r.reason
    err = abs(r.contact_angle_deg - cap.contact_angle_deg)
    assert err < 0.6 and err <= 2.0 * r.contact_angle_uncertainty_deg, (
        r.contact_angle_deg, cap.contact_angle_deg, r.contact_angle_uncertainty_deg)


def test_gap_sides_are_the_boundary_points_facing_the_other_class_across_a_thin_gap():
    """gap_sides: a droplet bottom 1, 2, 3 px above a wire's top (columns 2-4, 6-8, 10-12)
    and the wire's top under it are a gap's sides; 4 px above (columns 14-16), the droplet's
    side walls, and the wire's top with nothing above it (columns 18-20) are not. They are
    the wire's and the droplet's own boundary points."""
    from nwwatch.measure.edges import mask_boundary_points
    from nwwatch.measure.interface import gap_sides

    wire = np.zeros((20, 24), bool)
    drop = np.zeros((20, 24), bool)
    wire[10:, 1:22] = True
    for c0, gap in ((2, 1), (6, 2), (10, 3), (14, 4)):
        drop[: 10 - gap, c0 : c0 + 3] = True
    classes = wire.astype(np.uint8) + 2 * drop.astype(np.uint8)
    d_pts = mask_boundary_points(drop)
    facing, wire_side, steps = gap_sides(d_pts, classes)
    assert sorted(map(tuple, d_pts.points[facing]), key=lambda p: p[1]) == [
        (8.5, 2.0), (8.5, 3.0), (8.5, 4.0), (7.5, 6.0), (7.5, 7.0), (7.5, 8.0),
        (6.5, 10.0), (6.5, 11.0), (6.5, 12.0)]
    assert sorted(map(tuple, wire_side)) == [
        (9.5, float(c)) for c in (2, 3, 4, 6, 7, 8, 10, 11, 12)]
    assert set(map(tuple, wire_side)) <= set(map(tuple, mask_boundary_points(wire).points))
    assert (steps == [1.0, 0.0]).all()


def _cap_with_a_droplet_strip(width_px: int, stop_row: int) -> np.ndarray:
    """An exact cap (R 60 px, 120 deg) on a 104 px wide wire below row 150.5 in a 256 px
    frame, and a droplet label ``width_px`` wide running from the facet down the middle of
    the wire to row ``stop_row`` (256: the frame's border, cutting the wire in two), as a
    labelling leak through the wire."""
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    radius, theta = 60.0, np.radians(120.0)
    half_base = radius * np.sin(theta)
    centre_row = 150.5 + radius * np.cos(theta)
    labels = np.zeros(SHAPE, np.uint8)
    labels[(rows > 150.5) & (np.abs(cols - 128.2) < half_base)] = NANOWIRE
    labels[((rows - centre_row) ** 2 + (cols - 128.2) ** 2 < radius**2) & (rows < 150.5)] = DROPLET
    labels[151:stop_row, 126 : 126 + width_px] = DROPLET
    return labels


@pytest.mark.parametrize("width_px", [2, 3, 4])
@pytest.mark.parametrize("stop_row", [256, 241, 211])
def test_a_droplet_label_through_the_wire_is_refused_for_what_it_is(width_px, stop_row):
    """A droplet strip 2-4 px wide down the wire for 60 rows or more, to the border or not:
    the line along its sides is not the facet (the droplet lies on both sides of it, or
    the cap continues beyond it), so no angle, refused as an interface that is not a line,
    and no note of a droplet cut by the frame."""
    r = measure_contact_angle(_cap_with_a_droplet_strip(width_px, stop_row))
    assert r.reason_code == "interface_not_line", (r.reason_code, r.contact_angle_deg, r.reason)
    assert "cut by the frame" not in r.reason
    if stop_row < SHAPE[0]:
        # one wire, so the facet line is found on the facet: its angle and the cap whole
        assert abs(abs(r.facet_angle_deg) - 180.0) < 1.0, r.facet_angle_deg
        assert not r.droplet_cut


@pytest.mark.parametrize("width_px", [2, 3, 4])
def test_a_short_droplet_label_into_the_wire_leaves_the_cap_measured(width_px):
    """The same strip only 30 rows into the wire: the facet's line holds most of the
    interface and the cap is measured as without the strip, not cut."""
    r = measure_contact_angle(_cap_with_a_droplet_strip(width_px, 181))
    assert r.angle_valid, (r.reason_code, r.reason)
    assert abs(r.contact_angle_deg - 120.0) <= 2.0 * r.contact_angle_uncertainty_deg
    assert not r.droplet_cut and abs(abs(r.facet_angle_deg) - 180.0) < 0.5
