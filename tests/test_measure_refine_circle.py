"""The droplet's circle corrected on the frame (``measure_contact_angle(image=)``,
:func:`nwwatch.measure.refine_circle.refine_droplet_circle`): labels whose droplet outline
lies a pixel inside near the wire only (an uneven outline) recover the true circle's centre
on a frame of the true droplet; an outline inside by the same amount everywhere keeps its
radius (only the shape is read); a frame without a droplet edge, or one far from the
outline, keeps the labels' circle and says why."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from nwwatch.measure import draw_overlay, measure_contact_angle
from nwwatch.measure.circle import geometric_fit
from nwwatch.measure.refine_circle import CIRCLE_EDGE_STATUSES, refine_droplet_circle
from tests.ideal_caps import axis_vectors, render_ideal_cap


def _cap(axis_deg: float = 30.0, theta_deg: float = 115.0, a_px: float = 30.0):
    return render_ideal_cap((256, 256), theta_deg, a_px, axis_deg, (150.3, 120.4))


def _frame(labels: np.ndarray, seed: int, blur_px: float = 1.2, noise: float = 0.05):
    """A frame of ``labels``: background 0, wire -0.4, droplet -1.0, blurred, noisy."""
    grey = np.choose(labels, [0.0, -0.4, -1.0]).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (0, 0), blur_px)
    return grey + np.random.default_rng(seed).normal(0.0, noise, grey.shape).astype(np.float32)


def _eroded(cap, depth_px: float, near_wire_only: bool) -> np.ndarray:
    """The cap's labels with the droplet's free outline moved ``depth_px`` inside (pixels
    within that distance of the background become background), near the wire only (the
    half of the droplet nearer the facet than the circle centre) or everywhere."""
    drop = cap.labels == 2
    inside = distance_transform_edt(cap.labels != 0)  # distance to the background
    band = drop & (inside <= depth_px)
    if near_wire_only:
        u, _ = axis_vectors(cap.wire_axis_deg)
        rows, cols = np.mgrid[: drop.shape[0], : drop.shape[1]]
        height = ((rows - cap.circle_center_rc[0]) * u[0]
                  + (cols - cap.circle_center_rc[1]) * u[1])
        band &= height < 0
    out = cap.labels.copy()
    out[band] = 0
    return out


def _centre_error(r, cap) -> float:
    return math.hypot(r.circle_center_row - cap.circle_center_rc[0],
                      r.circle_center_col - cap.circle_center_rc[1])


@pytest.mark.parametrize("axis_deg", [30.0, 90.0, -127.0])
def test_an_uneven_outline_is_corrected_on_the_frame(axis_deg: float) -> None:
    cap = _cap(axis_deg)
    labels = _eroded(cap, 1.0, near_wire_only=True)
    image = _frame(cap.labels, seed=int(abs(axis_deg)))
    plain = measure_contact_angle(labels)
    r = measure_contact_angle(labels, image=image)
    assert plain.droplet_edge == "labels" and plain.droplet_edge_move_px is None
    assert r.droplet_edge == "refined", r.reason
    assert 0.2 < r.droplet_edge_move_px < 1.0
    # The eroded half pulls the labels' centre away from the wire; the frame brings it back.
    assert _centre_error(plain, cap) > 0.3
    assert _centre_error(r, cap) < 0.5 * _centre_error(plain, cap)
    err_plain = abs(plain.contact_angle_deg - cap.contact_angle_deg)
    err = abs(r.contact_angle_deg - cap.contact_angle_deg)
    assert err < 0.6 * err_plain
    assert err <= 2.0 * r.contact_angle_uncertainty_deg


def test_an_even_offset_keeps_the_labels_radius() -> None:
    """Only the unevenness is read: an outline inside by 1 px everywhere keeps its radius
    (a sphere's edge is read inside by the optics' own amount, which the frame cannot tell
    from the labels' offset)."""
    cap = _cap(-40.0)
    labels = _eroded(cap, 1.0, near_wire_only=False)
    plain = measure_contact_angle(labels)
    r = measure_contact_angle(labels, image=_frame(cap.labels, seed=3))
    assert r.droplet_edge == "even", r.droplet_edge
    assert r.droplet_radius_px == plain.droplet_radius_px
    assert r.circle_center_row == plain.circle_center_row
    assert r.circle_center_col == plain.circle_center_col
    assert _centre_error(r, cap) < 0.3


def test_an_evenly_edged_frame_does_not_move_the_truth_circle() -> None:
    """Exact labels on frames of the same droplet (noise, blur): the frame's edge is even
    within its noise, so the labels' circle (refined on pixel edges) is kept unchanged."""
    for seed, axis_deg in [(5, 60.0), (11, -100.0), (12, 170.0)]:
        cap = _cap(axis_deg)
        plain = measure_contact_angle(cap.labels)
        r = measure_contact_angle(cap.labels, image=_frame(cap.labels, seed=seed))
        assert r.droplet_edge == "even", (seed, r.droplet_edge)
        assert r.circle_center_row == plain.circle_center_row
        assert r.circle_center_col == plain.circle_center_col
        assert r.droplet_radius_px == plain.droplet_radius_px
    # The overlay says why the labels' circle was kept, right of the circle's centre.
    image = _frame(cap.labels, seed=seed)
    told = draw_overlay(image, cap.labels, r)
    silent = draw_overlay(image, cap.labels, dataclasses.replace(r, droplet_edge="labels"))
    row, col = int(r.circle_center_row), int(r.circle_center_col)
    assert (told[row - 8 : row + 4, col + 8 : col + 60] != silent[row - 8 : row + 4,
                                                                   col + 8 : col + 60]).any()


def test_a_frame_without_a_droplet_edge_keeps_the_labels() -> None:
    cap = _cap()
    labels = _eroded(cap, 1.0, near_wire_only=True)
    flat = np.random.default_rng(1).normal(100.0, 2.0, labels.shape).astype(np.float32)
    plain = measure_contact_angle(labels)
    r = measure_contact_angle(labels, image=flat)
    assert r.droplet_edge == "weak_edge" and r.droplet_edge_move_px is None
    assert r.droplet_radius_px == plain.droplet_radius_px
    assert r.circle_center_row == plain.circle_center_row


def test_an_edge_beyond_reach_keeps_the_labels() -> None:
    """A frame whose droplet is 4 px larger than the labels' (beyond MAX_SHIFT_PX)."""
    cap = _cap()
    big = render_ideal_cap((256, 256), 115.0, 30.0 * (cap.droplet_radius_px + 4.0)
                           / cap.droplet_radius_px, 30.0, (150.3, 120.4))
    r = measure_contact_angle(cap.labels, image=_frame(big.labels, seed=2))
    assert r.droplet_edge == "out_of_reach", r.droplet_edge
    assert r.droplet_radius_px == measure_contact_angle(cap.labels).droplet_radius_px


def test_too_few_points_and_every_status_is_documented() -> None:
    cap = _cap()
    image = _frame(cap.labels, seed=4)
    pts = np.array([[100.0, 100.0 + k] for k in range(10)])
    fit = geometric_fit(np.array([[0.0, 10.0], [10.0, 0.0], [0.0, -10.0], [-10.0, 0.0]]))
    out = refine_droplet_circle(image, cap.labels, fit, pts)
    assert out.status == "too_few_points" and not out.refined and out.fit is None
    # NaN pixels leave their profiles out; a frame of NaN leaves none.
    nan = np.full(cap.labels.shape, np.nan, dtype=np.float32)
    assert measure_contact_angle(cap.labels, image=nan).droplet_edge == "too_few_points"
    assert {"refined", "labels", "too_few_points", "weak_edge", "out_of_reach",
            "even"} == set(CIRCLE_EDGE_STATUSES)


def test_crop_offset_is_applied() -> None:
    """Points given in a crop's coordinates with its offset give the same circle as the
    same points in image coordinates."""
    cap = _cap(10.0)
    labels = _eroded(cap, 1.0, near_wire_only=True)
    image = _frame(cap.labels, seed=6)
    c = np.array(cap.circle_center_rc)
    ang = np.linspace(-2.5, 2.5, 300) + math.atan2(*(-axis_vectors(10.0)[0]))
    unit = np.stack([np.sin(ang), np.cos(ang)], 1)
    # The outline 1 px inside on the wire's side only (as the labels).
    radius = cap.droplet_radius_px - 1.0 * (unit @ axis_vectors(10.0)[0] < 0)
    pts = c + radius[:, None] * unit
    fit = geometric_fit(pts)
    whole = refine_droplet_circle(image, labels, fit, pts)
    off = np.array([40.0, 25.0])
    crop_fit = geometric_fit(pts - off)
    crop = refine_droplet_circle(image, labels, crop_fit, pts - off, offset=tuple(off))
    assert whole.refined and crop.refined
    assert np.allclose(whole.fit.center, crop.fit.center + off, atol=1e-6)
    assert whole.fit.radius == pytest.approx(crop.fit.radius, abs=1e-6)
    assert np.allclose(whole.center_move_cov, crop.center_move_cov, atol=1e-9)
    # The given circle (for a binary mask, refined on its pixel edges) is moved, not refitted:
    # its radius is kept, its centre moves by the frame's translation.
    assert whole.fit.radius == fit.radius
    assert np.allclose(whole.fit.center, fit.center + whole.center_move, atol=1e-12)
    assert np.hypot(*(fit.center + whole.center_move - c)) < 0.5 * np.hypot(*(fit.center - c))
