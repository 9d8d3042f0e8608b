"""read_results: a results folder's rows as one table, whatever versions wrote its files."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nwwatch.measure import MEASUREMENT_FIELDS
from nwwatch.results.parquet import acquisition_partition, write_batch
from nwwatch.results.quarantine import write_quarantine
from nwwatch.results.reading import ResultsReadError, read_results
from nwwatch.results.schema import frame_schema

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _row(source: str, frame: int, sha: str, at: datetime, angle: float) -> dict:
    return {"source": source, "frame": frame, "status": "ok", "reason_code": "ok",
            "reason": "", "angle_valid": True, "droplet_cut": False,
            "contact_angle_deg": angle, "source_sha256": sha,
            "processed_at": at, "model_sha256": "m" * 64, "measurement_version": "9.9"}


def _write(results, rows: list[dict], schema: pa.Schema, when: datetime) -> None:
    """One batch file named as written at ``when`` (names sort by that time)."""
    folder = results / "frames" / acquisition_partition(rows[0]["source"])
    folder.mkdir(parents=True, exist_ok=True)
    name = f"frames-{when.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:16]}.parquet"
    write_batch(rows, schema, folder, "frames", name=name)


def test_a_column_added_by_a_later_version_is_kept_for_every_row(tmp_path):
    """pandas and pyarrow take the schema from the first (oldest) file and drop the column
    from every row; read_results keeps it, null in the older file's rows."""
    full = frame_schema(MEASUREMENT_FIELDS)
    older = full.remove(full.get_field_index("triple_depth_px"))
    _write(tmp_path, [_row("/acq/a.tif", 0, "s1", T0, 100.0)], older, T0)
    new = dict(_row("/acq/b.tif", 0, "s2", T0 + timedelta(1), 110.0), triple_depth_px=1.25)
    _write(tmp_path, [new], full, T0 + timedelta(1))
    assert "triple_depth_px" not in pd.read_parquet(tmp_path / "frames").columns  # the trap

    table = read_results(tmp_path)
    rows = {r["source"]: r for r in table.to_pylist()}
    assert rows["/acq/b.tif"]["triple_depth_px"] == 1.25
    assert rows["/acq/a.tif"]["triple_depth_px"] is None
    assert rows["/acq/a.tif"]["acquisition"] == acquisition_partition("/acq/a.tif").split("=")[1]
    assert table.schema.field("triple_depth_px").type == pa.float64()


def test_current_rows_are_each_files_newest_version_and_a_quarantine_supersedes(tmp_path):
    schema = frame_schema(MEASUREMENT_FIELDS)
    _write(tmp_path, [_row("/acq/a.tif", 0, "v1", T0, 100.0),
                      _row("/acq/c.tif", 0, "c1", T0, 120.0)], schema, T0)
    _write(tmp_path, [_row("/acq/a.tif", 0, "v2", T0 + timedelta(hours=1), 101.0)], schema,
           T0 + timedelta(hours=1))
    assert read_results(tmp_path, current=False).num_rows == 3
    assert sorted(read_results(tmp_path)["source_sha256"].to_pylist()) == ["c1", "v2"]
    # c.tif overwritten with a broken file later: its rows are an earlier version's
    write_quarantine([{"path": "/acq/c.tif", "sha256": "broken", "reason": "truncated",
                       "error_type": "TruncatedTiffError", "attempts": 1,
                       "quarantined_at": (T0 + timedelta(hours=2)).timestamp()}], tmp_path)
    assert read_results(tmp_path)["source_sha256"].to_pylist() == ["v2"]
    assert read_results(tmp_path, current=False).num_rows == 3


def test_files_written_back_by_pandas_read_with_the_others(tmp_path):
    """A categorical or large_string text column (pandas' own types) is read as string."""
    schema = frame_schema(MEASUREMENT_FIELDS)
    _write(tmp_path, [_row("/acq/a.tif", 0, "s1", T0, 100.0)], schema, T0)
    _write(tmp_path, [_row("/acq/a.tif", 1, "s1", T0, 101.0)], schema, T0 + timedelta(1))
    first = sorted((tmp_path / "frames").rglob("*.parquet"))[0]
    frame = pq.read_table(first).to_pandas()
    frame["status"] = frame["status"].astype("category")
    frame["reason_code"] = frame["reason_code"].astype("string[pyarrow]")
    frame.to_parquet(first, index=False)
    table = read_results(tmp_path)
    assert table.num_rows == 2
    assert table.schema.field("status").type == pa.string()
    assert table["status"].to_pylist() == ["ok", "ok"]


