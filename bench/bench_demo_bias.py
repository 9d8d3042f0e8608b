"""Where the demo's angle bias comes from: the model's droplet outline or its facet line.

Every frame of each set is segmented once through the runtime
(:class:`nwwatch.segment.session.Segmenter`, one thread, as replay does) and measured as the
service does (model labels, droplet probability, raw frame), and on its true labels. The angle
error is then split by recombining the two measurements' geometry, ``cos theta = -s / R``
with ``s`` the signed distance of one measurement's circle centre from the other's facet line:

* ``model circle + true line``: the model's droplet outline alone;
* ``true circle + model line``: the model's facet line alone (offset and orientation);
* ``true circle + model offset``: the model's line turned to the true orientation about the
  centroid of its facet points (its offset alone).

The same split is made on label maps (measured as labels alone, binary): ``model outline +
true interface`` takes the model's labels and, where both label maps are wire or droplet but
disagree, the true class (so the wire/droplet interface is the true one and the droplet's
outline against the background stays the model's); ``true outline + model interface`` the
other way round. Per frame it also reports the model's interface offset (mean signed distance
of the facet points the service used from the true facet line, positive into the droplet, so
an interface drawn into the wire is negative; and the model line's offset at the foot of the
true circle centre), the facet line's orientation error, the droplet outline's offset (mean
signed radial distance of the model's circle points from the true circle, positive outward),
what the raw frame's step refinement did (``facet_edge``, its step contrast over noise), and,
for a facet read as flat whose flat-versus-elliptical term refuses the angle, the error of the
flat reading and of the rim (ellipse) reading; and where the frame's step lies from the true
facet line (the true labels measured with the frame). Offsets are also given over the
"matched" frames (untilted wire, model circle within 2 px of the true one). Errors are
against ``theta_apparent_deg``.

Sets: ``demo_seed0`` (the demo's main video, 60 frames) and ``demo_seed1``-``3`` (30 frames
each, made the same way: ``nwwatch demo OUT --seed n --frames 30``), generated once under
``--work``; more with ``--set NAME=FOLDER`` (a synthetic folder with ``truth.parquet``).
``--equal-look`` makes the four videos with :data:`EQUAL_LOOK` instead: the same scene with
the droplet's optics as each seed draws them (at seed 0 wire and droplet about equally bright
next to their interface, which shows a dark Fresnel band; docs/measurement.md).

``--unresolved-edge-px PX`` also scores the service path with another allowance for a facet
line the frame cannot place (a candidate; the product's is 1 px), as ``service_candidate``.

Usage (about 5 minutes on one busy core the first time, most of it the segmentation)::

    python -m bench.bench_demo_bias --set seed302=EVAL_NEW --set seed304=S304 \\
        --json bench/results/demo_bias.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.uncertainty import SIGMA_TERMS

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "out" / "demo_bias"
#: name -> (frames, seed): videos of the demo's main scene (nwwatch.demo.MAIN_VIDEO).
DEMO_SETS = {"demo_seed0": (60, 0), "demo_seed1": (30, 1), "demo_seed2": (30, 2),
             "demo_seed3": (30, 3)}
WAYS = ("service", "truth", "model_circle_true_line", "true_circle_model_line",
        "true_circle_model_offset", "model_labels", "model_outline_true_interface",
        "true_outline_model_interface")
#: Frames whose model circle lies within this of the true one (radius, and centre along the
#: facet normal), on an untilted wire, give the "matched" offsets: elsewhere the model drew
#: another droplet outline or an elliptical facet, and the line's offset means little.
MATCHED_PX = 2.0
#: ``facet_edge`` values of a line the frame could not place (sigma's unresolved allowance).
UNRESOLVED = ("weak_step", "not_a_step", "not_straight", "out_of_reach", "too_short")
#: The demo's scene with the droplet's optics as the seed draws them (``nwwatch.demo``'s main
#: video before its droplet was set darker than the wire; bench/results/demo_look_rule.txt).
EQUAL_LOOK = {"droplet_radius_px": 100.0, "dose_e_per_px": 60.0, "facet_incline_deg": 12.0}


def demo_set(work: Path, name: str, options: dict[str, float]) -> Path:
    """The video ``name`` of :data:`DEMO_SETS` made with ``video_options`` ``options``,
    generated once under ``work`` (the folder's name carries a hash of the options, so a
    changed scene is never read from an old folder)."""
    from nwwatch.synth import generate_insitu

    tag = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    folder = work / "sets" / f"{name}-{tag}"
    if not (folder / "truth.parquet").is_file():
        frames, seed = DEMO_SETS[name]
        generate_insitu(folder, frames, video=True, seed=seed, size=512,
                        video_options=dict(options))
    return folder


def segmented(folder: Path, name: str, segmenter, work: Path) -> dict[str, np.ndarray]:
    """Raw frames, model labels and droplet probabilities, true labels and apparent angles of
    ``folder``, segmented once (cached per model, runtime source and folder)."""
    import pyarrow.parquet as pq

    import nwwatch.segment
    from nwwatch.io import read_frames
    from nwwatch.io.dataset import read_label_image
    from nwwatch.normalize import normalize_image

    key = hashlib.sha256(str(folder.resolve()).encode())
    for source in sorted(Path(nwwatch.segment.__file__).parent.glob("*.py")):
        key.update(source.read_bytes())
    key.update(repr(segmenter.working_scale).encode())
    cache = work / f"{segmenter.model_sha256[:12]}_{name}_{key.hexdigest()[:8]}.npz"
    if cache.is_file():
        with np.load(cache) as data:
            return dict(data)
    truth = pq.read_table(folder / "truth.parquet").to_pylist()
    out: dict[str, list] = {k: [] for k in ("image", "labels", "prob", "truth_labels",
                                           "angle", "tilt_deg", "stem")}
    for row in sorted(truth, key=lambda r: r["file"]):
        path = folder / row["file"]
        frame = read_frames(path)[0]
        seg = segmenter.segment(normalize_image(frame.image))
        true = read_label_image(folder / "labels" / f"{path.stem}.png")
        out["image"].append(np.asarray(frame.image, dtype=np.float32))
        out["labels"].append(seg.labels[0])
        out["prob"].append(seg.probabilities[0, DROPLET].astype(np.float32))
        out["truth_labels"].append(np.where(true == 255, 0, true).astype(np.uint8))
        out["angle"].append(float(row["theta_apparent_deg"]))
        out["tilt_deg"].append(float(row.get("tilt_deg") or 0.0))
        out["stem"].append(path.stem)
    arrays = {k: np.asarray(v) for k, v in out.items()}
    work.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **arrays)
    return arrays


def hybrid(base: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``base`` with ``other``'s class wherever both are wire or droplet and they disagree:
    ``other``'s wire/droplet interface, ``base``'s outlines against the background."""
    fg = (base == NANOWIRE) | (base == DROPLET)
    swap = fg & ((other == NANOWIRE) | (other == DROPLET)) & (base != other)
    return np.where(swap, other, base).astype(np.uint8)


