"""Summaries that tell the truth: replay, status and the log count rows by status and reason
code (ok / flagged) and files by failed / quarantined; replay's exit status and last line;
replay refuses a results folder inside its input."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tifffile
from click.testing import CliRunner
from onnx_models import INSITU_GREY
from servicekit import model, paint_insitu

from nwwatch.io import write_frame_tiff, write_stack_tiff
from nwwatch.results.outcome import (
    by_outcome,
    count_results,
    count_rows,
    count_table,
    flagged_reasons,
    format_counts,
)
from nwwatch.service import replay
from nwwatch.service.batch import FileOutcome, outcome_log_fields, row_summary
from nwwatch.service.cli import replay as replay_cmd
from nwwatch.service.cli import status as status_cmd
from nwwatch.service.config import ConfigError


def _ok_frame(angle: float = 120.0) -> np.ndarray:
    return paint_insitu(angle, size=128, half_width=16)  # measured: status ok


def _uncertain_frame() -> np.ndarray:
    return paint_insitu(120.0, size=64, half_width=4)  # 8 px wide: fit_failed / angle_uncertain


def _wire_only_frame() -> np.ndarray:
    image = _ok_frame()
    image[image == INSITU_GREY[2]] = INSITU_GREY[0]  # no droplet
    return image


@pytest.fixture()
def acquisition(tmp_path):
    """3 ok frames, 1 uncertain frame, a 2-page stack (ok + no droplet), one non-TIFF."""
    acq = tmp_path / "acq"
    acq.mkdir()
    for i, angle in enumerate((100.0, 120.0, 140.0)):
        write_frame_tiff(acq / f"ok{i}.tif", _ok_frame(angle))
    write_frame_tiff(acq / "small.tif", _uncertain_frame())
    write_stack_tiff(acq / "stack.tif", np.stack([_ok_frame(130.0), _wire_only_frame()]))
    (acq / "junk.tif").write_bytes(b"not a TIFF at all" * 4)
    return acq, model(tmp_path)


# --- the counting functions ----------------------------------------------------------------

def test_rows_count_by_status_and_reason_code_with_or_without_the_column():
    rows = [{"status": "ok", "reason_code": "ok"}, {"status": "fit_failed",
                                                    "reason_code": "angle_uncertain"},
            {"status": "fit_failed", "reason_code": "angle_uncertain"},
            {"status": "no_droplet"},  # a row written before reason_code existed
            {"status": "suspect", "reason_code": "uncertain_fraction"},  # a volume row
            {"status": "ok", "reason": ""}]  # a volume row without reason_code
    counts = count_rows(rows)
    assert counts == Counter({("ok", "ok"): 2, ("fit_failed", "angle_uncertain"): 2,
                              ("no_droplet", "no_droplet"): 1,
                              ("suspect", "uncertain_fraction"): 1})
    # the same from a table (grouped in Arrow: one Python step per pair, not per row)
    assert count_table(pa.Table.from_pylist(rows)) == counts
    assert by_outcome(counts) == {"ok": 2, "flagged": 4}
    assert format_counts(counts) == ("2 ok, 4 flagged (angle_uncertain 2, no_droplet 1, "
                                     "uncertain_fraction 1)")



def test_the_status_table_says_how_status_counts_each_status():
    """docs/measurement.md's status table gives each status's `angle_valid` and how
    `nwwatch status` counts it: `several_droplets` has a valid angle and was read as ok from
    the README's `frames[frames.angle_valid]`, but status counts it flagged."""
    import re
    from pathlib import Path

    from nwwatch.measure.result import STATUSES, VALID_STATUSES
    from nwwatch.results.outcome import row_outcome

    doc = (Path(__file__).parents[1] / "docs" / "measurement.md").read_text()
    table = doc.split("### Statuses and reason codes", 1)[1].split("\n\n", 2)[1]
    assert table.startswith("| status | `angle_valid` | `nwwatch status` counts it |"), table
    rows = {}
    for names, valid, counted in re.findall(r"^\| (`[^|]+`) \| (yes|no) \| (\w+) \|", table,
                                            flags=re.M):
        for name in re.findall(r"`([^`]+)`", names):
            rows[name] = (valid == "yes", counted)
    assert rows == {s: (s in VALID_STATUSES, row_outcome(s)) for s in STATUSES}
    assert rows["several_droplets"] == (True, "flagged")


def test_reason_codes_of_equal_count_are_listed_by_name_whatever_the_row_order():
    """The same rows counted in another order (a Dask replay commits tasks as they finish)
    printed "labels_noisy 2, arc_too_short 2" where local replay printed "arc_too_short 2,
    labels_noisy 2": most frequent first, ties by name."""
    codes = [("fit_failed", "angle_uncertain")] * 3 + [("fit_failed", "labels_noisy")] * 2 + [
        ("fit_failed", "arc_too_short")] * 2 + [("no_droplet", "no_droplet")]
    for order in (codes, codes[::-1]):
        counts = Counter()
        for key in order:
            counts[key] += 1
        assert list(flagged_reasons(counts)) == ["angle_uncertain", "arc_too_short",
                                                 "labels_noisy", "no_droplet"]


def test_count_results_reads_only_status_columns_and_skips_vanished_files(tmp_path):
    a, b, c = (tmp_path / f"{n}.parquet" for n in "abc")
    pq.write_table(pa.table({"status": ["ok", "fit_failed"], "reason_code": ["ok", "no_wire"],
                             "x": [1.0, 2.0]}), a)
    pq.write_table(pa.table({"status": ["suspect"], "reason": ["why"]}), b)
    pq.write_table(pa.table({"x": [1, 2, 3]}), c)  # another writer's rows: no status
    damaged = tmp_path / "d.parquet"
    damaged.write_bytes(b"PAR1" + b"\0" * 40)
    counted = count_results([a, b, c, tmp_path / "gone.parquet", damaged])
    assert counted.current == Counter({("ok", "ok"): 1, ("fit_failed", "no_wire"): 1,
                                       ("suspect", "suspect"): 1, ("unknown", "unknown"): 3})
    assert counted.superseded == Counter() and counted.superseded_versions == 0
    assert counted.unreadable == [damaged]
    # two versions of one file from writers that typed the columns differently (a naive
    # millisecond timestamp, an integer measurement version): counted together
    from datetime import datetime as naive

    old, new = tmp_path / "old.parquet", tmp_path / "new.parquet"
    pq.write_table(pa.table({"source": ["/a/s.tif"], "source_sha256": ["1"],
                             "status": ["ok"], "measurement_version": [5],
                             "processed_at": pa.array([naive(2026, 1, 1)],
                                                      pa.timestamp("ms"))}), old)
    pq.write_table(pa.table({"source": ["/a/s.tif"] * 2, "source_sha256": ["2"] * 2,
                             "status": ["ok", "no_droplet"], "measurement_version": ["5"] * 2,
                             "processed_at": pa.array([datetime(2026, 1, 2, tzinfo=UTC)] * 2,
                                                      pa.timestamp("us", tz="UTC"))}), new)
    counted = count_results([old, new])
    assert counted.current == Counter({("ok", "ok"): 1, ("no_droplet", "no_droplet"): 1})
    assert counted.superseded == Counter({("ok", "ok"): 1})


def test_log_fields_carry_status_and_angle_per_frame():
    one = FileOutcome(path=None, state="done", n_rows=1, rows=[
        {"frame": 0, "status": "ok", "reason_code": "ok", "contact_angle_deg": 120.5}])
    line, frames = outcome_log_fields(one)
    assert line == {"frame": 0, "status": "ok", "reason_code": "ok",
                    "contact_angle_deg": 120.5} and frames == []
    two = FileOutcome(path=None, state="done", n_rows=2, rows=[
        {"frame": 0, "status": "ok", "reason_code": "ok", "contact_angle_deg": 120.5},
        {"frame": 1, "status": "no_droplet", "reason_code": "no_droplet",
         "contact_angle_deg": None}])
    line, frames = outcome_log_fields(two)
    assert line == {"ok": 1, "flagged": 1, "reason_codes": {"no_droplet": 1}}
    assert [f["status"] for f in frames] == ["ok", "no_droplet"]


