"""Elliptical (tilted-wire) facet readings on labels measured alone: how often, how far off,
and what the flat-versus-elliptical term or stronger evidence would do to them.

Why: for labels measured alone (no raw frame) a facet read as half an ellipse keeps the rim
reading with only the rim's standard error in sigma (``tilt.ELLIPTICAL_SYSTEMATIC_FRACTION``
applies only to a network's labels, measured with the frame). On degraded labels a wiggle of
the interface can be read as a tilted wire's ellipse. The candidate applies the same half
flat-versus-rim difference to labels measured alone (``facet_shape(network_labels=True)``
whatever the caller), i.e. every elliptical reading carries the term; with
``--labels-bulge-se Z`` the candidate is instead that labels alone need a bulge of Z (not 4)
standard errors to be read as tilt (below it: the shipped flat reading, the whole
flat-versus-rim difference in sigma).

Only frames read as elliptical change (the flat reading is untouched), so each frame is
measured shipped and, if it was read as elliptical, again with the candidate (its angle,
sigma and validity recorded).

Sets, per seed (labels alone, as the benches measure them):
  * ``benchmark degraded``: bench_contact_angle's degraded real-geometry frames (its random
    stream, ``bench.bench_worstvalid.benchmark_degraded``);
  * the sets of ``bench.bench_degraded_block_sigma.run`` (real geometry exact and in all six
    degradations, textbook caps a = 30-80 px, polygon labels at jitter 0.7 and 1.5 px);
  * ``tilted``: exact labels of wires tilted 1-10 deg out of the image plane
    (``bench_contact_angle.tilted_section``'s frames), and ``generator``: the synthetic
    generator's frames (tilt 0-10 deg; ``synth_section``'s frames).

    python -m bench.bench_ellipse_labels --seed 0 [--per-geometry 20] [--per-bin 40]
        [--polygon-per-geometry 20] [--tilted-per-row 30] [--generator 20]
        [--labels-bulge-se Z] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

import bench.bench_degraded_block_sigma as block_sigma
import nwwatch.measure.facet as facet_mod
import nwwatch.measure.tilt as tilt
from bench.bench_contact_angle import SHAPE, render
from bench.bench_worstvalid import benchmark_degraded
from nwwatch.measure import measure_contact_angle
from nwwatch.measure.arc import angle_deg
from nwwatch.measure.uncertainty import correlation_factor
from nwwatch.synth.geometry import droplet_geometry

_ORIGINAL = tilt.facet_shape
_SEEN: dict = {}
#: The candidate: ``term``: labels alone carry the flat-versus-rim term when read as an
#: ellipse; ``labels_bulge_se``: standard errors of bulge needed on labels alone (None: as
#: shipped).
CANDIDATE: dict = {"term": True, "labels_bulge_se": None}


def _recording_shape(*args, network_labels: bool = False, **kw):
    """facet_shape, recording the last rim fit's evidence (bulge, its inflated standard
    error); with ``_SEEN['candidate']`` the candidate of ``CANDIDATE``."""
    rims: list = []
    orig_rim = tilt.rim_shift

    def rim_shift(*a, **k):
        r = orig_rim(*a, **k)
        rims.append(r)
        return r

    tilt.rim_shift = rim_shift
    cand = _SEEN.get("candidate", False)
    try:
        shape = _ORIGINAL(*args, network_labels=network_labels
                          or (cand and CANDIDATE["term"]), **kw)
    finally:
        tilt.rim_shift = orig_rim
    rim = rims[-1] if rims else None
    if rim is not None and rim.k_px > 0:
        se = rim.se_k_px * math.sqrt(correlation_factor(rim.residuals, rim.along))
        _SEEN["rim"] = {"k_px": round(rim.k_px, 3), "se_k_px": round(se, 3)}
        need = CANDIDATE["labels_bulge_se"]
        if (cand and need is not None and not network_labels and shape.tilt_deg > 0
                and rim.k_px < need * se):
            # Too little evidence on labels alone: tilt.facet_shape's flat reading, with the
            # whole flat-versus-rim difference as its systematic term.
            fit, line, iface = args[0], args[1], args[2]
            inl = iface.points[line.inliers]
            diff = abs(angle_deg(fit, line, rim.offset_px) - angle_deg(fit, line))
            shape = tilt.FacetShape(0.0, 0.0, tilt.FLAT_SYSTEMATIC_FRACTION * diff, line,
                                    correlation_factor(line.offset(inl), line.along(inl)))
    _SEEN["systematic_deg"] = shape.systematic_deg
    return shape


facet_mod.facet_shape = _recording_shape


class Rows:
    """Per set: every frame's shipped and candidate result (labels alone)."""

    def __init__(self) -> None:
        self.n = 0
        self.frames: list[dict] = []

    def add(self, labels: np.ndarray, truth: float) -> None:
        self.n += 1
        _SEEN.clear()
        r = measure_contact_angle(labels)
        row = {"valid": bool(r.angle_valid), "tilt_deg": round(r.wire_tilt_deg or 0.0, 2),
               "error_deg": round(r.contact_angle_deg - truth, 3)
               if r.contact_angle_deg is not None else None,
               "sigma_deg": round(r.contact_angle_uncertainty_deg, 3)
               if r.contact_angle_uncertainty_deg is not None else None}
        if row["tilt_deg"] > 0:
            row["rim"] = _SEEN.get("rim")
            _SEEN.clear()
            _SEEN["candidate"] = True
            c = measure_contact_angle(labels)
            row["term_deg"] = round(_SEEN.get("systematic_deg", 0.0), 3)
            row["cand_valid"] = bool(c.angle_valid)
            row["cand_tilt_deg"] = round(c.wire_tilt_deg or 0.0, 2)
            row["cand_error_deg"] = round(c.contact_angle_deg - truth, 3)
            row["cand_sigma_deg"] = round(c.contact_angle_uncertainty_deg, 3)
        else:
            row["cand_valid"] = row["valid"]
            row["cand_error_deg"] = row["error_deg"]
            row["cand_sigma_deg"] = row["sigma_deg"]
        self.frames.append(row)

    def summary(self) -> dict:
        out = {"n": self.n}
        ell = [f for f in self.frames if f["tilt_deg"] > 0]
        out["elliptical"] = len(ell)
        out["elliptical_valid"] = sum(f["valid"] for f in ell)
        out["elliptical_valid_over_2sigma"] = sum(
            f["valid"] and abs(f["error_deg"]) > 2 * f["sigma_deg"] for f in ell)
        for m, vk, ek, sk in (("shipped", "valid", "error_deg", "sigma_deg"),
                              ("candidate", "cand_valid", "cand_error_deg", "cand_sigma_deg")):
            v = [f for f in self.frames if f[vk]]
            err = np.abs([f[ek] for f in v])
            sig = np.array([f[sk] for f in v])
            s = {"valid": len(v), "valid_pct": round(100.0 * len(v) / max(self.n, 1), 2)}
            if err.size:
                s.update(rmse_deg=round(float(np.sqrt(np.mean(err**2))), 4),
                         max_deg=round(float(err.max()), 3),
                         over_2_deg=int((err > 2.0).sum()),
                         within_2sigma_pct=round(100.0 * float(np.mean(err <= 2.0 * sig)), 1))
            out[m] = s
        out["elliptical_frames"] = ell
        return out