def test_what_cannot_be_read_is_named(tmp_path):
    with pytest.raises(ResultsReadError, match="no such results folder"):
        read_results(tmp_path / "missing")
    with pytest.raises(ResultsReadError, match="not a results folder"):
        read_results(tmp_path)
    with pytest.raises(ValueError, match="frames, volumes"):
        read_results(tmp_path, kind="tables")
    (tmp_path / "frames").mkdir()
    assert read_results(tmp_path).num_rows == 0
    assert read_results(tmp_path, kind="volumes").num_rows == 0
    bad = tmp_path / "frames" / "acquisition=x-00000000" / "frames-1.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(ResultsReadError, match="frames-1.parquet: not a readable Parquet"):
        read_results(tmp_path)


def test_a_row_written_twice_counts_once_and_a_file_gone_meanwhile_is_listed_again(
        tmp_path, monkeypatch):
    """A batch file copied inside its partition (as a compaction cut short leaves one) gave
    every row twice; a file removed between listing and reading (a compaction) was called
    'not a readable Parquet file'."""
    import shutil

    import nwwatch.results.reading as reading

    _write(tmp_path, [_row("/acq/a.tif", k, "s1", T0, 100.0) for k in range(3)],
           frame_schema(MEASUREMENT_FIELDS), T0)
    (path,) = (tmp_path / "frames").rglob("*.parquet")
    shutil.copy(path, path.with_name("frames-copy.parquet"))
    assert read_results(tmp_path, current=False).num_rows == 6
    assert read_results(tmp_path).num_rows == 3
    listed = reading.dataset_files
    calls = []

    def one_gone(folder):
        calls.append(folder)
        files = listed(folder)
        return files + [files[0].with_name("frames-gone.parquet")] if len(calls) == 1 else files

    monkeypatch.setattr(reading, "dataset_files", one_gone)
    assert read_results(tmp_path).num_rows == 3 and len(calls) == 2


def test_a_relative_path_that_looks_like_a_uri_and_a_name_not_utf8(tmp_path, monkeypatch):
    # Was: pyarrow read "run:1/frames/…" as a URI of the scheme "run" ("not a readable
    # Parquet file (Unrecognized filesystem type in URI …)"; `nwwatch status run:1` counted 0
    # rows of 3 "unreadable" files), and a folder name that is not UTF-8 ended in a bare
    # UnicodeEncodeError (status: a traceback).
    import os

    from nwwatch.results.outcome import count_results
    from nwwatch.results.parquet import dataset_files

    schema = frame_schema(MEASUREMENT_FIELDS)
    monkeypatch.chdir(tmp_path)
    for name in ("run:1", "file:x"):
        _write(tmp_path / name, [_row("/acq/a.tif", 0, "s1", T0, 100.0),
                                 _row("/acq/b.tif", 0, "s2", T0, 101.0)], schema, T0)
        assert read_results(name).num_rows == 2
        counts = count_results(dataset_files(os.path.join(name, "frames")))
        assert (sum(counts.current.values()), counts.unreadable) == (2, [])
    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/bad\xff")
    _write(Path(odd), [_row("/acq/a.tif", 0, "s1", T0, 100.0)], schema, T0)
    counts = count_results(dataset_files(Path(odd) / "frames"))
    assert (sum(counts.current.values()), counts.unreadable) == (1, [])
    with pytest.raises(ResultsReadError, match="take paths in UTF-8 only"):
        read_results(odd)
    (tmp_path / "readable").symlink_to(odd)  # the way round it the message gives
    assert read_results(tmp_path / "readable").num_rows == 1


def test_tomogram_rows_asked_for_as_frames_warn_and_name_the_kind_to_give(tmp_path):
    """A results folder of tomograms alone read with the default kind gave a table of no
    rows and no columns, without a word (the README's next line: AttributeError). It gives
    the frame columns, no rows, and a warning naming the tomogram files and kind='volumes'."""
    from nwwatch.results.reading import OtherKindWarning
    from nwwatch.results.schema import volume_schema
    from nwwatch.volume import VOLUME_METRIC_FIELDS

    source = "/tomo/t1.tif"
    folder = tmp_path / "volumes" / acquisition_partition(source)
    folder.mkdir(parents=True)
    write_batch([{"source": source, "status": "ok", "source_sha256": "t1",
                  "processed_at": T0}], volume_schema(VOLUME_METRIC_FIELDS), folder, "volumes")
    (tmp_path / "frames").mkdir()  # an empty frames/ too: still no frame rows
    with pytest.warns(OtherKindWarning,
                      match=r"no frame rows .*volumes/ holds 1 file .*kind='volumes'") as seen:
        frames = read_results(tmp_path)
    assert str(tmp_path) in str(seen[0].message)
    assert frames.num_rows == 0
    assert frames.schema.names == frame_schema(MEASUREMENT_FIELDS).names + ["acquisition"]
    assert frames.to_pandas().angle_valid.sum() == 0  # the README's next line runs
    assert read_results(tmp_path, kind="volumes")["source"].to_pylist() == [source]


