"""Read what the service has committed, grouped per acquisition, for the dashboard and report.

An acquisition is the folder that holds the input files (a watched folder or a sub-folder of
it): rows are grouped by the parent folder of their ``source``. Only committed data is read:
Parquet files under their final names (written by atomic rename; hidden temporaries are
skipped), ``quarantine.parquet`` (rewritten atomically) and, read-only, the ledger. A file
that vanishes or is replaced while it is read is simply read again at the next refresh.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nwwatch.dashboard.stats import angle_statistics, reason_codes, rolling_median

FRAME_COLUMNS = ("source", "frame", "status", "reason", "reason_code", "angle_valid",
                 "contact_angle_deg", "contact_angle_uncertainty_deg", "acquired_at",
                 "processed_at", "read_ms", "segment_ms", "measure_ms", "model_name",
                 "model_sha256", "provider", "overlay_path")
VOLUME_COLUMNS = ("source", "status", "reason", "reason_code", "mask_path", "solid_fraction",
                  "porosity_envelope", "surface_area_nm2", "surface_area_px2", "pore_count",
                  "pore_diameter_median_nm", "pore_diameter_median_px", "uncertain_fraction",
                  "threshold_agreement", "acquired_at", "processed_at", "model_name",
                  "model_sha256", "provider")


def acquisition_id(folder: str) -> str:
    """A short stable id for an acquisition folder (used in URLs instead of the path)."""
    return hashlib.sha1(folder.encode()).hexdigest()[:12]


def _epoch_s(column: pa.ChunkedArray) -> np.ndarray:
    """Timestamps -> float seconds since the epoch (NaN for null)."""
    us = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return us.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6


@dataclass
class Acquisition:
    """The rows of one folder, sorted by acquisition time (frames) or by processing time."""

    id: str
    folder: str
    kind: str  # "insitu" or "tomogram"
    table: pa.Table | None = None
    quarantined: list[dict] = field(default_factory=list)
    #: frame_series, computed once per snapshot (the table never changes after _build)
    series_cache: dict | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return 0 if self.table is None else self.table.num_rows


class ResultsStore:
    """The committed results of one RESULTS folder, re-read incrementally by :meth:`refresh`.

    Thread-safe: :meth:`refresh` swaps in a new snapshot under a lock; readers take
    :attr:`snapshot` (a dict id -> :class:`Acquisition`) and never see half of a refresh.
    """

    def __init__(self, results: str | Path, ledger: str | Path | None = None) -> None:
        self.results = Path(results)
        self.ledger = Path(ledger) if ledger is not None else self.results / "ledger.sqlite"
        self._files: dict[str, dict[Path, tuple[tuple[int, int], pa.Table]]] = {
            "frames": {}, "volumes": {}}
        self._quarantine_key: tuple[int, int] | None = None
        self._quarantine: list[dict] = []
        self._lock = threading.Lock()
        self.snapshot: dict[str, Acquisition] = {}
        self.version = 0  # bumps whenever the snapshot changes
        self.generation = 0  # bumps when rows may have been removed or replaced
        self.refreshed_at = 0.0

    # --- reading ------------------------------------------------------------------------

    def _scan(self, kind: str, columns: tuple[str, ...]) -> bool:
        folder = self.results / kind
        cache = self._files[kind]
        changed = False
        present = set()
        paths = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
        for path in paths:
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue  # a writer's hidden temporary
            try:
                st = path.stat()
                key = (st.st_size, st.st_mtime_ns)
                present.add(path)
                if path in cache and cache[path][0] == key:
                    continue
                names = pq.read_schema(path).names
                table = pq.read_table(path, columns=[c for c in columns if c in names])
            except (FileNotFoundError, OSError, pa.ArrowInvalid):
                present.discard(path)  # replaced or removed meanwhile: next refresh
                continue
            if path in cache:
                self.generation += 1  # rewritten in place (rows replaced)
            cache[path] = (key, table)
            changed = True
        for gone in set(cache) - present:
            del cache[gone]
            changed = True
            self.generation += 1  # rows may have gone: clients start again from scratch
        return changed

    def _read_quarantine(self) -> bool:
        path = self.results / "quarantine.parquet"
        try:
            st = path.stat()
        except FileNotFoundError:
            changed, self._quarantine_key, self._quarantine = bool(self._quarantine), None, []
            return changed
        key = (st.st_size, st.st_mtime_ns)
        if key == self._quarantine_key:
            return False
        try:
            self._quarantine = pq.read_table(path).to_pylist()
        except (OSError, pa.ArrowInvalid):
            return False
        self._quarantine_key = key
        return True

    def refresh(self) -> bool:
        """Read new or changed files; return True when the snapshot changed."""
        with self._lock:
            changed = self._scan("frames", FRAME_COLUMNS)
            changed = self._scan("volumes", VOLUME_COLUMNS) or changed
            changed = self._read_quarantine() or changed
            self.refreshed_at = time.time()
            if changed or not self.snapshot and self.version == 0:
                self.snapshot = self._build()
                self.version += 1
            return changed

    def _build(self) -> dict[str, Acquisition]:
        acqs: dict[str, Acquisition] = {}
        for kind, sort_key in (("frames", "acquired_at"), ("volumes", "processed_at")):
            tables = [t for _, t in self._files[kind].values() if t.num_rows]
            if not tables:
                continue
            table = pa.concat_tables(tables, promote_options="default")
            # Parent folder per distinct source (not per row: a long run has many rows).
            sources = pc.unique(table["source"])
            parents = np.array([str(Path(s).parent) for s in sources.to_pylist()])
            folder_of_row = parents[pc.index_in(table["source"], sources).to_numpy()]
            for folder in np.unique(parents):
                part = table.filter(pa.array(folder_of_row == folder))
                order = [(sort_key, "ascending"), ("source", "ascending")]
                if "frame" in part.column_names:
                    order.append(("frame", "ascending"))
                acq_id = acquisition_id(str(folder))
                acqs[acq_id] = Acquisition(acq_id, str(folder),
                                           "tomogram" if kind == "volumes" else "insitu",
                                           part.sort_by(order))
        for q in self._quarantine:
            folder = str(Path(q["path"]).parent)
            acq_id = acquisition_id(folder)
            acq = acqs.setdefault(acq_id, Acquisition(acq_id, folder, "insitu"))
            acq.quarantined.append(q)
        return acqs

    def pending_files(self) -> int | None:
        """Files claimed by a batch that is being processed (ledger, read-only); None when the
        ledger cannot be read."""
        if not self.ledger.is_file():
            return None
        try:
            db = sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True, timeout=1.0)
            try:
                return int(db.execute(
                    "SELECT COUNT(*) FROM items WHERE state='pending'").fetchone()[0])
            finally:
                db.close()
        except sqlite3.Error:
            return None


def frame_series(acq: Acquisition) -> dict[str, np.ndarray | list]:
    """Columns of an in-situ acquisition as arrays, in acquisition-time order.

    Keys: ``t`` (acquired_at, epoch s), ``processed`` (epoch s), ``angle`` (deg, NaN where
    not measured), ``unc`` (deg), ``valid`` (bool), ``code`` (reason codes, "ok" when valid),
    ``trend`` (causal rolling median, deg), ``source`` (file name), ``frame``,
    ``proc_ms`` (read + segment + measure per frame).
    """
    if acq.series_cache is not None:
        return acq.series_cache
    t = acq.table
    n = t.num_rows

    def floats(name: str) -> np.ndarray:
        if name not in t.column_names:
            return np.full(n, np.nan)
        return t[name].to_numpy(zero_copy_only=False).astype(np.float64)

    angle = floats("contact_angle_deg")
    valid_col = (t["angle_valid"].fill_null(False).to_numpy(zero_copy_only=False)
                 if "angle_valid" in t.column_names else np.isfinite(angle))
    valid = np.asarray(valid_col, dtype=bool) & np.isfinite(angle)
    status = t["status"].to_pylist() if "status" in t.column_names else [None] * n
    codes = reason_codes(status, t["reason_code"].to_pylist()
                         if "reason_code" in t.column_names else None, valid)
    acq.series_cache = {
        "t": _epoch_s(t["acquired_at"]),
        "processed": _epoch_s(t["processed_at"]),
        "angle": angle,
        "unc": floats("contact_angle_uncertainty_deg"),
        "valid": valid,
        "code": codes,
        "trend": rolling_median(angle, valid),
        "source": [Path(s).name for s in t["source"].to_pylist()],
        "frame": t["frame"].to_pylist(),
        "proc_ms": floats("read_ms") + floats("segment_ms") + floats("measure_ms"),
    }
    return acq.series_cache


def acquisition_summary(acq: Acquisition, now: float, stale_after_s: float | None) -> dict:
    """What the page header shows: counts, angle statistics, rate, model, stale warning.

    ``stale_after_s`` None (finished results) never warns. Otherwise the acquisition is stale
    when its newest row is older than ``stale_after_s`` although at least two rows arrived
    within ``stale_after_s`` before it (it was receiving frames, then stopped).
    """
    out: dict = {"id": acq.id, "folder": acq.folder, "kind": acq.kind, "n": len(acq),
                 "quarantined": len(acq.quarantined), "last_processed": None,
                 "frames_per_s": None, "proc_ms_median": None, "stale": False,
                 "model": None, "provider": None}
    if not len(acq):
        return out
    t = acq.table
    processed = np.sort(_epoch_s(t["processed_at"]))
    last = float(processed[-1])
    out["last_processed"] = last
    recent = processed[processed >= last - 60.0]
    if len(recent) >= 2 and recent[-1] > recent[0]:
        out["frames_per_s"] = float((len(recent) - 1) / (recent[-1] - recent[0]))
    if stale_after_s is not None and now - last > stale_after_s:
        # Two commits (not two rows of one multi-page file) make an acquisition "active".
        out["stale"] = bool(len(np.unique(processed[processed >= last - stale_after_s])) >= 2)
    out["model"] = t["model_name"][-1].as_py() if "model_name" in t.column_names else None
    out["provider"] = t["provider"][-1].as_py() if "provider" in t.column_names else None
    if acq.kind == "insitu":
        s = frame_series(acq)
        out["stats"] = angle_statistics(s["angle"], s["valid"], s["code"])
        tail = s["proc_ms"][-50:]
        if np.isfinite(tail).any():
            out["proc_ms_median"] = float(np.nanmedian(tail))
    return out
