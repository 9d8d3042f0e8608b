"""The measurement on real nanowire geometry: inclined facets, flared or stepped walls, other
base widths, short or frame-cut wires, tilt; every reason_code provoked on purpose."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ideal_caps import render_ideal_cap

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.result import REASON_CODES
from nwwatch.synth.geometry import WireSpec, axis_vectors, droplet_geometry
from nwwatch.synth.labels import scene_labels

SHAPE = (256, 256)
FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tolerance_deg(a: float) -> float:
    """Binary-mask worst case: a facet along a pixel row is placed to +-0.5 px (0.5/a rad),
    plus the circle fit."""
    return math.degrees(1.0 / a)


def _border_point(centre: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Where the ray from ``centre`` along ``-u`` leaves the SHAPE frame."""
    ts = []
    for k in range(2):
        d = -u[k]
        if abs(d) > 1e-9:
            ts += [t for t in ((-0.5 - centre[k]) / d, (SHAPE[k] - 0.5 - centre[k]) / d) if t > 0]
    return centre - min(ts) * u


@FAST
@given(
    theta=st.floats(85, 145),
    a=st.floats(24, 50),
    axis=st.floats(-180, 180),
    incline=st.floats(-30, 30),
    flare=st.floats(-0.15, 0.5),
    ratio=st.floats(0.8, 1.2),
    cut_px=st.floats(0.25, 2.0),
)
def test_free_facet_over_inclination_flare_orientation_and_cut(theta, a, axis, incline, flare,
                                                               ratio, cut_px):
    """The frame cuts the wire ``cut_px * a`` behind the facet; the angle holds whatever the
    facet inclination, wall flare, base width and orientation, and sigma covers the error."""
    u = np.array(axis_vectors(axis)[0])
    facet = _border_point(np.array([127.5, 127.5]) - 20 * u, u) + cut_px * a * u
    cap = render_ideal_cap(SHAPE, theta, a, axis, tuple(facet), wire_radius_px=a / ratio,
                           facet_incline_deg=incline, flare=flare)
    r = measure_contact_angle(cap.labels)
    assert r.angle_valid, (r.reason_code, r.reason)
    err = abs(r.contact_angle_deg - cap.contact_angle_deg)
    assert err <= tolerance_deg(a)
    assert err <= max(3.0 * r.contact_angle_uncertainty_deg, 0.05)
    assert r.base_half_width_px == pytest.approx(a, abs=1.0)
    # The facet line's direction is the generator's (the normal turned by the inclination).
    phi = math.radians(axis + incline + 90.0)
    line = np.array([-math.sin(phi), math.cos(phi)])
    got = math.radians(r.facet_angle_deg)
    assert abs(line @ np.array([-math.sin(got), math.cos(got)])) > math.cos(math.radians(3.0))


@pytest.mark.parametrize("bow_px", [0.0, 4.0, 8.0])
@pytest.mark.parametrize("axis", [-27.7, 63.0, 90.0])
def test_an_interface_bowed_into_the_wire_leaves_its_width_and_axis(bow_px, axis):
    """A network's interface often bows into the wire (as a tilted wire's elliptical facet
    does): its steps face sideways and reach below the facet line, and were taken for side
    edges. A 190 px wide wire then read 127-142 px and its axis 12-16 deg off, `measured`."""
    a, width = 70.0, 190.0
    growth = np.array(axis_vectors(axis)[0])
    facet = tuple(np.array([255.6, 256.3]) + 60.0 * growth)  # the wire long behind it
    cap = render_ideal_cap((512, 512), 110.0, a, axis, facet, wire_radius_px=width / 2,
                           facet_incline_deg=12.0)
    labels = cap.labels.copy()
    u, n = (np.array(v) for v in axis_vectors(axis + 12.0))  # facet normal and its line
    rows, cols = np.indices(labels.shape)
    h = (rows - facet[0]) * u[0] + (cols - facet[1]) * u[1]
    along = (rows - facet[0]) * n[0] + (cols - facet[1]) * n[1]
    bow = (labels == NANOWIRE) & (h > -bow_px * np.clip(1 - (along / a) ** 2, 0, None)) & (
        np.abs(along) < a)
    labels[bow] = DROPLET
    r = measure_contact_angle(labels)
    assert r.wire_status == "measured", r.wire_status
    assert r.wire_width_px == pytest.approx(width, rel=0.02)
    assert abs((r.wire_axis_deg - axis + 180) % 360 - 180) < 1.0


