"""Memory of the dashboard's results store over a long run: the process's resident memory as
the results files of a run are read a few at a time, as the live page reads them.

The files of RESULTS (a results folder with many files, e.g. of a service run with
``flush_seconds = 0``, which writes one file per batch) are copied in their order into a new
folder, ``--step`` at a time, and :meth:`nwwatch.dashboard.data.ResultsStore.refresh` reads
each step; the process's ``VmRSS`` and Arrow's allocated bytes are recorded at the counts
given by ``--at``.

Usage::

    .venv/bin/python -m bench.bench_store_memory RESULTS [--step 50]
        [--at 500 1000 2000 4000] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow as pa

from nwwatch.dashboard.data import ResultsStore


def rss_mb() -> float:
    """The process's resident set size (MB), from /proc/self/status."""
    text = Path("/proc/self/status").read_text()
    return int(text.split("VmRSS:")[1].split()[0]) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--step", type=int, default=50)
    parser.add_argument("--at", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    files = sorted(args.results.glob("frames/**/*.parquet"))
    if not files:
        parser.error(f"{args.results}: no results files under frames/")
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore(Path(tmp))
        for i, src in enumerate(files, 1):
            dst = Path(tmp) / src.relative_to(args.results)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            if i % args.step == 0 or i == len(files):
                store.refresh()
            if i in args.at:
                gc.collect()
                samples.append({"files": i, "rss_mb": round(rss_mb(), 1),
                                "arrow_allocated_mb": round(pa.total_allocated_bytes() / 2**20,
                                                            1)})
                print(samples[-1], flush=True)
    report = {"command": "python -m bench.bench_store_memory RESULTS "
                         + " ".join(argv if argv is not None else sys.argv[1:]),
              "files": len(files), "step": args.step, "samples": samples}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