def tilted_frames(per_row: int, seed: int):
    """bench_contact_angle.tilted_section's frames: (row name, labels, apparent angle)."""
    from nwwatch.synth.insitu import sample_frame_params

    rng = np.random.default_rng(seed + 1)
    rows = [((15.0, 30.0), (1.0, 4.0)), ((15.0, 30.0), (4.0, 10.0)),
            ((30.0, 80.0), (1.0, 4.0)), ((30.0, 80.0), (4.0, 10.0))]
    for (a_lo, a_hi), (t_lo, t_hi) in rows:
        for _ in range(per_row):
            theta = float(rng.uniform(80.0, 150.0))
            a_px = float(math.exp(rng.uniform(math.log(a_lo), math.log(a_hi))))
            params = sample_frame_params(
                rng, SHAPE[0], theta_deg=theta, a_px=a_px,
                tilt_deg=float(rng.uniform(t_lo, t_hi)), truncation_px=0.0, n_distractors=0,
                scale_bar=False, placement="centred", facet_incline_deg=0.0,
                wire_profile="straight", base_ratio=1.0)
            labels, _ = render(params.wire)
            yield (f"tilted a {a_lo:g}-{a_hi:g} tilt {t_lo:g}-{t_hi:g}", labels,
                   droplet_geometry(params.wire).theta_apparent_deg)


