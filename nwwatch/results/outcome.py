"""What became of the rows and files of a run, in four words: ok, flagged, failed, quarantined.

A *row* (one frame, or one tomogram) is ``ok`` when its ``status`` is ``"ok"`` and ``flagged``
for any other status (a frame without a valid angle, an angle outside the physical range, a
suspect tomogram): a flagged row is a result, with its ``reason_code`` saying why a person
should look at it. A *file* that produced no rows is ``failed`` (an unexpected error, tried
again later) or ``quarantined`` (bad input, or out of attempts). ``replay``, ``status`` and the
service's log lines all count with these functions, so they agree with each other; what the
results hold (``status``) counts the rows of the newest version of each file, and those of
earlier versions apart (:func:`count_results`).

Rows written before ``reason_code`` existed (or volume rows without one) count under their
``status`` as the code.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nwwatch.results.versions import (
    VERSION_COLUMNS,
    bool_mask,
    codes,
    epoch_s,
    newest_of_groups,
    newest_version_mask,
    row_groups,
)

#: The four outcomes, in the order summaries print them.
OUTCOMES: tuple[str, ...] = ("ok", "flagged", "failed", "quarantined")


def row_outcome(status: str | None) -> str:
    """``"ok"`` for a row whose ``status`` is ``"ok"``, else ``"flagged"``."""
    return "ok" if status == "ok" else "flagged"


def row_reason_code(row: Mapping[str, object]) -> str:
    """The row's ``reason_code``, or its ``status`` where the row has no reason code."""
    code = row.get("reason_code")
    if code:
        return str(code)
    return str(row.get("status") or "unknown")


def count_rows(rows: Iterable[Mapping[str, object]]) -> Counter[tuple[str, str]]:
    """Rows counted by (status, reason_code)."""
    return Counter((str(r.get("status") or "unknown"), row_reason_code(r)) for r in rows)


def count_table(table: pa.Table) -> Counter[tuple[str, str]]:
    """Rows of ``table`` counted by (status, reason_code); only those two columns are read."""
    if table.num_rows == 0:
        return Counter()
    # one Python step per (status, reason_code) pair, not per row: a long run has millions
    n = table.num_rows
    status, names = (codes(table["status"]) if "status" in table.column_names
                     else (np.full(n, -1, np.int64), []))
    code, code_names = (codes(table["reason_code"]) if "reason_code" in table.column_names
                        else (np.full(n, -1, np.int64), []))
    pairs, counts = np.unique((status + 1) * (len(code_names) + 1) + (code + 1),
                              return_counts=True)
    total: Counter[tuple[str, str]] = Counter()
    for pair, count in zip(pairs.tolist(), counts.tolist(), strict=True):
        s, c = divmod(pair, len(code_names) + 1)
        row = {"status": names[s - 1] if s else None,
               "reason_code": code_names[c - 1] if c else None}
        total[(str(row["status"] or "unknown"), row_reason_code(row))] += count
    return total


_TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass
class ResultCounts:
    """Rows of committed results files, by (status, reason_code).

    ``current``: rows of the newest version of each file (:mod:`nwwatch.results.versions`):
    what the results say about the files as they are now. ``superseded``: rows of earlier
    versions of a file (a stack processed again as it grew), kept in the files but not
    counted in ``current``; ``superseded_versions`` those versions (file contents),
    ``superseded_files`` the files (paths) they belong to. ``unreadable``: files that could
    not be read (damaged): their rows are in neither count; ``missing``: files that do not
    exist (nor are their rows)."""

    current: Counter[tuple[str, str]] = field(default_factory=Counter)
    superseded: Counter[tuple[str, str]] = field(default_factory=Counter)
    superseded_versions: int = 0
    superseded_files: int = 0
    unreadable: list[Path] = field(default_factory=list)
    missing: list[Path] = field(default_factory=list)
    #: ``current`` per model: (model_sha256, measurement_version) -> (counts, newest
    #: ``processed_at`` in epoch s, the ``model_name`` values its rows carry, newest first).
    #: A frame processed by two models is a row of each, so ``current`` counts it twice;
    #: this says whose rows they are. A model is its content: one file deployed under
    #: another name is one model that ran under two names.
    by_model: dict[tuple[str, str], tuple[Counter[tuple[str, str]], float, list[str]]] = \
        field(default_factory=dict)
    #: Files (sources) with rows of more than one model in ``current``: their frames count
    #: once per model. None when ``by_model`` has one model or none, or the rows name no
    #: source.
    files_of_several_models: int | None = None


