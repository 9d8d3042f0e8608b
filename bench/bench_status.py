"""How long ``nwwatch status`` takes on a results folder with a few thousand rows, some of them
from earlier versions of stacks that grew page by page.

The folder: ``--files`` single-frame batch files of ``--rows`` frame rows each (distinct
sources), plus ``--stacks`` stacks grown to ``--pages`` pages, every version processed whole
into a batch file of its own (version k holds pages 0..k-1), all in the full frame schema and
recorded in a ledger by ``nwwatch ledger rebuild``. Times ``service_status`` (best of
``--repeat``) on the batch files as written and after ``nwwatch compact`` (one file), and the
``nwwatch status --out`` command once (a fresh interpreter: imports included).

Usage::

    nice -n 10 .venv/bin/python bench/bench_status.py [--files 400] [--rows 8] [--stacks 10]
        [--pages 10] [--json bench/results/status.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build(out: Path, n_files: int, rows: int, stacks: int, pages: int) -> int:
    """Write the results folder; return the number of rows written."""
    from nwwatch.measure import MEASUREMENT_FIELDS, MEASUREMENT_VERSION
    from nwwatch.results.parquet import write_batch
    from nwwatch.results.schema import frame_schema
    from nwwatch.service.rebuild import rebuild_ledger

    schema = frame_schema(MEASUREMENT_FIELDS)
    t0 = datetime.now(UTC) - timedelta(hours=1)

    def row(source: str, frame: int, sha: str, batch: str, at: datetime, ok: bool) -> dict:
        return {"source": source, "frame": frame, "status": "ok" if ok else "no_droplet",
                "reason_code": "ok" if ok else "no_droplet", "reason": "",
                "angle_valid": ok, "droplet_cut": False,
                "contact_angle_deg": 120.0 if ok else None, "source_sha256": sha,
                "model_sha256": "m" * 64, "measurement_version": MEASUREMENT_VERSION,
                "batch_id": batch, "processed_at": at}

    written = 0
    for f in range(n_files):
        batch = [row(f"/data/acq/f{f * rows + k:06d}.tif", 0, f"{f * rows + k:064x}",
                     f"b{f:06d}", t0 + timedelta(seconds=f), k % 5 != 4) for k in range(rows)]
        write_batch(batch, schema, out / "frames", "frames", name=f"frames-{f:06d}.parquet")
        written += len(batch)
    for s in range(stacks):
        for version in range(1, pages + 1):
            at = t0 + timedelta(seconds=n_files + s * pages + version)
            batch = [row(f"/data/acq/stack{s:03d}.tif", p, f"{s:032x}{version:032x}",
                         f"s{s:03d}v{version:03d}", at, p % 3 != 2) for p in range(version)]
            write_batch(batch, schema, out / "frames", "frames",
                        name=f"frames-s{s:03d}-v{version:03d}.parquet")
            written += len(batch)
    rebuild_ledger(out)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--stacks", type=int, default=10)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from nwwatch.service.compaction import compact
    from nwwatch.service.status import service_status

    def timed(out: Path) -> tuple[float, dict]:
        best, st = float("inf"), {}
        for _ in range(args.repeat):
            t = time.perf_counter()
            st = service_status(out / "ledger.sqlite", out)
            best = min(best, time.perf_counter() - t)
        return round(best * 1e3, 1), st

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results"
        written = build(out, args.files, args.rows, args.stacks, args.pages)
        batch_ms, st = timed(out)
        t = time.perf_counter()
        cli = subprocess.run([sys.executable, "-c", "from nwwatch.cli import main; main()",
                              "status", "--out", str(out)],
                             capture_output=True, text=True, cwd=REPO)
        cli_ms = round((time.perf_counter() - t) * 1e3, 1)
        if cli.returncode != 0:
            raise SystemExit(cli.stderr)
        files_before = len(list((out / "frames").rglob("*.parquet")))
        compact(out)
        compacted_ms, st_after = timed(out)
    result = {
        "command": " ".join(["bench/bench_status.py", *sys.argv[1:]]),
        "machine": "2 CPU cores shared with other jobs",
        "rows_written": written, "batch_files": files_before,
        "rows": st.get("rows"), "rows_by_outcome": st["rows_by_outcome"],
        "superseded": st.get("superseded"),
        "status_ms_batch_files": batch_ms, "status_ms_compacted": compacted_ms,
        "rows_after_compaction": st_after.get("rows"),
        "cli_ms_batch_files": cli_ms, "cli_text": cli.stdout,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