def test_a_refused_angle_is_logged_as_not_valid():
    """A frame refused as angle_uncertain keeps its angle in the row (angle_valid false);
    its log line showed "fit_failed ... contact_angle_deg: 111.93" with nothing saying the
    value is not a measurement."""
    row = {"frame": 1, "status": "fit_failed", "reason_code": "angle_uncertain",
           "angle_valid": False, "contact_angle_deg": 111.926, "source": "/a/f.tif"}
    assert row_summary(row) == {"frame": 1, "status": "fit_failed",
                                "reason_code": "angle_uncertain", "angle_valid": False,
                                "contact_angle_deg": 111.93}
    volume = {"status": "suspect", "reason_code": "uncertain_mask"}  # no angle columns
    assert "angle_valid" not in row_summary(volume)


def test_a_tomograms_log_line_carries_its_solid_fraction_not_a_frame_and_angle():
    """A tomogram's file_processed line said "frame": null, "contact_angle_deg": null."""
    one = FileOutcome(path=None, state="done", n_rows=1, rows=[row_summary(
        {"source": "/a/t.tif", "status": "suspect", "reason_code": "uncertain",
         "solid_fraction": 0.273456, "mask_path": "masks/t.tif"})])
    line, frames = outcome_log_fields(one)
    assert line == {"status": "suspect", "reason_code": "uncertain",
                    "solid_fraction": 0.2735} and frames == []


# --- replay --------------------------------------------------------------------------------

def test_replay_counts_rows_by_status_and_reason_code(tmp_path, acquisition):
    acq, onnx = acquisition
    s = replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    assert (s.files, s.done, s.quarantined, s.failed, s.frames) == (6, 5, 1, 0, 6)
    assert by_outcome(s.rows) == {"ok": 4, "flagged": 2}
    assert s.rows[("fit_failed", "angle_uncertain")] == 1
    assert s.rows[("no_droplet", "no_droplet")] == 1
    table = pq.read_table(tmp_path / "out" / "frames").to_pandas()
    assert Counter(zip(table.status, table.reason_code, strict=True)) == s.rows
    assert s.exit_status == 3 and not s.complete
    assert s.lines()[-1].startswith("replay INCOMPLETE: 0 file(s) failed, 1 quarantined")


def test_replay_reads_every_page_of_a_tiff_written_one_page_per_call(tmp_path):
    """Acquisition software that appends frames calls TiffWriter.write once per page (one
    tifffile series each): every page is a frame, a row keyed (source, frame)."""
    acq = tmp_path / "acq"
    acq.mkdir()
    with tifffile.TiffWriter(acq / "grown.tif") as tif:
        for angle in (100.0, 120.0, 140.0):
            tif.write(_ok_frame(angle))
    onnx = model(tmp_path)
    s = replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    assert (s.files, s.done, s.frames) == (1, 1, 3) and s.complete
    table = pq.read_table(tmp_path / "out" / "frames").to_pandas().sort_values("frame")
    assert list(table.frame) == [0, 1, 2]
    assert set(table.source) == {table.source.iloc[0]} and table.source.iloc[0].endswith(
        "grown.tif")
    assert list(table.status) == ["ok"] * 3
    np.testing.assert_allclose(table.contact_angle_deg, [100.0, 120.0, 140.0], atol=4.0)


def test_replay_exit_status_and_last_line(tmp_path, acquisition):
    acq, onnx = acquisition
    runner = CliRunner()
    out = tmp_path / "out"
    r = runner.invoke(replay_cmd, [str(acq), "--out", str(out), "--model", str(onnx)])
    assert r.exit_code == 3, r.output
    last = r.output.strip().splitlines()[-1]
    assert "INCOMPLETE" in last and "1 quarantined" in last and "exit status 3" in last
    assert "4 ok, 2 flagged (angle_uncertain 1, no_droplet 1)" in r.output
    # nothing new the second time, but the bad file is still quarantined: still 3
    r = runner.invoke(replay_cmd, [str(acq), "--out", str(out), "--model", str(onnx)])
    assert r.exit_code == 3, r.output
    assert "5 skipped (already done), 0 failed, 1 quarantined (1 in an earlier run)" in r.output
    # the bad file removed: every file processed, exit 0
    (acq / "junk.tif").unlink()
    r = runner.invoke(replay_cmd, [str(acq), "--out", str(out), "--model", str(onnx)])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == ("replay complete: nothing to do: all 5 files "
                                                 "were done before")
    # could not run: a missing model is exit 1; a wrong option is click's exit 2
    r = runner.invoke(replay_cmd, [str(acq), "--out", str(out), "--config",
                                   str(tmp_path / "none.toml")])
    assert r.exit_code == 1
    r = runner.invoke(replay_cmd, [str(acq), "--out", str(out), "--no-such-option"])
    assert r.exit_code == 2


def test_replay_refuses_results_inside_its_input(tmp_path, acquisition, monkeypatch):
    acq, onnx = acquisition
    before = sorted(p.name for p in acq.iterdir())
    with pytest.raises(ConfigError, match="inside the input folder"):
        replay(acq, acq / "results", kind="insitu", model=onnx)
    link = tmp_path / "elsewhere"
    link.symlink_to(acq)  # the same folder by another name
    with pytest.raises(ConfigError, match="inside the input folder"):
        replay(acq, link / "out", kind="insitu", model=onnx)
    r = CliRunner().invoke(replay_cmd, [str(acq), "--out", str(acq / "r"), "--model", str(onnx)])
    assert r.exit_code == 1 and "inside the input folder" in r.output
    assert sorted(p.name for p in acq.iterdir()) == before  # nothing written there
    # a tomogram replay whose results lie inside: refused before any mask is written
    with pytest.raises(ConfigError, match="inside the input folder"):
        replay(acq, acq, kind="tomogram", model=onnx)
    # one file of the folder: its results may not go into the file's folder either
    one = sorted(acq.glob("*.tif"))[0]
    with pytest.raises(ConfigError, match=f"inside the folder of the input file {one.name}"):
        replay(one, acq / "results", kind="insitu", model=onnx)
    r = CliRunner().invoke(replay_cmd, [str(one), "--out", str(acq / "r"), "--model", str(onnx)])
    assert r.exit_code == 1 and "inside the folder of the input file" in r.output, r.output
    # a file named without its folder (`nwwatch replay vol.tif --out R` where it lies): the
    # folder is named as a path, not "."
    monkeypatch.chdir(acq)
    with pytest.raises(ConfigError) as error:
        replay(one.name, "R", kind="insitu", model=onnx)
    assert str(error.value) == (f"--out: R lies inside the folder of the input file {one.name}: "
                                f"{acq}; give a results folder outside it")
    assert sorted(p.name for p in acq.iterdir()) == before


# --- status --------------------------------------------------------------------------------

