"""Which acquisition a file belongs to: the folder it lies in, or the recording folder of
Gatan's In-Situ time tree (NAME/Hour_00/Minute_00/Second_00/frame), so a recording written a
second per folder is one acquisition in the results, the dashboard, compaction and the label
queue, not one per second."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from servicekit import model, paint_insitu

from nwwatch.dashboard.data import ResultsStore
from nwwatch.io import write_frame_tiff
from nwwatch.paths import acquisition_named, acquisition_of
from nwwatch.results.label_queue import QUEUE_DIR, QUEUE_FILE
from nwwatch.results.parquet import dataset_files
from nwwatch.service import replay
from nwwatch.service.compaction import compact


@pytest.mark.parametrize(("source", "acquisition"), [
    ("/data/run1/f0000.tif", "/data/run1"),
    ("/data/run1/Hour_00/Minute_00/Second_00/run1_Hour_00_Minute_00_Second_00_Frame_0000.dm4",
     "/data/run1"),
    ("/data/run1/Hour_01/Minute_59/Second_59/f.tif", "/data/run1"),
    ("/data/run1/Hour_123/Minute_0/Second_7/f.tif", "/data/run1"),
    ("/Hour_00/Minute_00/Second_00/f.tif", "/"),
    # not the whole tree: the folder the file lies in
    ("/data/run1/Minute_00/Second_00/f.tif", "/data/run1/Minute_00/Second_00"),
    ("/data/run1/Hour_00/Second_00/f.tif", "/data/run1/Hour_00/Second_00"),
    ("/data/run1/Hour_00/Minute_00/f.tif", "/data/run1/Hour_00/Minute_00"),
    ("/data/run1/Hour_00/Minute_00/Second_xx/f.tif", "/data/run1/Hour_00/Minute_00/Second_xx"),
    ("/data/run1/hour_00/minute_00/second_00/f.tif", "/data/run1/hour_00/minute_00/second_00"),
    ("/data/Second_00/f.tif", "/data/Second_00"),
    ("f.tif", ""),
])
def test_acquisition_of(source, acquisition):
    assert acquisition_of(source) == acquisition


@pytest.mark.parametrize(("folder", "named"), [
    ("/data/run1", "/data/run1"),
    ("/data/run1/Hour_00", "/data/run1"),
    ("/data/run1/Hour_00/Minute_03", "/data/run1"),
    ("/data/run1/Hour_00/Minute_03/Second_59", "/data/run1"),
    ("/data/run1/Minute_03", "/data/run1/Minute_03"),
    ("/data/run1/Second_59", "/data/run1/Second_59"),
    ("/data/run1/Minute_03/Second_59", "/data/run1/Minute_03/Second_59"),
    ("/data/Hour_00/Minute_03/x", "/data/Hour_00/Minute_03/x"),
])
def test_acquisition_named(folder, named):
    assert acquisition_named(folder) == named


def test_a_recording_in_seconds_folders_is_one_acquisition_everywhere(tmp_path):
    onnx = model(tmp_path)
    rec = tmp_path / "in" / "growth"
    plain = tmp_path / "in" / "other"
    n = 0
    for second in range(3):
        folder = rec / "Hour_00" / "Minute_00" / f"Second_{second:02d}"
        folder.mkdir(parents=True)
        for frame in range(2):
            write_frame_tiff(folder / f"growth_Hour_00_Minute_00_Second_{second:02d}_Frame_"
                                      f"{frame:04d}.tif", paint_insitu(100.0 + 5 * n, size=48))
            n += 1
    plain.mkdir()
    write_frame_tiff(plain / "f0.tif", paint_insitu(97.0, size=48))
    out = tmp_path / "res"
    replay(tmp_path / "in", out, kind="insitu", model=onnx)

    partitions = {p.parent.name for p in dataset_files(out / "frames")}
    assert len(partitions) == 2, partitions
    assert any(p.startswith("acquisition=growth-") for p in partitions), partitions

    store = ResultsStore(out)
    store.refresh()
    by_folder = {a.folder: len(a) for a in store.snapshot.values()}
    assert by_folder == {str(rec): 6, str(plain): 1}

    queues = sorted(p.name for p in (out / QUEUE_DIR).iterdir() if p.is_dir())
    assert len(queues) == 2 and queues[0].startswith("growth-"), queues
    queue_doc = json.loads((out / QUEUE_DIR / queues[0] / QUEUE_FILE).read_text())
    assert queue_doc["acquisition"] == str(rec)  # not the folder of its last frame's second

    # a second replay of the recording's last second adds a batch file to the same partition,
    # and compacting the recording by its folder merges them
    write_frame_tiff(rec / "Hour_00" / "Minute_00" / "Second_03" / "late.tif",
                     paint_insitu(130.0, size=48))
    replay(rec, out, kind="insitu", model=onnx)
    growth = [f for f in dataset_files(out / "frames")
              if f.parent.name.startswith("acquisition=growth-")]
    assert len(growth) == 2
    # the folder of one hour names the whole recording, as the recording's folder does
    report = compact(out, acquisition=rec / "Hour_00")
    assert len(report.compacted) == 1, report
    growth = [f for f in dataset_files(out / "frames")
              if f.parent.name.startswith("acquisition=growth-")]
    assert len(growth) == 1
    assert pq.read_table(growth[0]).num_rows == 7
