"""Helpers for the service tests: painted frames with a known contact angle, configs, a
daemon subprocess, polling for results."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
from onnx_models import INSITU_GREY, build_threshold_model

REPO = Path(__file__).resolve().parent.parent
#: Acquisition time of the first frame the tests write.
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def paint_insitu(angle_deg: float = 120.0, size: int = 96, half_width: int = 8,
                 top: int | None = None) -> np.ndarray:
    """uint8 (size, size) frame painted with the threshold model's class greys: a vertical
    wire (columns ``c-a .. c+a-1``) ending at row ``top`` with a spherical-cap droplet of
    contact angle ``angle_deg`` (base = wire width)."""
    top = size // 2 if top is None else top
    img = np.full((size, size), INSITU_GREY[0], np.uint8)
    c = size / 2 - 0.5  # wire axis between the two middle columns
    cols = np.arange(size)
    wire_cols = np.abs(cols - c) < half_width
    img[top:, wire_cols] = INSITU_GREY[1]
    theta = math.radians(angle_deg)
    radius = half_width / math.sin(theta)
    # facet at the top edge of row `top` (row coordinate top - 0.5)
    center_row = (top - 0.5) + radius * math.cos(theta)
    rr, cc = np.mgrid[:size, :size]
    cap = ((rr - center_row) ** 2 + (cc - c) ** 2 <= radius**2) & (rr < top)
    img[cap] = INSITU_GREY[2]
    return img


def model(tmp: Path, **kw) -> Path:
    return build_threshold_model(tmp / "model.onnx", **kw)


def run_nwwatch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m nwwatch ARGS`` in a process of its own (this checkout's code), its output
    captured as text."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "nwwatch", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def hangup_as_a_terminal_gives_it() -> None:
    """A ``preexec_fn``: the child starts with SIGHUP at its default, as a command typed at a
    terminal does, whatever the test runner was started with (``nohup`` ignores SIGHUP, and
    a replay keeps an ignored SIGHUP ignored)."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def write_config(path: Path, watch: Path, results: Path, model_path: Path, *,
                 settle: float = 0.5, batch_size: int = 4, latency_ms: float = 50,
                 polling: str | bool = "auto", max_attempts: int = 3, rescan: float = 2.0,
                 flush_seconds: float = 0.2, extra: str = "") -> Path:
    """A one-folder configuration; rows are written ``flush_seconds`` after they are
    processed (the service's default of 10 s would only slow the tests down)."""
    from nwwatch.service.config import one_folder_config

    path.write_text(one_folder_config(
        watch, results, model_path, settle_seconds=settle, rescan_seconds=rescan,
        polling=polling, threads=1, batch_size=batch_size, max_batch_latency_ms=latency_ms,
        max_attempts=max_attempts, flush_seconds=flush_seconds, extra=extra))
    return path


def without_file_access_override() -> tuple[str, ...]:
    """A command prefix under which file permissions apply to the daemon: none for a user
    that is not root; for root, setpriv dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    (pytest skips when setpriv is missing)."""
    import shutil

    import pytest

    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.skip("root reads files whatever their permissions, and setpriv is missing")
    return ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")