@FAST
@given(theta=st.floats(85, 145), a=st.floats(30, 50), axis=st.floats(-180, 180),
       length=st.floats(0.15, 0.8))
def test_short_stub_and_frame_corner(theta, a, axis, length):
    """A stub (the wire ends ``length * a`` below the facet) has no axis to read; the angle
    does not need one."""
    cap = render_ideal_cap(SHAPE, theta, a, axis, (128.3, 127.6), wire_length_px=length * a)
    r = measure_contact_angle(cap.labels)
    assert r.angle_valid, (r.reason_code, r.reason)
    assert abs(r.contact_angle_deg - theta) <= tolerance_deg(a)
    assert r.wire_status in ("measured", "axis_only", "not_measured")


def test_wire_filling_a_frame_corner_has_no_axis_but_an_angle():
    # A 90 px wide wire coming out of the bottom-right corner, axis 135 deg (up-left).
    wire = WireSpec(facet_row=150.0, facet_col=150.0, axis_deg=135.0, radius_px=60.0,
                    theta_deg=118.0, flare=0.3)
    labels, _ = scene_labels((wire,), SHAPE)
    r = measure_contact_angle(labels)
    assert r.angle_valid, r.reason
    assert r.wire_width_px is None and r.wire_status != "measured"
    assert abs(r.contact_angle_deg - 118.0) <= 0.3


def _fig6_labels(wiggle_px: float = 0.0, seed: int = 0) -> tuple[np.ndarray, float]:
    """Labels drawn from the visible geometry of the real frame in the reference figures
    (fig6): droplet on the left (circle centre (218, 158), R 138 px at 512 px), a straight
    vertical interface at col 210, a wire to the right that flares from 275 px to 390 px
    wide and leaves the frame. Returns the labels and the angle of that circle and line."""
    labels = np.zeros((512, 512), np.uint8)
    top = [(210, 80), (320, 78), (420, 25), (511, 22)]
    bottom = [(511, 412), (420, 408), (330, 356), (210, 354)]
    cv2.fillPoly(labels, [np.array(top + bottom, np.int32)], NANOWIRE)
    rows, cols = np.mgrid[0:512, 0:512]
    disc = (rows - 218.0) ** 2 + (cols - 158.0) ** 2 <= 138.0**2
    labels[disc & (cols < 210)] = DROPLET  # pixel centres left of the edge at col 209.5
    if wiggle_px:
        rng = np.random.default_rng(seed)
        fields = [cv2.GaussianBlur(rng.standard_normal((512, 512)).astype(np.float32), (0, 0),
                                   4.0) for _ in range(2)]
        fields = [f * (0.5 * wiggle_px / f.std()) for f in fields]
        labels = cv2.remap(labels, (cols + fields[1]).astype(np.float32),
                           (rows + fields[0]).astype(np.float32), cv2.INTER_NEAREST)
    s = 209.5 - 158.0  # centre to line, on the droplet side (the droplet lies at col < 209.5)
    return labels, math.degrees(math.acos(-s / 138.0))


@pytest.mark.parametrize("wiggle_px", [0.0, 2.0])
def test_fig6_frame_flared_wire_straight_interface(wiggle_px):
    labels, expected = _fig6_labels(wiggle_px)
    r = measure_contact_angle(labels)
    assert r.status == "ok", (r.reason_code, r.reason)
    assert 105.0 <= r.contact_angle_deg <= 115.0
    assert abs(r.contact_angle_deg - expected) <= max(0.3, 2.0 * r.contact_angle_uncertainty_deg)
    assert r.facet_source == "interface"
    assert abs(abs(r.facet_angle_deg) - 90.0) < 1.0  # a vertical facet line


@pytest.mark.parametrize(("tilt", "theta", "a"), [(1.7, 106.7, 50.0), (5.0, 120.0, 40.0),
                                                   (9.0, 85.0, 45.0)])
def test_tilted_wire_does_not_claim_an_uncertainty_far_below_its_error(tilt, theta, a):
    wire = WireSpec(facet_row=140.2, facet_col=121.7, axis_deg=63.0, radius_px=a,
                    tilt_deg=tilt, theta_deg=theta)
    labels, _ = scene_labels((wire,), SHAPE)
    truth = droplet_geometry(wire).theta_apparent_deg
    r = measure_contact_angle(labels)
    assert r.angle_valid, r.reason
    err = abs(r.contact_angle_deg - truth)
    assert err <= 2.0 * r.contact_angle_uncertainty_deg + 0.05, (err, r)
    assert err <= 1.0


