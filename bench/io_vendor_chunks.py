"""Vendor files read a chunk of frames (or one frame) at a time give the frames read whole.

For every file under FOLDER named as an input nwwatch reads (TIFF, MRC, DigitalMicrograph,
Velox EMD, TIA series), recursively: ``nwwatch.io.inspect_tiff`` accepts or refuses it
(refusals listed with their error and reason); an accepted file is read whole with
``read_frames``, then with ``read_frame_chunks`` at 1, 2, 3 and n frames a chunk,
``read_frame_at`` and one ``FrameReader`` at its first, middle and last frame, and every
frame compared with the whole read's (pixels, dtype, index, source, pixel size, time and its
source), with the warnings each read logs. Files of at least ``--timed-bytes`` are timed
(whole read, chunks of 1 and of n, the last frame alone, every frame through one
``FrameReader``; best of 3). Nothing is downloaded: FOLDER is a
copy of test data (for example RosettaSciIO's ``rsciio/tests/data``, zips unpacked).

Writes a JSON summary (file names relative to FOLDER, shapes, outcomes, timings; no pixels).

Run: PYTHONPATH=. .venv/bin/python bench/io_vendor_chunks.py FOLDER --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from structlog.testing import capture_logs

import nwwatch.io as nio
from nwwatch.io import Frame, InputError
from nwwatch.io.dm import DM_SUFFIXES
from nwwatch.io.emd import EMD_SUFFIXES
from nwwatch.io.mrc import MRC_SUFFIXES
from nwwatch.io.ser import SER_SUFFIXES

SUFFIXES = (".tif", ".tiff", *MRC_SUFFIXES, *DM_SUFFIXES, *EMD_SUFFIXES, *SER_SUFFIXES)


def _warnings(logs: list[dict]) -> list[str]:
    """What a read logged (warnings, and notes such as a diffraction pattern's ignored
    calibration), each event as its sorted key=value text."""
    return [" ".join(f"{k}={e[k]}" for k in sorted(e)) for e in logs]


def _frame_mismatch(got: Frame, expected: Frame) -> str | None:
    """What differs between two frames, or None."""
    checks = [
        ("index", got.index == expected.index),
        ("source", got.source == expected.source),
        ("dtype", got.image.dtype == expected.image.dtype),
        ("shape", got.image.shape == expected.image.shape),
        ("pixels", got.image.shape == expected.image.shape
         and np.array_equal(got.image, expected.image, equal_nan=got.image.dtype.kind == "f")),
        ("pixel_size_nm", got.pixel_size_nm == expected.pixel_size_nm),
        ("acquired_at", got.acquired_at == expected.acquired_at),
        ("acquired_at_source", got.acquired_at_source == expected.acquired_at_source),
    ]
    wrong = [name for name, ok in checks if not ok]
    return f"frame {expected.index}: {', '.join(wrong)} differ" if wrong else None


def _error(exc: BaseException, folder: Path) -> dict:
    return {"error": type(exc).__name__, "input_error": isinstance(exc, InputError),
            "reason": str(exc).replace(str(folder) + "/", "")}


def _best_s(read: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - start)
    return round(best, 4)


def check_file(path: Path, folder: Path, timed_bytes: int) -> dict:
    """Inspect, read whole and by chunks / frames, compare; the file's summary."""
    row: dict = {"file": str(path.relative_to(folder)), "bytes": path.stat().st_size}
    try:
        with capture_logs():
            info = nio.inspect_tiff(path)
    except Exception as exc:  # noqa: BLE001 - a crash is reported, not raised
        row.update(outcome="refused by inspect_tiff", **_error(exc, folder))
        return row
    row.update(layout=info.layout, shape=list(info.shape), axes=info.axes,
               dtype=str(info.dtype), n_pages=info.n_pages)
    try:
        with capture_logs() as logs:
            whole = nio.read_frames(path)
    except Exception as exc:  # noqa: BLE001
        row.update(outcome="refused by read_frames", **_error(exc, folder))
        row["chunks"] = _refusals_agree(path, folder, row["error"])
        return row
    warned = _warnings(logs)
    n = len(whole)
    shown = str(folder) + "/"
    row.update(n_frames=n, frame_shape=list(whole[0].image.shape),
               frame_dtype=str(whole[0].image.dtype),
               pixel_size_nm=whole[0].pixel_size_nm,
               acquired_at_source=whole[0].acquired_at_source,
               distinct_times=len({f.acquired_at for f in whole}),
               warnings=[w.replace(shown, "") for w in warned])
    problems: list[str] = []
    if [f.index for f in whole] != list(range(n)):
        problems.append("read_frames: indices are not 0..n-1")
    read_whole: list[int] = []
    for pages in sorted({1, 2, 3, n}):
        asked: list[Path] = []
        try:
            with capture_logs() as logs:
                chunks = list(nio.read_frame_chunks(path, pages, whole=lambda i, a=asked:
                                                    a.append(i.path)))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"read_frame_chunks({pages}) raised {type(exc).__name__}: {exc}")
            continue
        if asked:
            read_whole.append(pages)
            expected_sizes = [n]
        else:
            expected_sizes = [min(pages, n - s) for s in range(0, n, pages)]
        if [len(c) for c in chunks] != expected_sizes:
            problems.append(f"read_frame_chunks({pages}): chunk sizes "
                            f"{[len(c) for c in chunks]}, expected {expected_sizes}")
        frames = [f for c in chunks for f in c]
        if len(frames) != n:
            problems.append(f"read_frame_chunks({pages}): {len(frames)} frames of {n}")
        problems += [f"read_frame_chunks({pages}) {m}"
                     for got, exp in zip(frames, whole, strict=False)  # a count differing: above
                     if (m := _frame_mismatch(got, exp))]
        if _warnings(logs) != warned:
            problems.append(f"read_frame_chunks({pages}) warned {_warnings(logs)}, "
                            f"read_frames {warned}")
    row["chunk_sizes_checked"] = sorted({1, 2, 3, n})
    row["read_whole_for_chunks"] = read_whole
    at = sorted({0, n // 2, n - 1})
    row["frames_at_checked"] = at
    for index in at:
        try:
            with capture_logs() as logs:
                frame = nio.read_frame_at(path, index)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"read_frame_at({index}) raised {type(exc).__name__}: {exc}")
            continue
        if m := _frame_mismatch(frame, whole[index]):
            problems.append(f"read_frame_at({index}) {m}")
        if _warnings(logs) != warned:
            problems.append(f"read_frame_at({index}) warned {_warnings(logs)}, "
                            f"read_frames {warned}")
    try:
        with capture_logs(), nio.FrameReader(path) as reader:
            for index in reversed(at):
                if m := _frame_mismatch(reader.frame(index), whole[index]):
                    problems.append(f"FrameReader.frame({index}) {m}")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"FrameReader raised {type(exc).__name__}: {exc}")
    try:
        with capture_logs():
            nio.read_frame_at(path, n)
        problems.append(f"read_frame_at({n}) past the last frame did not raise")
    except nio.PageIndexError:
        pass
    except Exception as exc:  # noqa: BLE001
        problems.append(f"read_frame_at({n}) raised {type(exc).__name__}, not PageIndexError")
    row["problems"] = [p.replace(str(folder) + "/", "") for p in problems]
    row["outcome"] = "same frames" if not problems else "MISMATCH"
    if row["bytes"] >= timed_bytes:
        with capture_logs():
            row["seconds"] = {
                "read_frames": _best_s(lambda: nio.read_frames(path)),
                "chunks_of_1": _best_s(lambda: list(nio.read_frame_chunks(path, 1))),
                f"chunks_of_{n}": _best_s(lambda: list(nio.read_frame_chunks(path, n))),
                "read_frame_at_last": _best_s(lambda: nio.read_frame_at(path, n - 1)),
                "frame_reader_all": _best_s(lambda: _reader_all(path, n)),
            }
    return row


