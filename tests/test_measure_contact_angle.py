"""Contact-angle measurement recovers the truth of exactly rendered caps, in any orientation,
and says why when it cannot measure."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ideal_caps import axis_vectors, render_ideal_cap

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure import (
    MEASUREMENT_FIELDS,
    MEASUREMENT_VERSION,
    STATUSES,
    ContactAngleResult,
    measure_contact_angle,
)

SHAPE = (256, 256)
FAST = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def binary_tolerance_deg(a: float) -> float:
    """Worst case from a binary mask: a grid-aligned facet is only known to +-0.5 px (costs
    0.5/a rad) plus the circle fit (up to ~0.3/a rad when pixel centres fall on the outline)."""
    return math.degrees(1.0 / a)


def cap(theta=110.0, a=30.0, axis=70.0, center=(150.3, 120.6), shape=SHAPE, **kw):
    return render_ideal_cap(shape, theta, a, axis, center, **kw)


def t_coordinate(c, shape=SHAPE) -> np.ndarray:
    u, _ = axis_vectors(c.wire_axis_deg)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    return (rows - c.facet_center_rc[0]) * u[0] + (cols - c.facet_center_rc[1]) * u[1]


@FAST
@given(
    theta=st.floats(80, 150),
    a=st.floats(20, 60),
    axis=st.floats(-180, 180),
    dr=st.floats(-0.5, 0.5),
    dc=st.floats(-0.5, 0.5),
)
def test_recovers_theta_from_binary_mask(theta, a, axis, dr, dc):
    c = cap(theta, a, axis, (128 + dr, 128 + dc))
    r = measure_contact_angle(c.labels)
    assert r.status == "ok", r.reason
    assert r.angle_valid
    assert abs(r.contact_angle_deg - theta) <= binary_tolerance_deg(a)
    # Hypothesis hunts the worst cases (a facet through a row of pixel centres); the 95 %
    # calibration at 2 sigma is measured in bench/bench_contact_angle.py.
    assert abs(r.contact_angle_deg - theta) <= max(3.0 * r.contact_angle_uncertainty_deg, 0.05)
    assert abs(r.base_half_width_px - a) <= 1.0
    assert r.facet_source == "interface" and r.reason_code == "ok"
    # the axis convention: atan2(-d_row, d_col), towards the droplet
    if r.wire_status == "measured":
        assert abs((r.wire_axis_deg - axis + 180) % 360 - 180) < 1.5
        assert r.wire_width_px == pytest.approx(2 * a, abs=2.0)
        assert abs(r.facet_inclination_deg) < 3.0


@FAST
@given(
    theta=st.floats(80, 150),
    a=st.floats(20, 60),
    axis=st.floats(-180, 180),
    dr=st.floats(-0.5, 0.5),
    dc=st.floats(-0.5, 0.5),
)
def test_recovers_theta_from_probability_map(theta, a, axis, dr, dc):
    c = cap(theta, a, axis, (128 + dr, 128 + dc))
    r = measure_contact_angle(c.labels, c.droplet_coverage)
    assert r.status == "ok", r.reason
    # Worst case: theta near 80 deg with the facet along a pixel row at a = 20 px (the 0.5
    # crossing between a partly covered and a saturated pixel errs by ~0.1 px).
    assert abs(r.contact_angle_deg - theta) <= 0.5
    assert abs(r.contact_angle_deg - theta) <= 3.0 * r.contact_angle_uncertainty_deg
    assert abs(r.droplet_radius_px - c.droplet_radius_px) <= 0.1
    assert abs(r.cap_height_px - c.cap_height_px) <= 0.15


@FAST
@given(
    theta=st.floats(80, 150),
    a=st.floats(20, 50),
    axis1=st.floats(-180, 180),
    axis2=st.floats(-180, 180),
)
def test_orientation_invariance(theta, a, axis1, axis2):
    """Any in-plane orientation gives the same angle within the binary mask's tolerance.
    From a = 35 px every orientation is measured; below, a small droplet may instead be
    refused as too uncertain (the flat-versus-tilted facet term grows as the facet
    shrinks: at a = 30 px a facet 0.5 deg off a pixel row, whose one-pixel staircase reads
    as a 1 px bulge, is refused; docs/measurement.md, Limits), never given a wrong angle."""
    angles = []
    for axis in (axis1, axis2):
        r = measure_contact_angle(cap(theta, a, axis, (128.2, 127.9)).labels)
        if a < 35 and r.reason_code == "angle_uncertain":
            continue
        assert r.status == "ok", r.reason
        assert abs(r.contact_angle_deg - theta) <= 2 * binary_tolerance_deg(a)
        angles.append(r.contact_angle_deg)
    if len(angles) == 2:
        assert abs(angles[0] - angles[1]) <= 2 * binary_tolerance_deg(a)


def test_a_facet_just_off_a_pixel_row_at_a_30_px_is_refused_not_wrong():
    """Its one-pixel staircase reads as a 1 px bulge (a possible tilt): the flat-versus-rim
    term puts sigma just above the limit, and the angle it reports lies within it."""
    c = cap(100.0, 30.0, 0.5, (128.2, 127.9))
    r = measure_contact_angle(c.labels)
    assert r.reason_code == "angle_uncertain" and "facet's shape" in r.reason
    assert abs(r.contact_angle_deg - 100.0) <= r.contact_angle_uncertainty_deg


@pytest.mark.parametrize("axis", [0.0, 90.0, 180.0, -90.0, 45.0, 179.0])
def test_grid_aligned_and_horizontal_wires_are_measured(axis):
    # The first paper's Hough line broke on horizontal interfaces; ours has no special angle.
    c = cap(120.0, 30.0, axis, (128.0, 128.0))
    r = measure_contact_angle(c.labels)
    assert r.status == "ok"
    assert abs(r.contact_angle_deg - 120.0) <= binary_tolerance_deg(30.0)


def test_pixel_centre_convention_is_pinned():
    """Integer indices are pixel centres: a theta=90 cap on a facet centred on an integer pixel
    has its circle centre on that pixel and its apex on the integer pixel R above it."""
    c = render_ideal_cap(SHAPE, 90.0, 30.0, 90.0, (180.0, 128.0))
    assert c.circle_center_rc == pytest.approx((180.0, 128.0))
    # renderer: the apex pixel (150, 128) has its centre exactly on the circle; (151, 128)
    # lies inside, (149, 128) outside
    assert c.labels[151, 128] == DROPLET and c.labels[149, 128] == 0
    assert c.labels[181, 128] == NANOWIRE
    for prob, tol in ((None, 0.2), (c.droplet_coverage, 0.05)):
        r = measure_contact_angle(c.labels, prob)
        assert r.circle_center_row == pytest.approx(180.0, abs=tol)
        assert r.circle_center_col == pytest.approx(128.0, abs=tol)
        assert r.droplet_radius_px == pytest.approx(30.0, abs=tol)
        assert r.circle_center_row - r.droplet_radius_px == pytest.approx(150.0, abs=tol)  # apex
        # a facet exactly through pixel centres is a tie in the binary mask (+-0.5 px); the
        # probability map's 0.5 iso-line finds it exactly
        assert r.facet_row == pytest.approx(180.0, abs=0.5 if prob is None else tol)
        # left triple point: for an observer looking up the screen, col - a is on the left
        assert r.triple_left_col == pytest.approx(98.0, abs=0.3)
        assert r.triple_right_col == pytest.approx(158.0, abs=0.3)
        assert r.triple_left_row == pytest.approx(r.facet_row, abs=0.01)


def test_units_in_nm_when_pixel_size_given():
    c = cap()
    r_px = measure_contact_angle(c.labels)
    r_nm = measure_contact_angle(c.labels, pixel_size_nm=0.25)
    assert r_px.base_half_width_nm is None and r_px.as_row()["droplet_volume_nm3"] is None
    assert r_nm.base_half_width_nm == pytest.approx(0.25 * r_nm.base_half_width_px)
    assert r_nm.droplet_radius_nm == pytest.approx(0.25 * r_nm.droplet_radius_px)
    assert r_nm.droplet_area_nm2 == pytest.approx(0.0625 * r_nm.droplet_area_px2)
    assert r_nm.droplet_volume_nm3 == pytest.approx(0.25**3 * r_nm.droplet_volume_px3)
    theta = math.radians(110.0)
    a = c.base_half_width_px
    v_true = math.pi * a**3 / 3 * (2 - 3 * math.cos(theta) + math.cos(theta) ** 3) / math.sin(
        theta) ** 3
    assert r_nm.droplet_volume_px3 == pytest.approx(v_true, rel=0.02)


@pytest.mark.parametrize("theta", [95.0, 135.0])
def test_droplet_cut_by_the_frame(theta):
    # the facet 22 px from the top edge, wire pointing up: the cap's top is outside the frame
    c = render_ideal_cap(SHAPE, theta, 30.0, 80.0, (22.4, 128.3))
    assert (c.labels[0] == DROPLET).any()
    r = measure_contact_angle(c.labels)
    assert r.status == "ok", r.reason
    assert r.droplet_cut
    assert abs(r.contact_angle_deg - theta) <= binary_tolerance_deg(30.0)


def test_droplet_label_reaching_the_border_beside_the_wire_is_not_cut():
    # A droplet wholly inside the frame on a wire that runs to the top border; the labels'
    # droplet leaks along the wire's side wall to that border (the wire's side of the facet
    # line): the free surface the circle is fitted to is whole, so the droplet is not cut.
    facet = (12.3, 128.6)
    c = render_ideal_cap(SHAPE, 110.0, 40.0, 270.0, facet)
    u, n = axis_vectors(270.0)
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    along = (rows - facet[0]) * u[0] + (cols - facet[1]) * u[1]
    across = (rows - facet[0]) * n[0] + (cols - facet[1]) * n[1]
    labels = c.labels.copy()
    labels[(along < 0) & (across > 40.0) & (across <= 43.0)] = DROPLET
    assert (labels[0] == DROPLET).any()
    whole = measure_contact_angle(c.labels)
    r = measure_contact_angle(labels)
    assert r.status == "ok", r.reason
    assert not r.droplet_cut
    assert "cut by the frame" not in r.reason
    assert r.contact_angle_deg == whole.contact_angle_deg


def test_a_droplet_one_pixel_inside_the_border_is_not_cut():
    # One background pixel between the droplet's free surface and the border: the outline's
    # outside pixels lie on the border, its droplet pixels do not, so nothing is cut.
    c = render_ideal_cap((256, 256), 100.0, 30.0, 0.0, (31.2, 120.3))
    droplet = c.labels == DROPLET
    rows, cols = np.nonzero(droplet)
    assert min(rows.min(), cols.min(), 255 - rows.max(), 255 - cols.max()) == 1
    r = measure_contact_angle(c.labels)
    assert not r.droplet_cut
    assert "cut by the frame" not in r.reason


def test_two_pixel_gap_between_droplet_and_wire():
    c = cap(115.0, 30.0, 25.0)
    t = t_coordinate(c)
    labels = c.labels.copy()
    # a network that loses the interface: 1 px off the wire top and 1 px off the droplet bottom
    labels[(labels == NANOWIRE) & (t > -1.0)] = 0
    labels[(labels == DROPLET) & (t < 1.0)] = 0
    r = measure_contact_angle(labels)
    assert r.status == "ok", r.reason
    assert r.facet_gap_px == pytest.approx(2.0, abs=0.6)
    assert abs(r.contact_angle_deg - 115.0) <= binary_tolerance_deg(30.0)
    assert "gap" in r.reason


def _gapped(c, gap_px: float, shape=SHAPE) -> np.ndarray:
    """The cap's labels with a background band ``gap_px`` wide, centred on the facet line
    (hand labels that leave the dark interface band unlabeled)."""
    t = t_coordinate(c, shape)
    labels = c.labels.copy()
    labels[(labels == NANOWIRE) & (t > -0.5 * gap_px)] = 0
    labels[(labels == DROPLET) & (t < 0.5 * gap_px)] = 0
    return labels


def _equivalent_radius_px(labels: np.ndarray) -> float:
    return math.sqrt(np.count_nonzero(labels == DROPLET) / math.pi)


@pytest.mark.parametrize("share", [0.08, 0.12, 0.17])
@pytest.mark.parametrize(("theta", "axis"), [(100.0, 90.0), (135.0, 20.0), (120.0, -65.0)])
def test_a_wide_unlabeled_interface_band_is_bridged_with_its_uncertainty(share, theta, axis):
    c = cap(theta, 45.0, axis, center=(128.3, 127.6))
    # A band wider than GAP_PX, up to nearly a fifth of the droplet's radius.
    gap_px = max(share * _equivalent_radius_px(c.labels), 5.0)
    r = measure_contact_angle(_gapped(c, gap_px))
    # Found on the wire, the facet in the band's middle, and the band's width in sigma.
    assert r.reason_code in ("ok", "angle_uncertain"), r.reason
    assert r.facet_gap_px == pytest.approx(gap_px, abs=1.0)
    error = abs(r.contact_angle_deg - theta)
    assert error <= binary_tolerance_deg(45.0) + 0.3
    sin_t = math.sin(math.radians(theta))
    assert r.contact_angle_uncertainty_deg >= math.degrees(
        gap_px / math.sqrt(12.0) / (c.droplet_radius_px * sin_t))
    if r.reason_code == "angle_uncertain":
        assert "mostly from the background gap between the droplet and wire labels" in r.reason


def test_an_uneven_band_is_read_in_full_not_only_where_it_narrows():
    # Both edges of a 5 px band wander by +-1.5 px (a hand-drawn band): a reach of 4 px
    # would see only where they come close, and take the gap for narrower than drawn.
    c = cap(120.0, 45.0, 90.0, center=(150.3, 127.6))
    t = t_coordinate(c)
    u, _ = axis_vectors(c.wire_axis_deg)
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    along = (rows - c.facet_center_rc[0]) * -u[1] + (cols - c.facet_center_rc[1]) * u[0]
    labels = c.labels.copy()
    labels[(labels == NANOWIRE) & (t > -2.5 + 1.5 * np.sin(along / 5.0))] = 0
    labels[(labels == DROPLET) & (t < 2.5 + 1.5 * np.sin(along / 7.0 + 1.0))] = 0
    r = measure_contact_angle(labels)
    assert r.reason_code in ("ok", "angle_uncertain"), r.reason
    assert r.facet_gap_px == pytest.approx(5.0, abs=0.6)
    assert abs(r.contact_angle_deg - 120.0) <= 2.0 * r.contact_angle_uncertainty_deg


def test_a_band_bridged_in_one_place_is_still_read_as_a_band():
    # The droplet drawn down to the wire over 12 px of a 6 px band: its shared edges alone
    # would make the facet line, and the band's droplet edge would be fitted as the circle.
    c = cap(120.0, 45.0, 90.0, center=(150.3, 127.6))
    labels = _gapped(c, 6.0)
    t = t_coordinate(c)
    bridge = (np.abs(t) <= 3.5) & (np.abs(np.arange(SHAPE[1]) - 127.6)[None, :] < 6.0)
    labels[bridge & (t < 0) & (c.labels == NANOWIRE)] = NANOWIRE
    labels[bridge & (t >= 0) & (c.labels == DROPLET)] = DROPLET
    r = measure_contact_angle(labels)
    assert r.reason_code in ("ok", "angle_uncertain"), r.reason
    assert r.facet_gap_px == pytest.approx(6.0, abs=0.6)
    assert abs(r.contact_angle_deg - 120.0) <= 2.0 * r.contact_angle_uncertainty_deg


def test_a_large_droplet_across_a_wide_band_keeps_a_valid_angle():
    # 7 px of band under a 150 px base: the band's position term alone is 0.8 deg.
    c = render_ideal_cap((512, 512), 105.0, 150.0, 90.0, (300.4, 255.7))
    r = measure_contact_angle(_gapped(c, 7.0, (512, 512)))
    assert r.status == "ok", r.reason
    assert r.facet_gap_px == pytest.approx(7.0, abs=1.0)
    assert abs(r.contact_angle_deg - 105.0) <= 2.0 * r.contact_angle_uncertainty_deg
    assert "px gap between droplet and wire" in r.reason


def test_a_droplet_farther_from_the_wire_than_a_fifth_of_its_radius_is_not_on_it():
    c = cap(115.0, 30.0, 90.0, center=(150.3, 127.6))
    r = measure_contact_angle(_gapped(c, 0.2 * _equivalent_radius_px(c.labels) + 3.0))
    assert r.status == "droplet_not_on_wire"
    assert r.reason_code == "droplet_not_on_wire"
    assert "20 % of its radius" in r.reason


def test_spurious_blobs_holes_and_ragged_edges():
    rng = np.random.default_rng(3)
    c = cap(105.0, 35.0, -40.0, (140.2, 110.7))
    labels = c.labels.copy()
    for cls in (NANOWIRE, DROPLET):  # small blobs of both classes in the background
        for _ in range(4):
            r0, c0 = rng.integers(5, 250, 2)
            patch = labels[r0 : r0 + 3, c0 : c0 + 3]
            patch[patch == 0] = cls
    rows, cols = np.nonzero(labels == DROPLET)
    k = rng.choice(len(rows), 3, replace=False)
    labels[rows[k], cols[k]] = 0  # holes
    r = measure_contact_angle(labels)
    assert r.status == "ok", r.reason
    assert abs(r.contact_angle_deg - 105.0) <= binary_tolerance_deg(35.0)


def test_status_no_wire_and_no_droplet():
    c = cap()
    only_droplet = np.where(c.labels == NANOWIRE, 0, c.labels).astype(np.uint8)
    r = measure_contact_angle(only_droplet)
    assert r.status == "no_wire" and not r.angle_valid and r.contact_angle_deg is None
    assert r.reason_code == "no_wire"
    assert "nanowire" in r.reason
    only_wire = np.where(c.labels == DROPLET, 0, c.labels).astype(np.uint8)
    r = measure_contact_angle(only_wire)
    assert r.status == "no_droplet" and r.reason and r.reason_code == "no_droplet"
    r = measure_contact_angle(np.zeros(SHAPE, np.uint8))
    assert r.status == "no_wire"


def test_status_droplet_not_on_wire():
    c = cap()
    labels = np.where(c.labels == DROPLET, 0, c.labels).astype(np.uint8)
    rr, cc = np.mgrid[0:256, 0:256]
    labels[(rr - 220) ** 2 + (cc - 220) ** 2 < 15**2] = DROPLET
    r = measure_contact_angle(labels)
    assert r.status == "droplet_not_on_wire" and r.reason and not r.angle_valid
    assert r.reason_code == "droplet_not_on_wire"


def test_status_several_droplets_measures_the_one_on_the_main_wire():
    c = cap(118.0, 30.0, 90.0, (150.4, 80.2))
    labels = c.labels.copy()
    other = render_ideal_cap(SHAPE, 95.0, 10.0, 90.0, (220.0, 210.0), wire_length_px=20.0)
    labels[other.labels > 0] = other.labels[other.labels > 0]
    r = measure_contact_angle(labels)
    assert r.status == "several_droplets"
    assert r.angle_valid and r.n_droplets == 2
    assert abs(r.contact_angle_deg - 118.0) <= binary_tolerance_deg(30.0)
    assert "2 droplets" in r.reason


def test_status_fit_failed_for_a_square_droplet():
    labels = np.zeros(SHAPE, np.uint8)
    labels[120:250, 100:160] = NANOWIRE
    labels[60:120, 100:160] = DROPLET
    r = measure_contact_angle(labels)
    assert r.status == "fit_failed" and not r.angle_valid
    assert r.reason_code == "not_a_circle" and "circle" in r.reason


def test_status_fit_failed_for_too_few_points_or_too_short_an_arc():
    labels = np.zeros(SHAPE, np.uint8)
    labels[120:250, 100:160] = NANOWIRE
    labels[119:120, 100:160] = DROPLET  # a 1 px sliver: nothing above the facet margin
    r = measure_contact_angle(labels)
    assert r.status == "fit_failed", r.reason
    assert r.reason_code == "free_surface_too_small"
    labels[116:120, 100:160] = DROPLET  # a 4 px sliver: a few points on a flat arc
    r = measure_contact_angle(labels)
    assert r.reason_code == "arc_too_short", r.reason


def test_status_angle_out_of_physical_range_keeps_the_value():
    c = cap(40.0, 30.0, 10.0)
    r = measure_contact_angle(c.labels)
    assert r.status == "angle_out_of_physical_range"
    assert r.reason_code == "out_of_physical_range"
    assert not r.angle_valid
    assert r.contact_angle_deg == pytest.approx(40.0, abs=binary_tolerance_deg(30.0))
    assert "outside the physical range" in r.reason


def test_left_and_right_angles_and_uncertainty():
    c = cap(125.0, 40.0, 200.0 - 360.0)
    r = measure_contact_angle(c.labels, c.droplet_coverage)
    assert abs(r.contact_angle_left_deg - 125.0) < 0.5
    assert abs(r.contact_angle_right_deg - 125.0) < 0.5
    assert 0 < r.contact_angle_uncertainty_deg < 0.5
    assert r.fit_residual_rms_px < 0.2
    assert r.arc_span_deg == pytest.approx(250.0, abs=15.0)  # 2 theta minus the margins


@pytest.mark.parametrize(("wire", "size", "cut"), [
    (dict(facet_row=147.403, facet_col=23.606, axis_deg=85.671, radius_px=35.877,
          theta_deg=130.899, facet_incline_deg=8.147), 512, "left"),
    (dict(facet_row=351.818, facet_col=25.606, axis_deg=-115.765, radius_px=28.911,
          length_px=25.370, theta_deg=129.417, facet_incline_deg=22.164, flare=-0.1181),
     1024, "right"),
    (dict(facet_row=300.492, facet_col=25.729, axis_deg=80.454, radius_px=45.754,
          theta_deg=101.449, facet_incline_deg=22.616, droplet_base_px=35.642,
          flare=-0.02295), 512, "left"),
])
def test_a_side_whose_contact_point_the_frame_cuts_off_has_no_angle(wire, size, cut):
    # before: that side's circle, fitted to the arc the frame leaves, was read at a contact
    # point outside the image: 180.00 (clamped), 147.1 and 116.6 deg on caps of 130.9,
    # 129.4 and 101.4 deg, on rows `ok` with the main angle right
    from nwwatch.synth.geometry import WireSpec, droplet_geometry
    from nwwatch.synth.labels import scene_labels

    spec = WireSpec(**wire)
    labels, _ = scene_labels((spec,), (size, size), factor=1, fine=10)
    truth = droplet_geometry(spec).theta_apparent_deg
    r = measure_contact_angle(labels)
    assert r.status == "ok" and abs(r.contact_angle_deg - truth) < 0.5
    col = r.triple_left_col if cut == "left" else r.triple_right_col
    assert col < -0.5
    angles = {"left": r.contact_angle_left_deg, "right": r.contact_angle_right_deg}
    assert angles.pop(cut) is None
    assert abs(angles.popitem()[1] - truth) < 0.5


def test_result_row_matches_schema_and_is_frozen():
    r = measure_contact_angle(cap().labels, pixel_size_nm=0.5)
    row = r.as_row()
    assert list(row) == [f.name for f in MEASUREMENT_FIELDS]
    table = pa.Table.from_pylist([row, measure_contact_angle(np.zeros(SHAPE, np.uint8)).as_row()],
                                 schema=pa.schema(MEASUREMENT_FIELDS))
    assert table.num_rows == 2
    assert isinstance(MEASUREMENT_VERSION, str) and MEASUREMENT_VERSION
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status = "ok"  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown status"):
        ContactAngleResult("fine", "")
    with pytest.raises(KeyError, match="labels_noisy"):
        ContactAngleResult("fit_failed", "", "ragged")


def test_a_numpy_or_fraction_pixel_size_gives_the_rows_a_float_gives():
    # before: np.int16(40) gave a negative volume (its power wrapped), np.float16 an inf
    # area, np.float32 float32 columns, and a Fraction a row Parquet could not write
    from fractions import Fraction

    labels = cap().labels
    for size, as_float in ((np.int16(40), 40.0), (np.uint8(7), 7.0),
                            (Fraction(1, 4), 0.25), (np.float16(0.5), 0.5)):
        got = measure_contact_angle(labels, pixel_size_nm=size)
        expected = measure_contact_angle(labels, pixel_size_nm=as_float)
        assert type(got.pixel_size_nm) is float
        for name in ("droplet_volume_nm3", "droplet_area_nm2", "droplet_radius_nm"):
            assert isinstance(getattr(got, name), float)  # not float16 / float32 / int
            assert getattr(got, name) == pytest.approx(getattr(expected, name), rel=1e-12)
    pa.Table.from_pylist([measure_contact_angle(labels, pixel_size_nm=Fraction(1, 3)).as_row()],
                         schema=pa.schema(MEASUREMENT_FIELDS))


def test_programming_errors_raise_value_error():
    labels = cap().labels
    with pytest.raises(ValueError, match="2-D"):
        measure_contact_angle(labels[None])
    with pytest.raises(ValueError, match="uint8"):
        measure_contact_angle(labels.astype(np.int32))
    with pytest.raises(ValueError, match="shape"):
        measure_contact_angle(labels, np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="pixel_size_nm"):
        measure_contact_angle(labels, pixel_size_nm=-1.0)
    # a string read from a settings file raised TypeError without naming the argument
    for wrong in ("0.5", True):
        with pytest.raises(ValueError, match=f"pixel_size_nm .* got {wrong!r}"):
            measure_contact_angle(labels, pixel_size_nm=wrong)
    assert measure_contact_angle(labels, pixel_size_nm=np.float32(0.5)).pixel_size_nm == 0.5
    # a probability map on a 0-255 or percent scale moved the angle by degrees, 'ok'
    droplet = (labels == 2).astype(np.float32)
    assert measure_contact_angle(labels, droplet).angle_valid
    for scale, says in ((255.0, "values from 0 to 255"), (100.0, "values from 0 to 100")):
        with pytest.raises(ValueError, match=f"droplet_probability must hold probabilities "
                                             f"in \\[0, 1\\], got {says}"):
            measure_contact_angle(labels, droplet * scale)
    holed = droplet.copy()
    holed[0, 0] = np.nan
    with pytest.raises(ValueError, match="got values from 0 to 1 and NaN"):
        measure_contact_angle(labels, holed)
    holed[0, 0] = np.inf  # named too, not read as a map of 0 to 1
    with pytest.raises(ValueError, match="got values from 0 to 1 and inf"):
        measure_contact_angle(labels, holed)


@pytest.mark.parametrize("value", [3, 255])
def test_label_values_beyond_the_classes_raise_value_error(value):
    # 255 (a DATA folder's unlabeled pixels) or a fourth class was measured as background
    labels = cap().labels.copy()
    labels[:4, :4] = value
    with pytest.raises(ValueError, match=rf"found \[{value}\]" + (" .255: unlabeled"
                                                                 if value == 255 else "")):
        measure_contact_angle(labels)


@pytest.mark.parametrize(("dtype", "read_as"), [(np.float16, np.float32),
                                                (np.longdouble, np.float64)])
def test_an_image_of_any_float_type_is_read(dtype, read_as):
    # scipy's interpolation refuses float16 and long double: a RuntimeError escaped the
    # measurement, which takes an image of any numeric dtype
    c = cap()
    image = np.where(c.labels == DROPLET, 600.0, np.where(c.labels == 1, 200.0, 1000.0))
    reference = measure_contact_angle(c.labels, image=image.astype(read_as))
    assert reference.facet_edge == "refined"  # the image is read
    r = measure_contact_angle(c.labels, image=image.astype(dtype))
    assert r.as_row() == reference.as_row()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), with_probability=st.booleans())
def test_never_raises_on_arbitrary_label_images(seed, with_probability):
    """Bad geometry is a status, never an exception: random blobs, specks and noise."""
    import cv2

    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(4, 96, 2))
    labels = np.zeros((height, width), np.uint8)
    for _ in range(int(rng.integers(0, 6))):
        cls = int(rng.integers(1, 3))
        r0, c0 = int(rng.integers(0, height)), int(rng.integers(0, width))
        if rng.random() < 0.5:
            labels[r0 : r0 + int(rng.integers(1, 50)), c0 : c0 + int(rng.integers(1, 50))] = cls
        else:
            cv2.circle(labels, (c0, r0), int(rng.integers(1, 35)), cls, -1)
    speckle = rng.random(labels.shape) < 0.05 * rng.random()
    labels[speckle] = rng.integers(0, 3, int(speckle.sum()))
    prob = None
    if with_probability:
        prob = ((labels == DROPLET) * rng.random(labels.shape)).astype(np.float32)
    r = measure_contact_angle(labels, prob)
    assert r.status in STATUSES and (r.angle_valid or r.reason)
    assert set(r.as_row()) == {f.name for f in MEASUREMENT_FIELDS}


def test_tilted_facet_seen_as_half_ellipse():
    """A wire tilted out of the image plane shows its facet as half an ellipse bulging into
    the wire (the droplet's projection covers it); the angle is read at the rim level."""
    c = cap(115.0, 40.0, 150.0, (128.3, 140.6))
    u, n = axis_vectors(c.wire_axis_deg)
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(float)
    dr, dc = rows - c.facet_center_rc[0], cols - c.facet_center_rc[1]
    t, lat = dr * u[0] + dc * u[1], dr * n[0] + dc * n[1]
    bulge = 4.0 * np.sqrt(np.clip(1 - (lat / 40.0) ** 2, 0, 1))  # tilt asin(4/40) = 5.7 deg
    labels = c.labels.copy()
    labels[(labels == NANOWIRE) & (t > -bulge)] = DROPLET
    flat = measure_contact_angle(c.labels)
    tilted = measure_contact_angle(labels)
    assert flat.wire_tilt_deg == 0.0
    assert tilted.wire_tilt_deg == pytest.approx(5.7, abs=1.5)
    assert "tilted" in tilted.reason
    assert abs(tilted.contact_angle_deg - 115.0) <= binary_tolerance_deg(40.0)


def test_numerical_failure_of_a_solver_is_a_fit_failed_value(monkeypatch):
    from nwwatch.measure import contact_angle

    def singular(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(contact_angle, "robust_fit", singular)
    r = measure_contact_angle(cap(110, 30, 20, (128, 128)).labels)
    assert r.status == "fit_failed" and r.reason_code == "numerical_failure"
    assert "Singular matrix" in r.reason
    assert r.contact_angle_deg is None


def test_ragged_wire_droplet_interface_is_measured_with_an_honest_uncertainty():
    # A network unsure where wire ends and droplet begins scatters the interface by pixels;
    # the robust line still finds the facet, and the uncertainty covers the error.
    c = cap(110.0, 30.0, 35.0, (128.3, 128.6))
    labels = c.labels.copy()
    t = t_coordinate(c)
    rng = np.random.default_rng(3)
    band = (np.abs(t) < 3.0) & (labels > 0)
    labels[band] = rng.choice([NANOWIRE, DROPLET], size=int(band.sum())).astype(np.uint8)
    r = measure_contact_angle(labels)
    assert r.angle_valid, r.reason
    assert r.facet_scatter_px > 0.5
    assert abs(r.contact_angle_deg - 110.0) <= 2.0 * r.contact_angle_uncertainty_deg


def test_uncertain_reason_names_the_largest_term_of_sigma():
    """A refused angle's reason names the term of sigma that refused it, not a fixed guess:
    a small droplet on a grid-aligned facet is refused for the facet line's scatter on the
    labels, the same droplet on an oblique wire for its outline's scatter."""
    facet = measure_contact_angle(cap(110.0, 12.0, 0.0, (128.2, 127.9)).labels)
    outline = measure_contact_angle(cap(110.0, 8.0, 17.0, (128.2, 127.9)).labels)
    assert facet.reason_code == outline.reason_code == "angle_uncertain"
    assert "mostly from where the facet line lies on the labels" in facet.reason, facet.reason
    assert "mostly from the droplet outline's scatter" in outline.reason, outline.reason
    assert "other terms: outline" in facet.reason


def test_uncertain_reason_orders_terms_and_leaves_out_zero_ones():
    from nwwatch.measure.uncertainty import uncertain_reason

    text = uncertain_reason(2.5, 1.5, {"outline": 1.5, "facet_line": 0.0, "facet_shape": 2.0},
                            {"facet_shape": "tilted"})
    assert text.startswith("the angle is uncertain by +-2.50 deg (> 1.5), mostly from the "
                           "facet's shape: ")
    # a sigma just above the limit is not printed as the limit ("+-1.5 deg (> 1.5)")
    for sigma, shown in ((1.53, "1.53"), (1.504, "1.51"), (1.5000001, "1.51")):
        assert uncertain_reason(sigma, 1.5, {"outline": sigma}).startswith(
            f"the angle is uncertain by +-{shown} deg (> 1.5)")
    assert text.endswith("readings differ): +-2.0 deg (tilted); other terms: outline +-1.5 deg")


def _cap_on_wire(base_row: int, c_mid: float, a: float, theta: float, wire_half: float,
                 shape: tuple[int, int] = (512, 512)) -> np.ndarray:
    """A vertical wire (cols c_mid +- wire_half below base_row) with a cap of half base a
    and angle theta centred on it, each pixel its class by 4 x 4 sub-samples."""
    radius = a / np.sin(np.radians(theta))
    centre = -radius * np.cos(np.radians(theta))
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    droplet, wire = np.zeros(shape), np.zeros(shape)
    for dr in sub:
        for dc in sub:
            y, x = base_row - 0.5 - (rows + dr), cols + dc - c_mid
            droplet += (y > 0) & (x**2 + (y - centre) ** 2 < radius**2)
            wire += (y <= 0) & (np.abs(x) < wire_half)
    labels = np.zeros(shape, np.uint8)
    labels[wire >= 8], labels[droplet >= 8] = 1, 2
    return labels


def test_a_droplet_on_the_end_of_a_far_narrower_wire_is_not_said_to_sit_beside_it():
    # a cap centred on a wire a quarter of its base wide was refused "it does not sit on the
    # wire's end", which it does; and one whose base the frame hides, "does not sit on ..."
    narrow = measure_contact_angle(_cap_on_wire(301, 256.3, 40, 120, 10))
    assert narrow.reason_code == "interface_missing"
    assert "the interface covers under 25% of the base" in narrow.reason
    hidden = measure_contact_angle(_cap_on_wire(301, 548, 40, 120, 40))
    assert hidden.reason_code == "interface_missing"
    # its few shared edges are its interface (2.2.16; before: "only 0 interface points ...
    # or the frame hides where it does")
    assert "the frame cuts the droplet's base" in hidden.reason


@pytest.mark.parametrize("width", [3, 5])
def test_a_droplet_on_a_wire_a_few_pixels_wide_has_its_interface(width):
    # before: "only 0 wire/droplet interface points (the droplet does not sit on the wire's
    # end ...)" although the droplet sits on it: its < 6 shared edges were dropped for a gap
    # fit that found no gap
    rows, cols = np.mgrid[0:128, 0:128]
    labels = np.zeros((128, 128), np.uint8)
    labels[64 - width // 2:64 - width // 2 + width, :80] = 1
    labels[((rows - 64) ** 2 + (cols - 86) ** 2 <= 12 ** 2) & (cols >= 80)] = 2
    r = measure_contact_angle(labels)
    assert r.reason_code == "interface_missing"
    assert f"meets the wire over {width - 1} px only" in r.reason


def test_a_wire_one_pixel_thick_gives_the_same_angle_however_the_frame_is_turned():
    # before: its outline enclosed no area, its centroid read as the crop's corner, and the
    # facet's normal pointed into the wire in half of the orientations (free_surface_too_small)
    rows, cols = np.mgrid[0:100, 0:100].astype(float)
    radius = 25.0 / math.sin(math.radians(120.0))
    s = -radius * math.cos(math.radians(120.0))
    labels = np.zeros((100, 100), np.uint8)
    labels[61, 22:79] = 1
    labels[(rows < 60.5) & ((rows - (60.5 - s)) ** 2 + (cols - 50.0) ** 2 <= radius ** 2)] = 2
    angles = set()
    for turned in (labels, labels[::-1], np.rot90(labels), np.rot90(labels, 3)):
        r = measure_contact_angle(np.ascontiguousarray(turned))
        assert r.angle_valid, r.reason
        angles.add(round(r.contact_angle_deg, 9))
    assert len(angles) == 1


def test_facet_and_wire_directions_lie_in_minus_180_exclusive_to_180():
    # before: -180.0 where atan2 met a -0.0 component, 180.0 for the same direction elsewhere
    rows, cols = np.mgrid[0:120, 0:120].astype(float)
    radius = 6.0 / math.sin(math.radians(101.6))
    s = -radius * math.cos(math.radians(101.6))
    labels = np.zeros((120, 120), np.uint8)
    labels[(rows > 60.0) & (np.abs(cols - 60.5) <= 3.0)] = 1
    labels[(rows < 60.0) & ((rows - (60.0 - s)) ** 2 + (cols - 60.5) ** 2 <= radius ** 2)] = 2
    for turned in (labels, labels[:, ::-1], labels[::-1], np.rot90(labels)):
        r = measure_contact_angle(np.ascontiguousarray(turned))
        for value in (r.facet_angle_deg, r.wire_axis_deg):
            assert value is None or -180.0 < value <= 180.0


def test_droplets_are_counted_on_rows_refused_before_a_pair():
    """``n_droplets`` was null on these rows, so that counting frames with a droplet from it
    missed every droplet far from a wire or without one."""
    labels = np.zeros((120, 120), np.uint8)
    labels[80:, 50:70] = NANOWIRE
    only_wire = measure_contact_angle(labels)
    assert (only_wire.reason_code, only_wire.n_droplets) == ("no_droplet", 0)
    labels[5:25, 5:25] = DROPLET  # 55 px from the wire
    far = measure_contact_angle(labels)
    assert (far.reason_code, far.n_droplets) == ("droplet_not_on_wire", 1)
    labels[labels == NANOWIRE] = 0
    labels[90:110, 90:110] = DROPLET
    no_wire = measure_contact_angle(labels)
    assert (no_wire.reason_code, no_wire.n_droplets) == ("no_wire", 2)
    assert no_wire.wire_status is None and no_wire.droplet_area_px2 is None


def test_a_side_angle_carries_a_sigma_that_covers_its_error():
    """Frame-cut droplets (bench_contact_angle's random_cap, seed 3): the right half's angle
    is 3 deg off on an `ok` row whose only sigma was the whole cap's, 0.36 deg."""
    from nwwatch.synth.geometry import WireSpec
    from nwwatch.synth.labels import scene_labels

    wire = WireSpec(facet_row=342.84230191039285, facet_col=33.590106647141745,
                    axis_deg=-158.29950268658533, radius_px=27.166596842826166,
                    theta_deg=130.40986606136624)
    r = measure_contact_angle(scene_labels((wire,), (512, 512), factor=1, fine=10)[0])
    assert r.angle_valid and r.contact_angle_uncertainty_deg < 0.5
    assert abs(r.contact_angle_right_deg - 130.41) > 2.5  # far beyond the cap's 2 sigma ...
    assert abs(r.contact_angle_right_deg - 130.41) <= 2 * r.contact_angle_right_uncertainty_deg
    assert abs(r.contact_angle_left_deg - 130.41) <= 2 * r.contact_angle_left_uncertainty_deg
    # a side whose triple point the frame cuts off has neither angle nor sigma (seed 4)
    cut = WireSpec(facet_row=53.3412189205944, facet_col=461.492737280633,
                   axis_deg=46.1934158163117, radius_px=40.470060656484506,
                   theta_deg=134.89932155519176)
    r = measure_contact_angle(scene_labels((cut,), (512, 512), factor=1, fine=10)[0])
    assert r.angle_valid and r.contact_angle_right_deg is None
    assert r.contact_angle_right_uncertainty_deg is None
    assert abs(r.contact_angle_left_deg - 134.90) <= 2 * r.contact_angle_left_uncertainty_deg


def _cap_beside_left_border(radius_px: float, theta_deg: float, triple_col_px: float,
                            arc_steps_px: tuple[float, ...] | None = None) -> np.ndarray:
    """A cap on a vertical wire whose frame's left edge (col -0.5) lies ``triple_col_px``
    + 0.5 px left of the left triple point: the droplet's pixel centres inside its circle,
    or inside a polygon with corners on the circle ``arc_steps_px`` apart along it, from
    contact to contact (scaled to the whole arc; clicks of an annotator, drawn by the
    labelling tool's own rasteriser)."""
    from nwwatch.label.geometry import inside_polygon

    th = math.radians(theta_deg)
    half_base = radius_px * math.sin(th)
    size = int(2 * radius_px + 100)
    facet_row, axis_col = int(0.8 * size) + 0.5, size / 2 + 0.2
    centre_row = facet_row + radius_px * math.cos(th)
    rows, cols = np.mgrid[:size, :size].astype(float)
    labels = np.zeros((size, size), np.uint8)
    labels[(rows > facet_row) & (np.abs(cols - axis_col) < half_base)] = NANOWIRE
    if arc_steps_px is None:
        drop = np.hypot(rows - centre_row, cols - axis_col) < radius_px
    else:
        along = np.concatenate([[0.0], np.cumsum(arc_steps_px)])
        phi = -th + 2 * th * along / along[-1]
        poly = np.column_stack([centre_row - radius_px * np.cos(phi),
                                axis_col + radius_px * np.sin(phi)])
        drop = inside_polygon(poly, rows, cols)
    labels[drop & (rows < facet_row)] = DROPLET
    first_col = round(axis_col - half_base - triple_col_px)
    return np.ascontiguousarray(labels[:, first_col:])


@pytest.mark.parametrize(("radius", "theta", "triple_col", "step"), [
    (80.0, 130.0, 0.92, None),  # exact labels: left side 5.1 +- 2.0 deg off (2.5 sigma)
    # a click every 15-25 px: 22 deg off
    (73.27, 130.93, 1.2, (20.0, 20.5, 15.6, 17.7, 21.0, 23.5, 15.8, 16.7, 25.3, 22.0, 23.2,
                          21.9, 16.5, 16.8, 16.7, 19.8, 21.9)),
    (60.0, 150.0, 3.2, None),  # 14 deg off (1.3 sigma: sigma 11 deg)
])
def test_a_side_whose_outline_the_frame_cuts_next_to_its_contact_has_no_angle(
        radius, theta, triple_col, step):
    # before: the triple point lies inside the image, so the left half's circle was fitted
    # to the arc the frame lets back in above the cut (the surface leaves the contact
    # outwards above 90 deg and crosses the border within a pixel or two) and read at the
    # contact: up to 17 deg off at 4.4 sigma on `ok` rows whose angle was right
    labels = _cap_beside_left_border(radius, theta, triple_col, step)
    r = measure_contact_angle(labels)
    assert r.status == "ok" and r.droplet_cut
    assert abs(r.contact_angle_deg - theta) < 1.0
    assert -0.5 < r.triple_left_col < 5.0  # the contact itself lies inside the image
    assert r.contact_angle_left_deg is None and r.contact_angle_left_uncertainty_deg is None
    assert abs(r.contact_angle_right_deg - theta) <= 2 * r.contact_angle_right_uncertainty_deg
    # the same frame turned (the cut side stays left) and mirrored (now the right)
    turned = measure_contact_angle(np.ascontiguousarray(np.rot90(labels)))
    assert turned.contact_angle_left_deg is None and turned.contact_angle_right_deg is not None
    mirrored = measure_contact_angle(np.ascontiguousarray(labels[:, ::-1]))
    assert mirrored.contact_angle_right_deg is None and mirrored.contact_angle_left_deg is not None
    # the frame 6 px further out leaves the outline next to the contact in view: its side
    # is read, and right
    far = measure_contact_angle(_cap_beside_left_border(radius, theta, triple_col + 6, step))
    assert far.status == "ok" and far.droplet_cut
    assert abs(far.contact_angle_left_deg - theta) <= min(
        1.5, 2 * far.contact_angle_left_uncertainty_deg)
