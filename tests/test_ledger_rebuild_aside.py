"""``nwwatch ledger rebuild`` moves an existing ledger aside and never deletes one: a ledger
already moved aside under the same second's name is kept, not replaced."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from servicekit import (
    model,
    run_nwwatch,
    serve_frames,
    write_config,
    write_small_tomogram,
)

from nwwatch.service import replay


def test_two_rebuilds_in_one_second_keep_both_ledgers_moved_aside(tmp_path):
    # Was: the name moved aside to was the second's UTC time alone, and os.replace put the
    # second rebuild's ledger over the first one's copy: the original ledger was lost.
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    write_small_tomogram(acq / "v.tif")
    assert replay(acq, res, kind="tomogram", model=model(tmp_path / "m", kind="tomogram")).done
    ledger = res / "ledger.sqlite"
    original = ledger.read_bytes()
    # Copies already moved aside under every second the runs below may take.
    now = datetime.now(UTC)
    earlier = {}
    for s in range(120):
        stamp = (now + timedelta(seconds=s)).strftime("%Y%m%dT%H%M%SZ")
        earlier[res / f"ledger.sqlite.replaced-{stamp}"] = f"earlier {stamp}".encode()
    for path, data in earlier.items():
        path.write_bytes(data)

    first = run_nwwatch("ledger", "rebuild", str(res))
    assert first.returncode == 0, first.stderr
    rebuilt = ledger.read_bytes()
    second = run_nwwatch("ledger", "rebuild", str(res))
    assert second.returncode == 0, second.stderr

    for path, data in earlier.items():
        assert path.read_bytes() == data, f"{path.name} was replaced"
    aside = [p for p in res.glob("ledger.sqlite.replaced-*") if p not in earlier
             and not p.name.endswith(("-wal", "-shm"))]
    assert sorted(p.read_bytes() for p in aside) == sorted([original, rebuilt])
    for run, path in zip((first, second), sorted(aside, key=lambda p: p.read_bytes() != original),
                         strict=True):
        assert f"moved aside: {path}" in run.stdout
    assert ledger.exists()


def test_a_killed_services_ledger_moved_aside_opens_with_its_write_ahead_log(tmp_path):
    # Was: ledger.sqlite-wal became ledger.sqlite-wal.replaced-<stamp>, a name SQLite does not
    # pair with ledger.sqlite.replaced-<stamp>. A service killed (kill -9, a power cut) leaves
    # its transactions in the write-ahead log, so the copy moved aside opened without its
    # tables ("no such table: items"): the ledger kept "never deleted" could not be read.
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.2,
                       flush_seconds=0)
    serve_frames(cfg, acq, res, res, kill=True)
    wal = res / "ledger.sqlite-wal"
    assert wal.exists() and wal.stat().st_size > 0  # the killed service's last transactions

    rebuilt = run_nwwatch("ledger", "rebuild", str(res))
    assert rebuilt.returncode == 0, rebuilt.stderr
    [aside] = [p for p in res.glob("ledger.sqlite.replaced-*") if not p.name.endswith(
        ("-wal", "-shm"))]
    assert aside.with_name(aside.name + "-wal").exists()
    assert f"moved aside: {aside.with_name(aside.name + '-wal')}" in rebuilt.stdout
    db = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
    try:
        done = db.execute("SELECT COUNT(*) FROM items WHERE state = 'done'").fetchone()[0]
    finally:
        db.close()
    assert done == 3
