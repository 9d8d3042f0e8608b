"""Time nwwatch.io against bare tifffile on a frame and a stack in a temporary folder.

Run: .venv/bin/python bench/bench_io_tiff.py  (about 10 s, ~100 MB of temporary files)
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import tifffile

from nwwatch.io import inspect_tiff, read_frames, write_frame_tiff, write_stack_tiff


def _best_ms(function, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _bench(name: str, data: np.ndarray, path: Path) -> None:
    t0 = datetime(2026, 11, 21, tzinfo=UTC)
    if len(data) == 1:
        write = partial(write_frame_tiff, path, data[0], pixel_size_nm=0.5, acquired_at=t0)
    else:
        times = [t0 + timedelta(seconds=0.1 * i) for i in range(len(data))]
        write = partial(write_stack_tiff, path, data, pixel_size_nm=0.5, acquired_at=times)
    write_ms = _best_ms(write, 3)
    inspect_ms = _best_ms(partial(inspect_tiff, path))
    read_ms = _best_ms(partial(read_frames, path))
    bare_ms = _best_ms(partial(tifffile.imread, path))
    print(f"{name} ({data.nbytes / 1e6:.0f} MB): write {write_ms:.1f} ms (atomic, fsync), "
          f"inspect {inspect_ms:.2f} ms, read_frames {read_ms:.1f} ms, "
          f"tifffile.imread {bare_ms:.1f} ms")


def _read_every_series(path: Path) -> list[np.ndarray]:
    with tifffile.TiffFile(path) as tif:
        return [series.asarray() for series in tif.series]


def _bench_grown(n_pages: int, path: Path) -> None:
    """A file grown one TiffWriter.write call per page (one tifffile series per page)."""
    pages = np.random.default_rng(1).integers(0, 4096, (n_pages, 16, 16), np.uint16)
    with tifffile.TiffWriter(path) as tif:
        for page in pages:
            tif.write(page)
    inspect_ms = _best_ms(partial(inspect_tiff, path), 3)
    read_ms = _best_ms(partial(read_frames, path), 3)
    bare_ms = _best_ms(partial(_read_every_series, path), 3)
    print(f"{n_pages} pages 16x16 uint16, one write call each: inspect {inspect_ms:.0f} ms, "
          f"read_frames {read_ms:.0f} ms, tifffile reading every series {bare_ms:.0f} ms")


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.tif"
        _bench("frame 2048x2048 uint16", rng.integers(0, 4096, (1, 2048, 2048), np.uint16), path)
        _bench("stack 200x512x512 uint16", rng.integers(0, 4096, (200, 512, 512), np.uint16),
               path)
        _bench_grown(2000, path)


if __name__ == "__main__":
    main()
