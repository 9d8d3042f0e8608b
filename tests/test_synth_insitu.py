"""Synthetic in-situ generator: determinism, exact truth, pixel-centre convention, 50 % rule."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from skimage import measure

from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE
from nwwatch.measure.circle import geometric_fit
from nwwatch.synth.geometry import (
    SphereSpec,
    WireSpec,
    axis_vectors,
    droplet_geometry,
    project_scene,
)
from nwwatch.synth.insitu import generate_insitu, render_insitu_frame
from nwwatch.synth.labels import classify, coverage_labels
from nwwatch.synth.params import sample_frame_params
from nwwatch.synth.video import video_frame_params


def fit_circle(points: np.ndarray) -> tuple[float, float, float]:
    """The code base's geometric circle fit -> (row, col, radius)."""
    fit = geometric_fit(points)
    return float(fit.center[0]), float(fit.center[1]), float(fit.radius)


def free_surface_points(labels: np.ndarray, truth: dict, min_height_px: float = 2.0) -> np.ndarray:
    """Sub-pixel droplet contour (0.5 iso-line of the droplet mask) away from the wire, the
    facet and the image border."""
    droplet = (labels == DROPLET).astype(float)
    contours = measure.find_contours(np.pad(droplet, 1), 0.5)
    pts = np.concatenate(contours) - 1.0
    h, w = labels.shape
    wire_near = cv2.dilate((labels == NANOWIRE).astype(np.uint8), np.ones((5, 5), np.uint8))
    (d_row, d_col), _ = axis_vectors(truth["wire_axis_deg"])
    height = (pts[:, 0] - truth["facet_row"]) * d_row + (pts[:, 1] - truth["facet_col"]) * d_col
    ri = np.clip(np.rint(pts[:, 0]).astype(int), 0, h - 1)
    ci = np.clip(np.rint(pts[:, 1]).astype(int), 0, w - 1)
    keep = (
        (height > min_height_px)
        & (wire_near[ri, ci] == 0)
        & (pts[:, 0] > 1) & (pts[:, 0] < h - 2) & (pts[:, 1] > 1) & (pts[:, 1] < w - 2)
    )
    return pts[keep]


def clean_params(size: int, seed: int = 0, **kw) -> object:
    rng = np.random.default_rng(seed)
    base = dict(tilt_deg=0.0, truncation_px=0.0, droplet_cut=False, n_distractors=0,
                scale_bar=False, placement="centred", facet_incline_deg=0.0,
                wire_profile="straight", base_ratio=1.0)
    base.update(kw)
    return sample_frame_params(rng, size, **base)


@pytest.mark.parametrize(
    ("theta", "axis", "a_px"),
    [(88.0, 37.0, 30.0), (110.0, -123.0, 34.0), (120.0, 180.0, 40.0), (135.0, 71.3, 30.0),
     (150.0, 0.0, 32.0)],
)
def test_circle_fit_on_labels_recovers_theta(theta: float, axis: float, a_px: float) -> None:
    params = clean_params(256, seed=int(theta), theta_deg=theta, axis_deg=axis, a_px=a_px)
    image, labels, truth = render_insitu_frame(params, np.random.default_rng(1))
    assert image.dtype == np.uint16 and labels.dtype == np.uint8
    assert not truth["droplet_cut"]
    pts = free_surface_points(labels, truth)
    assert len(pts) > 50
    cr, cc, rad = fit_circle(pts)
    assert rad == pytest.approx(truth["R_px"], abs=0.15)
    assert (cr, cc) == pytest.approx((truth["center_row"], truth["center_col"]), abs=0.2)
    (d_row, d_col), _ = axis_vectors(truth["wire_axis_deg"])
    s = (cr - truth["facet_row"]) * d_row + (cc - truth["facet_col"]) * d_col
    theta_fit = math.degrees(math.acos(-s / rad))
    assert theta_fit == pytest.approx(theta, abs=0.3)
    assert truth["theta_apparent_deg"] == pytest.approx(theta, abs=1e-9)