@dataclasses.dataclass
class Geometry:
    """A measurement's circle and final facet line, in image coordinates (row, col)."""

    center: np.ndarray
    radius: float
    foot: np.ndarray
    normal: np.ndarray  # into the droplet

    @classmethod
    def of(cls, r) -> Geometry | None:
        if r.contact_angle_deg is None or r.facet_row is None:
            return None
        phi = math.radians(r.facet_angle_deg)
        # facet_angle_deg is atan2(-direction_row, direction_col) and the direction is the
        # normal turned 90 deg counter-clockwise on screen: normal = (cos phi, sin phi).
        return cls(np.array([r.circle_center_row, r.circle_center_col]), r.droplet_radius_px,
                   np.array([r.facet_row, r.facet_col]), np.array([math.cos(phi),
                                                                   math.sin(phi)]))

    def angle_with(self, line: Geometry) -> float:
        """Angle (deg) of this circle on ``line``'s facet line."""
        s = float((self.center - line.foot) @ line.normal)
        return math.degrees(math.acos(min(max(-s / self.radius, -1.0), 1.0)))

    def half_chord(self) -> float:
        s = float((self.center - self.foot) @ self.normal)
        return math.sqrt(max(self.radius**2 - s**2, 0.0))


@contextlib.contextmanager
def facet_readings(record: list[dict[str, float]]):
    """While active, each measurement appends what the flat-or-elliptical step saw: the
    flat-versus-rim term and the rim (ellipse) reading's angle, for a facet read as flat."""
    import nwwatch.measure.facet as facet_module
    from nwwatch.measure.arc import angle_deg
    from nwwatch.measure.interface import rim_shift
    from nwwatch.measure.tilt import MIN_BULGE_HALF_CHORD_PX

    original = facet_module.facet_shape

    def recording(fit, line, iface, s_px, half_chord_px, **options):
        # options: facet_shape's keywords (network_labels), passed through unchanged
        shape = original(fit, line, iface, s_px, half_chord_px, **options)
        entry = {"tilt_deg": shape.tilt_deg, "systematic_deg": shape.systematic_deg,
                 "rim_angle_deg": None}
        if shape.tilt_deg == 0 and shape.systematic_deg > 0:
            # The same rim fit as tilt.facet_shape's (chord at the rim after a first fit).
            foot = fit.center - s_px * line.normal
            foot_along = float(line.along(foot[None, :])[0])
            if half_chord_px >= MIN_BULGE_HALF_CHORD_PX:
                rim = rim_shift(line, iface, foot_along, half_chord_px)
                if rim is not None and rim.k_px > 0:
                    chord = math.sqrt(max(fit.radius**2 - (s_px - rim.offset_px) ** 2, 0.0))
                    rim = rim_shift(line, iface, foot_along, chord) or rim
                    entry["rim_angle_deg"] = angle_deg(fit, line, rim.offset_px)
        record.append(entry)
        return shape

    facet_module.facet_shape = recording
    try:
        yield
    finally:
        facet_module.facet_shape = original