def _wire_and_droplet(shape=SHAPE) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[120:250, 100:160] = NANOWIRE
    return labels


@pytest.mark.parametrize(("a", "tilt", "theta", "axis"), [
    (27.8, 2.0, 126.6, -5.9), (16.8, 2.5, 111.8, 124.3), (17.0, 3.7, 120.6, -126.8),
    (19.1, 3.9, 145.2, -57.4)])
def test_small_tilted_wire_read_as_flat_is_covered_or_refused(a, tilt, theta, axis):
    """At a = 15-30 px a tilt of 2-4 deg bulges the facet by about a pixel, below the tilt
    threshold: read as flat, the angle errs by up to ~1.3x the flat-versus-rim difference,
    so that whole difference is the systematic sigma (the frame is refused when it is large)."""
    wire = WireSpec(facet_row=130.3, facet_col=126.6, axis_deg=axis, radius_px=a,
                    tilt_deg=tilt, theta_deg=theta)
    labels, _ = scene_labels((wire,), SHAPE)
    truth = droplet_geometry(wire).theta_apparent_deg
    r = measure_contact_angle(labels)
    assert r.wire_tilt_deg == 0.0  # read as flat
    if r.angle_valid:
        assert abs(r.contact_angle_deg - truth) <= 2.0 * r.contact_angle_uncertainty_deg
    else:
        assert r.reason_code == "angle_uncertain"


@pytest.mark.parametrize(("a", "tilt", "theta", "axis"), [
    (15.0, 9.0, 120.8, -77.1), (13.0, 7.5, 128.8, -158.1), (14.4, 9.4, 106.4, 142.4),
    (11.3, 6.9, 115.4, -163.7)])
def test_small_droplet_on_a_tilted_wire_reads_the_tilt_or_is_refused(a, tilt, theta, axis):
    """At a = 11-15 px the chord on the flat line is under 15 px; a 6-10 deg tilt bulges the
    facet by 1.5-2.5 px and read as flat the angle errs by 4-8 deg. The bulge is fitted down
    to a 10 px half chord: the tilt is read, or the frame refused."""
    wire = WireSpec(facet_row=130.3, facet_col=126.6, axis_deg=axis, radius_px=a,
                    tilt_deg=tilt, theta_deg=theta)
    labels, _ = scene_labels((wire,), SHAPE)
    truth = droplet_geometry(wire).theta_apparent_deg
    r = measure_contact_angle(labels)
    if r.angle_valid:
        assert r.wire_tilt_deg > 0.0
        assert abs(r.contact_angle_deg - truth) <= 2.0 * r.contact_angle_uncertainty_deg
    else:
        assert r.reason_code == "angle_uncertain"


def test_a_flat_facet_under_a_wider_droplet_base_is_not_read_as_tilted():
    """A droplet base about twice the facet, the facet near the pixel lattice's 2:1 direction:
    the interface points lie where half an ellipse is nearly flat, and a phase step of the
    pixel staircase read as a 1.5 px bulge: `ok`, 1.36 deg off at 1 sigma 0.41 deg (tilt
    1.49 deg). Read as flat (MIN_RIM_REACH), with the flat-versus-rim difference in sigma."""
    cap = render_ideal_cap((512, 512), 136.5073315887644, 75.45465910768769, 153.19936968645553,
                           (255.7525946003027, 256.24618758144385),
                           wire_radius_px=0.5227805943624045 * 75.45465910768769)
    r = measure_contact_angle(cap.labels)
    assert r.wire_tilt_deg == 0.0
    assert abs(r.contact_angle_deg - cap.contact_angle_deg) < 0.1
    assert abs(r.contact_angle_deg - cap.contact_angle_deg) <= 2 * r.contact_angle_uncertainty_deg


