"""Wall time of ``nwwatch demo`` (what ``make demo`` runs once the venv is set up), the
reasons its refused frames carry, and the machine's load while it ran.

Runs ``nwwatch demo OUT [--stress]`` in a child process (this interpreter, the worktree's
nwwatch) and records its wall time, the child's user + system CPU time and peak resident
memory (``resource.getrusage(RUSAGE_CHILDREN)``), the 1-minute load average before and after,
the demo's own summary line, and from its Parquet rows the refused frames per ``reason_code``
with, for ``interface_not_line``, the interface's scatter (px) and its cost (deg) parsed from
the reason text, and for ``angle_uncertain`` the range of σ (``contact_angle_uncertainty_deg``) and
the reason texts (which name σ's largest term).

Usage (about a minute on 2 shared cores for either video)::

    python -m bench.bench_demo_run --json bench/results/demo_run.json
    python -m bench.bench_demo_run --stress --json bench/results/demo_run_stress.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

#: "scatters 4.2 px about its line, 7.1 deg at this droplet size" (nwwatch.measure.contact_angle)
_SCATTER = re.compile(r"scatters ([0-9.]+) px about its line, ([0-9.]+) deg")


def _range(values: list[float]) -> list[float] | None:
    return [round(min(values), 2), round(max(values), 2)] if values else None


def refused_detail(frames_dir: Path) -> dict[str, Any]:
    """Reason counts and the scatter / σ ranges of the demo's Parquet rows under ``frames_dir``."""
    import pyarrow.dataset as ds

    table = ds.dataset(frames_dir, format="parquet").to_table(
        columns=["status", "reason_code", "reason", "angle_valid",
                 "contact_angle_uncertainty_deg"]).to_pylist()
    refused = [r for r in table if not r["angle_valid"]]
    scatter_px, cost_deg, other_not_line = [], [], 0
    sigma_deg = []
    for r in refused:
        if r["reason_code"] == "interface_not_line":
            m = _SCATTER.search(r["reason"])
            if m:
                scatter_px.append(float(m.group(1)))
                cost_deg.append(float(m.group(2)))
            else:
                other_not_line += 1
        elif r["reason_code"] == "angle_uncertain" and r["contact_angle_uncertainty_deg"]:
            sigma_deg.append(float(r["contact_angle_uncertainty_deg"]))
    return {
        "frames": len(table),
        "valid": len(table) - len(refused),
        "refused_by_reason": dict(Counter(r["reason_code"] for r in refused).most_common()),
        "interface_not_line_scatter_px": _range(scatter_px),
        "interface_not_line_cost_deg": _range(cost_deg),
        "interface_not_line_without_scatter": other_not_line,
        "angle_uncertain_sigma_deg": _range(sigma_deg),
        "angle_uncertain_reasons": [r["reason"] for r in refused
                                    if r["reason_code"] == "angle_uncertain"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stress", action="store_true", help="run `nwwatch demo --stress`")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None,
                   help="demo output folder (default: a temporary one, removed afterwards)")
    args = p.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="nwwatch-demo-")) / "demo_output"
    cli = ["demo", str(out)] + (["--stress"] if args.stress else [])
    argv_child = [sys.executable, "-c",
                  "import sys; from nwwatch.cli import main; sys.argv[0] = 'nwwatch'; main()",
                  *cli]
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run(argv_child, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    load_after = os.getloadavg()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode:
        print(f"nwwatch demo failed with exit {proc.returncode}", file=sys.stderr)
        return proc.returncode
    summary = [ln.strip() for ln in proc.stdout.splitlines() if "frames measured" in ln]
    record = {
        "command": "python -m bench.bench_demo_run" + (" --stress" if args.stress else "")
                   + f" --json {args.json}",
        "demo_command": "nwwatch demo OUT" + (" --stress" if args.stress else ""),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "nice": os.nice(0),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        "load_average_1_5_15_after": [round(x, 2) for x in load_after],
        "wall_s": round(wall_s, 1),
        "child_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "child_peak_rss_mib": round(usage.ru_maxrss / 1024, 0),
        "summary_line": summary[0] if summary else None,
        "done_line": next((ln.strip() for ln in proc.stdout.splitlines()
                           if ln.startswith("done in")), None),
        **refused_detail(out / "results" / "frames"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    if args.out is None:
        shutil.rmtree(out.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