def _reader_all(path: Path, n: int) -> None:
    with nio.FrameReader(path) as reader:
        for index in range(n):
            reader.frame(index)


def _refusals_agree(path: Path, folder: Path, error: str) -> dict:
    """A file read_frames refuses: the chunk and one-frame readers refuse it with the same
    error class."""
    out = {}
    for name, read in (("read_frame_chunks", lambda: list(nio.read_frame_chunks(path, 2))),
                       ("read_frame_at", lambda: nio.read_frame_at(path, 0))):
        try:
            with capture_logs():
                read()
            out[name] = "read (read_frames refused)"
        except Exception as exc:  # noqa: BLE001
            out[name] = ("same refusal" if type(exc).__name__ == error
                         else _error(exc, folder))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder of vendor files (searched recursively)")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("--timed-bytes", type=int, default=256 << 10,
                        help="time files of at least this size (default 256 KiB)")
    parser.add_argument("--source", default="",
                        help="where FOLDER's files come from, recorded in the summary")
    args = parser.parse_args()
    folder = args.folder.resolve()
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in SUFFIXES)
    rows = []
    for path in files:
        row = check_file(path, folder, args.timed_bytes)
        rows.append(row)
        detail = row.get("reason") or "; ".join(row.get("problems", [])) or ""
        shape = "x".join(map(str, row.get("shape", [])))
        print(f"{row['outcome']:<26} {row['file']:<70} {shape:<14} {detail[:150]}")
    outcomes: dict[str, int] = {}
    for row in rows:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    summary = {"folder": args.folder.name, "source": args.source, "n_files": len(rows),
               "outcomes": outcomes, "files": rows}
    print(json.dumps(outcomes))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