#: The raw frame's mean profile across the true facet line: 1 px bins of signed distance
#: (positive into the droplet) over the middle 60 % of the true chord.
PROFILE_PX = 12


def true_line_profile(image: np.ndarray, line: Geometry) -> np.ndarray:
    """Mean raw intensity (float, ``2 * PROFILE_PX + 1`` values) at signed distances -12..12
    px from ``line`` (its normal into the droplet), pixels within 0.6 of its half chord of
    the foot along it."""
    rows, cols = np.indices(image.shape, dtype=float)
    dr, dc = rows - line.foot[0], cols - line.foot[1]
    dist = dr * line.normal[0] + dc * line.normal[1]
    along = -dr * line.normal[1] + dc * line.normal[0]
    near = (np.abs(along) < 0.6 * line.half_chord()) & (np.abs(dist) < PROFILE_PX + 0.5)
    bins = np.floor(dist[near] + 0.5).astype(int) + PROFILE_PX
    sums = np.bincount(bins, weights=image[near].astype(float), minlength=2 * PROFILE_PX + 1)
    counts = np.bincount(bins, minlength=2 * PROFILE_PX + 1)
    return sums / np.maximum(counts, 1)


def top_term(reason: str) -> str | None:
    """The term of sigma an ``angle_uncertain`` reason names first."""
    head = reason.split("mostly from", 1)[-1]
    found = [(head.find(text), name) for name, text in SIGMA_TERMS.items() if text in head]
    return min(found)[1] if found else None


