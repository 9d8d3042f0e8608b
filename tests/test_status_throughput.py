"""`nwwatch status`'s "rows/s while busy": the idle time between batches does not count."""

from __future__ import annotations

import time

from nwwatch.service.ledgerdb import open_ledger_db
from nwwatch.service.reporting import open_readonly


def _committed(db, batch_id: str, n_rows: int, claimed: float, committed: float) -> None:
    db.execute("INSERT INTO batches (batch_id, kind, state, parquet, n_rows, created_at, "
               "committed_at) VALUES (?, 'insitu', 'committed', ?, ?, ?, ?)",
               (batch_id, f"frames/{batch_id}.parquet", n_rows, claimed, committed))


def test_two_replays_minutes_apart_report_the_rate_of_their_work(tmp_path):
    """Two replays 7 minutes apart, 12 rows in 5 s and 1 row in 1 s: 13 rows over 6 busy
    seconds, not over the 7 minutes between (the status said 0.03 rows/s, for runs that
    printed 2.2 rows/s)."""
    path = tmp_path / "ledger.sqlite"
    db = open_ledger_db(path)
    t0 = time.time() - 500.0
    # the first replay's batches overlap (claimed before the first is committed)
    _committed(db, "a", 6, t0, t0 + 5.0)
    _committed(db, "b", 6, t0 + 2.0, t0 + 5.0)
    _committed(db, "c", 1, t0 + 420.0, t0 + 421.0)
    _committed(db, "old", 50, t0 - 3600.0, t0 - 3590.0)  # outside the 10-minute window
    db.close()
    ledger = open_readonly(path)
    try:
        rows, rate = ledger.throughput(600.0)
    finally:
        ledger.close()
    assert rows == 13
    assert abs(rate - 13 / 6.0) < 1e-6


def test_no_committed_batch_is_no_rate(tmp_path):
    path = tmp_path / "ledger.sqlite"
    open_ledger_db(path).close()
    ledger = open_readonly(path)
    try:
        assert ledger.throughput(600.0) == (0, 0.0)
    finally:
        ledger.close()
