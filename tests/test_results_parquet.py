import os

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from nwwatch.results.parquet import rows_to_table, write_batch, write_table_atomic

SCHEMA = pa.schema([pa.field("source", pa.string(), nullable=False), pa.field("x", pa.float64())])


def test_batches_form_one_dataset_and_leave_no_temporaries(tmp_path):
    for i in range(3):
        write_batch([{"source": f"f{i}", "x": float(i)}], SCHEMA, tmp_path, "frames")
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in tmp_path.glob("frames-*.parquet"))
    table = ds.dataset(tmp_path, format="parquet").to_table()
    assert sorted(table.column("source").to_pylist()) == ["f0", "f1", "f2"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError):
        table = rows_to_table([{"source": "a", "x": 1.0}], SCHEMA)
        write_table_atomic(table, tmp_path / "a.parquet")
    assert os.listdir(tmp_path) == []


def test_unknown_column_is_refused():
    with pytest.raises(KeyError, match="nope"):
        rows_to_table([{"source": "a", "nope": 1}], SCHEMA)


def test_a_naive_datetime_in_a_time_zones_column_is_refused():
    # Was: pyarrow stored datetime(2024, 5, 1, 12, 0) as 12:00 UTC: a local time (the
    # docs' rows are UTC) hours off, without a word
    from datetime import UTC, datetime, timedelta, timezone

    schema = pa.schema([pa.field("source", pa.string()),
                        pa.field("acquired_at", pa.timestamp("us", tz="UTC"))])
    with pytest.raises(ValueError, match="acquired_at: 2024-05-01 12:00:00 has no time zone"):
        rows_to_table([{"source": "a", "acquired_at": datetime(2024, 5, 1, 12, 0)}], schema)
    berlin = timezone(timedelta(hours=2))
    table = rows_to_table([{"source": "a", "acquired_at": datetime(2024, 5, 1, 12, 0,
                                                                   tzinfo=berlin)},
                           {"source": "b", "acquired_at": None}], schema)
    assert table["acquired_at"][0].as_py() == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_after_the_warm_up_a_first_table_imports_nothing_more():
    # pyarrow imported pandas on the service's first batch write (0.15-0.6 s): replay counted
    # it in its frames per second, and the live service's first rows waited for it.
    import subprocess
    import sys

    code = ("import sys\n"
            "from nwwatch.results.parquet import rows_to_table, warm_up_arrow\n"
            "import datetime, pyarrow as pa\n"
            "schema = pa.schema([('source', pa.string()), ('x', pa.float64()),\n"
            "                    ('at', pa.timestamp('us', tz='UTC'))])\n"
            "warm_up_arrow()\n"
            "before = set(sys.modules)\n"
            "rows_to_table([{'source': 'a.tif', 'x': 1.0,\n"
            "               'at': datetime.datetime.now(datetime.timezone.utc)}], schema)\n"
            "print(sorted(set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
