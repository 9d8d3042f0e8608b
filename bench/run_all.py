"""Run every benchmark in sequence (``make bench``); each writes its table under bench/out/.

The full set takes well over an hour on 2 CPU cores; pass names to run a subset:
``python -m bench.run_all contact_angle replay``. The figures quoted in docs/ come from these
scripts; each doc page names the exact command that produced its table.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"

#: name -> argv after ``python -m``; defaults chosen to finish on 2 cores.
BENCHES: dict[str, list[str]] = {
    "io_tiff": ["bench.bench_io_tiff", "--json", str(OUT / "io_tiff.json")],
    "io_files": ["bench.io_acquisition_files", "--json", str(OUT / "io_acquisition_files.json")],
    "synth": ["bench.bench_synth"],
    "synth_tomogram": ["bench.bench_synth_tomogram", "--out", str(OUT / "synth_tomogram.json")],
    "contact_angle": ["bench.bench_contact_angle", "--out", str(OUT / "contact_angle.md")],
    "inference": ["bench.bench_inference", "--json", str(OUT / "inference.json")],
    "replay": ["bench.bench_replay"],
    "cluster": ["bench.bench_cluster", "--json", str(OUT / "cluster_local2.json")],
    "tomography": ["bench.bench_tomography", "--out", str(OUT / "tomography.json")],
    "paradigms": ["bench.bench_paradigms", "--out", str(OUT / "paradigms")],
    "demo_bias": ["bench.bench_demo_bias", "--json", str(OUT / "demo_bias.json")],
    "interface_band": ["bench.bench_interface_band", "--json", str(OUT / "interface_band.json")],
    "demo_look": ["bench.demo_look", "--search", "--json", str(OUT / "demo_look.json")],
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHES)}", file=sys.stderr)
        return 2
    OUT.mkdir(exist_ok=True)
    failed = []
    for name in names:
        start = time.perf_counter()
        print(f"== {name}: python -m {' '.join(BENCHES[name])}", flush=True)
        code = subprocess.call([sys.executable, "-m", *BENCHES[name]])
        print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