def test_a_mixed_service_folder_before_its_first_tomogram_reads_no_tomogram_rows(tmp_path):
    """One [output] results serves an in-situ and a tomogram [[watch]]: frames/ holds rows,
    volumes/ none until the first tomogram is done (or while every one is quarantined).
    read_results(kind="volumes") raised and pointed at kind='frames'; it gives the tomogram
    columns and no rows, with a warning."""
    import warnings

    from nwwatch.results.reading import OtherKindWarning
    from nwwatch.results.schema import volume_schema
    from nwwatch.volume import VOLUME_METRIC_FIELDS

    _write(tmp_path, [_row("/acq/a.tif", 0, "s1", T0, 100.0)],
           frame_schema(MEASUREMENT_FIELDS), T0)
    _write(tmp_path, [_row("/acq/b.tif", 0, "s2", T0, 101.0)],
           frame_schema(MEASUREMENT_FIELDS), T0 + timedelta(seconds=1))
    (tmp_path / "volumes").mkdir()
    with pytest.warns(OtherKindWarning,
                      match=r"no tomogram rows .*frames/ holds 2 files .*kind='frames'"):
        volumes = read_results(tmp_path, kind="volumes")
    assert volumes.num_rows == 0
    assert volumes.schema.names == (volume_schema(VOLUME_METRIC_FIELDS).names
                                    + ["acquisition"])
    with pytest.warns(OtherKindWarning):
        assert read_results(tmp_path, kind="volumes", current=False).num_rows == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: the frames are there
        assert read_results(tmp_path).num_rows == 2
    # a folder with no file of either kind: the columns, no rows, no warning
    empty = tmp_path / "empty"
    (empty / "frames").mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_results(empty).schema.names == (frame_schema(MEASUREMENT_FIELDS).names
                                                    + ["acquisition"])
        assert read_results(empty, kind="volumes").num_rows == 0


def _documented_recipe() -> str:
    """docs/service.md's expression for applying reverted.parquet and quarantine.parquet
    outside nwwatch."""
    import re

    doc = (Path(__file__).parents[1] / "docs" / "service.md").read_text()
    (recipe,) = {re.sub(r"\s+", " ", m)
                 for m in re.findall(r"`nwwatch\.results\.versions\.(newest_versions\(table,"
                                     r"[^`]*\))`", doc)}
    return recipe


def test_the_documented_recipe_reads_a_replays_folder_without_quarantine_file(tmp_path):
    """A replay that quarantined nothing writes no quarantine.parquet; the docs' recipe read
    that file and ended in FileNotFoundError."""
    import pyarrow.dataset as ds
    from servicekit import model, paint_insitu

    from nwwatch.io import write_frame_tiff
    from nwwatch.results import quarantine, versions
    from nwwatch.service import replay

    acq = tmp_path / "in"
    acq.mkdir()
    for k in range(2):
        write_frame_tiff(acq / f"f{k}.tif", paint_insitu(100.0 + 10 * k, size=48))
    out = tmp_path / "res"
    summary = replay(acq, out, kind="insitu", model=model(tmp_path))
    assert summary.done == 2 and summary.quarantined == 0
    assert not (out / quarantine.QUARANTINE_FILE).exists()
    namespace = {"table": ds.dataset(out / "frames", partitioning="hive").to_table(),
                 "RESULTS": out, **vars(versions), **vars(quarantine)}
    recipe = _documented_recipe()
    assert sorted(eval(recipe, namespace)["source"].to_pylist()) == sorted(  # noqa: S307
        read_results(out)["source"].to_pylist())
    # once a file is quarantined (overwritten with a broken one) the same recipe applies it
    write_quarantine([{"path": str(acq / "f0.tif"), "sha256": "broken", "reason": "truncated",
                       "error_type": "TruncatedTiffError", "attempts": 1,
                       "quarantined_at": datetime.now(UTC).timestamp() + 60}], out)
    assert eval(recipe, namespace)["source"].to_pylist() == [str(acq / "f1.tif")]  # noqa: S307
    assert read_results(out)["source"].to_pylist() == [str(acq / "f1.tif")]
