"""``nwwatch status``: what the service has done, read from its ledger without writing to it."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from nwwatch.service.reporting import open_readonly


def service_status(ledger_path: str | os.PathLike[str], results_dir: str | os.PathLike[str],
                   window_s: float = 600.0) -> dict:
    """Counts by state, throughput over the last ``window_s`` seconds, the last file done and
    the quarantined files with their reasons.

    Returns a dict: ``counts`` (pending, done, failed, quarantined, rows, quarantined_files),
    ``recent_rows``, ``rows_per_s``, ``last`` (source, n_rows, processed_at UTC datetime) or
    None, ``quarantined`` (list of dicts: path, reason, error_type, attempts, quarantined_at).
    """
    ledger = open_readonly(ledger_path)
    try:
        recent, rate = ledger.throughput(window_s)
        last = ledger.last_done()
        if last is not None:
            last["processed_at"] = datetime.fromtimestamp(last["processed_at"], UTC)
        quarantined = ledger.quarantined()
        for q in quarantined:
            q["quarantined_at"] = datetime.fromtimestamp(q["quarantined_at"], UTC)
        return {"counts": ledger.counts(), "recent_rows": recent, "rows_per_s": rate,
                "window_s": window_s, "last": last, "quarantined": quarantined,
                "ledger": str(Path(ledger_path)), "results": str(Path(results_dir))}
    finally:
        ledger.close()


def format_status(status: dict) -> str:
    """Human-readable text of :func:`service_status`."""
    c = status["counts"]
    lines = [
        f"results: {status['results']}   ledger: {status['ledger']}",
        f"files: {c['done']} done ({c['rows']} frame/volume rows), {c['pending']} in flight, "
        f"{c['failed']} failed (will retry), {c['quarantined_files']} quarantined",
        f"throughput: {status['recent_rows']} rows in the last {status['window_s'] / 60:.0f} min"
        f" ({status['rows_per_s']:.2f} rows/s while busy)",
    ]
    last = status["last"]
    if last is not None:
        lines.append(f"last: {last['source']} ({last['n_rows']} rows) at "
                     f"{last['processed_at']:%Y-%m-%d %H:%M:%S} UTC")
    else:
        lines.append("last: nothing processed yet")
    if status["quarantined"]:
        lines.append("quarantined:")
        for q in status["quarantined"]:
            lines.append(f"  {q['path']}: {q['reason']} [{q['error_type']}, "
                         f"{q['attempts']} attempt(s)]")
    return "\n".join(lines)