def test_status_counts_rows_by_status_and_reason_code(tmp_path, acquisition):
    acq, onnx = acquisition
    replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    r = CliRunner().invoke(status_cmd, ["--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["rows_by_outcome"] == {"ok": 4, "flagged": 2}
    assert {(x["status"], x["reason_code"]): x["rows"] for x in st["rows_by_reason"]} == {
        ("ok", "ok"): 4, ("fit_failed", "angle_uncertain"): 1, ("no_droplet", "no_droplet"): 1}
    text = CliRunner().invoke(status_cmd, ["--out", str(tmp_path / "out")]).output
    assert "files: 5 done, 0 in flight, 0 failed (will retry), 1 quarantined" in text
    assert "rows: 6 (4 ok, 2 flagged (angle_uncertain 1, no_droplet 1))" in text
    assert "stack.tif (2 rows) at " in text  # the last file done
    # rows replaced by --force are counted once (superseded files drop them)
    replay(acq, tmp_path / "out", kind="insitu", model=onnx, force=True)
    st = json.loads(CliRunner().invoke(status_cmd, ["--out", str(tmp_path / "out"),
                                                    "--json"]).output)
    assert st["rows_by_outcome"] == {"ok": 4, "flagged": 2}
    # ISO 8601 with a "T", as the log's timestamps (was "2026-12-06 23:42:18...")
    assert datetime.fromisoformat(st["last"]["processed_at"]).tzinfo is not None
    assert "T" in st["last"]["processed_at"]


def test_status_names_one_row_in_the_singular(tmp_path):
    """The last file done printed "(1 rows)"; the throughput line said "0.00 rows/s while
    busy" beside the rows of a rebuilt ledger, whose batches have no processing time."""
    from nwwatch.service.status import format_status

    status = {"results": "R", "ledger": "L", "ledger_in_use": None, "rows_by_reason": [],
              "rows": 0, "superseded": {"rows": 0, "versions": 0, "files": 0},
              "counts": {"done": 1, "pending": 0, "failed": 0, "quarantined_files": 0,
                         "rows": 1},
              "recent_rows": 1, "window_s": 600.0, "rows_per_s": 2.0, "quarantined": [],
              "last": {"source": "/acq/f.tif", "n_rows": 1,
                       "processed_at": datetime(2026, 1, 1, tzinfo=UTC)}}
    text = format_status(status)
    assert "last: /acq/f.tif (1 row) at 2026-01-01 00:00:00 UTC" in text
    assert "throughput: 1 row processed in the last 10 min (2.00 rows/s while busy)" in text
    # a rebuilt ledger's batches have no processing time: no "0.00 rows/s" beside rows
    status.update(rows_per_s=0.0)
    assert "1 row processed in the last 10 min (processing time unknown: ledger rebuilt)" in \
        format_status(status)
    status.update(recent_rows=0)
    assert "throughput: 0 rows processed in the last 10 min\n" in format_status(status)


def test_replay_stdout_holds_only_the_summary_and_an_empty_folder_says_so(tmp_path,
                                                                            acquisition):
    """The progress bar goes to stderr (a script reading stdout gets the three summary
    lines; click's bar on a pipe printed its label "replay" there); a folder without input
    files says so on the last line instead of "all 0 files processed"."""
    acq, onnx = acquisition
    r = CliRunner().invoke(replay_cmd, [str(acq), "--out", str(tmp_path / "out"),
                                        "--model", str(onnx)])
    assert r.exit_code == 3, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 3 and lines[0].startswith("6 files: 5 done"), lines
    # stderr that is no terminal (a pipe, a log file) gets no bar: click printed its bare
    # label "replay" there
    assert "replay\n" not in r.stderr and not r.stderr.startswith("replay"), r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an input")
    r = CliRunner().invoke(replay_cmd, [str(empty), "--out", str(tmp_path / "out2"),
                                        "--model", str(onnx)])
    assert r.exit_code == 0, r.output
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith(f"replay found no input files in {empty}"), last
    # the folder it made for nothing is removed (below): "results in" named no folder
    assert r.stdout.splitlines()[1].endswith(f"nothing written to {tmp_path / 'out2'}")
    assert ".tif, .tiff, .mrc, .mrcs, .dm3, .dm4, .emd or .ser in any case" in last
    # The results folder it made for nothing is gone again (it held an empty ledger): a
    # mistyped input leaves nothing behind. One that existed before stays as it was.
    assert not (tmp_path / "out2").exists()
    r = CliRunner().invoke(replay_cmd, [str(empty), "--out", str(tmp_path / "out"),
                                        "--model", str(onnx)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "ledger.sqlite").is_file()


def test_replay_takes_several_paths_as_a_shell_glob_gives_them(tmp_path, acquisition):
    """`nwwatch replay acq/ok*.tif --out R` (the shell expands the glob) was refused with
    "Got unexpected extra argument"; files and folders may be mixed, a file named twice (or
    also inside a named folder) is processed once, and a results folder inside any of them is
    refused."""
    acq, onnx = acquisition
    out = tmp_path / "out"
    files = sorted(str(p) for p in acq.glob("ok*.tif"))
    r = CliRunner().invoke(replay_cmd, [*files, str(acq / "small.tif"), "--out", str(out),
                                        "--model", str(onnx)])
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0].startswith("4 files: 4 done"), r.output
    # a folder and a file inside it: the file once; the rest of the folder is new
    s = replay([acq, acq / "ok0.tif"], out, kind="insitu", model=onnx)
    assert (s.files, s.done, s.skipped, s.quarantined) == (6, 1, 4, 1)
    with pytest.raises(ConfigError, match="inside the input folder"):
        replay([acq / "ok0.tif", tmp_path], out, kind="insitu", model=onnx)
    # an empty list of paths is not a replay of nothing
    r = CliRunner().invoke(replay_cmd, ["--out", str(out), "--model", str(onnx)])
    assert r.exit_code == 2


def test_named_files_that_are_not_tiff_are_skipped_with_a_note_not_quarantined(tmp_path,
                                                                               acquisition):
    """`nwwatch replay acq/*` quarantined truth.parquet and a .json beside the frames as bad
    frames (a file named on the command line was processed whatever its name), where
    `nwwatch replay acq` never looks at them. Now a named file that is TIFF neither by
    extension nor by content is skipped with one note line; a TIFF under another name is
    still processed, and a .tif that is not a TIFF is still quarantined."""
    acq, onnx = acquisition
    (acq / "truth.parquet").write_bytes(b"PAR1" + b"\0" * 60)
    (acq / "meta.json").write_text('{"pixel_size_nm": 0.5}')
    write_frame_tiff(acq / "odd.frame", _ok_frame(110.0))  # a TIFF whatever its name
    out = tmp_path / "out"
    named = sorted(str(p) for p in acq.iterdir())  # what the shell makes of acq/*
    r = CliRunner().invoke(replay_cmd, [*named, "--out", str(out), "--model", str(onnx)])
    assert r.exit_code == 3, r.output  # junk.tif: a .tif that is not a TIFF, quarantined
    lines = r.stdout.splitlines()
    assert lines[0].startswith("7 files: 6 done, 0 skipped (already done), 0 failed, "
                               "1 quarantined"), r.output
    (note,) = [line for line in lines if "neither TIFF" in line]
    assert "2 named files skipped" in note and "meta.json" in note and "truth.parquet" in note
    quarantined = pq.read_table(out / "quarantine.parquet").to_pylist()
    assert [os.path.basename(q["path"]) for q in quarantined] == ["junk.tif"]
    # the same for a replay of the folder (which never lists them) and of one such file
    s = replay(acq / "meta.json", tmp_path / "out2", kind="insitu", model=onnx)
    assert (s.files, s.quarantined, s.exit_status) == (0, 0, 0)
    assert any("1 named file skipped" in line and "meta.json" in line for line in s.lines())
    assert s.lines()[-1] == (f"replay found no input files: {acq / 'meta.json'} is neither a "
                             "TIFF (by extension or header) nor an MRC, DigitalMicrograph, "
                             "Velox EMD or TIA series file (by extension)")


def test_tilt_series_are_named_with_what_to_do(tmp_path, acquisition):
    """A tomography user's folder often holds tilt series (IMOD's .st, .ali): a folder of
    them replayed as "no input files" and a named one was "skipped, not TIFF", both exit 0
    without what the reader's own refusal of such a file says."""
    _, onnx = acquisition
    folder = tmp_path / "tilts"
    folder.mkdir()
    for name in ("a.st", "b.ali"):
        (folder / name).write_bytes(b"\0" * 1024)
    (tmp_path / "tomo").mkdir()
    tomo_model = model(tmp_path / "tomo", kind="tomogram")
    s = replay(folder, tmp_path / "out", kind="tomogram", model=tomo_model)
    assert (s.files, s.exit_status) == (0, 0)
    last = s.lines()[-1]
    assert last.startswith(f"replay found no input files in {folder}"), last
    assert "(.tif, .tiff, .mrc or .rec in any case" in last
    assert "2 files of a format replay does not read (a.st, b.ali)" in last
    assert "reconstruct it first" in last
    s = replay(folder / "a.st", tmp_path / "out2", kind="insitu", model=onnx)
    (note,) = [line for line in s.lines() if "named file skipped" in line]
    assert "a.st" in note and "reconstruct it first" in note
    # a video beside them: each format gets its own advice (not the first file's for all:
    # the video told to reconstruct, or the tilt series to split into frames)
    (folder / "c.avi").write_bytes(b"\0" * 1024)
    last = replay(folder, tmp_path / "out3", kind="insitu", model=onnx).lines()[-1]
    assert "reconstruct it first" in last and "ffmpeg -i VIDEO" in last, last


def test_video_files_are_named_with_how_to_convert_them(tmp_path, acquisition):
    """In-situ runs are often recorded as video files: a folder of them replayed as "no
    input files (.tif or .tiff ...)" without a word on what to do."""
    _, onnx = acquisition
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("growth2.mp4", "growth3.avi", "notes.txt"):
        (folder / name).write_bytes(b"\0" * 1024)
    s = replay(folder, tmp_path / "out", kind="insitu", model=onnx)
    assert (s.files, s.exit_status) == (0, 0)
    last = s.lines()[-1]
    assert "2 files of a format replay does not read (growth2.mp4, growth3.avi)" in last, last
    assert "ffmpeg -i VIDEO -pix_fmt gray" in last and last.count("a video?") == 1, last
    assert "notes.txt" not in last


def test_replay_help_names_every_setting_it_takes_from_config():
    """`--config` also takes [output] overlays and, for the same results folder, [state]
    ledger (the help named only [inference]/[retry]/[tomogram])."""
    text = " ".join(CliRunner().invoke(replay_cmd, ["--help"]).output.split())
    for table in ("[inference]", "[retry]", "[tomogram]", "[output] overlays", "[state] ledger"):
        assert table in text, table


def test_a_file_that_vanishes_during_a_replay_is_counted(tmp_path, acquisition, monkeypatch):
    """A file listed and then deleted (an operator tidying up mid-replay) was counted in
    "N files" but under no outcome, and the last line said "all N files processed"."""
    import importlib

    replay_module = importlib.import_module("nwwatch.service.replay")
    acq, onnx = acquisition
    (acq / "junk.tif").unlink()
    listed = replay_module.list_inputs
    monkeypatch.setattr(replay_module, "list_inputs",
                        lambda *args, **kwargs: [*listed(*args, **kwargs), acq / "deleted.tif"])
    s = replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    assert (s.files, s.done, s.vanished) == (6, 5, 1)
    assert s.exit_status == 0  # the folder as it is now was processed
    assert "1 vanished before it was read" in s.lines()[0]
    assert s.lines()[-1] == "replay complete: all 5 files processed (1 vanished)"


def test_run_and_status_help_say_what_they_do_by_default():
    """`nwwatch run --help` did not name exit status 78 (the one the unit does not restart);
    `nwwatch status --help` did not say that without options it reads
    /etc/nwwatch/nwwatch.toml."""
    from nwwatch.service.cli import run as run_cmd

    text = " ".join(CliRunner().invoke(run_cmd, ["--help"]).output.split())
    assert "78" in text and "configuration" in text
    text = " ".join(CliRunner().invoke(status_cmd, ["--help"]).output.split())
    assert "/etc/nwwatch/nwwatch.toml" in text


def test_status_without_options_names_the_default_it_looked_for(tmp_path, monkeypatch):
    """Without options `nwwatch status` reads the default configuration, as its help says;
    where that file did not exist it answered only "give exactly one of --config or --out",
    as if there were no default."""
    from nwwatch.service import cli as service_cli

    missing = tmp_path / "etc" / "nwwatch.toml"
    monkeypatch.setattr(service_cli, "DEFAULT_CONFIG", missing)
    r = CliRunner().invoke(status_cmd, [])
    assert r.exit_code == 2
    assert f"the default configuration {missing} does not exist" in r.output, r.output
    r = CliRunner().invoke(status_cmd, ["--config", str(missing), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "either --config or --out, not both" in r.output, r.output


def test_replay_refuses_an_input_inside_its_results(tmp_path, acquisition):
    """`nwwatch replay RESULTS/masks --kind tomogram --out RESULTS` read its own masks back
    as new tomograms (the replay's promise is never to)."""
    acq, onnx = acquisition
    out = tmp_path / "out"
    replay(acq, out, kind="insitu", model=onnx)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ConfigError, match="lies inside the results folder"):
        replay(out / "frames", out, kind="insitu", model=onnx)
    assert sorted(p.name for p in out.iterdir()) == before


def test_flagged_rows_whose_reason_code_is_ok_count_under_their_status():
    """several_droplets rows carry reason_code "ok" (their angle is valid) but are flagged:
    `nwwatch replay` of 60 synthetic frames printed "45 flagged (angle_uncertain 24, ...,
    ok 5, ...)", a flagged reason that reads as none."""
    counts = Counter({("ok", "ok"): 15, ("several_droplets", "ok"): 5,
                      ("fit_failed", "angle_uncertain"): 2})
    assert format_counts(counts) == "15 ok, 7 flagged (several_droplets 5, angle_uncertain 2)"
    assert flagged_reasons(counts) == {"several_droplets": 5, "angle_uncertain": 2}


def test_status_tells_in_flight_from_left_by_a_run_that_stopped(tmp_path):
    """After Ctrl-C on a replay (or a crash) `nwwatch status` said "32 in flight" with no
    process running; whether the ledger's lock is held (/proc/locks) tells the two apart."""
    from nwwatch.service.ledger import ItemKey, Ledger
    from nwwatch.service.lock import lock_holder

    out = tmp_path / "out"
    ledger = Ledger(out / "ledger.sqlite", out)
    assert lock_holder(out / "ledger.sqlite") == os.getpid()
    ledger.claim("b1", "insitu", None, [(ItemKey(c * 64, "m" * 64, "2"), f"/acq/{c}.tif")
                                        for c in "ab"])
    text = CliRunner().invoke(status_cmd, ["--out", str(out)]).output
    assert "files: 0 done, 2 in flight," in text, text
    ledger.close()
    assert lock_holder(out / "ledger.sqlite") is None
    r = CliRunner().invoke(status_cmd, ["--out", str(out)])
    assert "files: 0 done, 2 left in flight by a run that stopped (settled when the service " \
           "or a replay next opens the ledger)," in r.output, r.output
    assert json.loads(CliRunner().invoke(status_cmd, ["--out", str(out), "--json"])
                      .output)["ledger_in_use"] is False


def test_status_and_compact_name_an_unreadable_results_file_instead_of_a_traceback(
        tmp_path, acquisition):
    """A damaged Parquet file under frames/ (a truncated copy, a disk error) made `nwwatch
    status` and `nwwatch compact` exit 1 with a pyarrow traceback."""
    from nwwatch.results.parquet import dataset_files
    from nwwatch.service.cli import compact as compact_cmd

    acq, onnx = acquisition
    out = tmp_path / "out"
    replay(acq, out, kind="insitu", model=onnx)
    (extra := tmp_path / "more").mkdir()
    write_frame_tiff(extra / "late.tif", _ok_frame(125.0))
    replay(extra, out, kind="insitu", model=onnx)
    damaged = sorted(dataset_files(out / "frames"))[0]
    damaged.write_bytes(damaged.read_bytes()[:300])
    r = CliRunner().invoke(status_cmd, ["--out", str(out)])
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "unreadable results file" in r.output and damaged.name in r.output
    st = json.loads(CliRunner().invoke(status_cmd, ["--out", str(out), "--json"]).output)
    assert [p.endswith(damaged.name) for p in st["unreadable_files"]] == [True]
    r = CliRunner().invoke(compact_cmd, [str(out)])
    assert r.exit_code == 0 and r.exception is None, r.output
    assert "left alone (unreadable)" in r.output and damaged.name in r.output
    assert damaged.stat().st_size == 300  # never touched


def test_an_out_folder_that_cannot_be_created_is_named_not_a_traceback(tmp_path, acquisition):
    """`replay --out` below a file (a typo) ended in a NotADirectoryError traceback."""
    acq, onnx = acquisition
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    r = CliRunner().invoke(replay_cmd, [str(acq), "--out", str(a_file / "res"),
                                        "--model", str(onnx)])
    assert r.exit_code == 1 and not isinstance(r.exception, OSError), r.output
    assert f"--out: cannot create the folder {a_file / 'res'}" in r.output, r.output


def test_an_out_folder_that_cannot_be_written_is_named_not_a_traceback(tmp_path, acquisition):
    """`replay --out` on a read-only folder (a results folder of another user, a read-only
    mount) ended in an OSError traceback from the ledger's lock file; here the lock file's
    name is taken by a folder, which cannot be opened as a file either."""
    acq, onnx = acquisition
    out = tmp_path / "res"
    (out / "ledger.sqlite.lock").mkdir(parents=True)
    r = CliRunner().invoke(replay_cmd, [str(acq), "--out", str(out), "--model", str(onnx)])
    assert r.exit_code == 1 and not isinstance(r.exception, OSError), r.output
    assert f"--out: cannot write {out / 'ledger.sqlite.lock'}: " in r.output, r.output


def test_an_interrupted_replay_says_how_to_resume_and_exits_130(tmp_path, acquisition,
                                                                  monkeypatch):
    """Ctrl-C printed click's "Aborted!" with exit 1, which the exit table reserves for a
    replay that could not run."""
    import importlib

    replay_module = importlib.import_module("nwwatch.service.replay")
    acq, onnx = acquisition

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(replay_module, "replay", interrupted)
    r = CliRunner().invoke(replay_cmd, [str(acq), "--out", str(tmp_path / "out"),
                                        "--model", str(onnx)])
    assert r.exit_code == 130, r.output
    assert "replay interrupted (Ctrl-C)" in r.output and "run the same command again" in r.output


def test_a_replay_interrupted_before_it_wrote_anything_says_so(tmp_path, acquisition,
                                                              monkeypatch):
    """Interrupted while the model loads (or a scheduler is awaited), the replay removes the
    results folder it made; its line said "what was written is kept … nwwatch status --out
    RESULTS" of a folder that did not exist."""
    import nwwatch.service.engines as engines

    acq, onnx = acquisition

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engines, "build_engines", interrupted)
    out = tmp_path / "out"
    r = CliRunner().invoke(replay_cmd, [str(acq), "--out", str(out), "--model", str(onnx)])
    assert r.exit_code == 130, r.output
    assert not out.exists()
    assert (f"replay interrupted (Ctrl-C): nothing was written to {out}; run the same "
            "command again to start") in r.output, r.output
    assert "nwwatch status" not in r.output
    # a results folder of an earlier run is kept, and said to be
    monkeypatch.undo()
    assert CliRunner().invoke(replay_cmd, [str(acq), "--out", str(out),
                                           "--model", str(onnx)]).exit_code == 3
    monkeypatch.setattr(engines, "build_engines", interrupted)
    r = CliRunner().invoke(replay_cmd, [str(acq), "--out", str(out), "--model", str(onnx)])
    assert r.exit_code == 130 and "what was written is kept" in r.output, r.output
    assert f"nwwatch status --out {out}" in r.output, r.output


def test_lock_holder_reads_a_lock_whose_device_number_differs(tmp_path, monkeypatch):
    """btrfs subvolumes and overlay mounts report another device to stat than /proc/locks
    prints: the inode with the pid the holder wrote into the lock file still counts."""
    from nwwatch.service import lock as lock_mod

    ledger = tmp_path / "ledger.sqlite"
    lockfile = tmp_path / "ledger.sqlite.lock"
    lockfile.write_text("4242")
    inode = os.stat(lockfile).st_ino
    fake = tmp_path / "locks"
    monkeypatch.setattr(lock_mod, "PROC_LOCKS", str(fake))
    fake.write_text(f"1: FLOCK  ADVISORY  WRITE 4242 00:2f:{inode} 0 EOF\n"
                    f"2: POSIX  ADVISORY  WRITE 99 00:2f:{inode + 1} 0 EOF\n")
    assert lock_mod.lock_holder(ledger) == 4242
    fake.write_text(f"1: FLOCK  ADVISORY  WRITE 7 00:2f:{inode} 0 EOF\n")  # another pid
    assert lock_mod.lock_holder(ledger) is None
    fake.write_text("")
    assert lock_mod.lock_holder(ledger) is None


def test_replay_notes_a_volume_replayed_as_in_situ_frames(tmp_path):
    """A tomogram (pages declared as Z slices) replayed without --kind tomogram is processed
    as asked, one row a slice, and the summary says it looks like a tomogram; an in-situ
    stack (pages declared as time) gets no such note."""
    from nwwatch.io import write_volume_tiff

    onnx = model(tmp_path)
    acq = tmp_path / "acq"
    acq.mkdir()
    frames = np.stack([_ok_frame(130.0), _ok_frame(120.0), _ok_frame(125.0)])
    write_stack_tiff(acq / "stack.tif", frames)
    s = replay(acq, tmp_path / "r1", kind="insitu", model=onnx)
    assert s.frames == 3 and s.volume_like == []
    assert not any(line.startswith("note:") for line in s.lines())
    write_volume_tiff(acq / "tomo.tif", frames)
    r = CliRunner().invoke(replay_cmd, [str(acq / "tomo.tif"), "--out", str(tmp_path / "r2"),
                                        "--model", str(onnx)])
    assert r.exit_code == 0, r.output
    assert "3 rows" in r.output
    assert (f"note: {acq / 'tomo.tif'} declares its pages as Z slices" in r.output
            and "--kind tomogram" in r.output)
    assert r.output.rstrip().splitlines()[-1].startswith("replay complete")
    # an MRC reconstruction declares no ImageJ slices nor OME SizeZ: the note names MRC too
    import mrcfile

    with mrcfile.new(acq / "tomo.rec") as mrc:
        mrc.set_data(frames.astype(np.float32))
    r = CliRunner().invoke(replay_cmd, [str(acq / "tomo.rec"), "--out",
                                        str(tmp_path / "r3"), "--model", str(onnx)])
    assert r.exit_code == 0, r.output
    assert (f"note: {acq / 'tomo.rec'} declares its pages as Z slices (ImageJ slices, OME "
            "SizeZ or an MRC volume), as a tomogram does") in " ".join(r.output.split())


def _touched(path) -> None:
    """``path``'s bytes kept, its mtime (and so ctime) new: the ledger's quick check by
    version misses it, and only its content's hash says it was done."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_a_volume_skipped_as_done_after_hashing_gets_no_note(tmp_path):
    """A Z-slice volume replayed as in-situ frames, touched (its bytes the same), and
    replayed again is skipped as done once hashed: the summary said it was "replayed as
    in-situ frames, one row a slice", and logged replay.volume_like_input, all the same.
    A forced run, which replays it, keeps the note."""
    from structlog.testing import capture_logs

    from nwwatch.io import write_volume_tiff

    onnx = model(tmp_path)
    acq = tmp_path / "acq"
    acq.mkdir()
    write_volume_tiff(acq / "tomo.tif", np.stack([_ok_frame(130.0), _ok_frame(120.0)]))
    first = replay(acq, tmp_path / "r", kind="insitu", model=onnx)
    assert (first.done, first.frames, first.volume_like) == (1, 2, [acq / "tomo.tif"])
    _touched(acq / "tomo.tif")
    with capture_logs() as logs:
        again = replay(acq, tmp_path / "r", kind="insitu", model=onnx)
    assert (again.done, again.skipped, again.frames) == (0, 1, 0), again.lines()
    assert again.volume_like == [], again.lines()
    assert not any("declares its pages" in line for line in again.lines()), again.lines()
    assert [e for e in logs if e["event"] == "replay.volume_like_input"] == []
    _touched(acq / "tomo.tif")
    with capture_logs() as logs:
        forced = replay(acq, tmp_path / "r", kind="insitu", model=onnx, force=True)
    assert (forced.done, forced.frames, forced.volume_like) == (1, 2, [acq / "tomo.tif"])
    assert any(f"{acq / 'tomo.tif'} declares its pages as Z slices" in line
               for line in forced.lines()), forced.lines()
    assert [(e["path"], e["pages"]) for e in logs
            if e["event"] == "replay.volume_like_input"] == [(str(acq / "tomo.tif"), 2)]


def test_a_series_skipped_as_done_after_hashing_gets_no_note(tmp_path):
    """The same for an in-situ series replayed with --kind tomogram: no "segmented as a
    tomogram" note, no replay.series_like_input, for the series skipped once hashed."""
    from onnx_models import build_threshold_model
    from structlog.testing import capture_logs

    onnx = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    series = (np.random.default_rng(0).random((6, 48, 48)) * 200).astype(np.uint8)
    write_stack_tiff(acq / "series.tif", series)
    first = replay(acq, tmp_path / "r", kind="tomogram", model=onnx)
    assert (first.done, first.series_like) == (1, [acq / "series.tif"]), first.lines()
    _touched(acq / "series.tif")
    with capture_logs() as logs:
        again = replay(acq, tmp_path / "r", kind="tomogram", model=onnx)
    assert (again.done, again.skipped, again.series_like) == (0, 1, []), again.lines()
    assert not any("declares its pages" in line for line in again.lines()), again.lines()
    assert [e for e in logs if e["event"] == "replay.series_like_input"] == []


def test_replay_notes_an_in_situ_series_replayed_as_a_tomogram(tmp_path):
    """An in-situ series (pages declared as time) replayed with --kind tomogram is segmented
    as asked, one volume row, and the summary says it looks like an in-situ series; it was
    processed without a word. A volume (pages declared as Z) gets no such note."""
    from onnx_models import build_threshold_model

    from nwwatch.io import write_volume_tiff

    onnx = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    rng = np.random.default_rng(0)
    volume = (rng.random((6, 48, 48)) * 200).astype(np.uint8)
    write_volume_tiff(acq / "vol.tif", volume)
    s = replay(acq, tmp_path / "r1", kind="tomogram", model=onnx)
    assert s.done == 1 and s.series_like == []
    assert not any(line.startswith("note:") for line in s.lines())
    write_stack_tiff(acq / "series.tif", volume)
    r = CliRunner().invoke(replay_cmd, [str(acq / "series.tif"), "--kind", "tomogram",
                                        "--out", str(tmp_path / "r2"), "--model", str(onnx)])
    assert r.exit_code == 0, r.output
    assert (f"note: {acq / 'series.tif'} declares its pages as time frames" in r.output
            and "--kind insitu" in r.output), r.output
    assert r.output.rstrip().splitlines()[-1].startswith("replay complete")


def test_a_time_series_of_volumes_is_refused_without_a_note_that_it_was_segmented(tmp_path):
    """A TZYX hyperstack in a tomogram replay is quarantined as 4-D data; the summary said
    it was "segmented as a tomogram, one volume row a file" all the same."""
    from onnx_models import build_threshold_model

    onnx = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    volumes = (np.random.default_rng(0).random((2, 4, 32, 32)) * 200).astype(np.uint8)
    tifffile.imwrite(acq / "tzyx.tif", volumes, imagej=True, metadata={"axes": "TZYX"})
    r = CliRunner().invoke(replay_cmd, [str(acq), "--kind", "tomogram",
                                        "--out", str(tmp_path / "r"), "--model", str(onnx)])
    assert r.exit_code == 3, r.output
    assert "0 done" in r.output and "1 quarantined" in r.output
    assert "note:" not in r.output and "segmented as a tomogram" not in r.output


def test_copies_of_bad_content_are_quarantined_under_their_own_names(tmp_path):
    """A copy of a bad file in the same replay was counted "1 skipped (already done)" and
    never listed; a copy that came later was counted as quarantined "in an earlier run" but
    never listed either, so status and quarantine.parquet did not name it."""
    onnx = model(tmp_path)
    acq = tmp_path / "acq"
    (acq / "r1").mkdir(parents=True)
    (acq / "r2").mkdir()
    # read as bad only when its pixels are read (not by the structural check)
    tifffile.imwrite(acq / "r1" / "bad.tif", np.full((64, 64), 100, np.uint8),
                     resolution=(2e7, 1.5e7), resolutionunit="CENTIMETER")
    (acq / "r2" / "bad.tif").write_bytes((acq / "r1" / "bad.tif").read_bytes())
    out = tmp_path / "out"
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.quarantined, s.skipped, s.still_quarantined) == (2, 0, 0), s.lines()
    status = json.loads(CliRunner().invoke(status_cmd, ["--out", str(out), "--json"]).output)
    listed = {q["path"]: q["reason"] for q in status["quarantined"]}
    assert set(listed) == {str(acq / "r1" / "bad.tif"), str(acq / "r2" / "bad.tif")}
    assert listed[str(acq / "r2" / "bad.tif")].startswith("same content as a quarantined "
                                                          "file: pixel size")
    assert len(pq.read_table(out / "quarantine.parquet")) == 2
    # a copy made later: listed as well; the earlier two skipped unread
    (acq / "r3").mkdir()
    (acq / "r3" / "later.tif").write_bytes((acq / "r1" / "bad.tif").read_bytes())
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.quarantined, s.still_quarantined, s.skipped) == (3, 2, 0), s.lines()
    assert len(pq.read_table(out / "quarantine.parquet")) == 3
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.quarantined, s.still_quarantined) == (3, 3), s.lines()


