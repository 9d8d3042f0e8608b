"""``nwwatch status``: what the service has done, read from its ledger without writing to it."""

from __future__ import annotations

import math
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from nwwatch.pathtext import line_text
from nwwatch.results.outcome import by_outcome, count_results, format_counts
from nwwatch.results.quarantine import superseding_table
from nwwatch.results.versions import read_reverted
from nwwatch.service.ledgerdb import rebuild_command
from nwwatch.service.lock import LedgerElsewhereError, ledger_kept_elsewhere, lock_holder
from nwwatch.service.reporting import open_readonly

#: Reads of the ledger and its files when a file it named was replaced while read (a
#: compaction): the last read is reported as it is.
STATUS_READS = 5


def latest_done(done: list[dict], results_dir: str | os.PathLike[str]) -> dict | None:
    """The file ``status`` names as the last done, of the files of the newest commit
    (:meth:`~nwwatch.service.reporting.LedgerQueries.done_last`): the one the dashboard
    names as the latest frame, the latest by its rows' acquisition time (read from their
    results files), files without one after those with one, then by name. Files committed
    together share their ``processed_at``: the ledger's order named an earlier frame of the
    batch than the dashboard. Returns ``source``, ``n_rows``, ``processed_at``, or None."""
    if not done:
        return None
    acquired = _acquired_s(done, Path(results_dir)) if len(done) > 1 else {}

    def key(d: dict) -> tuple:
        t = acquired.get(d["source"])
        return (t is not None, -math.inf if t is None else t, d["source"])

    pick = max(done, key=key)
    return {k: pick[k] for k in ("source", "n_rows", "processed_at")}