def run(seed: int, per_geometry: int, per_bin: int, polygon_per_geometry: int,
        tilted_per_row: int, generator: int) -> dict:
    from nwwatch.synth.insitu import frame_params, render_insitu_frame

    sets: dict[str, Rows] = {}
    bench_rows = sets.setdefault("benchmark degraded", Rows())
    for _, _, _, _, drawn, truth in benchmark_degraded(seed):
        bench_rows.add(drawn, truth)
    for name, labels, truth in tilted_frames(tilted_per_row, seed):
        sets.setdefault(name, Rows()).add(labels, truth)
    gen = sets.setdefault("generator", Rows())
    for k in range(generator):
        _, labels, truth = render_insitu_frame(frame_params(seed + 1000, k),
                                               np.random.default_rng(k))
        gen.add(labels, truth["theta_apparent_deg"])
    # bench_degraded_block_sigma's sets: its Rows/Candidate replaced by these (one pass).
    block_sigma.Rows = Rows

    class NoCandidate:
        def __init__(self, *_: object) -> None: ...
        def __enter__(self) -> NoCandidate: return self
        def __exit__(self, *exc: object) -> None: ...

    block_sigma.Candidate = NoCandidate
    orig_measure = block_sigma._measure

    def _measure(sets_b, name, labels, truth, block_px):
        sets.setdefault(name, Rows()).add(labels, truth)

    block_sigma._measure = _measure
    try:
        kinds = list(block_sigma.GEOMETRIES)
        _run_block_sets(seed, per_geometry, per_bin, polygon_per_geometry, kinds, sets)
    finally:
        block_sigma._measure = orig_measure
    out = {name: rows.summary() for name, rows in sets.items()}
    groups = {"degraded": [n for n in sets if n in block_sigma.DEGRADATIONS],
              "textbook": [n for n in sets if n.startswith("textbook")],
              "polygon jitter 0.7": [n for n in sets if "jitter 0.7" in n],
              "polygon jitter 1.5": [n for n in sets if "jitter 1.5" in n],
              "tilted": [n for n in sets if n.startswith("tilted")]}
    for group, names in groups.items():
        pooled = Rows()
        for n in names:
            pooled.n += sets[n].n
            pooled.frames += sets[n].frames
        out[f"pooled {group}"] = pooled.summary()
    return out


def _run_block_sets(seed, per_geometry, per_bin, polygon_per_geometry, kinds, sets) -> None:
    """bench_degraded_block_sigma.run's frames, in its random order."""
    from bench.bench_polygon_labels import polygon_labels

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(per_geometry * len(kinds)):
        wire = block_sigma.real_wire(rng, kinds[i % len(kinds)])
        labels = render(wire)[0]
        truth = droplet_geometry(wire).theta_apparent_deg
        frames.append((labels, truth))
        sets.setdefault("exact", Rows()).add(labels, truth)
        for deg in block_sigma.DEGRADATIONS:
            sets.setdefault(deg, Rows()).add(block_sigma.degrade(labels, wire, deg, rng), truth)
    for a in (30, 45, 60, 80):
        for i in range(per_bin):
            wire = block_sigma.random_cap(rng, a, cut=i < int(0.15 * per_bin))
            sets.setdefault(f"textbook a {a}", Rows()).add(render(wire)[0], wire.theta_deg)
    for jitter in (0.7, 1.5):
        for spacing in (6, 10, 15, 25):
            draw = np.random.default_rng([seed, round(10 * spacing), round(10 * jitter)])
            for labels, truth in frames[: polygon_per_geometry * len(kinds)]:
                sets.setdefault(f"polygon jitter {jitter} spacing {spacing}", Rows()).add(
                    polygon_labels(labels, spacing, jitter, draw), truth)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-geometry", type=int, default=20)
    parser.add_argument("--per-bin", type=int, default=40)
    parser.add_argument("--polygon-per-geometry", type=int, default=20)
    parser.add_argument("--tilted-per-row", type=int, default=30)
    parser.add_argument("--generator", type=int, default=20)
    parser.add_argument("--labels-bulge-se", type=float, default=None,
                        help="candidate: labels alone need this many standard errors of "
                             "bulge to be read as tilt (instead of the term)")
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if args.labels_bulge_se is not None:
        CANDIDATE.update(term=False, labels_bulge_se=args.labels_bulge_se)
    out = run(args.seed, args.per_geometry, args.per_bin, args.polygon_per_geometry,
              args.tilted_per_row, args.generator)
    for name, s in out.items():
        print(f"{name:32s} n {s['n']:4d} ellip {s['elliptical']:3d} (valid "
              f"{s['elliptical_valid']}, >2sig {s['elliptical_valid_over_2sigma']})  "
              f"shipped {s['shipped']}  cand {s['candidate']}")
    if args.json:
        args.json.write_text(json.dumps({"command": "python -m bench.bench_ellipse_labels "
                                         + " ".join(argv), "seed": args.seed, "sets": out},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