def test_status_counts_quarantined_items_and_quarantined_files_apart(tmp_path):
    """counts.quarantined counts ledger items (content x model x version); a file refused
    before it was hashed has none, yet it is on the quarantine list, which
    counts.quarantined_files and `quarantined` describe (docs/service.md, Status)."""
    onnx = model(tmp_path)
    acq = tmp_path / "acq"
    acq.mkdir()
    for name in ("a.tif", "b.tif"):
        (acq / name).write_bytes(b"not a TIFF at all" * 4)
    assert replay(acq, tmp_path / "r", kind="insitu", model=onnx).quarantined == 2
    out = CliRunner().invoke(status_cmd, ["--out", str(tmp_path / "r"), "--json"])
    status = json.loads(out.output)
    assert status["counts"]["quarantined"] == 0
    assert status["counts"]["quarantined_files"] == len(status["quarantined"]) == 2
    text = CliRunner().invoke(status_cmd, ["--out", str(tmp_path / "r")]).output
    assert "2 quarantined" in text and "deleted since" not in text
    # A bad file deleted since needs nothing more: a replay of the folder is complete (exit
    # 0), and status says so instead of listing it as a quarantined file like the others.
    (acq / "a.tif").unlink()
    assert replay(acq, tmp_path / "r", kind="insitu", model=onnx).exit_status == 3  # b.tif
    text = CliRunner().invoke(status_cmd, ["--out", str(tmp_path / "r")]).output
    assert "2 quarantined (1 of them deleted since)" in text, text
    (line,) = [t for t in text.splitlines() if t.strip().startswith(str(acq / "a.tif"))]
    assert line.endswith("deleted since, nothing to do")
    status = json.loads(CliRunner().invoke(status_cmd, ["--out", str(tmp_path / "r"),
                                                        "--json"]).output)
    assert {q["path"]: q["gone"] for q in status["quarantined"]} == {
        str(acq / "a.tif"): True, str(acq / "b.tif"): False}


