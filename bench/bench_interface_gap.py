"""Both sides of a partial wire/droplet gap as interface points, against a reference
checkout that fits the shared pixel edges alone, on the same labels.

Why: hand-drawn labels are separate polygons, wire first and droplet over it
(``bench.bench_polygon_labels``): where the droplet's polygon reaches into the wire's, the
droplet's edge is the wire/droplet boundary; where it falls short, a thin background gap opens.
The shared pixel edges are then only where the droplet's drawn edge lies deeper than the
wire's, and a line through them alone sits in the wire (the angle reads high: +0.2 deg at
0.7 px of vertex jitter, +0.4 deg at 1.5 px, in the facet line's part of the error on seed 0).
This checkout adds both sides of such gaps (``nwwatch.measure.interface.gap_sides``).

Sets, per seed, each measured by this checkout and by ``--reference`` (a folder holding
another checkout's ``nwwatch/measure``, e.g. ``git archive main nwwatch/measure | tar -x -C
REF``) on the same labels:
  * real geometry (``bench_contact_angle.real_wire``, 11 geometries x ``--per-geometry``),
    exact labels and each of the six degradations of the benchmark on every frame;
  * textbook caps a = 30/45/60/80 px (``random_cap``, 15 % cut), ``--per-bin`` each;
  * polygon labels (``bench_polygon_labels.polygon_labels``) of the real-geometry frames,
    vertex every 6/10/15/25 px, jitter 0.7 and 1.5 px;
  * the facet line's part of the error (the true circle on the fitted line, degrees) on the
    measured polygon labels, mean and RMS, per jitter.

``--model-npz FILE ...`` instead: the cached segmentations of ``bench/bench_model_angles.py``
(``bench/out/model_angles/*.npz``), each frame measured both ways with its droplet probability
and raw frame (as the service measures a network's output), with the probability alone, and
from the model's labels alone and the true labels alone: per set and way the rows that differ
and, over the frames whose angle moved, the RMSE and validity before and after.

    python -m bench.bench_interface_gap --reference REF --seed 0 [--per-geometry 20]
        [--per-bin 40] [--polygon-per-geometry 20] [--json FILE.json]
    python -m bench.bench_interface_gap --reference REF --model-npz FILE ... [--json FILE.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.bench_contact_angle import (
    DEGRADATIONS,
    GEOMETRIES,
    degrade,
    random_cap,
    real_wire,
    render,
)
from bench.bench_degraded_block_sigma import report_sets
from bench.bench_measure_speed import load_measure
from bench.bench_polygon_labels import polygon_labels
from nwwatch.synth.geometry import WireSpec, droplet_geometry, facet_vectors

METHODS = ("reference", "candidate")


def line_part_deg(row: dict, wire: WireSpec) -> float | None:
    """The facet line's part of the error (degrees): the true circle against the fitted
    line (``facet_angle_deg`` and the foot ``facet_row/col``); None without a line."""
    if row.get("facet_angle_deg") is None or row.get("facet_row") is None:
        return None
    g = droplet_geometry(wire)
    m = np.array(facet_vectors(wire)[0])
    phi = math.radians(row["facet_angle_deg"])
    normal = np.array([math.cos(phi), math.sin(phi)])  # normal of the fitted line's direction
    normal = normal if normal @ m > 0 else -normal
    foot = np.array([row["facet_row"], row["facet_col"]])
    cos_t = -float((np.array(g.centre) - foot) @ normal) / g.radius_px
    return math.degrees(math.acos(min(max(cos_t, -1.0), 1.0))) - g.theta_apparent_deg


class Rows:
    """Valid errors and sigmas of one set under one method, and line parts."""

    def __init__(self) -> None:
        self.n = 0
        self.errors: list[float] = []
        self.sigmas: list[float] = []
        self.line_parts: list[float] = []

    def add(self, measure: Callable, labels: np.ndarray, truth: float,
            wire: WireSpec | None = None) -> None:
        r = measure(labels)
        self.n += 1
        if r.angle_valid:
            self.errors.append(r.contact_angle_deg - truth)
            self.sigmas.append(r.contact_angle_uncertainty_deg)
        if wire is not None and r.contact_angle_deg is not None:
            part = line_part_deg(r.as_row(), wire)
            if part is not None:
                self.line_parts.append(part)

    def summary(self) -> dict:
        err, sig = np.abs(np.array(self.errors)), np.array(self.sigmas)
        out: dict = {"n": self.n, "valid": len(err),
                     "valid_pct": round(100.0 * len(err) / max(self.n, 1), 2)}
        if err.size:
            out.update(median_deg=round(float(np.median(err)), 4),
                       rmse_deg=round(float(np.sqrt(np.mean(err**2))), 4),
                       max_deg=round(float(err.max()), 3), over_2_deg=int((err > 2.0).sum()),
                       within_2sigma_pct=round(100.0 * float(np.mean(err <= 2.0 * sig)), 1))
        if self.line_parts:
            lp = np.array(self.line_parts)
            out.update(line_part_mean_deg=round(float(lp.mean()), 4),
                       line_part_rms_deg=round(float(np.sqrt(np.mean(lp**2))), 4))
        return out


def run(reference: Callable, seed: int, per_geometry: int, per_bin: int,
        polygon_per_geometry: int) -> dict:
    from nwwatch.measure import measure_contact_angle

    measures = {"reference": reference, "candidate": measure_contact_angle}
    sets: dict[str, dict[str, Rows]] = {}

    def measure(name: str, labels: np.ndarray, truth: float, wire: WireSpec | None = None
                ) -> None:
        rows = sets.setdefault(name, {m: Rows() for m in METHODS})
        for m in METHODS:
            rows[m].add(measures[m], labels, truth, wire)

    rng = np.random.default_rng(seed)
    kinds = list(GEOMETRIES)
    frames = []
    for i in range(per_geometry * len(kinds)):
        wire = real_wire(rng, kinds[i % len(kinds)])
        labels = render(wire)[0]
        truth = droplet_geometry(wire).theta_apparent_deg
        frames.append((wire, labels, truth))
        measure("exact", labels, truth)
        for deg in DEGRADATIONS:
            measure(deg, degrade(labels, wire, deg, rng), truth)
    for a in (30, 45, 60, 80):
        for i in range(per_bin):
            wire = random_cap(rng, a, cut=i < int(0.15 * per_bin))
            measure(f"textbook a {a}", render(wire)[0], wire.theta_deg)
    for jitter in (0.7, 1.5):
        for spacing in (6, 10, 15, 25):
            draw = np.random.default_rng([seed, round(10 * spacing), round(10 * jitter)])
            for wire, labels, truth in frames[: polygon_per_geometry * len(kinds)]:
                measure(f"polygon jitter {jitter} spacing {spacing}",
                        polygon_labels(labels, spacing, jitter, draw), truth, wire)
    out = {name: {m: rows.summary() for m, rows in both.items()} for name, both in sets.items()}
    for group, names in (("wiggles", [d for d in DEGRADATIONS if d.startswith("wiggle")]),
                         ("degraded", list(DEGRADATIONS)),
                         ("textbook", [n for n in sets if n.startswith("textbook")]),
                         ("polygon jitter 0.7", [n for n in sets if "jitter 0.7" in n]),
                         ("polygon jitter 1.5", [n for n in sets if "jitter 1.5" in n])):
        out[f"pooled {group}"] = {}
        for m in METHODS:
            pooled = Rows()
            for n in names:
                pooled.n += sets[n][m].n
                pooled.errors += sets[n][m].errors
                pooled.sigmas += sets[n][m].sigmas
                pooled.line_parts += sets[n][m].line_parts
            out[f"pooled {group}"][m] = pooled.summary()
    return out


def model_rows(reference: Callable, npz_paths: list[Path]) -> dict:
    """Reference against candidate on cached model segmentations (see the module doc)."""
    from bench.bench_measure_speed import _same, _snapshot
    from nwwatch.measure import measure_contact_angle

    out: dict = {}
    for path in npz_paths:
        with np.load(path) as data:
            arrays = {k: data[k] for k in ("labels", "prob", "truth_labels", "image", "angle",
                                           "pixel_size_nm")}
        name = path.stem
        for way in ("prob+image", "prob", "labels alone", "true labels alone"):
            moved: list[tuple[float, float, bool, bool]] = []
            differ = 0
            for i in range(len(arrays["angle"])):
                labels = arrays["truth_labels" if way.startswith("true") else "labels"][i]
                prob = arrays["prob"][i] if way.startswith("prob") else None
                image = arrays["image"][i] if way == "prob+image" else None
                px = float(arrays["pixel_size_nm"][i])
                a = reference(labels, prob, px, image=image)
                b = measure_contact_angle(labels, prob, px, image=image)
                if _same(_snapshot(a), _snapshot(b)):
                    continue
                differ += 1
                if a.contact_angle_deg is not None and b.contact_angle_deg is not None:
                    truth = float(arrays["angle"][i])
                    moved.append((a.contact_angle_deg - truth, b.contact_angle_deg - truth,
                                  bool(a.angle_valid), bool(b.angle_valid)))
            rec: dict = {"frames": len(arrays["angle"]), "rows_differ": differ,
                         "angles_moved": len(moved)}
            if moved:
                m = np.array(moved, dtype=float)
                rec.update(rmse_before_deg=round(float(np.sqrt(np.mean(m[:, 0] ** 2))), 4),
                           rmse_after_deg=round(float(np.sqrt(np.mean(m[:, 1] ** 2))), 4),
                           max_angle_change_deg=round(float(np.abs(m[:, 1] - m[:, 0]).max()), 4),
                           valid_before=int(m[:, 2].sum()), valid_after=int(m[:, 3].sum()))
            out[f"{name} {way}"] = rec
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="folder holding the reference checkout's nwwatch/measure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-geometry", type=int, default=20)
    parser.add_argument("--per-bin", type=int, default=40)
    parser.add_argument("--polygon-per-geometry", type=int, default=20)
    parser.add_argument("--model-npz", type=Path, nargs="+",
                        help="cached segmentations of bench_model_angles instead of the sets")
    parser.add_argument("--json", type=Path)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not (args.reference / "nwwatch" / "measure" / "__init__.py").is_file():
        raise SystemExit(f"{args.reference}: no nwwatch/measure/__init__.py in it")
    if args.model_npz:
        missing = [str(p) for p in args.model_npz if not p.is_file()]
        if missing:
            raise SystemExit(f"no such segmentation cache: {', '.join(missing)}")
        rows = model_rows(load_measure(args.reference), args.model_npz)
        for name, rec in rows.items():
            print(name, rec)
        if args.json:
            args.json.write_text(json.dumps(
                {"command": "python -m bench.bench_interface_gap " + " ".join(argv),
                 "model_rows": rows}, indent=1) + "\n")
        return
    out = run(load_measure(args.reference), args.seed, args.per_geometry, args.per_bin,
              args.polygon_per_geometry)
    record = {"command": "python -m bench.bench_interface_gap " + " ".join(argv),
              "seed": args.seed, "sets": out}
    report_sets(record, args.json)


if __name__ == "__main__":
    main()