def count_results(paths: Iterable[str | os.PathLike[str]],
                  reverted: pa.Table | None = None,
                  quarantined: pa.Table | None = None) -> ResultCounts:
    """Count the rows of the given Parquet files, reading only the ``status`` and
    ``reason_code`` columns and those that tell versions apart
    (:data:`nwwatch.results.versions.VERSION_COLUMNS`). Files that no longer exist are
    skipped and listed in ``missing`` (their rows may have been moved by a compaction since
    they were listed); files that cannot be read are listed in ``unreadable``. ``reverted``:
    the results folder's record of files put back to earlier content
    (:func:`nwwatch.results.versions.read_reverted`); ``quarantined``: the quarantined files
    (``path``, ``quarantined_at``), whose earlier rows are superseded
    (:func:`nwwatch.results.versions.newest_version_mask`)."""
    out = ResultCounts()
    tables: list[pa.Table] = []
    wanted = ("status", "reason_code", "model_name", *VERSION_COLUMNS)
    for path in paths:
        try:
            # a file object: pyarrow reads a path string as a URI where it can ("run:1/…")
            # and refuses one that is not UTF-8
            handle = open(path, "rb")  # noqa: SIM115 - closed with the ParquetFile below
        except FileNotFoundError:
            out.missing.append(Path(path))
            continue
        except OSError:
            out.unreadable.append(Path(path))
            continue
        try:
            parquet = pq.ParquetFile(handle)
        except (OSError, pa.ArrowInvalid):
            handle.close()
            out.unreadable.append(Path(path))
            continue
        with handle, parquet:
            try:
                names = parquet.schema_arrow.names
                # files of a few rows each: threads cost more than they save (measured:
                # 0.4 vs 0.8 ms a file on the 500 batch files of bench/bench_status.py)
                table = parquet.read(columns=[c for c in wanted if c in names],
                                     use_threads=False)
                # one type per column, whatever wrote the file, so the files concatenate
                table = table.cast(pa.schema([
                    (c, _TIMESTAMP if c == "processed_at" else pa.string())
                    for c in table.column_names]))
            except (OSError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
                out.unreadable.append(Path(path))
                continue
        if table.num_columns == 0:  # none of the columns: rows of another writer
            out.current[("unknown", "unknown")] += parquet.metadata.num_rows
        elif table.num_rows:
            tables.append(table)
    if not tables:
        return out
    table = pa.concat_tables(tables, promote_options="default")
    keep = newest_version_mask(table, reverted, quarantined)
    current = table if keep.all() else table.filter(bool_mask(keep))
    out.current += count_table(current)
    out.by_model = _by_model(current)
    if len(out.by_model) > 1:
        out.files_of_several_models = _files_of_several_models(current)
    if keep.all():
        return out
    old = table.filter(bool_mask(~keep))
    out.superseded = count_table(old)
    # versions: distinct (source, series, content); files: distinct sources
    version = row_groups(old, ("source", "model_sha256", "measurement_version", "source_sha256"))
    out.superseded_versions = int(version.max()) + 1
    if "source" in old.column_names:
        out.superseded_files = int(row_groups(old, ("source",)).max()) + 1
    return out


#: The columns that tell one model's rows from another's (:func:`_by_model`): the model's
#: content and the measurement version, not the file's name (one file copied under another
#: name is the same model, as the ledger and the dashboard count it).
_MODEL_COLUMNS = ("model_sha256", "measurement_version")


def _files_of_several_models(table: pa.Table) -> int | None:
    """How many sources of ``table`` have rows of more than one model (:data:`_MODEL_COLUMNS`);
    None without a ``source`` column (rows of another writer): not known."""
    if "source" not in table.column_names:
        return None
    source = row_groups(table, ("source",))
    pairs = np.unique(np.stack([source, row_groups(table, _MODEL_COLUMNS)]), axis=1)
    return int((np.bincount(pairs[0]) > 1).sum())


def _by_model(table: pa.Table) -> dict[tuple[str, str],
                                          tuple[Counter[tuple[str, str]], float, list[str]]]:
    """``table``'s rows counted per (model_sha256, measurement_version), each with its newest
    ``processed_at`` (epoch s; NaN without the column) and the ``model_name`` values of its
    rows, the one of the newest rows first ("" where the rows name none)."""
    n = table.num_rows
    group = np.zeros(n, np.int64)
    values: list[list] = []
    for name in _MODEL_COLUMNS:
        code, names = (codes(table[name]) if name in table.column_names
                       else (np.full(n, -1, np.int64), []))
        group = group * (len(names) + 1) + code + 1
        values.append(names)
    processed = (epoch_s(table["processed_at"]) if "processed_at" in table.column_names
                 else np.full(n, np.nan))
    name_code, model_names = (codes(table["model_name"]) if "model_name" in table.column_names
                              else (np.full(n, -1, np.int64), []))
    out = {}
    for g in np.unique(group).tolist():
        rows = group == g
        parts = []
        for names in reversed(values):
            g, c = divmod(g, len(names) + 1)
            parts.append(str(names[c - 1]) if c else "")
        newest = processed[rows]
        # the names the model's rows carry, the newest rows' first (ties: by name)
        named = name_code[rows]
        latest = {str(model_names[named[i]]) if named[i] >= 0 else "":
                  -np.inf if np.isnan(newest[i]) else float(newest[i])
                  for i in newest_of_groups(named, newest).tolist()}
        out[(parts[1], parts[0])] = (
            count_table(table.filter(bool_mask(rows))),
            float(np.nanmax(newest)) if np.isfinite(newest).any() else float("nan"),
            sorted(latest, key=lambda label: (-latest[label], label)))
    return out


def by_outcome(counts: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """``{"ok": n, "flagged": n}`` from (status, reason_code) counts."""
    out = {"ok": 0, "flagged": 0}
    for (status, _), n in counts.items():
        out[row_outcome(status)] += n
    return out


def flagged_reasons(counts: Mapping[tuple[str, str], int]) -> dict[str, int]:
    """Flagged rows by ``reason_code``, most frequent first, ties by name (the same rows give
    the same line whatever order they were counted in); a flagged row whose code is
    ``"ok"`` (``several_droplets``: a valid angle, but not the only droplet) counts under its
    ``status``, which says why it is flagged."""
    reasons: Counter[str] = Counter()
    for (status, code), n in counts.items():
        if row_outcome(status) == "flagged":
            reasons[status if code == "ok" else code] += n
    return dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))


def format_counts(counts: Mapping[tuple[str, str], int]) -> str:
    """``"12 ok, 3 flagged (fit_failed 2, no_droplet 1)"``."""
    rows = by_outcome(counts)
    text = f"{rows['ok']} ok, {rows['flagged']} flagged"
    reasons = flagged_reasons(counts)
    if reasons:
        text += " (" + ", ".join(f"{code} {n}" for code, n in reasons.items()) + ")"
    return text