def test_failed_files_deleted_or_changed_since_a_kill_leave_the_failed_count(tmp_path):
    """A kill mid-batch leaves its files failed, to be tried again in halves. Files of it
    deleted since, or rewritten with another frame (processed as that new version), were
    counted "failed (will retry)" for ever: nothing tries their content again. Status counts
    them apart, as it marks a quarantined file deleted since (docs/service.md, Status)."""
    from nwwatch.filehash import file_sha256
    from nwwatch.paths import default_ledger
    from nwwatch.service.ledger import ItemKey, Ledger
    from nwwatch.service.ledgerdb import FileVersion
    from nwwatch.service.names import path_key

    acq, out = tmp_path / "acq", tmp_path / "r"
    acq.mkdir()
    files = [acq / f"frame_{i:06d}.tif" for i in range(4)]
    for i, path in enumerate(files):
        write_frame_tiff(path, _ok_frame(100.0 + 10 * i))

    def hashed(ledger: Ledger, path) -> ItemKey:  # as the service hashes a file it finds
        sha = file_sha256(path)
        ledger.remember_sha(path_key(path), FileVersion.of(os.stat(path)), sha)
        return ItemKey(sha, "m" * 64, "2.2.20")

    ledger = Ledger(default_ledger(out), out)
    ledger.claim("b1", "insitu", None, [(hashed(ledger, p), path_key(p)) for p in files])
    ledger.close()  # killed while the batch was processed
    ledger = Ledger(default_ledger(out), out)
    ledger.reconcile(3)
    ledger.close()

    def status() -> tuple[str, dict]:
        text = CliRunner().invoke(status_cmd, ["--out", str(out)]).output
        data = json.loads(CliRunner().invoke(status_cmd, ["--out", str(out), "--json"]).output)
        return text, data["counts"]

    text, counts = status()
    assert "0 in flight, 4 failed (will retry), 0 quarantined" in text, text
    assert (counts["failed"], counts.get("failed_gone", 0)) == (4, 0)
    files[0].unlink()  # deleted while the service was down
    write_frame_tiff(files[1], _ok_frame(150.0))  # rewritten, not hashed yet
    write_frame_tiff(files[2], _ok_frame(160.0))  # rewritten, its new version hashed
    ledger = Ledger(default_ledger(out), out)
    hashed(ledger, files[2])
    ledger.close()
    text, counts = status()
    assert ("0 in flight, 1 failed (will retry; 3 more deleted or changed since, nothing to "
            "retry), 0 quarantined") in text, text
    assert (counts["failed"], counts["failed_gone"]) == (1, 3)