def test_every_reason_code_is_provoked():
    seen = {}

    def record(labels, prob=None):
        r = measure_contact_angle(labels, prob)
        seen.setdefault(r.reason_code, r)
        return r

    cap = render_ideal_cap(SHAPE, 112.0, 30.0, 80.0, (140.3, 128.6))
    record(cap.labels)  # ok
    record(np.where(cap.labels == NANOWIRE, 0, cap.labels).astype(np.uint8))  # no_wire
    record(np.where(cap.labels == DROPLET, 0, cap.labels).astype(np.uint8))  # no_droplet
    noise = np.random.default_rng(0).integers(0, 3, (512, 512)).astype(np.uint8)
    record(noise)  # labels_noisy
    far = np.where(cap.labels == DROPLET, 0, cap.labels).astype(np.uint8)
    cv2.circle(far, (220, 220), 15, DROPLET, -1)
    record(far)  # droplet_not_on_wire
    inside = np.zeros(SHAPE, np.uint8)
    cv2.circle(inside, (128, 128), 40, DROPLET, -1)
    inside[120:136, 120:136] = NANOWIRE
    cv2.circle(inside, (128, 128), 40, DROPLET, 3)
    record(inside)  # wire_inside_droplet
    needle = np.zeros(SHAPE, np.uint8)  # interface_missing: a 45 px base on a 4 px needle
    cv2.circle(needle, (130, 100), 30, DROPLET, -1)
    needle[120:] = 0
    needle[120:250, 128:132] = NANOWIRE
    record(needle)
    # interface_not_line: a droplet sitting in a V-shaped notch of the wire
    notch = _wire_and_droplet()
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    v = (rows < 120 + 25 - 0.9 * np.abs(cols - 130)) & (cols >= 100) & (cols < 160)
    notch[v & (rows >= 120)] = DROPLET
    cv2.circle(notch, (130, 100), 30, DROPLET, -1)
    record(notch)
    sliver = _wire_and_droplet()
    sliver[119:120, 100:160] = DROPLET
    record(sliver)  # free_surface_too_small
    lens = _wire_and_droplet()
    lens[116:120, 100:160] = DROPLET
    record(lens)  # arc_too_short
    square = _wire_and_droplet()
    square[60:120, 100:160] = DROPLET
    record(square)  # not_a_circle
    tail = _wire_and_droplet()  # circle_misses_facet: a round droplet on a short neck
    cv2.circle(tail, (130, 87), 27, DROPLET, -1)
    tail[114:120, 127:134] = DROPLET
    record(tail)
    small = render_ideal_cap(SHAPE, 100.0, 4.5, 30.0, (128.4, 128.2))
    record(small.labels)  # angle_uncertain
    record(render_ideal_cap(SHAPE, 40.0, 30.0, 10.0, (128.0, 128.0)).labels)  # out of range
    missing = set(REASON_CODES) - set(seen) - {"numerical_failure"}  # see the monkeypatch test
    assert not missing, {k: (v.reason_code, v.reason) for k, v in seen.items()}
    for code, r in seen.items():
        assert code in REASON_CODES and (code == "ok") == r.angle_valid
        assert code == "ok" or r.reason


def test_a_stub_under_a_large_droplet_beats_a_longer_wire_with_a_small_one():
    # High magnification: the measured wire is a short stub, smaller than a distant wire
    # carrying its own small droplet. The large droplet is the one the frame is about.
    labels = np.zeros((400, 400), np.uint8)
    cv2.circle(labels, (200, 40 + 45), 60, DROPLET, -1)  # centre 45 px below the facet row
    labels[0:40, 160:240] = NANOWIRE  # stub, 3,200 px
    cv2.circle(labels, (35, 200 - 15), 30, DROPLET, -1)
    labels[200:400, 10:60] = NANOWIRE  # long wire, 10,000 px
    r = measure_contact_angle(labels)
    assert r.angle_valid
    assert r.droplet_radius_px == pytest.approx(60.0, abs=1.5)
    # cos(theta) = -s / R with s = 45 px: theta = acos(-0.75)
    assert r.contact_angle_deg == pytest.approx(math.degrees(math.acos(-45 / 60)), abs=1.5)


@pytest.mark.parametrize("theta", [95.0, 120.0, 140.0])
@pytest.mark.parametrize("gap_px", [2.5, 3.5])
def test_a_partial_gap_between_drawn_polygons_is_not_fitted_as_free_surface(theta, gap_px):
    """Wire and droplet drawn as separate polygons leave a background strip between them over
    part of the interface; the droplet's edge along it faces the wire, not the free surface,
    so the angle is the exact labels' within the binary-mask tolerance."""
    a, axis = 40.0, 70.0
    cap = render_ideal_cap(SHAPE, theta, a, axis, (140.0, 120.0))
    labels = cap.labels.copy()
    u = np.array(axis_vectors(axis)[0])  # growth direction: from the wire into the droplet
    v = np.array([-u[1], u[0]])
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    rel = np.stack([rows - cap.facet_center_rc[0], cols - cap.facet_center_rc[1]], axis=-1)
    height, along = rel @ u, rel @ v
    # Droplet pixels within gap_px of the facet over 60 % of the base, off-centre.
    strip = (labels == DROPLET) & (height < gap_px) & (along > -0.5 * a) & (along < 0.7 * a)
    labels[strip] = 0
    exact = measure_contact_angle(cap.labels)
    r = measure_contact_angle(labels)
    assert r.angle_valid, (r.reason_code, r.reason)
    assert abs(r.contact_angle_deg - cap.contact_angle_deg) <= tolerance_deg(a) + 2 * (
        r.contact_angle_uncertainty_deg), (r.contact_angle_deg, exact.contact_angle_deg)
    assert abs(r.contact_angle_deg - cap.contact_angle_deg) <= 2.0