def _acquired_s(done: list[dict], results_dir: Path) -> dict[str, float]:
    """Per ``source`` of ``done``, the newest ``acquired_at`` of its rows (epoch s) in the
    results files the ledger names; a file that cannot be read tells nothing (the name
    decides)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out: dict[str, float] = {}
    for parquet in {d["parquet"] for d in done if d["parquet"]}:
        try:
            with open(results_dir / parquet, "rb") as handle:
                table = pq.read_table(handle, columns=["source", "acquired_at"])
        except (OSError, pa.ArrowInvalid):
            continue  # gone (a compaction meanwhile), damaged, or without acquisition times
        sources = pa.array(sorted({d["source"] for d in done}), pa.string())
        # plain strings: rows written back by another program may hold categories
        table = pa.table({"source": table["source"].cast(pa.string()),
                          "acquired_at": table["acquired_at"]})
        table = table.filter(pc.is_in(table["source"], value_set=sources))
        for row in table.group_by("source").aggregate([("acquired_at", "max")]).to_pylist():
            if row["acquired_at_max"] is not None:
                out[row["source"]] = row["acquired_at_max"].timestamp()
    return out


def service_status(ledger_path: str | os.PathLike[str], results_dir: str | os.PathLike[str],
                   window_s: float = 600.0) -> dict:
    """Counts by state, throughput over the last ``window_s`` seconds, the last file done and
    the quarantined files with their reasons.

    Returns a dict: ``counts`` (pending, done, failed, quarantined, rows, quarantined_files: see
    :meth:`nwwatch.service.reporting.LedgerQueries.counts`; ledger items, one per file content,
    so every version of a file processed again counts; ``quarantined`` counts ledger items,
    ``quarantined_files`` the files on the quarantine list, which the text shows; ``failed``
    the failed items that will be tried again, ``failed_gone`` those whose file was deleted
    or changed since, which nothing tries again:
    :meth:`~nwwatch.service.reporting.LedgerQueries.failed_gone`), ``rows`` (the
    rows of the newest version of each file, read from the committed Parquet files:
    :func:`nwwatch.results.outcome.count_results`), ``rows_by_outcome`` ({"ok": n, "flagged":
    n}) and ``rows_by_reason`` (list of dicts: status, reason_code, rows; most frequent first,
    ties by name) of those rows, ``superseded`` (rows of earlier versions of a file, kept in the
    files but not counted in ``rows``: dict rows, versions, files, rows_by_outcome),
    ``rows_by_model`` (the same rows per model (its sha256) and measurement version, newest
    first: list of dicts model_name (the name of its newest rows), model_names (every name
    its rows carry, the newest first: one model file deployed under another name), model_sha256,
    measurement_version, rows, rows_by_outcome, rows_by_reason, last_processed_at UTC
    datetime or None; a folder processed again after a model change holds a row per frame of
    each model, so ``rows`` counts such a frame once per model),
    ``files_of_several_models`` (how many files have rows of more than one model; None with
    fewer than two models), ``unreadable_files`` (committed results files that cannot be read:
    their rows are not counted), ``missing_files`` (committed results files that no longer
    exist, e.g. deleted by hand: their rows are not counted and their input files stay done),
    ``ledger_in_use`` (a process holds the ledger's lock; None: unknown), ``recent_rows``,
    ``rows_per_s``, ``last`` (source, n_rows, processed_at UTC datetime) or None,
    ``quarantined`` (list of dicts: path, reason, error_type, attempts, quarantined_at, gone:
    the path no longer exists here).

    Raises FileNotFoundError when there is no ledger at ``ledger_path``, and
    :class:`~nwwatch.service.lock.LedgerElsewhereError` when the results are kept by another
    ledger (a results folder's own ledger left behind when ``[state] ledger`` moved, or
    ``nwwatch ledger rebuild --ledger``): its counts stopped at that moment.
    """
    other = ledger_kept_elsewhere(results_dir, ledger_path)
    if other is not None:
        raise LedgerElsewhereError(Path(results_dir), Path(ledger_path), other)
    held = [] if Path(ledger_path).is_file() else [
        sub for sub in ("frames", "volumes") if (Path(results_dir) / sub).is_dir()]
    if held:
        # results without their ledger: "nothing processed yet?" would be wrong
        raise FileNotFoundError(
            f"{ledger_path}: no ledger here, beside the results in {results_dir}/{held[0]}: "
            "a service whose [state] ledger lies elsewhere: give its --config; a lost "
            f"ledger: `{rebuild_command(Path(ledger_path), Path(results_dir))}` (a service "
            "rebuilds it at its next start)")
    ledger = open_readonly(ledger_path)
    try:
        for attempt in range(STATUS_READS):
            # The ledger's numbers and its files' rows of one moment: read in one snapshot,
            # and read again when a compaction or a forced replay replaced a file meanwhile.
            with ledger.snapshot():
                recent, rate = ledger.throughput(window_s)
                last = latest_done(ledger.done_last(), results_dir)
                quarantined = ledger.quarantined()
                for q in quarantined:
                    q["quarantined_at"] = datetime.fromtimestamp(q["quarantined_at"], UTC)
                gone = ledger.quarantined_gone()
                counts = ledger.counts()
                # failed items whose file is gone or holds other content: never retried
                counts["failed_gone"] = ledger.failed_gone()
                counts["failed"] -= counts["failed_gone"]
                counted = count_results((Path(results_dir) / rel
                                         for rel in ledger.committed_parquets()),
                                        read_reverted(results_dir),
                                        superseding_table(quarantined))
            # A file the ledger still names once read again is gone for good (deleted by
            # hand): its files stay done and are never processed again. One it no longer
            # names was replaced meanwhile.
            named = ({Path(results_dir) / rel for rel in ledger.committed_parquets()}
                     if counted.missing else set())
            missing = [str(p) for p in counted.missing if p in named and not p.exists()]
            if len(missing) == len(counted.missing) or attempt == STATUS_READS - 1:
                break
        if last is not None:
            last["processed_at"] = datetime.fromtimestamp(last["processed_at"], UTC)
        for q in quarantined:
            # a bad file deleted since needs nothing more (a replay of its folder is complete)
            q["gone"] = q["path"] in gone
        rows = counted.current
        try:
            in_use: bool | None = lock_holder(ledger_path) is not None
        except OSError:  # no /proc/locks: unknown
            in_use = None
        return {"counts": counts, "rows": sum(rows.values()),
                "rows_by_outcome": by_outcome(rows),
                "superseded": {"rows": sum(counted.superseded.values()),
                               "versions": counted.superseded_versions,
                               "files": counted.superseded_files,
                               "rows_by_outcome": by_outcome(counted.superseded)},
                "rows_by_model": _rows_by_model(counted.by_model),
                "files_of_several_models": counted.files_of_several_models,
                "ledger_in_use": in_use,
                "rows_by_reason": _reasons(rows),
                "recent_rows": recent, "rows_per_s": rate,
                "window_s": window_s, "last": last, "quarantined": quarantined,
                "unreadable_files": [str(p) for p in counted.unreadable],
                "missing_files": missing,
                "ledger": str(Path(ledger_path)), "results": str(Path(results_dir))}
    finally:
        ledger.close()


def _reasons(rows: Counter[tuple[str, str]]) -> list[dict]:
    return [{"status": st, "reason_code": code, "rows": n}
            for (st, code), n in sorted(rows.items(), key=lambda kv: (-kv[1], kv[0]))]


def _rows_by_model(by_model: dict) -> list[dict]:
    out = []
    for (sha, version), (rows, newest_s, names) in by_model.items():
        out.append({"model_name": names[0] if names else "", "model_names": names,
                    "model_sha256": sha, "measurement_version": version,
                    "rows": sum(rows.values()), "rows_by_outcome": by_outcome(rows),
                    "rows_by_reason": _reasons(rows),
                    "last_processed_at": (None if math.isnan(newest_s)
                                          else datetime.fromtimestamp(newest_s, UTC))})
    # newest first: the series the service writes now leads
    out.sort(key=lambda m: (m["last_processed_at"] is None, -(
        m["last_processed_at"].timestamp() if m["last_processed_at"] else 0.0),
        m["model_name"], m["model_sha256"]))
    return out


def format_status(status: dict) -> str:
    """Human-readable text of :func:`service_status`."""
    c = status["counts"]
    # items claimed by a process that is gone (Ctrl-C, a crash) are not being processed
    in_flight = ("left in flight by a run that stopped (settled when the service or a replay "
                 "next opens the ledger)" if c["pending"] and status.get("ledger_in_use") is False
                 else "in flight")
    gone = sum(q.get("gone", False) for q in status["quarantined"])
    lines = [
        f"results: {status['results']}   ledger: {status['ledger']}",
        f"files: {c['done']} done"
        # a file processed by several models, or in several versions, is done once for each
        + (f" (once per content, model and measurement version; {c['done_files']} "
           f"distinct file{'' if c['done_files'] == 1 else 's'})"
           if c.get("done_files") is not None and c["done_files"] < c["done"] else "")
        + f", {c['pending']} {in_flight}, "
        f"{c['failed']} failed (will retry"
        + (f"; {c['failed_gone']} more deleted or changed since, nothing to retry"
           if c.get("failed_gone") else "")
        + f"), {c['quarantined_files']} quarantined"
        + (f" ({gone} of them deleted since)" if gone else ""),
        f"rows: {status['rows']} ({_rows_text(status)})"
        + (", of the newest version of each file" if status["superseded"]["rows"] else ""),
        *_model_lines(status.get("rows_by_model", []), status.get("files_of_several_models")),
        *_superseded_lines(status["superseded"]),
        # processed: every version of a file processed again counts here
        f"throughput: {status['recent_rows']} row{'' if status['recent_rows'] == 1 else 's'}"
        f" processed in the last {status['window_s'] / 60:.0f} min"
        # rows without a processing time (batches of a rebuilt ledger) have no rate
        + (f" ({status['rows_per_s']:.2f} rows/s while busy)" if status["rows_per_s"] > 0
           else " (processing time unknown: ledger rebuilt)" if status["recent_rows"] else ""),
    ]
    last = status["last"]
    if last is not None:
        n = last["n_rows"]
        lines.append(f"last: {line_text(last['source'])} ({n} row{'' if n == 1 else 's'}) at "
                     f"{last['processed_at']:%Y-%m-%d %H:%M:%S} UTC")
    else:
        lines.append("last: nothing processed yet")
    if status.get("unreadable_files"):
        lines.append(f"{len(status['unreadable_files'])} unreadable results file(s), rows not "
                     "counted above (damaged? `nwwatch ledger rebuild` lists what it can read):")
        lines.extend(f"  {line_text(p)}" for p in status["unreadable_files"])
    if status.get("missing_files"):
        lines.append(f"{len(status['missing_files'])} results file(s) the ledger names are "
                     "missing, rows not counted above (deleted? their input files stay done; "
                     "`nwwatch ledger rebuild`, with the service stopped, lets them be "
                     "processed again):")
        lines.extend(f"  {line_text(p)}" for p in status["missing_files"])
    if status["quarantined"]:
        lines.append("quarantined:")
        for q in status["quarantined"]:
            lines.append(f"  {line_text(q['path'])}: {line_text(q['reason'])} "
                         f"[{q['error_type']}, "
                         f"{q['attempts']} attempt(s)]"
                         + ("; deleted since, nothing to do" if q.get("gone") else ""))
    return "\n".join(lines)


def _model_lines(models: list[dict], shared_files: int | None) -> list[str]:
    """Where rows of several models (or measurement versions: series) are held, or of one
    model file deployed under several names: each one's rows, newest first, with the names
    it ran under; ``shared_files`` files have rows of several (a frame of theirs counts
    once per series)."""
    renamed = any(len(m.get("model_names") or []) > 1 for m in models)
    if len(models) < 2 and not renamed:
        return []
    versions = {m["measurement_version"] for m in models}
    # one model measured under two versions is two series, not two models
    unit = ("series" if len(versions) > 1
            and len({m["model_sha256"] for m in models}) < len(models) else "model")
    shared = ("" if not shared_files else
              f": {shared_files} file{'' if shared_files == 1 else 's'} processed by several, "
              f"their rows counted once per {unit}")
    head = "by model" if unit == "model" else "by model and measurement version"
    if len(models) == 1:  # one model file, deployed under several names
        lines = [f"  by model (1 model, run under {len(models[0]['model_names'])} names):"]
    else:
        lines = [f"  {head}, newest first ({len(models)} "
                 f"{'models' if unit == 'model' else unit}{shared}):"]
    for m in models:
        when = m["last_processed_at"]
        n = m["rows"]
        # one model file deployed under another name is one model: its names are said
        others = [name or "?" for name in (m.get("model_names") or [])[1:]]
        lines.append(
            f"    {m['model_name'] or '?'} {m['model_sha256'][:12] or '?'}"
            + (f" (also named {', '.join(others)})" if others else "")
            + (f" measurement {m['measurement_version'] or '?'}" if len(versions) > 1 else "")
            + f": {n} row{'' if n == 1 else 's'} ("
            + format_counts(Counter({(r["status"], r["reason_code"]): r["rows"]
                                     for r in m["rows_by_reason"]}))
            + ")" + (f", last {when:%Y-%m-%d %H:%M:%S} UTC" if when else ""))
    return lines


def _superseded_lines(old: dict) -> list[str]:
    """Where files were processed in several versions: how many rows the earlier ones hold."""
    if not old["rows"]:
        return []
    n, versions, files = old["rows"], old["versions"], old["files"]
    return [f"superseded: {n} row{'' if n == 1 else 's'} of {versions} earlier "
            f"version{'' if versions == 1 else 's'} of {files} file{'' if files == 1 else 's'}"
            f" (processed again when the file changed, e.g. a stack growing page by page; "
            f"the files done above count every version), kept in the results files but not "
            f"counted in rows"]


def _rows_text(status: dict) -> str:
    return format_counts(Counter({(r["status"], r["reason_code"]): r["rows"]
                                  for r in status["rows_by_reason"]}))