def test_status_finds_a_quarantined_file_whose_name_is_not_utf8(tmp_path):
    """A quarantined file named with a byte that is not UTF-8 (0xE9, Latin-1's é) was said to
    be "deleted since, nothing to do" while it was there: status looked for its text form
    (``\\xe9``), which names no file. It is listed like the others until it is deleted."""
    onnx = model(tmp_path)
    acq = tmp_path / "acq"
    acq.mkdir()
    latin1 = acq / os.fsdecode(b"caf\xe9 1.tif")
    try:
        latin1.write_bytes(b"not a TIFF at all" * 4)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    assert replay(acq, tmp_path / "r", kind="insitu", model=onnx).quarantined == 1

    def listed() -> tuple[str, dict[str, bool]]:
        text = CliRunner().invoke(status_cmd, ["--out", str(tmp_path / "r")]).output
        status = json.loads(CliRunner().invoke(status_cmd, ["--out", str(tmp_path / "r"),
                                                            "--json"]).output)
        return text, {q["path"]: q["gone"] for q in status["quarantined"]}

    shown = str(acq / "caf\\xe9 1.tif")
    text, gone = listed()
    assert "deleted since" not in text, text
    assert gone == {shown: False}
    latin1.unlink()
    text, gone = listed()
    assert "1 quarantined (1 of them deleted since)" in text, text
    assert gone == {shown: True}