def test_a_wire_whose_long_direction_runs_along_the_facet_gives_no_axis():
    """A stub wider than it is long (and a droplet on a side wall) was `measured`: the
    mask's moments took the visible wire's long direction, along the facet, for its axis, so
    the width was read across the wrong direction (9.6 px for a 169 px wire on a synthetic
    stub) and the inclination came out near 90 deg. The angle never depended on it."""
    stub = np.zeros((512, 512), np.uint8)
    stub[300:, 100:412] = 1
    cap = np.zeros_like(stub)
    cv2.circle(cap, (256, 250), 120, 1, -1)
    stub[(cap == 1) & (stub == 0)] = 2
    r = measure_contact_angle(stub)
    assert r.status == "ok"
    expected = 90.0 + np.degrees(np.arcsin(50.0 / 120.0))  # centre 50 px above the facet
    assert r.contact_angle_deg == pytest.approx(expected, abs=0.5)
    assert (r.wire_status, r.wire_axis_deg, r.wire_width_px, r.facet_inclination_deg) == (
        "not_measured", None, None, None)
    assert "runs along the facet" in r.reason
    side = np.zeros((256, 256), np.uint8)
    side[:, 100:140] = 1
    cap = np.zeros_like(side)
    cv2.circle(cap, (165, 128), 35, 1, -1)
    side[(cap == 1) & (side == 0)] = 2
    r = measure_contact_angle(side)
    assert r.wire_status == "not_measured" and r.facet_inclination_deg is None
    assert "droplet on the side wall" in r.reason


def test_a_base_cut_by_the_frame_is_named_as_such():
    """A droplet whose base the frame's edge hides was refused as "it does not sit on the
    wire's end", which points the scientist at the wrong feature."""
    labels = np.zeros((256, 256), np.uint8)
    labels[200:, :25] = NANOWIRE
    cap = np.zeros_like(labels)
    cv2.circle(cap, (-20, 180), 40, 1, -1)
    labels[(cap == 1) & (labels == 0)] = DROPLET
    r = measure_contact_angle(labels)
    assert r.reason_code == "interface_missing"
    assert r.reason.endswith("the frame cuts the droplet's base (an end of it lies outside "
                             "the image)"), r.reason


@pytest.mark.parametrize(("seed", "index", "measured"), [
    (3, 13, False), (0, 19, False),  # wrong before, marked "measured"
    (3, 18, True),  # its facet's bulge (a tilted wire's ellipse) was fitted as edges
    (0, 1, True), (2, 18, True)])  # a straight and a flared wire, measured as before
def test_a_wire_width_is_the_wires_or_none(seed, index, measured):
    """Side "edges" that were part of the facet's bulge, a short step or the frame's cut gave
    widths of 157.8, 3.9 and 2.5 px for wires of 297, 250 and 319 px (synthetic frames of
    512 px, exact labels), axes 20 deg off, all `measured`; then no width where the edges
    were not the wire's, and the width within 1 % where they are. Since the interface's
    points are left out of the edge fits, the bulging facet's wire (3, 18) is measured right
    (297.0 px)."""
    from nwwatch.synth.insitu import frame_params, render_insitu_frame

    _, labels, truth = render_insitu_frame(frame_params(seed, index, 512),
                                           np.random.default_rng(0))
    r = measure_contact_angle(labels)
    if measured:
        assert r.wire_status == "measured"
        assert r.wire_width_px == pytest.approx(truth["wire_width_px"], rel=0.01)
        assert abs((r.wire_axis_deg - truth["wire_axis_deg"] + 180) % 360 - 180) < 1.0
    else:  # no width; an axis only where it is the wire's
        assert r.wire_status != "measured" and r.wire_width_px is None
        assert r.wire_axis_deg is None or abs(
            (r.wire_axis_deg - truth["wire_axis_deg"] + 180) % 360 - 180) < 5.0
