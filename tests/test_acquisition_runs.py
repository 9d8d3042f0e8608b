"""A folder name reused for a new run: acquisition software that writes every run into a
folder of one name (``Acquisition/frame_000000.tif`` …), the finished run moved out of the
watch (or renamed inside it) first. The new run's frames are other files than the earlier
run's of the same names, not new versions of them: the earlier run's rows stay current, and
the new run's go to a partition of their own, in status, read_results, the dashboard, the
report, compaction and a rebuilt ledger alike (nwwatch/service/ledgerruns.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner
from servicekit import model, paint_insitu
from structlog.testing import capture_logs

from nwwatch.dashboard.data import ResultsStore, acquisition_summary
from nwwatch.dashboard.report import write_report
from nwwatch.io import write_frame_tiff
from nwwatch.paths import default_ledger
from nwwatch.results.parquet import acquisition_partition
from nwwatch.results.reading import read_results
from nwwatch.service import replay
from nwwatch.service.cli import status as status_cmd
from nwwatch.service.compaction import compact
from nwwatch.service.rebuild import rebuild_ledger


def _frames(folder, angles, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, angle in enumerate(angles, start):
        write_frame_tiff(folder / f"frame_{i:06d}.tif", paint_insitu(angle, size=96))


def _status(out) -> tuple[dict, str]:
    runner = CliRunner()
    text = runner.invoke(status_cmd, ["--out", str(out)]).output
    return json.loads(runner.invoke(status_cmd, ["--out", str(out), "--json"]).output), text


def _by_partition(out) -> dict[str, list[str]]:
    rows = read_results(out).to_pandas()
    return {acq: sorted(group.source.str.rsplit("/", n=1).str[1])
            for acq, group in rows.groupby("acquisition")}


def test_a_run_in_a_folder_of_a_reused_name_keeps_the_earlier_runs_rows(tmp_path):
    """Day 1 writes six frames to acq/Acquisition, processed; the folder is moved out of the
    watch; day 2 writes three new frames to a new acq/Acquisition under the same names.
    status said "rows: 6 … superseded: 3 rows", read_results gave day 2's frames 0-2 and day
    1's 3-5 as one acquisition, and day 1's frames 0-2 were in no current view."""
    onnx = model(tmp_path)
    acq, out = tmp_path / "acq", tmp_path / "res"
    _frames(acq / "Acquisition", [100, 105, 110, 115, 120, 125])
    assert replay(acq, out, kind="insitu", model=onnx).done == 6
    (tmp_path / "archive").mkdir()
    (acq / "Acquisition").rename(tmp_path / "archive" / "day1")  # as the docs advise
    _frames(acq / "Acquisition", [130, 135, 140])  # day 2: numbered from 0 again
    with capture_logs() as logs:
        assert replay(acq, out, kind="insitu", model=onnx).done == 3
    source = str(acq / "Acquisition" / "frame_000000.tif")
    first, second = acquisition_partition(source), acquisition_partition(source, 2)
    assert second == f"{first}-run2"
    (started,) = [e for e in logs if e["event"] == "acquisition_run_started"]
    assert (started["folder"], started["run"], started["partition"], started["reused"]) == (
        str(acq / "Acquisition"), 2, second, source)

    st, text = _status(out)
    assert st["rows"] == 9 and st["superseded"]["rows"] == 0, text
    assert "superseded" not in text
    names = [f"frame_{i:06d}.tif" for i in range(6)]
    assert _by_partition(out) == {first.split("=")[1]: names,
                                  second.split("=")[1]: names[:3]}
    assert len(read_results(out, current=False)) == 9

    store = ResultsStore(out)
    store.refresh()
    pages = sorted((a.label, len(a)) for a in store.snapshot.values())
    assert pages == [(str(acq / "Acquisition"), 6), (f"{acq / 'Acquisition'} (run 2)", 3)]
    for a in store.snapshot.values():  # each page one run: its times never jump back
        times = a.table["acquired_at"].to_pylist()
        assert times == sorted(times)
        assert acquisition_summary(a, 0.0, None)["folder"] == a.label
    report = write_report(out, tmp_path / "report.html").read_text()
    assert f"<h2>{acq / 'Acquisition'} (run 2)</h2>" in report
    assert f"<h2>{acq / 'Acquisition'}</h2>" in report

    # compaction keeps the runs apart, each in its partition
    _frames(acq / "Acquisition", [145], start=3)
    assert replay(acq, out, kind="insitu", model=onnx).done == 1
    compact(out)
    assert {p.name for p in (out / "frames").iterdir()} == {first, second}
    assert _by_partition(out) == {first.split("=")[1]: names,
                                  second.split("=")[1]: names[:4]}
    # a rebuilt ledger goes on with the newest run its results hold
    default_ledger(out).unlink()
    rebuild_ledger(out)
    _frames(acq / "Acquisition", [150], start=4)
    assert replay(acq, out, kind="insitu", model=onnx).done == 1
    assert _by_partition(out) == {first.split("=")[1]: names,
                                  second.split("=")[1]: names[:5]}
    assert _status(out)[0]["rows"] == 11


def test_a_run_folder_renamed_inside_the_watch_and_made_again(tmp_path):
    """The finished run's folder renamed inside the watch (its frames skipped as done, their
    rows keeping the old name) and a new folder made under the old name: a new run too."""
    onnx = model(tmp_path)
    acq, out = tmp_path / "acq", tmp_path / "res"
    _frames(acq / "Acquisition", [100, 105, 110])
    replay(acq, out, kind="insitu", model=onnx)
    (acq / "Acquisition").rename(acq / "Acquisition_day1")
    _frames(acq / "Acquisition", [130, 135])
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.skipped) == (2, 3), s.lines()
    st, _ = _status(out)
    assert st["rows"] == 5 and st["superseded"]["rows"] == 0
    assert sorted(_by_partition(out)) == sorted(
        p.split("=")[1] for p in (acquisition_partition(str(acq / "Acquisition" / "f")),
                                  acquisition_partition(str(acq / "Acquisition" / "f"), 2)))


def test_a_file_rewritten_in_its_folder_is_still_a_new_version(tmp_path):
    """A camera writing a file again in the same folder (or a stack grown page by page) makes
    new versions of one file, whatever the run logic: the earlier rows are superseded."""
    onnx = model(tmp_path)
    acq, out = tmp_path / "acq", tmp_path / "res"
    _frames(acq / "run", [100, 105])
    replay(acq, out, kind="insitu", model=onnx)
    _frames(acq / "run", [130])  # frame_000000 written again, in the same folder
    replay(acq, out, kind="insitu", model=onnx)
    st, text = _status(out)
    assert st["rows"] == 2 and st["superseded"]["rows"] == 1, text
    assert [p.name for p in (out / "frames").iterdir()] == [
        acquisition_partition(str(acq / "run" / "f"))]


def test_a_folder_made_again_whose_files_reuse_no_name_goes_on_in_its_run(tmp_path):
    """A folder of another inode whose files reuse none of the run's names hides no row: the
    run goes on (a share mounted again, numbering its folders anew, must not split an
    acquisition), and a name reused after that is a new version again, in that folder."""
    onnx = model(tmp_path)
    acq, out = tmp_path / "acq", tmp_path / "res"
    _frames(acq / "run", [100, 105])
    replay(acq, out, kind="insitu", model=onnx)
    shutil.move(acq / "run", tmp_path / "away")
    _frames(acq / "run", [110], start=2)
    replay(acq, out, kind="insitu", model=onnx)
    _frames(acq / "run", [120], start=2)  # frame_000002 written again in that folder
    replay(acq, out, kind="insitu", model=onnx)
    st, _ = _status(out)
    assert st["rows"] == 3 and st["superseded"]["rows"] == 1
    assert [p.name for p in (out / "frames").iterdir()] == [
        acquisition_partition(str(acq / "run" / "f"))]


def test_a_broken_frame_of_the_new_run_leaves_the_earlier_runs_rows_current(tmp_path):
    """A frame of the new run quarantined under a name of the earlier run's (a broken file):
    the quarantine is of the file there now, the new run's; the earlier run's rows of that
    name stay current, and only the new run's page lists the file."""
    onnx = model(tmp_path)
    acq, out = tmp_path / "acq", tmp_path / "res"
    _frames(acq / "Acquisition", [100, 105, 110])
    replay(acq, out, kind="insitu", model=onnx)
    (acq / "Acquisition").rename(tmp_path / "day1")
    _frames(acq / "Acquisition", [130])
    (acq / "Acquisition" / "frame_000001.tif").write_bytes(b"not a TIFF at all" * 4)
    s = replay(acq, out, kind="insitu", model=onnx)
    assert (s.done, s.quarantined) == (1, 1), s.lines()
    st, text = _status(out)
    assert st["rows"] == 4 and st["superseded"]["rows"] == 0, text
    assert len(read_results(out)) == 4
    store = ResultsStore(out)
    store.refresh()
    listed = {a.label: [q["path"] for q in a.quarantined] for a in store.snapshot.values()}
    assert listed == {str(acq / "Acquisition"): [],
                      f"{acq / 'Acquisition'} (run 2)": [
                          str(acq / "Acquisition" / "frame_000001.tif")]}
    assert np.array_equal(
        sorted(len(a) for a in store.snapshot.values()), [1, 3])
