"""Compare two per-frame records of bench/bench_model_angles.py (``--frames-json``).

Every frame's status, reason code and ``facet_edge`` must match exactly; every number
(angle, sigma, shift, snr, a) is compared bit for bit and by its largest difference.

    .venv/bin/python -m bench.compare_frames BEFORE.json AFTER.json [--tolerance 1e-9]

Exits 1 when a label differs or a number differs by more than ``--tolerance`` (absolute).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

LABELS = ("status", "reason_code", "facet_edge")
NUMBERS = ("angle_deg", "sigma_deg", "shift_px", "snr", "a_px")


def compare(before: dict, after: dict, tolerance: float) -> tuple[dict, list[str]]:
    """Counts of compared, bit-identical and differing values, the largest difference per
    number, and the lines describing each mismatch."""
    stats = {"rows": 0, "numbers": 0, "bit_identical": 0,
             "max_abs_diff": dict.fromkeys(NUMBERS, 0.0)}
    bad: list[str] = []
    if sorted(before) != sorted(after):
        return stats, [f"sets differ: {sorted(before)} vs {sorted(after)}"]
    for name in before:
        if [f["stem"] for f in before[name]] != [f["stem"] for f in after[name]]:
            bad.append(f"{name}: frames differ")
            continue
        for fb, fa in zip(before[name], after[name], strict=True):
            for way in ("labels", "refined", "truth_labels"):
                rb, ra = fb[way], fa[way]
                stats["rows"] += 1
                for key in LABELS:
                    if rb[key] != ra[key]:
                        bad.append(f"{name} {fb['stem']} {way} {key}: {rb[key]} -> {ra[key]}")
                for key in NUMBERS:
                    xb, xa = rb[key], ra[key]
                    stats["numbers"] += 1
                    if xb == xa or (xb is not None and xa is not None
                                    and math.isnan(xb) and math.isnan(xa)):
                        stats["bit_identical"] += 1
                        continue
                    if xb is None or xa is None:
                        bad.append(f"{name} {fb['stem']} {way} {key}: {xb} -> {xa}")
                        continue
                    diff = abs(xa - xb)
                    stats["max_abs_diff"][key] = max(stats["max_abs_diff"][key], diff)
                    if not diff <= tolerance:
                        bad.append(f"{name} {fb['stem']} {way} {key}: {xb!r} -> {xa!r}")
    return stats, bad


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-9)
    args = parser.parse_args(argv)
    stats, bad = compare(json.loads(args.before.read_text()),
                         json.loads(args.after.read_text()), args.tolerance)
    print(json.dumps(stats, indent=1))
    for line in bad:
        print(line)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
