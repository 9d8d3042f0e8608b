"""Where the error of angles from a model's labels comes from: droplet outline, facet line, or
the measurement itself.

For every frame of the cached segmentations of :mod:`bench.bench_model_angles` (run that
first: it writes ``bench/out/model_angles/<hash>_<set>_*.npz``) the angle is taken four ways
from two circles and two lines, ``cos(theta) = -s / R`` with ``s`` the signed distance of the
circle centre from the line (positive on the droplet side):

* the model's circle with the model's facet line (what the service reports, with the frame);
* the model's circle with the TRUE facet line (through the truth's triple points): the error
  of the droplet outline alone;
* the TRUE circle with the model's line: the error of the facet line alone;
* the circle and line fitted to the TRUE labels: the measurement's own error.

It also measures hybrid label images (binary, no probability map), with and without the
frame: the model's droplet on the true wire (``droplet_model``) and the true droplet on the
model's wire (``wire_model``), and reports the fitted circle against the truth's (radius,
centre, and the median radial offset of the model's outline points from the true circle:
positive = drawn outside the droplet). The model's labels are measured with the frame (the
service's way, ``model``) and alone (``model_labels``). For the frames whose line the frame
moved, the terms of the 1-sigma (statistical, orientation choice, flat/elliptical, facet
edge) as the measurement combined them. Two experiments on the droplet's edge
in the frame: where three intensity locators (steepest rise, rising-derivative centroid,
halfway between the plateaus) put it on the median radial profile sampled at the TRUE circle
(``edge_at_true_circle_px``, px from the true outline), and the labels' circle moved by the
whole located offset per sector (``circle_on_frame_valid``, against the labels' circle, which
the measurement keeps).

Usage::

    python -m bench.bench_error_budget nwwatch/models/insitu-default.onnx \\
        --set eval_new=/work/em/eval_new --set video_new=/work/em/video_new \\
        --set eval_a=/work/em/eval_a \\
        --json bench/results/model_angles_budget.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d, map_coordinates
from scipy.stats import trim_mean

from bench.bench_model_angles import segmented
from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure import contact_angle as ca
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.circle import robust_fit


def theta_deg(center: np.ndarray, radius: float, point: np.ndarray, normal: np.ndarray) -> float:
    """Angle (degrees) of the circle on the line through ``point`` with unit ``normal``
    pointing into the droplet."""
    s = float((center - point) @ normal)
    return math.degrees(math.acos(max(-1.0, min(1.0, -s / radius))))


def truth_geometry(row: dict) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """True circle centre, radius, a point on the true facet line (the rim through the triple
    points) and its normal towards the droplet."""
    c = np.array([row["center_row"], row["center_col"]])
    left = np.array([row["left_row"], row["left_col"]])
    right = np.array([row["right_row"], row["right_col"]])
    d = (right - left) / np.hypot(*(right - left))
    n = np.array([-d[1], d[0]])
    mid = 0.5 * (left + right)
    phi = math.radians(row["wire_axis_deg"])  # growth direction, atan2(-d_row, d_col)
    if n @ np.array([-math.sin(phi), math.cos(phi)]) < 0:
        n = -n
    return c, float(row["R_px"]), mid, n


def result_line(r) -> tuple[np.ndarray, np.ndarray] | None:
    """The result's facet line: the foot of the circle centre and the normal towards the
    droplet (from the facet direction and the centre's side, checked by the angle)."""
    if r.facet_row is None or r.facet_angle_deg is None or r.circle_center_row is None:
        return None
    phi = math.radians(r.facet_angle_deg)
    d = np.array([-math.sin(phi), math.cos(phi)])
    n = np.array([-d[1], d[0]])
    foot = np.array([r.facet_row, r.facet_col])
    c = np.array([r.circle_center_row, r.circle_center_col])
    if r.contact_angle_deg is not None:
        # choose the normal whose angle reproduces the result's
        t1 = theta_deg(c, r.droplet_radius_px, foot, n)
        t2 = theta_deg(c, r.droplet_radius_px, foot, -n)
        if abs(t2 - r.contact_angle_deg) < abs(t1 - r.contact_angle_deg):
            n = -n
    return foot, n


def outline_offset_px(r, center: np.ndarray, radius: float) -> float | None:
    """Median radial distance of the result's circle points from the true circle."""
    if r.points is None or len(r.points.circle) == 0:
        return None
    return float(np.median(np.hypot(*(r.points.circle - center).T) - radius))


class SigmaTerms:
    """Records the terms ``combine_deg`` gets (statistical, choice, facet shape, image)."""

    def __init__(self) -> None:
        self.last: tuple[float, ...] | None = None
        self._orig = ca.combine_deg

    def __enter__(self) -> SigmaTerms:
        def spy(*terms: float) -> float:
            self.last = tuple(float(t) for t in terms)
            return self._orig(*terms)
        ca.combine_deg = spy
        return self

    def __exit__(self, *exc) -> None:
        ca.combine_deg = self._orig


#: Locators of the droplet's edge on a mean radial profile (offsets ``off`` in px from the
#: circle, the profile ``m`` oriented so that it rises from droplet to background).
def _steepest(off: np.ndarray, m: np.ndarray, half_px: float = 3.0) -> float:
    g = np.gradient(gaussian_filter1d(m, 2.0))
    g = np.where(np.abs(off) <= half_px, g, -np.inf)
    k = int(np.argmax(g))
    if 0 < k < len(off) - 1 and np.isfinite(g[k - 1]) and np.isfinite(g[k + 1]):
        y0, y1, y2 = g[k - 1], g[k], g[k + 1]
        den = y0 - 2 * y1 + y2
        return float(off[k] + (0.5 * (y0 - y2) / den if den != 0 else 0.0) * (off[1] - off[0]))
    return float(off[k])


def _centroid(off: np.ndarray, m: np.ndarray, half_px: float = 3.0) -> float:
    g = np.clip(np.gradient(m), 0.0, None) * (np.abs(off) <= half_px)
    return float((off * g).sum() / max(g.sum(), 1e-12))


def _halfway(off: np.ndarray, m: np.ndarray, half_px: float = 4.0) -> float:
    lo = np.median(m[(off >= -7) & (off <= -4)])
    hi = np.median(m[(off >= 4) & (off <= 7)])
    mid = 0.5 * (lo + hi)
    idx = np.nonzero(((m[:-1] - mid) * (m[1:] - mid) <= 0) & (np.abs(off[:-1]) <= half_px))[0]
    if not idx.size:
        return float("nan")
    j = idx[np.argmin(np.abs(off[idx]))]
    return float(off[j] + (off[1] - off[0]) * (mid - m[j]) / (m[j + 1] - m[j] + 1e-12))


LOCATORS = {"steepest": _steepest, "centroid": _centroid, "halfway": _halfway}
OFFSETS = np.arange(-8.0, 8.001, 0.25)


def radial_profiles(image: np.ndarray, center: np.ndarray, radius: float,
                    angles: np.ndarray) -> np.ndarray:
    """Profiles (len(angles), len(OFFSETS)) of ``image`` along the circle's normals."""
    u = np.stack([np.sin(angles), np.cos(angles)], 1)
    p = center[None, None, :] + (radius + OFFSETS)[None, :, None] * u[:, None, :]
    return map_coordinates(image, [p[..., 0], p[..., 1]], order=1)


def _usable(labels: np.ndarray, center: np.ndarray, radius: float, angles: np.ndarray,
            allowed_outside: tuple[int, ...]) -> np.ndarray:
    u = np.stack([np.sin(angles), np.cos(angles)], 1)
    h, w = labels.shape
    ok = np.ones(len(angles), bool)
    for d in (-8.0, 8.0):
        q = center + (radius + d) * u
        inside = (q[:, 0] > 1) & (q[:, 0] < h - 2) & (q[:, 1] > 1) & (q[:, 1] < w - 2)
        ok &= inside
        qi = np.clip(np.round(q).astype(int), 0, [h - 1, w - 1])
        if d > 0:
            ok &= np.isin(labels[qi[:, 0], qi[:, 1]], allowed_outside)
    return ok


def edge_at_true_circle(image: np.ndarray, truth_labels: np.ndarray, center: np.ndarray,
                        radius: float, point: np.ndarray, normal: np.ndarray) -> dict:
    """Where each locator puts the droplet's edge on the median radial profile sampled at
    the TRUE circle (the best case for any refinement on the frame): px from the true
    outline, negative inside. Free surface only (> 4 px beyond the facet, background
    outside)."""
    angles = np.linspace(0.0, 2 * np.pi, 720, endpoint=False)
    u = np.stack([np.sin(angles), np.cos(angles)], 1)
    ok = (((center + radius * u) - point) @ normal > 4.0)
    ok &= _usable(truth_labels, center, radius, angles, (0,))
    if ok.sum() < 20:
        return {}
    prof = radial_profiles(image, center, radius, angles[ok])
    m = np.median(prof, axis=0)
    sign = 1.0 if np.median(m[OFFSETS > 3]) >= np.median(m[OFFSETS < -3]) else -1.0
    return {k: fn(OFFSETS, sign * m) for k, fn in LOCATORS.items()}


def circle_on_frame(image: np.ndarray, labels: np.ndarray, r, locator: str,
                    sectors: int = 12) -> tuple[np.ndarray, float] | None:
    """The model's circle moved onto the frame's droplet edge: the outline points used by
    the fit are grouped in ``sectors`` by angle, each sector's mean radial profile (about
    the model's circle, the 15 % trimmed mean) placed by ``locator``, the points moved
    radially by their sector's offset and the circle refitted."""
    if r.points is None or len(r.points.circle) < 12 or r.droplet_radius_px is None:
        return None
    c = np.array([r.circle_center_row, r.circle_center_col])
    rad = float(r.droplet_radius_px)
    pts = r.points.circle
    ang = np.arctan2(pts[:, 0] - c[0], pts[:, 1] - c[1])
    ok = _usable(labels, c, rad, ang, (0,))
    if ok.sum() < 12:
        return None
    order = np.argsort(ang[ok])
    idx = np.nonzero(ok)[0][order]
    shifts = np.full(len(pts), np.nan)
    for group in np.array_split(idx, min(sectors, max(len(idx) // 6, 1))):
        prof = radial_profiles(image, c, rad, ang[group])
        m = trim_mean(prof, 0.15, axis=0)
        sign = 1.0 if np.median(m[OFFSETS > 3]) >= np.median(m[OFFSETS < -3]) else -1.0
        shifts[group] = LOCATORS[locator](OFFSETS, sign * m)
    use = np.isfinite(shifts)
    if use.sum() < 12:
        return None
    u = (pts[use] - c) / np.hypot(*(pts[use] - c).T)[:, None]
    moved = pts[use] + shifts[use, None] * u
    fit, _ = robust_fit(moved)
    if not fit.converged:
        return None
    return fit.center, float(fit.radius)


def hybrids(model_labels: np.ndarray, truth_labels: np.ndarray) -> dict[str, np.ndarray]:
    """Label images that mix the model and the truth."""
    out = {}
    wire_t, drop_t = truth_labels == NANOWIRE, truth_labels == DROPLET
    wire_m, drop_m = model_labels == NANOWIRE, model_labels == DROPLET
    a = np.zeros_like(truth_labels)
    a[wire_t] = NANOWIRE
    a[drop_m & ~wire_t] = DROPLET
    out["droplet_model"] = a
    b = np.zeros_like(truth_labels)
    b[wire_m & ~drop_t] = NANOWIRE
    b[drop_t] = DROPLET
    out["wire_model"] = b
    return out


def frame_budget(data: dict[str, np.ndarray], i: int, row: dict) -> dict[str, Any]:
    ct, rt, pt, nt = truth_geometry(row)
    truth = float(data["angle"][i])
    f: dict[str, Any] = {"stem": str(data["stem"][i]), "truth_deg": truth,
                         "exact_check_deg": theta_deg(ct, rt, pt, nt) - truth,
                         "a_px": row["a_px"], "R_px": rt, "tilt_deg": row.get("tilt_deg")}
    spy = SigmaTerms()
    with spy:
        model = measure_contact_angle(data["labels"][i], data["prob"][i], image=data["image"][i])
    terms = spy.last
    true_fit = measure_contact_angle(data["truth_labels"][i])
    plain = measure_contact_angle(data["labels"][i], data["prob"][i])
    f["model"] = {"status": model.reason_code, "facet_edge": model.facet_edge,
                  "sigma_deg": model.contact_angle_uncertainty_deg,
                  "sigma_terms_deg": terms}
    f["model_labels"] = {"status": plain.reason_code}
    for name, r in (("model", model), ("model_labels", plain), ("true_labels", true_fit)):
        line = result_line(r)
        if line is None or r.droplet_radius_px is None:
            f.setdefault(name, {})["err_deg"] = None
            continue
        cm = np.array([r.circle_center_row, r.circle_center_col])
        rm = float(r.droplet_radius_px)
        e = f.setdefault(name, {})
        e.update({
            "err_deg": theta_deg(cm, rm, *line) - truth,
            "valid": bool(r.angle_valid),
            "err_circle_only_deg": theta_deg(cm, rm, pt, nt) - truth,
            "err_line_only_deg": theta_deg(ct, rt, *line) - truth,
            "dR_px": rm - rt,
            "dcentre_normal_px": float((cm - ct) @ nt),
            "dcentre_along_px": float((cm - ct) @ np.array([nt[1], -nt[0]])),
            "line_shift_px": float((pt - line[0]) @ nt) * -1.0,  # + : into the droplet
            "outline_offset_px": outline_offset_px(r, ct, rt),
        })
    f["edge_at_true_circle_px"] = edge_at_true_circle(
        data["image"][i].astype(float), data["truth_labels"][i], ct, rt, pt, nt)
    line = result_line(model)
    f["circle_on_frame"] = {}
    if line is not None and model.angle_valid:
        for loc in LOCATORS:  # from the labels' circle, the whole offset applied
            moved = circle_on_frame(data["image"][i].astype(float), data["labels"][i], plain, loc)
            if moved is not None:
                f["circle_on_frame"][loc] = {
                    "err_deg": theta_deg(moved[0], moved[1], *line) - truth,
                    "err_circle_only_deg": theta_deg(moved[0], moved[1], pt, nt) - truth,
                    "dR_px": moved[1] - rt}
    for name, lab in hybrids(data["labels"][i], data["truth_labels"][i]).items():
        for way, img in (("labels", None), ("frame", data["image"][i])):
            r = measure_contact_angle(lab, image=img)
            f[f"{name}_{way}"] = {
                "code": r.reason_code, "edge": r.facet_edge,
                "err_deg": (r.contact_angle_deg - truth
                            if r.contact_angle_deg is not None else None),
                "valid": bool(r.angle_valid), "sigma_deg": r.contact_angle_uncertainty_deg}
    return f


def stats(values: list[float | None]) -> dict[str, float]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not v.size:
        return {"n": 0}
    return {"n": int(v.size), "mean": round(float(v.mean()), 3),
            "rmse": round(float(np.sqrt(np.mean(v**2))), 3),
            "sd": round(float(v.std()), 3), "median": round(float(np.median(v)), 3)}


def summarise(frames: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("model", "model_labels", "true_labels"):
        rows = [f[name] for f in frames if f[name].get("err_deg") is not None]
        out[name] = {k: stats([r.get(k) for r in rows])
                     for k in ("err_deg", "err_circle_only_deg", "err_line_only_deg", "dR_px",
                               "dcentre_normal_px", "line_shift_px", "outline_offset_px")}
        valid = [r for r in rows if r.get("valid")]
        out[name + "_valid_only"] = {k: stats([r.get(k) for r in valid])
                                     for k in ("err_deg", "err_circle_only_deg",
                                               "err_line_only_deg")}
    for key in ("droplet_model_labels", "droplet_model_frame", "wire_model_labels",
                "wire_model_frame"):
        errs = [f[key]["err_deg"] for f in frames if f[key]["valid"]]
        allerrs = [f[key]["err_deg"] for f in frames]
        out[key] = {"valid": len(errs), "valid_stats": stats(errs), "all_stats": stats(allerrs)}
    out["edge_at_true_circle_px"] = {
        k: stats([f["edge_at_true_circle_px"].get(k) for f in frames]) for k in LOCATORS}
    out["edge_at_true_circle_px"]["model_outline"] = stats(
        [f["model"].get("outline_offset_px") for f in frames
         if f["edge_at_true_circle_px"]])
    # the valid frames, model circle vs the circle moved onto the frame's edge (same line)
    valid = [f for f in frames if f["model"].get("valid")]
    out["circle_on_frame_valid"] = {way: {
        k: stats([f[way].get(k) for f in valid]) for k in ("err_deg", "err_circle_only_deg",
                                                           "dR_px")}
        for way in ("model", "model_labels")}
    for loc in LOCATORS:
        out["circle_on_frame_valid"][loc] = {
            k: stats([f["circle_on_frame"].get(loc, {}).get(k) for f in valid])
            for k in ("err_deg", "err_circle_only_deg", "dR_px")}
    # sigma terms of the refined frames
    ref = [f for f in frames if f["model"]["facet_edge"] == "refined"
           and f["model"]["sigma_terms_deg"] is not None]
    if ref:
        t = np.array([f["model"]["sigma_terms_deg"] for f in ref])
        out["refined_sigma_terms_deg"] = {
            "n": len(ref),
            "median": [round(float(x), 3) for x in np.median(t, axis=0)],
            "sigma_median": round(float(np.median([f["model"]["sigma_deg"] for f in ref])), 3),
            "abs_err_median": round(float(np.median(
                [abs(f["model"]["err_deg"]) for f in ref if f["model"]["err_deg"] is not None])),
                3)}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--frames-json", type=Path, default=None)
    args = parser.parse_args(argv)
    import pyarrow.parquet as pq

    from nwwatch.segment.session import Segmenter

    segmenter = Segmenter(args.model, providers=("cpu",), threads=1)
    report: dict[str, Any] = {"model": str(args.model), "sets": {}}
    per_frame = {}
    for spec in args.set:
        name, folder = spec.split("=", 1)
        data = segmented(args.model, Path(folder), name, segmenter)
        truth = {Path(r["file"]).stem: r
                 for r in pq.read_table(Path(folder) / "truth.parquet").to_pylist()}
        frames = [frame_budget(data, i, truth[str(s)]) for i, s in enumerate(data["stem"])]
        report["sets"][name] = summarise(frames)
        per_frame[name] = frames
        print(name, json.dumps(report["sets"][name], indent=1), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.frames_json:
        args.frames_json.parent.mkdir(parents=True, exist_ok=True)
        args.frames_json.write_text(json.dumps(per_frame, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
