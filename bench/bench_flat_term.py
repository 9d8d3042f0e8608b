"""The flat-versus-elliptical facet term scaled by how far the bulge is beyond what the
interface's own (correlated) noise explains, with the bulge's correlated standard error.

Why: ``tilt.facet_shape`` reads a bulge into the wire of >= 1 px and 4 standard errors as a
tilted wire's half ellipse; a facet read flat carries the whole flat-versus-rim angle
difference in sigma (``FLAT_SYSTEMATIC_FRACTION``), whatever the bulge's evidence. The
bulge's honest standard error for correlated residuals (``bench.bench_bulge_se``, a REML
model of white plus exponentially correlated noise) turns most of hand-drawn labels' bows
flat, but then each carries the whole difference, though that difference is mostly noise the
flat line's sigma already carries. The candidate (one change to ``facet_shape``):

  * the evidence test's standard error is the larger of the shipped one and the REML one
    (computed only where the shipped test passes, as in bench_bulge_se);
  * a facet read flat carries ``diff * f(z)`` instead of ``diff``, with ``z = k / SE`` the
    bulge in its standard errors (the REML-corrected SE where it was computed, else the
    shipped one, which is never larger: so ``z`` and the term are never understated) and
    ``f(z) = sqrt(max(0, 1 - (C / z)^2))``: the part of the difference beyond C standard
    errors of the bulge propagated to degrees (the difference is proportional to the bulge,
    so its noise part is ``diff / z``), subtracted in quadrature; for a bulge of at least
    ``tilt.MIN_BULGE_PX`` only (below it a pixel staircase hides a real bulge, which the fit
    underestimates, so the whole difference stays).

Every frame is measured shipped; where its half-ellipse fit has a bulge into the wire (the
only frames the candidate can change) it is measured again with the candidate. ``--record``
writes per-frame rows (shipped and candidate with C = 0, i.e. the REML SE alone, with each
flat term's difference and z) for designing C offline; ``--c`` sets C for the candidate.

Sets: ``bench.bench_ellipse_labels.run``'s (benchmark degraded frames, real geometry exact
and in six degradations, textbook caps, polygon labels at 0.7 and 1.5 px jitter, tilted
wires, generator frames), as in bench_bulge_se.

    python -m bench.bench_flat_term --seed 0 [--c 2] [--json FILE] [--record FILE]

The evidence test copied here predates ``tilt.MIN_RIM_REACH`` (measurement 2.2.17: the
interface must reach 0.75 of the rim half chord on both sides); it does not apply it, as
the code it was measured against did not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

import bench.bench_bulge_se as bulge_se
import bench.bench_ellipse_labels as ellipse_labels
import nwwatch.measure.facet as facet_mod
import nwwatch.measure.tilt as tilt
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.arc import angle_deg
from nwwatch.measure.uncertainty import correlation_factor

_SHIPPED_SHAPE = tilt.facet_shape
_RIM = bulge_se._ORIGINAL_RIM
#: mode: "shipped" or "candidate"; c: C of the candidate; last: the last facet reading's
#: evidence (bulge, standard errors, flat-versus-rim difference).
STATE: dict = {"mode": "shipped", "c": 2.0, "last": None}


def explained_fraction(z: float, c: float) -> float:
    """Share of the flat-versus-rim difference not explained by C standard errors of a
    bulge that is ``z`` of its standard errors: ``sqrt(max(0, 1 - (C / z)^2))``."""
    if c <= 0.0:
        return 1.0
    if not z > c:
        return 0.0
    return math.sqrt(1.0 - (c / z) ** 2)


def candidate_shape(fit, line, iface, s_px: float, half_chord_px: float,
                    network_labels: bool = False) -> tilt.FacetShape:
    """tilt.facet_shape with the candidate's evidence test and flat term; records STATE."""
    radius = fit.radius
    foot = fit.center - s_px * line.normal
    foot_along = float(line.along(foot[None, :])[0])
    rim, chord = None, half_chord_px
    if half_chord_px >= tilt.MIN_BULGE_HALF_CHORD_PX:
        rim = _RIM(line, iface, foot_along, half_chord_px)
        if rim is not None and rim.k_px > 0:
            chord_rim = math.sqrt(max(radius**2 - (s_px - rim.offset_px) ** 2, 0.0))
            refit = _RIM(line, iface, foot_along, chord_rim)
            if refit is not None:
                rim, chord = refit, chord_rim
    inl_pts = iface.points[line.inliers]
    line_factor = correlation_factor(line.offset(inl_pts), line.along(inl_pts))
    flat = tilt.FacetShape(0.0, 0.0, 0.0, line, line_factor)
    STATE["last"] = None
    if rim is None or rim.k_px <= 0:
        return flat
    rim_factor = correlation_factor(rim.residuals, rim.along)
    se_ship = rim.se_k_px * math.sqrt(rim_factor)
    se_k = se_ship
    if bulge_se.passes(rim.k_px, se_ship, half_chord_px):
        design, along = bulge_se.rim_design(line, iface, foot_along, chord)
        se_k = max(se_ship, bulge_se.correlated_coef_se(design, rim.residuals, along))
    diff = abs(angle_deg(fit, line, rim.offset_px) - angle_deg(fit, line))
    z = rim.k_px / se_k if se_k > 0 else math.inf
    rec = {"k_px": rim.k_px, "se_ship": se_ship, "se": se_k, "z": z, "diff_deg": diff,
           "a": half_chord_px}
    STATE["last"] = rec
    if rim.k_px >= max(tilt.MIN_BULGE_PX, 4.0 * se_k) and rim.k_px < 0.5 * half_chord_px:
        rec["reading"] = "ellipse"
        tilt_deg = math.degrees(math.asin(min(rim.k_px / half_chord_px, 1.0)))
        systematic = tilt.ELLIPTICAL_SYSTEMATIC_FRACTION * diff if network_labels else 0.0
        return tilt.FacetShape(rim.offset_px, tilt_deg, systematic,
                               dataclasses.replace(line, sigma_offset_px=rim.se_offset_px),
                               rim_factor)
    rec["reading"] = "flat"
    # Under MIN_BULGE_PX a pixel staircase hides a real bulge (the fit underestimates it):
    # the whole difference stays.
    rec["fraction"] = (explained_fraction(z, STATE["c"]) if rim.k_px >= tilt.MIN_BULGE_PX
                       else 1.0)
    return dataclasses.replace(
        flat, systematic_deg=tilt.FLAT_SYSTEMATIC_FRACTION * diff * rec["fraction"])


