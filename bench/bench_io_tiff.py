"""Time nwwatch.io against bare tifffile on a frame, a stack and many-page files in a
temporary folder (page cache warm: each time is the best of several runs).

Cases: a 2048 x 2048 uint16 frame and a 200 x 512 x 512 uint16 stack written by nwwatch.io
(atomic, fsync); 5000 pages of 16 x 16 uint16 written by tifffile as plain pages (no shape
metadata: ``metadata=None``) and the same as an ImageJ stack by ``write_stack_tiff``; 2000
pages grown one ``TiffWriter.write`` call per page (one tifffile series per page).

Run: python -m bench.bench_io_tiff [--json bench/results/io_tiff.json]
(about 15 s, ~100 MB of temporary files)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import tifffile

from nwwatch.io import inspect_tiff, read_frames, write_frame_tiff, write_stack_tiff

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def _best_ms(function, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _times(n: int) -> list[datetime]:
    return [T0 + timedelta(seconds=0.1 * i) for i in range(n)]


def _bench(name: str, data: np.ndarray, path: Path) -> dict:
    """nwwatch.io write (atomic, fsync), inspect and read of ``data``, and tifffile.imread."""
    if len(data) == 1:
        write = partial(write_frame_tiff, path, data[0], pixel_size_nm=0.5, acquired_at=T0)
    else:
        write = partial(write_stack_tiff, path, data, pixel_size_nm=0.5,
                        acquired_at=_times(len(data)))
    row = {"case": name, "mb": round(data.nbytes / 1e6, 1), "write_ms": _best_ms(write, 3),
           "inspect_ms": _best_ms(partial(inspect_tiff, path)),
           "read_frames_ms": _best_ms(partial(read_frames, path)),
           "tifffile_imread_ms": _best_ms(partial(tifffile.imread, path))}
    print(json.dumps(row), flush=True)
    return row


def _bench_read(name: str, path: Path, bare, repeat: int = 3) -> dict:
    """inspect and read of an existing file against ``bare`` (tifffile's own reading)."""
    row = {"case": name, "inspect_ms": _best_ms(partial(inspect_tiff, path), repeat),
           "read_frames_ms": _best_ms(partial(read_frames, path), repeat),
           "tifffile_ms": _best_ms(partial(bare, path), repeat)}
    print(json.dumps(row), flush=True)
    return row


def _read_every_series(path: Path) -> list[np.ndarray]:
    with tifffile.TiffFile(path) as tif:
        return [series.asarray() for series in tif.series]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.tif"
        rows.append(_bench("frame 2048x2048 uint16",
                           rng.integers(0, 4096, (1, 2048, 2048), np.uint16), path))
        rows.append(_bench("stack 200x512x512 uint16",
                           rng.integers(0, 4096, (200, 512, 512), np.uint16), path))
        pages = rng.integers(0, 4096, (5000, 16, 16), np.uint16)
        tifffile.imwrite(path, pages, metadata=None)
        rows.append(_bench_read("5000 plain pages 16x16 uint16 (tifffile, metadata=None)",
                                path, tifffile.imread))
        write_stack_tiff(path, pages, pixel_size_nm=0.5, acquired_at=_times(len(pages)))
        rows.append(_bench_read("5000 pages 16x16 uint16, ImageJ stack (write_stack_tiff)",
                                path, tifffile.imread))
        grown = np.random.default_rng(1).integers(0, 4096, (2000, 16, 16), np.uint16)
        with tifffile.TiffWriter(path) as tif:
            for page in grown:
                tif.write(page)
        rows.append(_bench_read("2000 pages 16x16 uint16, one TiffWriter.write call each "
                                "(tifffile: reading every series)", path, _read_every_series))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": "python -m bench.bench_io_tiff " + " ".join(argv or sys.argv[1:]),
                  "cpu_count": os.cpu_count(), "tifffile": tifffile.__version__,
                  "load_average_1_5_15_before": [round(x, 2) for x in load_before],
                  "load_average_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
                  "rows": rows}
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