def test_a_replay_of_one_file_is_counted_in_the_singular(tmp_path, acquisition):
    """ "1 files: 1 done", "1 rows", "replay complete: all 1 files processed"."""
    acq, onnx = acquisition
    lines = replay(acq / "ok0.tif", tmp_path / "out", kind="insitu", model=onnx).lines()
    assert lines[0].startswith("1 file: 1 done") and lines[1].startswith("1 row: "), lines
    assert lines[-1] == "replay complete: the 1 file processed", lines


def test_a_replay_with_every_file_done_before_says_there_was_nothing_to_do():
    """Was "replay complete: all 30 files processed, none of them new: all done before" (and
    "the 1 file processed, done before"): processed, yet none new, read as a contradiction
    after the service had done them all."""
    from pathlib import Path

    from nwwatch.service.replaysummary import ReplaySummary

    def last(**counts: int) -> str:
        return ReplaySummary(Path("out"), **counts).lines()[-1]

    assert last(files=30, skipped=30, skipped_earlier=30) == (
        "replay complete: nothing to do: all 30 files were done before")
    assert last(files=1, skipped=1, skipped_earlier=1) == (
        "replay complete: nothing to do: the 1 file was done before")
    assert last(files=31, skipped=30, skipped_earlier=30, vanished=1) == (
        "replay complete: nothing to do: all 30 files (1 vanished) were done before")
    assert last(files=30, done=2, skipped=28, skipped_earlier=28) == (
        "replay complete: all 30 files processed, 28 of them done before")
    assert last(files=30, done=30) == "replay complete: all 30 files processed"


def test_a_replay_that_processed_nothing_says_so_with_copies_of_done_content(tmp_path):
    """Was "replay complete: all 3 files processed, 2 of them done before" for a second replay
    of two frames and a copy of one, which processed none: the copy is skipped as content
    done under another name, not as done before, and "nothing to do" asked for every file
    done before."""
    import shutil
    from pathlib import Path

    from nwwatch.service.replaysummary import ReplaySummary

    acq = tmp_path / "acq"
    acq.mkdir()
    for k in range(2):
        write_frame_tiff(acq / f"f{k}.tif", paint_insitu(100.0 + 10 * k, size=48))
    shutil.copy(acq / "f0.tif", acq / "f0_copy.tif")
    onnx, out = model(tmp_path), tmp_path / "out"
    first = replay(acq, out, kind="insitu", model=onnx)
    assert (first.done, first.skipped, first.skipped_earlier) == (2, 1, 0)
    assert first.lines()[-1] == ("replay complete: all 3 files processed, 1 of them holding "
                                 "content done under another name")
    again = replay(acq, out, kind="insitu", model=onnx)
    assert (again.done, again.skipped, again.skipped_earlier) == (0, 3, 2)
    assert again.lines()[-1] == ("replay complete: nothing to do: 2 files done before, 1 "
                                 "holding content done under another name")

    def last(**counts: int) -> str:
        return ReplaySummary(Path("out"), **counts).lines()[-1]

    assert last(files=1, skipped=1) == (
        "replay complete: nothing to do: the 1 file holds content done under another name")
    assert last(files=4, skipped=3, skipped_earlier=1, vanished=1) == (
        "replay complete: nothing to do: 1 file done before, 2 holding content done under "
        "other names (1 vanished)")
    assert last(files=30, done=2, skipped=28, skipped_earlier=27) == (
        "replay complete: all 30 files processed, 27 of them done before, 1 holding content "
        "done under another name")
    # nothing done, yet one quarantined: not "nothing to do"
    assert last(files=3, skipped=2, skipped_earlier=2, quarantined=1).startswith(
        "replay INCOMPLETE")


def test_summary_lines_name_the_first_three_and_mark_the_rest():
    from pathlib import Path

    from nwwatch.service.replaysummary import ReplaySummary

    s = ReplaySummary(Path("out"), not_tiff=[Path(f"t{k}.parquet") for k in range(4)],
                      unlisted=[PermissionError(13, "Permission denied", f"/a/d{k}")
                                for k in range(2)])
    lines = s.lines()
    assert "4 named files skipped, neither TIFF (by extension or header) nor MRC, " \
           "DigitalMicrograph, Velox EMD or TIA series (by extension): t0.parquet, " \
           "t1.parquet, t2.parquet, …" in lines
    assert ("2 folders could not be listed, their files not processed: /a/d0 (Permission "
            "denied), /a/d1 (Permission denied)") in lines
    few = ReplaySummary(Path("out"), input_path=Path("acq"),
                        left_out=[Path("a.st"), Path("b.ali")])
    assert any("it holds 2 files of a format replay does not read (a.st, b.ali): a tilt "
               "series?" in line for line in few.lines())


def test_status_of_a_damaged_ledger_names_the_rebuild_command_to_paste(tmp_path):
    """The command always carried `--ledger PATH`, the default location included, as no
    other message of a damaged ledger does."""
    out = tmp_path / "res"
    out.mkdir()
    (out / "ledger.sqlite").write_bytes(b"not a database, " * 400)
    r = CliRunner().invoke(status_cmd, ["--out", str(out)])
    assert r.exit_code == 1
    assert f"run `nwwatch ledger rebuild {out}`" in r.output, r.output


def test_the_service_warns_of_an_in_situ_series_in_a_tomogram_folder(tmp_path):
    """The running service segments an in-situ series (pages declared as time) in a
    tomogram folder as one volume, as replay does, and says so in a warning naming the file
    (replay's summary notes it); a volume (pages declared as Z) gets no warning. Was: no
    word from the service."""
    from onnx_models import build_threshold_model
    from servicekit import DaemonProcess, wait_rows, write_config

    from nwwatch.io import write_volume_tiff

    onnx = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    res = tmp_path / "res"
    cfg = write_config(tmp_path / "c.toml", acq, res, onnx, settle=0.3)
    cfg.write_text(cfg.read_text().replace('kind = "insitu"', 'kind = "tomogram"', 1))
    rng = np.random.default_rng(0)
    volume = (rng.random((6, 48, 48)) * 200).astype(np.uint8)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        write_volume_tiff(tmp_path / "vol.tif", volume)
        (tmp_path / "vol.tif").rename(acq / "vol.tif")
        write_stack_tiff(tmp_path / "series.tif", volume)
        (tmp_path / "series.tif").rename(acq / "series.tif")
        daemon.wait_event("file_processed", timeout=60, count=2)
        wait_rows(res, 2, timeout=60, proc=daemon, folder="volumes")
        warned = [e for e in daemon.events() if e.get("event") == "input_layout_of_other_kind"]
        assert [(e["source"], e["declares"]) for e in warned] == [
            (str(acq / "series.tif"), "time_frames")], warned
        assert 'kind = "insitu"' in warned[0]["note"]
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0


def test_the_service_warns_of_a_volume_in_an_in_situ_folder_once_it_is_processed(tmp_path):
    """A volume (pages declared as Z slices) in an in-situ folder is segmented one row a
    slice with one input_layout_of_other_kind warning; touched (its bytes the same) and then
    renamed, it is skipped as done once hashed, with no further warning. Was: warned when
    found ready, before its hash showed it done, at every touch or rename."""
    from servicekit import DaemonProcess, wait_rows, write_config

    from nwwatch.io import write_volume_tiff

    acq = tmp_path / "acq"
    acq.mkdir()
    res = tmp_path / "res"
    cfg = write_config(tmp_path / "c.toml", acq, res, model(tmp_path), settle=0.3)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    try:
        daemon.wait_event("ready", timeout=60)
        write_volume_tiff(tmp_path / "tomo.tif", np.stack([_ok_frame(130.0), _ok_frame(120.0)]))
        (tmp_path / "tomo.tif").rename(acq / "tomo.tif")
        daemon.wait_event("file_processed", timeout=60)
        wait_rows(res, 2, timeout=60, proc=daemon)
        _touched(acq / "tomo.tif")
        daemon.wait_event("file_skipped", timeout=60)  # hashed, found done
        (acq / "tomo.tif").rename(acq / "renamed.tif")
        daemon.wait_event("file_renamed_after_processing", timeout=60)
        warned = [e for e in daemon.events() if e.get("event") == "input_layout_of_other_kind"]
        assert [(e["source"], e["declares"], e["pages"]) for e in warned] == [
            (str(acq / "tomo.tif"), "z_slices", 2)], warned
        assert 'kind = "tomogram"' in warned[0]["note"]
        assert len([e for e in daemon.events() if e.get("event") == "file_processed"]) == 1
    finally:
        code, _ = daemon.terminate(timeout=30)
    assert code == 0