def _entry(r, truth_deg: float) -> dict[str, Any]:
    angle = r.contact_angle_deg
    return {"status": r.status, "reason_code": r.reason_code, "valid": bool(r.angle_valid),
            "angle_deg": angle, "error_deg": None if angle is None else angle - truth_deg,
            "sigma_deg": r.contact_angle_uncertainty_deg}


@contextlib.contextmanager
def unresolved_edge_px(px: float):
    """While active, the allowance for a facet line the frame cannot place is ``px``
    (:data:`nwwatch.measure.uncertainty.UNRESOLVED_EDGE_SIGMA_PX`): a candidate scored by
    ``--unresolved-edge-px``, not the product."""
    import nwwatch.measure.uncertainty as uncertainty

    shipped = uncertainty.UNRESOLVED_EDGE_SIGMA_PX
    uncertainty.UNRESOLVED_EDGE_SIGMA_PX = px
    try:
        yield
    finally:
        uncertainty.UNRESOLVED_EDGE_SIGMA_PX = shipped


def measure_frame(data: dict[str, np.ndarray], i: int,
                  candidate_px: float | None = None) -> dict[str, Any]:
    truth_deg = float(data["angle"][i])
    labels, true = data["labels"][i], data["truth_labels"][i]
    record: list[dict[str, float]] = []
    with facet_readings(record):
        svc = measure_contact_angle(labels, data["prob"][i], image=data["image"][i])
    shape = record[-1] if record else None
    tru = measure_contact_angle(true)
    tru_image = measure_contact_angle(true, image=data["image"][i])
    frame: dict[str, Any] = {"stem": str(data["stem"][i]), "truth_deg": round(truth_deg, 4),
                             "tilt_deg": float(data["tilt_deg"][i])}
    frame["service"] = {**_entry(svc, truth_deg), "facet_edge": svc.facet_edge,
                        "facet_edge_shift_px": svc.facet_edge_shift_px,
                        "facet_edge_snr": svc.facet_edge_snr,
                        "a_px": svc.base_half_width_px,
                        "top_term": (top_term(svc.reason) if svc.reason_code == "angle_uncertain"
                                     else None)}
    frame["truth"] = _entry(tru, truth_deg)
    if candidate_px is not None:
        with unresolved_edge_px(candidate_px):
            frame["service_candidate"] = _entry(
                measure_contact_angle(labels, data["prob"][i], image=data["image"][i]),
                truth_deg)
    # Where the frame's step lies from the TRUE facet line (what the refinement could do with
    # a perfect interface).
    frame["truth_image_edge"] = {"facet_edge": tru_image.facet_edge,
                                 "shift_px": tru_image.facet_edge_shift_px,
                                 "snr": tru_image.facet_edge_snr}
    frame["model_labels"] = _entry(measure_contact_angle(labels), truth_deg)
    frame["model_outline_true_interface"] = _entry(
        measure_contact_angle(hybrid(labels, true)), truth_deg)
    frame["true_outline_model_interface"] = _entry(
        measure_contact_angle(hybrid(true, labels)), truth_deg)
    gs, gt = Geometry.of(svc), Geometry.of(tru)
    for way, (circle, line) in {"model_circle_true_line": (gs, gt),
                                "true_circle_model_line": (gt, gs)}.items():
        angle = circle.angle_with(line) if circle is not None and line is not None else None
        frame[way] = {"angle_deg": angle,
                      "error_deg": None if angle is None else angle - truth_deg}
    # The model's line turned to the true orientation about the centroid of its facet points:
    # what its offset alone costs (the rest of true_circle_model_line is its orientation).
    angle = None
    if gs is not None and gt is not None and len(svc.points.facet):
        pivot = svc.points.facet.mean(axis=0)
        shifted = Geometry(gs.center, gs.radius, pivot, gt.normal)
        angle = gt.angle_with(shifted)
    frame["true_circle_model_offset"] = {
        "angle_deg": angle, "error_deg": None if angle is None else angle - truth_deg}
    if gt is not None:
        frame["true_line_profile"] = true_line_profile(data["image"][i], gt).tolist()
    if gs is not None and gt is not None:
        n, foot = gt.normal, gt.foot
        facet = svc.points.facet
        at_foot = float((gs.foot - foot) @ gs.normal / (n @ gs.normal))
        orientation = math.degrees(math.atan2(gs.normal[0] * n[1] - gs.normal[1] * n[0],
                                              gs.normal @ n))
        circle_pts = svc.points.circle
        radial = np.hypot(*(circle_pts - gt.center).T) - gt.radius
        a = gt.half_chord()
        frame["offsets"] = {
            "interface_px": float(np.mean((facet - foot) @ n)) if len(facet) else None,
            "line_at_foot_px": at_foot,
            "orientation_deg": -orientation,  # model line against the true line, CCW on screen
            "outline_radial_px": float(np.mean(radial)) if len(radial) else None,
            "radius_px": gs.radius - gt.radius,
            "center_along_normal_px": float((gs.center - gt.center) @ n),
            "a_px": a,
            # A line moved t px into the droplet lowers theta by t / a rad.
            "line_cost_deg": math.degrees(-at_foot / max(a, 1.0)),
        }
    if shape is not None and shape["rim_angle_deg"] is not None:
        frame["flat_vs_rim"] = {
            "term_deg": shape["systematic_deg"],
            "flat_error_deg": frame["service"]["error_deg"],
            "rim_error_deg": shape["rim_angle_deg"] - truth_deg}
    return frame