def test_tilted_wire_apparent_angle_matches_projection() -> None:
    params = clean_params(256, seed=3, theta_deg=125.0, axis_deg=60.0, a_px=32.0, tilt_deg=10.0)
    _, labels, truth = render_insitu_frame(params, np.random.default_rng(2))
    cr, cc, rad = fit_circle(free_surface_points(labels, truth, min_height_px=4.0))
    # Facet line of the projection: through the two projected triple points.
    lr, lc, rr, rc = truth["left_row"], truth["left_col"], truth["right_row"], truth["right_col"]
    (d_row, d_col), _ = axis_vectors(truth["wire_axis_deg"])
    s = (cr - (lr + rr) / 2) * d_row + (cc - (lc + rc) / 2) * d_col
    assert math.degrees(math.acos(-s / rad)) == pytest.approx(truth["theta_apparent_deg"], abs=0.3)
    assert math.hypot(lr - rr, lc - rc) == pytest.approx(2 * truth["a_px"])


def test_droplet_geometry_identities() -> None:
    for theta in (80.0, 95.0, 120.0, 155.0):
        for tilt in (0.0, 7.0):
            wire = WireSpec(facet_row=50.3, facet_col=61.7, axis_deg=33.0, radius_px=20.0,
                            tilt_deg=tilt, theta_deg=theta)
            g = droplet_geometry(wire)
            t = math.radians(theta)
            assert g.radius_px == pytest.approx(20.0 / math.sin(t))
            assert g.h_px == pytest.approx(g.radius_px * (1 - math.cos(t)))
            assert 2 * math.degrees(math.atan(g.h_px / g.a_px)) == pytest.approx(theta)
            (d_row, d_col), (l_row, l_col) = axis_vectors(33.0)
            # Left triple point: on the left looking along the growth direction on screen.
            left_x = (g.left[0] - 50.3) * l_row + (g.left[1] - 61.7) * l_col
            assert left_x == pytest.approx(20.0)
            if tilt == 0:
                s = (g.centre[0] - 50.3) * d_row + (g.centre[1] - 61.7) * d_col
                assert math.degrees(math.acos(-s / g.radius_px)) == pytest.approx(theta)
                assert math.dist(g.centre, g.left) == pytest.approx(g.radius_px)
                assert g.theta_apparent_deg == pytest.approx(theta)
            elif theta < 90:
                expected = math.degrees(math.acos(math.cos(t) * math.cos(math.radians(tilt))))
                assert g.theta_apparent_deg == pytest.approx(expected)
    # Screen convention: axis 90 deg points up (towards row 0); its left is -col.
    (d_row, d_col), (l_row, l_col) = axis_vectors(90.0)
    assert (d_row, d_col) == pytest.approx((-1.0, 0.0), abs=1e-12)
    assert (l_row, l_col) == pytest.approx((0.0, -1.0), abs=1e-12)


@pytest.mark.parametrize(("row", "col"), [(20.0, 31.0), (20.5, 31.5), (21.0, 30.5)])
def test_pixel_centre_convention_disk_centroid(row: float, col: float) -> None:
    disk = SphereSpec(row=row, col=col, radius_px=7.3)

    def members(r, c):
        p = project_scene((disk,), r, c)
        return p.wire, p.droplet

    labels, _, _ = coverage_labels(members, (48, 64), factor=2)
    rr, cc = np.nonzero(labels == DROPLET)
    assert rr.mean() == pytest.approx(row, abs=1e-12)
    assert cc.mean() == pytest.approx(col, abs=1e-12)


def test_rendered_labels_mirror_symmetric_about_integer_axis() -> None:
    params = clean_params(128, seed=5, theta_deg=115.0, axis_deg=90.0, a_px=20.0)
    wire = dataclasses.replace(params.wire, facet_row=80.0, facet_col=63.0)
    params = dataclasses.replace(params, wire=wire)
    _, labels, truth = render_insitu_frame(params, np.random.default_rng(0))
    # Column 63 is the mirror axis: labels[:, 63 - k] == labels[:, 63 + k].
    left = labels[:, 63 - 60: 63][:, ::-1]
    right = labels[:, 64: 64 + 60]
    assert np.array_equal(left, right)
    assert truth["center_col"] == pytest.approx(63.0)