class DaemonProcess:
    """``python -m nwwatch.service run --config`` as a child process, JSON log to a file.

    ``pipe``: the log goes through a pipe copied to the file by a thread (a file size limit
    set on the child then does not apply to its log)."""

    def __init__(self, config: Path, log: Path, env: dict | None = None,
                 pipe: bool = False, wrap: tuple[str, ...] = ()) -> None:
        """``wrap``: a command the daemon runs under (e.g. :data:`WITHOUT_FILE_ACCESS_OVERRIDE`)."""
        import threading

        self.log_path = log
        environ = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        environ.update(env or {})
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "nwwatch.service", "run", "--config", str(config)],
            cwd=REPO, stdout=subprocess.PIPE if pipe else self._log,
            stderr=subprocess.STDOUT, env=environ,
        )
        self._copier = None
        if pipe:
            def copy() -> None:
                for line in self.proc.stdout:
                    self._log.write(line)
                    self._log.flush()

            self._copier = threading.Thread(target=copy, daemon=True)
            self._copier.start()

    def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit status (negative: killed by that signal); AssertionError after timeout."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon still running after {timeout} s:\n"
                                 + self.log_path.read_text(errors="replace")[-3000:]) from None
        self._close_log()
        self._show_log_if_failed(code)
        return code

    def _close_log(self) -> None:
        if self._copier is not None:
            self._copier.join(timeout=5)
        self._log.close()

    def events(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def wait_event(self, name: str, timeout: float = 30.0, count: int = 1) -> dict:
        """The ``count``-th log line of event ``name`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events() if e.get("event") == name]
            if len(found) >= count:
                return found[count - 1]
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n"
                                     + self.log_path.read_text()[-3000:])
            time.sleep(0.05)
        raise AssertionError(f"no {name!r} event in {timeout} s:\n"
                             + self.log_path.read_text()[-3000:])

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"SIGTERM did not end the daemon in {timeout} s:\n"
                                 + self.log_path.read_text(errors="replace")[-3000:]) from None
        self._close_log()
        self._show_log_if_failed(code)
        return code, time.monotonic() - t0

    def _show_log_if_failed(self, code: int) -> None:
        # pytest shows a failed test's captured output: a daemon that exited other than 0
        # (a test asserting 0 fails) leaves its log's end there, not only in a deleted folder.
        if code != 0:
            print(f"daemon exited {code}; the end of its log:\n"
                  + self.log_path.read_text(errors="replace")[-4000:])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close_log()


def frames_table(results: Path, folder: str = "frames"):
    """The rows of ``results/folder`` (``frames`` or ``volumes``), or None before it exists."""
    folder = results / folder
    if not folder.is_dir():
        return None
    return ds.dataset(folder, format="parquet").to_table().to_pandas()


#: Row columns that differ between two runs of the same frames (times, batching).
RUN_COLUMNS = ("processed_at", "read_ms", "segment_ms", "measure_ms", "confidence_ms",
               "batch_id")


def assert_replay_gives_the_live_rows(live, acq: Path, out: Path, model_path: Path) -> None:
    """``nwwatch replay`` of ``acq`` into ``out`` gives exactly the rows the live service
    wrote (``live``), apart from :data:`RUN_COLUMNS`, each with a finite angle."""
    from nwwatch.service import replay

    replay(acq, out, kind="insitu", model=model_path)
    offline = frames_table(out)
    cols = [c for c in live.columns if c not in RUN_COLUMNS]
    a = live[cols].sort_values("source").reset_index(drop=True)
    b = offline[cols].sort_values("source").reset_index(drop=True)
    assert a.equals(b)
    assert np.isfinite(a.contact_angle_deg).all()


def wait_rows(results: Path, n: int, timeout: float = 30.0, proc: DaemonProcess | None = None,
              folder: str = "frames"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = frames_table(results, folder)
        if table is not None and len(table) >= n:
            return table
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError("daemon died:\n" + proc.log_path.read_text()[-3000:])
        time.sleep(0.1)
    table = frames_table(results, folder)
    got = 0 if table is None else len(table)
    raise AssertionError(f"{got} of {n} rows after {timeout} s")


def absurd_tiff_bytes(side: int = 60_000) -> bytes:
    """A classic little-endian TIFF whose header declares a side x side uint8 image
    (3.6 GB at 60,000) while the file holds 16 bytes of pixels."""
    import struct

    entries = [  # (tag, type, count, value); type 3 SHORT, 4 LONG
        (256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 1),
        (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, side),
        (279, 4, 1, side * side),
    ]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        value = data_offset if tag == 273 else value
        if typ == 3:
            out += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            out += struct.pack("<HHII", tag, typ, count, value)
    out += struct.pack("<I", 0) + bytes(16)
    return bytes(out)


def bad_inputs(folder: Path) -> dict[str, str]:
    """Write one file per kind of bad input; returns file name -> expected error type."""
    import tifffile

    from nwwatch.io import write_frame_tiff

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.tif").write_bytes(b"")
    (folder / "text.tif").write_bytes(b"this is a text file that pretends to be a TIFF\n" * 4)
    write_frame_tiff(folder / "whole.tif", paint_insitu(125, size=64))
    data = (folder / "whole.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(data[: len(data) // 2])
    (folder / "whole.tif").unlink()
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 200
    tifffile.imwrite(folder / "rgb.tif", rgb, photometric="rgb")
    (folder / "absurd.tif").write_bytes(absurd_tiff_bytes())
    return {
        "zero.tif": "EmptyFileError",
        "text.tif": "NotATiffError",
        "truncated.tif": "TruncatedTiffError",
        "rgb.tif": "MultichannelError",
        "absurd.tif": "ImageTooLargeError",
    }


HIVE_KEY = ["source", "frame"]


def hive_readers(results: Path, folder: str = "frames") -> dict:
    """(source, frame, acquisition) as pandas, polars, DuckDB and nwwatch's own reader read
    the hive-partitioned ``results/folder`` (polars and DuckDB by the glob
    ``folder/*/*.parquet``), each sorted."""
    import duckdb
    import pandas as pd
    import polars as pl

    from nwwatch.results.reading import read_results

    glob = f"{results}/{folder}/*/*.parquet"
    tables = {
        "pandas": pd.read_parquet(results / folder, columns=[*HIVE_KEY, "acquisition"]),
        # as docs/service.md reads them: the acquisition's type given, never guessed
        "polars": pl.read_parquet(glob, hive_partitioning=True,
                                  hive_schema={"acquisition": pl.String})
                    .select([*HIVE_KEY, "acquisition"]).to_pandas(),
        "duckdb": duckdb.sql(f"SELECT source, frame, acquisition FROM read_parquet('{glob}', "
                             "hive_partitioning = true, "
                             "hive_types = {'acquisition': VARCHAR})").df(),
        "nwwatch": read_results(results, folder, current=False)
                   .select([*HIVE_KEY, "acquisition"]).to_pandas(),
    }
    return {name: t.astype({"acquisition": str, "frame": "int64"}).sort_values(HIVE_KEY)
            .reset_index(drop=True) for name, t in tables.items()}


def folder_tree(folder: Path) -> dict[str, bytes | str | None]:
    """Every path under ``folder`` with its bytes; a ledger with its SQL dump (opening it
    rewrites its schema-version row in place: the same content, other page bytes)."""
    def content(p: Path) -> bytes | str | None:
        if p.name == "ledger.sqlite":
            db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
            try:
                return "\n".join(db.iterdump())
            finally:
                db.close()
        return p.read_bytes() if p.is_file() else None

    return {p.relative_to(folder).as_posix(): content(p) for p in sorted(folder.rglob("*"))}


def serve_frames(cfg: Path, acq: Path, results: Path, ledger_folder: Path, n: int = 3,
                 kill: bool = False) -> None:
    """Run the service of ``cfg`` (its log beside it) until ``n`` new frames written into
    ``acq`` have their rows in ``results`` and are done in the ledger in ``ledger_folder``;
    then stop it with SIGTERM, or with ``kill`` SIGKILL (its last transactions left in the
    ledger's write-ahead log)."""
    daemon = DaemonProcess(cfg, cfg.parent / "log.jsonl")
    try:
        daemon.wait_event("ready", timeout=60)
        write_frames(acq, n)
        wait_rows(results, n, proc=daemon, timeout=60)
        wait_files_done(ledger_folder, n)
    finally:
        if kill:
            daemon.kill()
        else:
            daemon.terminate()


def wait_files_done(ledger_folder: Path, n: int, timeout: float = 30.0) -> None:
    """Wait until the ledger in ``ledger_folder`` records ``n`` files as done (its rows are
    written before their batch is committed)."""
    deadline = time.monotonic() + timeout
    while ledger_count(ledger_folder, "items", "state = 'done'") < n:
        assert time.monotonic() < deadline, f"the ledger has not recorded the {n} files"
        time.sleep(0.1)


def ledger_count(results: Path, table: str, where: str) -> int:
    """Rows of the ledger's ``table`` matching the SQL ``where`` (0 while the ledger or its
    table does not exist yet), read without locking out the service."""
    path = results / "ledger.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def wait_batch_claimed(results: Path, timeout: float = 60.0) -> None:
    """Until the service has claimed a batch (one is 'writing'), e.g. one made to hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ledger_count(results, "batches",
                                                           "state='writing'"):
        time.sleep(0.05)


def write_small_tomogram(path: Path, width: int = 10) -> np.ndarray:
    """Write an 8 x 24 x 28 uint8 tomogram at ``path`` (voxels 2 x 1 x 1 nm): pore grey with
    one solid block ``width`` voxels wide in x, the greys of the threshold test model
    (``model(tmp, kind="tomogram")``); returns the voxels."""
    from onnx_models import TOMOGRAM_GREY

    from nwwatch.io import write_volume_tiff

    vol = np.full((8, 24, 28), TOMOGRAM_GREY[0], np.uint8)
    vol[1:7, 3:20, 4:4 + width] = TOMOGRAM_GREY[1]
    write_volume_tiff(path, vol, voxel_size_nm=(2.0, 1.0, 1.0))
    return vol


def write_frames(folder: Path, n: int, start: int = 0, size: int = 48) -> list[str]:
    """``n`` frames ``f{i:03d}.tif`` (i from ``start``) with distinct bytes (the ledger is
    keyed by content), acquired a second apart from :data:`T0`; returns their names."""
    from nwwatch.io import write_frame_tiff

    names = []
    for i in range(start, start + n):
        write_frame_tiff(folder / f"f{i:03d}.tif", paint_insitu(90 + i, size=size),
                         acquired_at=T0 + timedelta(seconds=i))
        names.append(f"f{i:03d}.tif")
    return names



#: How the driver names a Dask worker in the stops about its view: address, host and pid.
WORKER = r"the Dask worker (tcp://\S+) at (\S+) \(pid (\d+)\)"


def assert_names_a_worker(client, message: str) -> None:
    """``message`` names one of ``client``'s workers by its address, host and pid."""
    import re
    import socket

    address, host, pid = re.search(WORKER, message).groups()
    pids = client.run(os.getpid)
    assert address in pids and int(pid) == pids[address] and host == socket.gethostname()


def assert_ledger_closed(results: Path) -> None:
    """No write-ahead log beside the ledger: its connection was closed at the stop."""
    assert not list(results.glob("ledger.sqlite-*")), sorted(os.listdir(results))