def _stats(errors: list[float], sigmas: list[float] | None = None) -> dict[str, Any]:
    e = np.asarray(errors, dtype=float)
    if not e.size:
        return {"n": 0}
    out = {"n": int(e.size), "bias_deg": round(float(e.mean()), 3),
           "rmse_deg": round(float(np.sqrt(np.mean(e**2))), 3),
           "max_abs_deg": round(float(np.abs(e).max()), 3)}
    if sigmas is not None:
        out["within_2sigma"] = round(float(np.mean(np.abs(e) <= 2 * np.asarray(sigmas))), 3)
    return out


def _mean_median(values: list[float | None]) -> dict[str, Any]:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not v.size:
        return {"n": 0}
    return {"n": int(v.size), "mean": round(float(v.mean()), 3),
            "median": round(float(np.median(v)), 3), "sd": round(float(v.std()), 3),
            "min": round(float(v.min()), 3), "max": round(float(v.max()), 3)}


def summarise(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """Per way: errors over every frame it gave an angle for (valid or refused as uncertain)
    and over the valid frames, with the 2-sigma coverage; the offsets; the refinement; the
    flat readings of frames refused by the flat-versus-elliptical term."""
    out: dict[str, Any] = {"frames": len(frames), "ways": {}}
    for way in [*WAYS, "service_candidate"]:
        if way not in frames[0]:
            continue
        rows = [f[way] for f in frames]
        with_angle = [r["error_deg"] for r in rows if r.get("error_deg") is not None]
        entry = {"with_angle": _stats(with_angle)}
        if "valid" in rows[0]:
            valid = [r for r in rows if r["valid"]]
            entry["valid"] = _stats([r["error_deg"] for r in valid],
                                    [r["sigma_deg"] for r in valid])
            entry["reason_codes"] = dict(sorted(Counter(r["reason_code"] for r in rows).items()))
        out["ways"][way] = entry
    # The decomposition on the frames the service measured (valid or not), pairwise.
    both = [f for f in frames if f["service"]["error_deg"] is not None
            and f["model_circle_true_line"]["error_deg"] is not None]
    out["same_frames"] = {way: _stats([f[way]["error_deg"] for f in both])
                          for way in ("service", "model_circle_true_line",
                                      "true_circle_model_line", "true_circle_model_offset")}
    keys = ("interface_px", "line_at_foot_px", "orientation_deg", "outline_radial_px",
            "radius_px", "center_along_normal_px", "line_cost_deg", "a_px")
    off = [f["offsets"] for f in frames if "offsets" in f]
    out["offsets"] = {k: _mean_median([o[k] for o in off]) for k in keys}
    matched = [f["offsets"] for f in frames if "offsets" in f and f["tilt_deg"] < 0.5
               and abs(f["offsets"]["radius_px"]) < MATCHED_PX
               and abs(f["offsets"]["center_along_normal_px"]) < MATCHED_PX]
    out["offsets_matched"] = {k: _mean_median([o[k] for o in matched]) for k in keys}
    # The candidate allowance's calibration: RMS line offset at the foot where the frame could
    # not place the line and the model circle matches (any tilt).
    unresolved = [f["offsets"]["line_at_foot_px"] for f in frames if "offsets" in f
                  and f["service"]["facet_edge"] in UNRESOLVED
                  and abs(f["offsets"]["radius_px"]) < MATCHED_PX
                  and abs(f["offsets"]["center_along_normal_px"]) < MATCHED_PX]
    out["unresolved_line_at_foot_rms_px"] = {
        "n": len(unresolved),
        "rms": round(math.sqrt(float(np.mean(np.square(unresolved)))), 3) if unresolved
        else None}
    svc = [f["service"] for f in frames]
    out["facet_edge"] = dict(sorted(Counter(str(s["facet_edge"]) for s in svc).items()))
    out["facet_edge_snr"] = _mean_median([s["facet_edge_snr"] for s in svc])
    out["facet_edge_shift_px"] = _mean_median([s["facet_edge_shift_px"] for s in svc])
    edge_true = [f["truth_image_edge"] for f in frames]
    out["truth_image_edge"] = {
        "facet_edge": dict(sorted(Counter(str(e["facet_edge"]) for e in edge_true).items())),
        "snr": _mean_median([e["snr"] for e in edge_true]),
        "shift_px": _mean_median([e["shift_px"] for e in edge_true])}
    profiles = [f["true_line_profile"] for f in frames if "true_line_profile" in f]
    if profiles:
        mean = np.mean(profiles, axis=0)
        out["true_line_profile"] = {
            "distance_px": list(range(-PROFILE_PX, PROFILE_PX + 1)),
            "mean_intensity": [round(float(x), 1) for x in mean],
            "darkest_px": int(np.argmin(mean)) - PROFILE_PX,
            "steepest_px": int(np.argmax(np.abs(np.diff(mean)))) - PROFILE_PX + 0.5}
    refused = [s for s in svc if s["reason_code"] == "angle_uncertain"]
    out["uncertain_top_term"] = dict(sorted(Counter(str(s["top_term"]) for s in refused).items()))
    out["refused_by_term"] = {
        str(term): {"error_deg": _mean_median([s["error_deg"] for s in refused
                                               if s["top_term"] == term]),
                    "sigma_deg": _mean_median([s["sigma_deg"] for s in refused
                                               if s["top_term"] == term])}
        for term in sorted({str(s["top_term"]) for s in refused})}
    flat = [f["flat_vs_rim"] for f in frames if "flat_vs_rim" in f
            and f["service"]["top_term"] == "facet_shape"]
    out["refused_by_facet_shape"] = {
        "flat_reading": _stats([x["flat_error_deg"] for x in flat]),
        "rim_reading": _stats([x["rim_error_deg"] for x in flat]),
        "term_deg": _mean_median([x["term_deg"] for x in flat]),
        "flat_within_1p5_deg": sum(abs(x["flat_error_deg"]) <= 1.5 for x in flat),
        "flat_closer_than_rim": sum(abs(x["flat_error_deg"]) < abs(x["rim_error_deg"])
                                    for x in flat)}
    valid = [f for f in frames if f["service"]["valid"]]
    # What sigma allows for the facet line's position when the frame cannot place it (1 px,
    # nwwatch.measure.uncertainty.UNRESOLVED_EDGE_SIGMA_PX), against the offset measured.
    out["valid_sigma"] = {
        "sigma_deg": _mean_median([f["service"]["sigma_deg"] for f in valid]),
        "one_px_term_deg": _mean_median([math.degrees(1.0 / f["service"]["a_px"])
                                         for f in valid if f["service"]["a_px"]]),
        "line_cost_deg": _mean_median([f["offsets"]["line_cost_deg"] for f in valid
                                       if "offsets" in f]),
        "line_at_foot_px": _mean_median([f["offsets"]["line_at_foot_px"] for f in valid
                                         if "offsets" in f])}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX model (default: the shipped in-situ model)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER",
                        help="also measure the synthetic folder FOLDER as set NAME")
    parser.add_argument("--only", nargs="*", default=None, help="names of the sets to run")
    parser.add_argument("--work", type=Path, default=WORK,
                        help="where the demo videos and the segmentations are kept")
    parser.add_argument("--equal-look", action="store_true",
                        help="make the demo videos with EQUAL_LOOK instead of MAIN_VIDEO")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--unresolved-edge-px", type=float, default=None,
                        help="also score the service path with this allowance (px) for a "
                             "facet line the frame cannot place (shipped: 1 px)")
    parser.add_argument("--frames-json", type=Path, default=None,
                        help="also write the per-frame results")
    args = parser.parse_args(argv)
    from nwwatch import DEFAULT_INSITU_MODEL
    from nwwatch.demo import MAIN_VIDEO
    from nwwatch.segment.session import Segmenter

    options = EQUAL_LOOK if args.equal_look else MAIN_VIDEO

    model = args.model or DEFAULT_INSITU_MODEL
    segmenter = Segmenter(model, providers=("cpu",), threads=1)
    given = dict(s.split("=", 1) for s in args.set)
    names = args.only or [*DEMO_SETS, *given]
    report: dict[str, Any] = {"model": model.name, "sha256": segmenter.model_sha256,
                              "unresolved_edge_px_candidate": args.unresolved_edge_px,
                              "demo_video_options": options,
                              "sets": {}}
    per_frame = {}
    for name in names:
        folder = Path(given[name]) if name in given else demo_set(args.work, name, options)
        data = segmented(folder, name, segmenter, args.work)
        frames = [measure_frame(data, i, args.unresolved_edge_px)
                  for i in range(len(data["stem"]))]
        summary = summarise(frames)
        report["sets"][name] = {"data": str(folder), **summary}
        per_frame[name] = frames
        print(f"== {name} ({len(frames)} frames)")
        for way, entry in summary["ways"].items():
            v, w = entry.get("valid", {}), entry["with_angle"]
            nan = math.nan
            print(f"  {way:30s} angle {w.get('n', 0):3d}: bias {w.get('bias_deg', nan):+6.2f}"
                  f" RMSE {w.get('rmse_deg', nan):5.2f}   valid {v.get('n', '-')!s:>3}: "
                  f"bias {v.get('bias_deg', nan):+6.2f} RMSE {v.get('rmse_deg', nan):5.2f}"
                  f" 2sigma {v.get('within_2sigma', nan)}")
        for key in ("offsets", "offsets_matched", "facet_edge", "facet_edge_snr",
                    "facet_edge_shift_px", "truth_image_edge", "true_line_profile",
                    "uncertain_top_term",
                    "refused_by_facet_shape", "valid_sigma"):
            print(f"  {key}: {summary[key]}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float) + "\n")
    if args.frames_json:
        args.frames_json.parent.mkdir(parents=True, exist_ok=True)
        args.frames_json.write_text(json.dumps(per_frame, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