def test_mrc_files_of_the_other_kinds_names_are_named_with_what_to_do(tmp_path, acquisition):
    """A folder of reconstructions (.rec) replayed without --kind tomogram said only "no input
    files" (before MRC was read, such files got a hint), and so did a folder of SerialEM
    stacks (.mrcs) replayed as tomograms; a .map is read only when named."""
    import mrcfile

    _, onnx = acquisition
    folder = tmp_path / "recs"
    folder.mkdir()
    for name in ("a.rec", "b.map"):
        with mrcfile.new(folder / name) as mrc:
            mrc.set_data(np.zeros((2, 4, 4), np.float32))
    s = replay(folder, tmp_path / "out", kind="insitu", model=onnx)
    assert (s.files, s.exit_status) == (0, 0)
    last = s.lines()[-1]
    assert last.startswith(f"replay found no input files in {folder}"), last
    assert ("it holds 2 MRC files whose names an in-situ replay does not look for (a.rec, "
            "b.map): a reconstruction (.rec) is a tomogram: replay with --kind tomogram "
            "--model MODEL; a map (.map) is read when named: give the file itself") in last
    (folder / "a.rec").rename(folder / "movie.mrcs")
    (folder / "b.map").unlink()
    (tmp_path / "tomo").mkdir()
    s = replay(folder, tmp_path / "out2", kind="tomogram",
               model=model(tmp_path / "tomo", kind="tomogram"))
    assert s.lines()[-1].endswith(
        "it holds 1 MRC file whose name a tomogram replay does not look for (movie.mrcs): "
        "in-situ frames (.mrcs): replay without --kind tomogram"), s.lines()


@pytest.mark.parametrize("kind", ["insitu", "tomogram"])
def test_a_suffix_added_to_one_kinds_default_names_is_advised_by_the_other(tmp_path, kind,
                                                                          monkeypatch):
    """Which kind takes which suffix is DEFAULT_SUFFIXES' alone: the service's unread_format
    reason (watcher.unread_hint) and the replay's note each said so by hard-coded .rec and
    .mrcs, so a suffix added there (DigitalMicrograph's, say) was left out in silence by the
    other kind, or called a format nwwatch does not read. A suffix no format has (.nwx) makes
    sure the advice comes from that table alone."""
    from nwwatch.service import config
    from nwwatch.service.watcher import unread_hint

    other = "tomogram" if kind == "insitu" else "insitu"
    monkeypatch.setitem(config.DEFAULT_SUFFIXES, other,
                        (*config.DEFAULT_SUFFIXES[other], ".nwx"))
    said = {"tomogram": 'a reconstruction? nwwatch reads it as a tomogram: watch or replay it '
                        'as kind "tomogram"',
            "insitu": 'a frame or a stack of frames? nwwatch reads it as in-situ frames: '
                      'watch or replay it as kind "insitu"'}
    assert unread_hint("a.NWX", kind) == said[other]
    assert unread_hint("a.nwx", other) == ""  # its own kind takes it: nothing to advise
    acq = tmp_path / "acq"
    acq.mkdir()
    (acq / "a.nwx").write_bytes(b"\0" * 64)
    onnx = model(tmp_path) if kind == "insitu" else model(tmp_path, kind="tomogram")
    s = replay(acq, tmp_path / "out", kind=kind, model=onnx)
    assert (s.files, s.exit_status) == (0, 0)
    replay_of = "an in-situ replay" if kind == "insitu" else "a tomogram replay"
    advice = ("a reconstruction (.nwx) is a tomogram: replay with --kind tomogram --model MODEL"
              if other == "tomogram" else
              "in-situ frames (.nwx): replay without --kind tomogram")
    assert s.lines()[-1].endswith(
        f"; it holds 1 file whose name {replay_of} does not look for (a.nwx): {advice}"
    ), s.lines()


def test_a_folder_with_inputs_names_the_files_its_kind_leaves_out(tmp_path, acquisition):
    """A session folder with frames and a reconstruction (.rec) or a tilt series replayed
    in-situ: the frames are processed and the others named with what to do, as the service's
    unread_format names them, not left out behind "replay complete"."""
    import mrcfile

    acq, onnx = acquisition
    (acq / "junk.tif").unlink()
    with mrcfile.new(acq / "tomo.rec") as mrc:
        mrc.set_data(np.zeros((2, 4, 4), np.float32))
    (acq / "tilt.st").write_bytes(b"\0" * 1024)
    s = replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    assert (s.files, s.exit_status) == (5, 0)
    lines = s.lines()
    assert lines[-1] == "replay complete: all 5 files processed"
    (note,) = [line for line in lines if line.startswith("note: left out of this replay: ")]
    assert "1 file of a format replay does not read (tilt.st): a tilt series?" in note, note
    assert ("1 MRC file whose name an in-situ replay does not look for (tomo.rec): a "
            "reconstruction (.rec) is a tomogram: replay with --kind tomogram --model MODEL"
            ) in note, note
    # a folder of frames alone gets no such note
    (acq / "tomo.rec").unlink()
    (acq / "tilt.st").unlink()
    s = replay(acq, tmp_path / "out2", kind="insitu", model=onnx)
    assert not any("left out" in line for line in s.lines()), s.lines()


def test_a_left_out_file_is_counted_once_when_its_folder_is_walked_twice(tmp_path,
                                                                         acquisition):
    # 'replay acq acq/sub acq': the inputs were processed once each, but the note counted
    # '5 files of a format replay does not read (a.avi, tilt.st, tilt.st, ...)' for two
    acq, onnx = acquisition
    (acq / "sub").mkdir()
    (acq / "sub" / "tilt.st").write_bytes(b"\0" * 1024)
    (acq / "a.avi").write_bytes(b"\0" * 1024)
    s = replay([acq, acq / "sub", acq], tmp_path / "out", kind="insitu", model=onnx)
    (note,) = [line for line in s.lines() if line.startswith("note: left out of this replay: ")]
    assert "2 files of a format replay does not read (a.avi, tilt.st)" in note, note


def test_files_touched_since_they_were_done_read_as_done_before(tmp_path, acquisition):
    # Was: a file whose bytes are unchanged but whose mtime is new was skipped as done once
    # hashed, yet the last line read "all 5 files processed", as if each had been measured.
    import os

    acq, onnx = acquisition
    (acq / "junk.tif").unlink()
    replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    for file in acq.iterdir():
        os.utime(file, None)
    again = replay(acq, tmp_path / "out", kind="insitu", model=onnx)
    assert (again.done, again.skipped, again.skipped_earlier) == (0, 5, 5)
    assert again.lines()[-1] == "replay complete: nothing to do: all 5 files were done before"


def test_status_names_as_last_the_frame_the_dashboard_names_as_latest(tmp_path):
    """Frames committed together share their ``processed_at``: ``status`` named the one the
    ledger's order put last, another frame of the batch than the dashboard's latest frame
    (the last by acquisition time). Here the names run against the acquisition times."""
    from datetime import timedelta

    from nwwatch.dashboard.app import Dashboard

    acq, onnx = tmp_path / "acq", model(tmp_path)
    acq.mkdir()
    t0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    for k, name in enumerate(["c.tif", "b.tif", "a.tif"]):  # a.tif acquired last
        write_frame_tiff(acq / name, _ok_frame(110.0 + k), acquired_at=t0 + timedelta(seconds=k))
    out = tmp_path / "out"
    assert replay(acq, out, kind="insitu", model=onnx).done == 3
    processed = pq.read_table(out / "frames", columns=["processed_at"])["processed_at"]
    assert len(set(processed.to_pylist())) == 1  # committed together
    dash = Dashboard(out, None, live=False, stale_after_s=None)
    dash.store.refresh()
    latest = dash.payload(next(iter(dash.store.snapshot.values())), None)["latest"]["source"]
    dash.close()
    assert latest == "a.tif"
    st = json.loads(CliRunner().invoke(status_cmd, ["--out", str(out), "--json"]).output)
    assert st["last"]["source"] == str(acq / "a.tif"), st["last"]
    text = CliRunner().invoke(status_cmd, ["--out", str(out)]).output
    assert f"last: {acq / 'a.tif'} (1 row) at " in text, text