def test_labels_follow_50_percent_coverage_rule() -> None:
    scene = (
        WireSpec(facet_row=22.4, facet_col=25.1, axis_deg=71.0, radius_px=9.3, tilt_deg=8.0,
                 truncation_px=2.5, theta_deg=128.0),
        SphereSpec(row=38.2, col=9.7, radius_px=4.1),
    )
    shape = (44, 48)

    def members(r, c):
        p = project_scene(scene, r, c)
        return p.wire, p.droplet

    labels, _, _ = coverage_labels(members, shape, factor=2, fine=12)
    n = 32
    off = (np.arange(n) + 0.5) / n - 0.5
    rows = (np.arange(shape[0])[:, None] + off).reshape(-1, 1)
    cols = (np.arange(shape[1])[:, None] + off).reshape(1, -1)
    wire, drop = members(rows, cols)
    blocks = lambda m: m.reshape(shape[0], n, shape[1], n).mean(axis=(1, 3))  # noqa: E731
    cov_d, cov_w = blocks(drop), blocks(wire & ~drop)
    brute = classify(cov_d, cov_w)
    ambiguous = (np.abs(cov_d - 0.5) < 0.03) | (np.abs(cov_w - 0.5) < 0.03) | (
        np.abs(cov_d + cov_w - 0.5) < 0.03)
    assert np.array_equal(labels[~ambiguous], brute[~ambiguous])
    assert {BACKGROUND, NANOWIRE, DROPLET} <= set(np.unique(labels).tolist())
    # Under the truncated corner the solid core stays wire, the filled cut is droplet.
    assert ambiguous.mean() < 0.05


def test_determinism_and_frame_independence(tmp_path) -> None:
    a = generate_insitu(tmp_path / "a", 3, seed=7, size=96)
    b = generate_insitu(tmp_path / "b", 3, seed=7, size=96)
    c = generate_insitu(tmp_path / "c", 2, seed=7, size=96)
    d = generate_insitu(tmp_path / "d", 2, seed=8, size=96)
    for k in range(3):
        name = f"frame_{k:05d}"
        assert (tmp_path / "a" / f"{name}.tif").read_bytes() == \
            (tmp_path / "b" / f"{name}.tif").read_bytes()
        assert (tmp_path / "a" / "labels" / f"{name}.png").read_bytes() == \
            (tmp_path / "b" / "labels" / f"{name}.png").read_bytes()
    assert (tmp_path / "a" / "frame_00001.tif").read_bytes() == \
        (tmp_path / "c" / "frame_00001.tif").read_bytes()
    assert a.slice(0, 2).equals(c)
    assert a.equals(b)
    assert a.column("theta_deg").to_pylist()[:2] != d.column("theta_deg").to_pylist()


def test_video_is_smooth_and_frame_independent() -> None:
    params = video_frame_params(11, 256, 120)
    again = video_frame_params(11, 256, 60)
    assert params[59] == again[59]
    theta = np.array([p.wire.theta_deg for p in params])
    assert 95 < theta.min() and theta.max() < 125 and theta.max() - theta.min() > 6
    assert np.abs(np.diff(theta)).max() < 2.0
    facets = np.array([(p.wire.facet_row, p.wire.facet_col) for p in params])
    steps = np.hypot(*np.diff(facets, axis=0).T)
    assert steps.min() > 0.05 and steps.max() < 2.6
    assert len({(p.dose_e_per_px, p.defocus_nm, p.wire.radius_px) for p in params}) == 1
    growth = [p.growth_px for p in params]
    assert all(np.diff(growth) > 0)
    for p in params[::10]:
        g = droplet_geometry(p.wire)
        assert g.radius_px < g.centre[0] < 255 - g.radius_px
        assert g.radius_px < g.centre[1] < 255 - g.radius_px


def test_video_droplet_optics_are_set_relative_to_the_wire_and_nothing_else_moves() -> None:
    drawn = video_frame_params(5, 128, 2)
    set_ = video_frame_params(5, 128, 2, liquid_mfp_ratio=0.5, liquid_phase_ratio=1.25)
    for a, b in zip(drawn, set_, strict=True):
        assert b.mfp_liquid_nm == pytest.approx(0.5 * a.mfp_wire_nm)
        assert b.phase_liquid_rad_per_nm == pytest.approx(1.25 * a.phase_wire_rad_per_nm)
        assert b.mfp_liquid_nm != a.mfp_liquid_nm
        # Every other draw of the scene stays the seed's own.
        assert dataclasses.replace(b, mfp_liquid_nm=a.mfp_liquid_nm,
                                   phase_liquid_rad_per_nm=a.phase_liquid_rad_per_nm) == a
    with pytest.raises(ValueError, match="liquid_mfp_ratio must be > 0"):
        video_frame_params(5, 128, 1, liquid_mfp_ratio=0.0)