def _shape(*args, **kw):
    if STATE["mode"] == "candidate":
        return candidate_shape(*args, **kw)
    shape = _SHIPPED_SHAPE(*args, **kw)
    # The shipped evidence, for choosing which frames the candidate may change.
    STATE["last"] = bulge_se.STATE["last"]
    return shape


facet_mod.facet_shape = _shape


def _row(r, truth: float) -> dict:
    return {"valid": bool(r.angle_valid), "tilt_deg": round(r.wire_tilt_deg or 0.0, 2),
            "error_deg": round(r.contact_angle_deg - truth, 3)
            if r.contact_angle_deg is not None else None,
            "sigma_deg": round(r.contact_angle_uncertainty_deg, 6)
            if r.contact_angle_uncertainty_deg is not None else None,
            "theta_deg": round(r.contact_angle_deg, 3)
            if r.contact_angle_deg is not None else None,
            "reason_code": r.reason_code}


class Rows(ellipse_labels.Rows):
    """Shipped and candidate rows per frame, with the facet reading's evidence."""

    def add(self, labels: np.ndarray, truth: float) -> None:
        STATE["mode"], STATE["last"] = "shipped", None
        bulge_se.STATE["candidate"], bulge_se.STATE["last"] = False, None
        r = measure_contact_angle(labels)
        row = _row(r, truth)
        ship_rec = STATE["last"]
        if ship_rec is not None and ship_rec["k_px"] > 0:
            STATE["mode"] = "candidate"
            c = measure_contact_angle(labels)
            STATE["mode"] = "shipped"
            crow = _row(c, truth)
            row.update({f"cand_{k}": v for k, v in crow.items()})
            rec = STATE["last"]
            if rec is not None:
                row["rim"] = {k: (round(v, 6) if isinstance(v, float) else v)
                              for k, v in rec.items()}
        else:
            row.update({f"cand_{k}": v for k, v in row.items()})
        self.frames.append(row)
        self.n += 1

    def summary(self) -> dict:
        out = super().summary()
        ell = [f for f in self.frames if f["cand_tilt_deg"] > 0]
        out["candidate"]["elliptical"] = len(ell)
        out["shipped"]["elliptical"] = out["elliptical"]
        changed = [f for f in self.frames if f["valid"] != f["cand_valid"]]
        out["turned_valid"] = sum(f["cand_valid"] for f in changed)
        out["turned_refused"] = sum(f["valid"] for f in changed)
        out["frames"] = self.frames if STATE.get("record") else None
        out.pop("elliptical_frames", None)
        if out["frames"] is None:
            out.pop("frames")
        return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--c", type=float, default=2.0,
                        help="standard errors of the bulge the flat term leaves to noise "
                             "(0: the REML standard error alone, the whole difference)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--record", action="store_true",
                        help="keep every frame's rows in the JSON (for offline design)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    STATE["c"], STATE["record"] = args.c, args.record
    ellipse_labels.CANDIDATE.update(term=False, labels_bulge_se=None)
    ellipse_labels.Rows = Rows
    out = ellipse_labels.run(args.seed, 20, 40, 20, 30, 20)
    keys = ("valid", "valid_pct", "rmse_deg", "max_deg", "over_2_deg", "within_2sigma_pct",
            "elliptical")
    for name, s in out.items():
        print(f"{name:34s} n {s['n']:4d} turned valid {s['turned_valid']} refused "
              f"{s['turned_refused']}")
        for m in ("shipped", "candidate"):
            print(f"    {m:9s} " + " ".join(f"{k} {s[m].get(k)}" for k in keys))
    if args.json:
        args.json.write_text(json.dumps({"command": "python -m bench.bench_flat_term "
                                         + " ".join(argv), "seed": args.seed, "c": args.c,
                                         "sets": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
