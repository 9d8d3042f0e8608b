"""What became of the rows and files of a run, in four words: ok, flagged, failed, quarantined.

A *row* (one frame, or one tomogram) is ``ok`` when its ``status`` is ``"ok"`` and ``flagged``
for any other status (a frame without a valid angle, an angle outside the physical range, a
suspect tomogram): a flagged row is a result, with its ``reason_code`` saying why a person
should look at it. A *file* that produced no rows is ``failed`` (an unexpected error, tried
again later) or ``quarantined`` (bad input, or out of attempts). ``replay``, ``status`` and the
service's log lines all count with these functions, so they agree with each other.

Rows written before ``reason_code`` existed (or volume rows without one) count under their
``status`` as the code.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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
    names = table.column_names
    status = (table.column("status").to_pylist() if "status" in names
              else [None] * table.num_rows)
    codes = (table.column("reason_code").to_pylist() if "reason_code" in names
             else [None] * table.num_rows)
    return count_rows({"status": s, "reason_code": c} for s, c in zip(status, codes, strict=True))


def count_files(paths: Iterable[str | os.PathLike[str]],
                unreadable: list[Path] | None = None) -> Counter[tuple[str, str]]:
    """Rows of the given Parquet files counted by (status, reason_code), reading only the
    ``status`` and ``reason_code`` columns. Files that no longer exist are skipped (their rows
    were superseded); files that cannot be read (damaged) are skipped and appended to
    ``unreadable`` (raised when it is None)."""
    total: Counter[tuple[str, str]] = Counter()
    for path in paths:
        try:
            parquet = pq.ParquetFile(Path(path))
        except FileNotFoundError:
            continue
        except (OSError, pa.ArrowInvalid):
            if unreadable is None:
                raise
            unreadable.append(Path(path))
            continue
        with parquet:
            columns = [c for c in ("status", "reason_code") if c in parquet.schema_arrow.names]
            if columns:
                total += count_table(parquet.read(columns=columns))
            else:
                total[("unknown", "unknown")] += parquet.metadata.num_rows
    return total


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