def test_cut_droplet_and_distractors_are_reported() -> None:
    params = clean_params(128, seed=9, droplet_cut=True, theta_deg=120.0, a_px=20.0,
                          n_distractors=2, scale_bar=True)
    _, labels, truth = render_insitu_frame(params, np.random.default_rng(0))
    assert truth["droplet_cut"]
    assert truth["n_distractors"] == len(params.distractors)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    assert np.any(border == DROPLET)


def test_cli_writes_files_and_metadata_round_trips(tmp_path) -> None:
    from nwwatch.synth.cli import synth

    out = tmp_path / "run"
    result = CliRunner().invoke(synth, ["insitu", str(out), "--frames", "2", "--size", "64",
                                        "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote 2 frames to {out}\n"
    truth = pq.read_table(out / "truth.parquet")
    assert truth.num_rows == 2
    one = CliRunner().invoke(synth, ["insitu", str(tmp_path / "one"), "--frames", "1",
                                     "--size", "48"])
    assert one.output == f"wrote 1 frame to {tmp_path / 'one'}\n"  # was "1 frames"
    for k in range(2):
        assert (out / f"frame_{k:05d}.tif").is_file()
        label = cv2.imread(str(out / "labels" / f"frame_{k:05d}.png"), cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint8 and label.shape == (64, 64)
        assert set(np.unique(label).tolist()) <= {0, 1, 2}
    io = pytest.importorskip("nwwatch.io")
    if not hasattr(io, "read_frames"):
        pytest.skip("nwwatch.io.read_frames not available yet")
    frames = io.read_frames(out / "frame_00001.tif")
    assert len(frames) == 1
    assert frames[0].pixel_size_nm == pytest.approx(truth.column("pixel_size_nm")[1].as_py(),
                                                    rel=1e-6)
    assert frames[0].acquired_at == truth.column("acquired_at")[1].as_py()
    assert frames[0].image.dtype == np.uint16


def test_contrast_truth_matches_rendered_transmission() -> None:
    params = clean_params(192, seed=4, theta_deg=130.0, axis_deg=0.0, a_px=24.0)
    params = dataclasses.replace(params, film_phase_rad=0.0, liquid_texture_rad=0.0,
                                 illumination_gradient=0.0, vignette=0.0,
                                 film_thickness_variation=0.0, lattice_amplitude=0.0,
                                 stacking_contrast=0.0, n_hot_pixels=0, read_noise_adu=0.0,
                                 dose_e_per_px=5000.0, gain_adu_per_e=2.0, defocus_nm=-1.0)
    image, labels, truth = render_insitu_frame(params, np.random.default_rng(0))
    signal = (image.astype(float) - params.offset_adu) / params.gain_adu_per_e / 5000.0
    centre = signal[int(round(truth["center_row"])), int(round(truth["center_col"]))]
    assert 1.0 - centre == pytest.approx(truth["contrast_droplet"], abs=0.03)
    far = cv2.erode((labels == BACKGROUND).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    assert np.median(signal[far]) == pytest.approx(1.0, abs=0.03)


def _line_distance(points: np.ndarray, p0: tuple[float, float], normal: tuple[float, float]):
    return (points[:, 0] - p0[0]) * normal[0] + (points[:, 1] - p0[1]) * normal[1]


@pytest.mark.parametrize(("incline", "ratio", "profile"),
                         [(22.0, 1.0, "flared"), (-28.0, 0.8, "tapered"), (9.0, 1.15, "stepped"),
                          (0.0, 0.85, "straight")])
def test_real_geometry_truth_is_exact(incline: float, ratio: float, profile: str) -> None:
    """Inclined facet, other base width, non-parallel walls: the droplet outline is a circle
    through both triple points, the wire/droplet interface lies on the facet line through
    them, and the circle and that line give back theta exactly."""
    params = clean_params(256, seed=4, theta_deg=112.0, axis_deg=-37.0, a_px=36.0,
                          facet_incline_deg=incline, base_ratio=ratio, wire_profile=profile)
    wire = params.wire
    assert wire.facet_incline_deg == incline and wire.base_px == pytest.approx(ratio * 36.0)
    _, labels, truth = render_insitu_frame(params, np.random.default_rng(1))
    assert truth["facet_incline_deg"] == incline and truth["a_px"] == pytest.approx(ratio * 36)
    centre = (truth["center_row"], truth["center_col"])
    left = (truth["left_row"], truth["left_col"])
    right = (truth["right_row"], truth["right_col"])
    assert math.dist(centre, left) == pytest.approx(truth["R_px"])
    assert math.dist(centre, right) == pytest.approx(truth["R_px"])
    assert math.dist(left, right) == pytest.approx(2 * truth["a_px"])
    # Facet normal from the triple points, pointing into the droplet.
    e = np.subtract(left, right) / math.dist(left, right)
    m = np.array([e[1], -e[0]])
    if (np.subtract(centre, left) @ m) * math.cos(math.radians(112.0)) > 0:
        m = -m
    (u_r, u_c), _ = axis_vectors(truth["wire_axis_deg"])
    assert math.degrees(math.acos(np.clip(m @ (u_r, u_c), -1, 1))) == \
        pytest.approx(abs(incline), abs=1e-6)
    s = float(np.subtract(centre, left) @ m)
    assert math.degrees(math.acos(-s / truth["R_px"])) == pytest.approx(112.0)
    # Pixel pairs wire|droplet straddle the facet line (its crack midpoints lie within half
    # a pixel diagonal of it), and the circle fits the free surface.
    wire_px = labels == NANOWIRE
    drop_px = labels == DROPLET
    pairs = np.concatenate([
        np.argwhere(wire_px[:, :-1] & drop_px[:, 1:]) + [0, 0.5],
        np.argwhere(drop_px[:, :-1] & wire_px[:, 1:]) + [0, 0.5],
        np.argwhere(wire_px[:-1] & drop_px[1:]) + [0.5, 0],
        np.argwhere(drop_px[:-1] & wire_px[1:]) + [0.5, 0],
    ])
    assert len(pairs) > 30
    dist = _line_distance(pairs, left, m)
    assert np.median(np.abs(dist)) < 0.5 and np.abs(dist).max() < 1.5
    pts = free_surface_points(labels, truth, min_height_px=4.0)
    pts = pts[_line_distance(pts, left, m) > 4.0]
    cr, cc, rad = fit_circle(pts)
    assert rad == pytest.approx(truth["R_px"], abs=0.3)
    assert (cr, cc) == pytest.approx(centre, abs=0.3)


@pytest.mark.parametrize(("profile", "depth", "expected"),
                         [("flared", 40.0, 30.0 + 0.3 * 40.0), ("tapered", 40.0, 30.0 - 0.1 * 40),
                          ("stepped", 60.0, 30.0 + 9.0), ("stepped", 10.0, 30.0)])
def test_wire_profile_widths(profile: str, depth: float, expected: float) -> None:
    fields = {"flared": dict(flare=0.3), "tapered": dict(flare=-0.1),
              "stepped": dict(step_px=9.0, step_depth_px=30.0)}[profile]
    # Axis 90 deg grows towards row 0: depth below the facet is down the rows.
    wire = WireSpec(facet_row=20.0, facet_col=100.0, axis_deg=90.0, radius_px=30.0,
                    theta_deg=None, **fields)
    rows = np.full(401, 20.0 + depth)
    cols = np.linspace(0.0, 200.0, 401)
    proj = project_scene((wire,), rows, cols)
    width = np.count_nonzero(proj.wire) * 0.5
    assert width == pytest.approx(2 * expected, abs=1.0)


def test_placements_show_the_wire_as_asked() -> None:
    from nwwatch.synth.placement import PLACEMENTS, _side_lengths, _visible_wire_length

    assert PLACEMENTS == ("centred", "corner", "stub")
    for seed in range(4):
        corner = sample_frame_params(np.random.default_rng(seed), 512, placement="corner",
                                     n_distractors=0)
        assert corner.placement == "corner" and corner.wire.radius_px >= 0.1 * 512
        assert max(_side_lengths(corner.wire, 512)) <= 1.2 * corner.wire.radius_px + 1e-6
        stub = sample_frame_params(np.random.default_rng(seed), 512, placement="stub",
                                   n_distractors=0, droplet_cut=False)
        (d_row, d_col), _ = axis_vectors(stub.wire.axis_deg)
        visible = _visible_wire_length(stub.wire.facet_row, stub.wire.facet_col, d_row, d_col,
                                       512)
        assert 0.2 * stub.wire.radius_px - 1e-6 <= visible <= stub.wire.radius_px + 1e-6
    with pytest.raises(KeyError, match="centred"):
        sample_frame_params(np.random.default_rng(0), 512, placement="middle")


def test_default_sampling_covers_the_real_geometry() -> None:
    drawn = [sample_frame_params(np.random.default_rng(k), 512, n_distractors=0)
             for k in range(60)]
    wires = [p.wire for p in drawn]
    radii = [droplet_geometry(w).radius_px for w in wires]
    assert sum(abs(w.facet_incline_deg) >= 3 for w in wires) >= 8
    assert sum(w.flare > 0 for w in wires) >= 5 and sum(w.flare < 0 for w in wires) >= 2
    assert sum(w.step_px != 0 for w in wires) >= 4
    assert sum(w.base_px != w.radius_px for w in wires) >= 3
    assert {p.placement for p in drawn} == {"centred", "corner", "stub"}
    assert max(radii) > 0.4 * 512
    assert all(w.tilt_deg == 0 for w in wires if w.facet_incline_deg != 0)
    # Fixing one geometry choice keeps the frame's other draws.
    a = sample_frame_params(np.random.default_rng(3), 512)
    b = sample_frame_params(np.random.default_rng(3), 512, wire_profile="straight")
    assert (a.wire.theta_deg, a.dose_e_per_px) == (b.wire.theta_deg, b.dose_e_per_px)


def test_wire_spec_refuses_unmodelled_combinations() -> None:
    with pytest.raises(ValueError, match="tilt"):
        WireSpec(facet_row=0, facet_col=0, axis_deg=0, radius_px=10, tilt_deg=3,
                 facet_incline_deg=10)
    with pytest.raises(ValueError, match="droplet_base_px"):
        WireSpec(facet_row=0, facet_col=0, axis_deg=0, radius_px=10, droplet_base_px=0.0)


def test_cli_never_leaves_frames_its_truth_does_not_describe(tmp_path) -> None:
    from nwwatch.cli import main

    out = tmp_path / "run"
    args = ["synth", "insitu", str(out), "--size", "48"]
    assert CliRunner().invoke(main, [*args, "--frames", "3"]).exit_code == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    # fewer frames: frames 1 and 2 would stay beside a one-row truth.parquet (before: silently)
    result = CliRunner().invoke(main, [*args, "--frames", "1", "--seed", "5"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"{out} already holds 4 file(s) this run would not replace" in result.output
    assert "frame_00001.tif" in result.output and "labels/frame_00002.png" in result.output
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    # a labelled DATA folder (nwwatch label's images/, geometry/) is never written into
    data = tmp_path / "DATA"
    (data / "images").mkdir(parents=True)
    (data / "images" / "mine.tif").write_bytes(b"")
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "1"])
    assert result.exit_code == 1 and "images" in result.output
    assert not (data / "truth.parquet").exists()
    # the same command again, or more frames, replaces everything: allowed
    assert CliRunner().invoke(main, [*args, "--frames", "3"]).exit_code == 0
    assert CliRunner().invoke(main, [*args, "--frames", "4"]).exit_code == 0
    assert pq.read_table(out / "truth.parquet").num_rows == 4
    # a folder that takes no file: a usage error naming it, no traceback
    if Path("/proc/self").is_dir():
        result = CliRunner().invoke(main, ["synth", "insitu", "/proc/nwwatch-synth"])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
        assert "Invalid value for 'OUT'" in result.output


def _synth(args: list[str]):
    from nwwatch.cli import main

    return CliRunner().invoke(main, ["synth", "insitu", *args])


def test_cli_video_is_realistic_by_default_and_drawn_on_request(tmp_path) -> None:
    from nwwatch.demo import MAIN_VIDEO, STRESS_VIDEO
    from nwwatch.synth.video import VIDEO_SCENES, scene_options

    # the demo's scenes are the presets themselves
    assert MAIN_VIDEO is VIDEO_SCENES["realistic"] and STRESS_VIDEO is VIDEO_SCENES["stress"]
    common = ["--video", "--frames", "2", "--size", "64", "--seed", "3"]
    assert _synth([str(tmp_path / "cli"), *common]).exit_code == 0
    default = pq.read_table(tmp_path / "cli" / "truth.parquet")
    assert default.column("dose_e_per_px").to_pylist() == [60.0, 60.0]
    assert default.column("facet_incline_deg").to_pylist() == [12.0, 12.0]
    generate_insitu(tmp_path / "py", 2, video=True, seed=3, size=64,
                    video_options=scene_options("realistic", 64))
    assert default.equals(pq.read_table(tmp_path / "py" / "truth.parquet"))
    # --scene drawn writes what generate_insitu(video=True) draws from Python, byte for byte
    assert _synth([str(tmp_path / "drawn"), *common, "--scene", "drawn"]).exit_code == 0
    generate_insitu(tmp_path / "plain", 2, video=True, seed=3, size=64)
    for name in ("frame_00000.tif", "frame_00001.tif", "labels/frame_00001.png",
                 "truth.parquet"):
        assert (tmp_path / "drawn" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    assert pq.read_table(tmp_path / "drawn" / "truth.parquet").column(
        "dose_e_per_px").to_pylist() != [60.0, 60.0]


def test_cli_video_overrides_replace_the_scenes_values(tmp_path) -> None:
    from nwwatch.synth.video import video_scene

    result = _synth([str(tmp_path / "v"), "--video", "--frames", "1", "--size", "64",
                     "--scene", "stress", "--droplet-radius-px", "20", "--dose-e-per-px",
                     "42.5", "--facet-incline-deg", "-7"])
    assert result.exit_code == 0, result.output
    row = pq.read_table(tmp_path / "v" / "truth.parquet").to_pylist()[0]
    assert (row["dose_e_per_px"], row["facet_incline_deg"], row["tilt_deg"]) == (42.5, -7.0, 0.0)
    # the radius is in pixels of the frame written (not scaled like the scene's), at the
    # scene's mean angle
    theta_mean = video_scene(0, 64).theta_mean_deg
    assert row["a_px"] == pytest.approx(20.0 * math.sin(math.radians(theta_mean)))


@pytest.mark.parametrize(("args", "named"), [
    (["--video", "--droplet-radius-px", "30"], "'--droplet-radius-px': 30 px does not fit a 64"),
    (["--video", "--droplet-radius-px", "1"], "'--droplet-radius-px'"),
    (["--video", "--dose-e-per-px", "nan"], "'--dose-e-per-px': nan is not a finite number"),
    (["--video", "--dose-e-per-px", "0"], "'--dose-e-per-px'"),
    (["--video", "--facet-incline-deg", "80"], "'--facet-incline-deg'"),
    (["--video", "--scene", "pretty"], "'--scene'"),
    (["--scene", "drawn"], "--scene: only for a --video"),
    (["--dose-e-per-px", "60", "--facet-incline-deg", "5"],
     "--dose-e-per-px, --facet-incline-deg: only for a --video"),
])
def test_cli_refuses_bad_scene_options_naming_them(tmp_path, args, named) -> None:
    result = _synth([str(tmp_path / "v"), "--frames", "1", "--size", "64", *args])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert named in " ".join(result.output.split())
    assert not (tmp_path / "v").exists()


def test_a_frame_too_large_for_memory_is_said_and_leaves_no_folder(tmp_path, monkeypatch):
    """--size 100000 ended in numpy's traceback and left an empty OUT/labels/."""
    from click.testing import CliRunner

    import nwwatch.synth.insitu as insitu
    from nwwatch.cli import main

    def too_large(out, *args, **kwargs):
        (out / "labels").mkdir(parents=True, exist_ok=True)  # as the generator makes it first
        raise MemoryError("Unable to allocate 37.3 GiB")

    monkeypatch.setattr(insitu, "generate_insitu", too_large)
    result = CliRunner().invoke(main, ["synth", "insitu", str(tmp_path / "big"), "--size",
                                       "100000", "--frames", "1"])
    assert result.exit_code == 1
    assert "--size 100000: a 100000^2 frame needs more memory" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "big").exists()
