"""Costs of the operator's tools: a QA picture per frame, and compaction of many small batch
files (what it takes, and what it saves readers and ``nwwatch status``).

1. QA pictures: ``write_frame_pictures`` (draw the overlay, encode PNG, atomic write with
   fsync) on a ``--size`` px frame, median of ``--pictures`` frames.
2. Compaction: ``--files`` batch files of ``--rows`` frame rows each (one acquisition, rows in
   the full frame schema), recorded in a ledger by ``nwwatch ledger rebuild``; times
   ``pandas.read_parquet(frames/)`` and ``service_status`` (which reads the status columns of
   every committed file) before and after ``compact``, and ``compact`` itself.

Usage::

    nice -n 10 .venv/bin/python bench/bench_ops.py [--size 512] [--pictures 30]
        [--files 500] [--rows 8] [--json bench/results/ops.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nwwatch.classes import DROPLET, NANOWIRE  # noqa: E402


def _labels(size: int) -> np.ndarray:
    """A vertical wire with a circular droplet cap on its end, uint8 (size, size)."""
    labels = np.zeros((size, size), np.uint8)
    c, half, top = size / 2 - 0.5, size // 16, size // 2
    rr, cc = np.mgrid[:size, :size]
    labels[top:, np.abs(np.arange(size) - c) < half] = NANOWIRE
    radius = half / np.sin(np.radians(120.0))
    centre = top - 0.5 + radius * np.cos(np.radians(120.0))
    labels[((rr - centre) ** 2 + (cc - c) ** 2 <= radius ** 2) & (rr < top)] = DROPLET
    return labels


def bench_pictures(size: int, n: int, folder: Path) -> dict:
    from nwwatch.measure import draw_overlay, measure_contact_angle
    from nwwatch.results.pictures import write_frame_pictures

    labels = _labels(size)
    rng = np.random.default_rng(0)
    image = (np.choose(labels, [200, 40, 120]) + rng.normal(0, 8, labels.shape)).astype(
        np.float32)
    result = measure_contact_angle(labels)
    times = []
    for i in range(n):
        t = time.perf_counter()
        write_frame_pictures(folder, "overlays", f"f{i:04d}", draw_overlay(image, labels, result))
        times.append((time.perf_counter() - t) * 1e3)
    return {"size_px": size, "frames": n, "status": result.status,
            "ms_per_picture_median": round(statistics.median(times), 2),
            "ms_per_picture_p90": round(float(np.percentile(times, 90)), 2)}


def bench_compaction(n_files: int, rows: int, out: Path) -> dict:
    import pandas as pd

    from nwwatch.measure import MEASUREMENT_FIELDS, MEASUREMENT_VERSION
    from nwwatch.results.parquet import write_batch
    from nwwatch.results.schema import frame_schema
    from nwwatch.service.compaction import compact
    from nwwatch.service.rebuild import rebuild_ledger
    from nwwatch.service.status import service_status

    schema = frame_schema(MEASUREMENT_FIELDS)
    now = datetime.now(UTC)
    frame_no = 0
    for f in range(n_files):
        batch = []
        for _ in range(rows):
            batch.append({"source": f"/data/acq/f{frame_no:06d}.tif", "frame": 0,
                          "status": "ok", "reason_code": "ok", "reason": "", "angle_valid": True,
                          "droplet_cut": False, "contact_angle_deg": 120.0,
                          "source_sha256": f"{frame_no:064x}", "model_sha256": "m" * 64,
                          "measurement_version": MEASUREMENT_VERSION,
                          "batch_id": f"b{f:06d}", "processed_at": now})
            frame_no += 1
        write_batch(batch, schema, out / "frames", "frames", name=f"frames-{f:06d}.parquet")
    rebuild_ledger(out)

    def timed(fn, repeat: int = 3) -> float:
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        return round(best * 1e3, 1)

    def read() -> None:
        assert len(pd.read_parquet(out / "frames")) == n_files * rows

    def status() -> None:
        assert service_status(out / "ledger.sqlite", out)["rows_by_outcome"]["ok"] == \
            n_files * rows

    before = {"read_ms": timed(read), "status_ms": timed(status)}
    t = time.perf_counter()
    report = compact(out)
    compact_ms = round((time.perf_counter() - t) * 1e3, 1)
    after = {"read_ms": timed(read), "status_ms": timed(status)}
    return {"files": n_files, "rows_per_file": rows, "files_after": report.files_after,
            "compact_ms": compact_ms, "before": before, "after": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pictures", type=int, default=30)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pictures = bench_pictures(args.size, args.pictures, Path(tmp) / "p")
        compaction = bench_compaction(args.files, args.rows, Path(tmp) / "c")
    result = {"pictures": pictures, "compaction": compaction,
              "command": " ".join(["bench/bench_ops.py", *sys.argv[1:]]),
              "machine": "2 CPU cores shared with other jobs"}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
