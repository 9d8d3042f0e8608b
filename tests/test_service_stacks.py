"""In-situ stacks larger than the memory the process may use (docs/service.md, "Processing").

A TIFF, MRC, DigitalMicrograph, EMD or TIA stack is read, segmented and measured a chunk of
pages at a time, with the rows of the whole stack committed together, the same as for the
stack read whole; a file read whole (no more pages than a chunk) that cannot fit is refused
from its header with the GiB needed and available, and tried again at a start with more
memory. Was: every
stack was read whole (and normalised to float32 beside it); one larger than the unit's
MemoryMax was killed by the OOM killer, restarted, killed again and after three kills
quarantined as "the service stopped (crash or kill) while processing this file alone".
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from servicekit import model, paint_insitu
from tiffkit import one_ifd_for_all_pages

import nwwatch.io as nio
from nwwatch.io import inspect_tiff, read_frames, write_stack_tiff
from nwwatch.resources import Limit
from nwwatch.results import label_queue
from nwwatch.service import replay
from nwwatch.service.stackmemory import GIB, StackTooLargeError, whole_bytes

frames_module = importlib.import_module("nwwatch.service.frames")
stackmemory = importlib.import_module("nwwatch.service.stackmemory")
ROOT = Path(__file__).resolve().parents[1]
#: Columns that differ between two runs of the same frames (times, the batch).
RUN_COLUMNS = {"read_ms", "segment_ms", "measure_ms", "confidence_ms", "processed_at",
               "batch_id"}
PAGES = 21  # with replay's batches of 8 and chunks of one batch: 8 + 8 + 5 pages


def _pages(n: int = PAGES) -> np.ndarray:
    """``n`` frames of droplets of different angles and sizes."""
    return np.stack([paint_insitu(95.0 + 3.0 * i, size=96, half_width=10 + i % 4)
                     for i in range(n)])


def _write(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mrcs":
        with mrcfile.new(path) as mrc:  # a movie stack as SerialEM writes it
            mrc.set_data(data.astype(np.uint16) * 50)
            mrc.set_image_stack()
            mrc.voxel_size = (4.2, 4.2, 1.0)
    elif path.suffix == ".emd":  # a Velox camera series: each frame its own time stamp
        from test_io_emd import _metadata
        from test_io_emd import _write as emd_file

        emd_file(path, data, [_metadata(pixel_m=4.2e-10, stamp_us=1_700_000_000_000_000
                                        + 250_000 * i) for i in range(len(data))])
    elif path.suffix == ".dm4":  # a DigitalMicrograph 3-D image: one array, x fastest
        from test_io_dm import dm_file, nm_calibration

        dm_file(path, data.astype(np.uint16), 10,
                calibration=nm_calibration(0.42, n=2) + [(0.1, "s")])
    elif path.suffix == ".ser":  # a TIA series: each element its own offset and time
        from test_io_ser import ser_file

        ser_file(path, list(data), 2, delta_m=(4.2e-10, 4.2e-10), total=len(data) + 4)
    elif path.name.startswith("imagej"):  # ImageJ's layout for stacks over 4 GB
        write_stack_tiff(path, data)
        one_ifd_for_all_pages(path)
    else:
        with tifffile.TiffWriter(path) as tif:  # a recording written page by page
            for page in data:
                tif.write(page, contiguous=True, resolution=(1e7 / 0.42, 1e7 / 0.42),
                          resolutionunit="CENTIMETER")
    return path


def _rows(out: Path) -> list[dict]:
    table = pq.read_table(out / "frames")
    rows = table.select([c for c in table.column_names if c not in RUN_COLUMNS]).to_pylist()
    return sorted(rows, key=lambda r: (r["source"], r["frame"]))


def _queue(out: Path, source: Path) -> list[tuple]:
    folder = label_queue.acquisition_folder(out, str(source))
    entries = json.loads((folder / label_queue.QUEUE_FILE).read_text())["entries"]
    return [(e["source"], e["frame"], e["confidence"], (folder / e["thumbnail"]).read_bytes())
            for e in entries]


@pytest.mark.parametrize("name", ["stack.tif", "movie.mrcs", "imagej.tif", "series.emd",
                                  "series.ser", "movie.dm4"])
def test_a_stack_read_in_chunks_gives_the_rows_of_the_stack_read_whole(tmp_path, monkeypatch,
                                                                       name):
    path = _write(tmp_path / "acq" / name, _pages())
    onnx = model(tmp_path / "m")
    chunks = []
    real_chunks = frames_module.read_frame_chunks

    def counted(path, pages, whole=None):
        for chunk in real_chunks(path, pages, whole):
            chunks.append([f.index for f in chunk])
            yield chunk

    # chunks of one network batch (8 pages); the whole stack never read
    monkeypatch.setattr(stackmemory, "STACK_CHUNK_BYTES", 1)
    monkeypatch.setattr(frames_module, "read_frame_chunks", counted)
    monkeypatch.setattr(frames_module, "read_frames", lambda p: pytest.fail("read whole"))
    # longer than a file read whole may be (nwwatch.io.MAX_FILE_BYTES, 8 GiB)
    monkeypatch.setattr(nio.limits, "MAX_FILE_BYTES", inspect_tiff(path).declared_bytes - 1)
    summary = replay(tmp_path / "acq", tmp_path / "chunked", kind="insitu", model=onnx)
    assert (summary.done, summary.failed, summary.quarantined) == (1, 0, 0), summary.lines()
    assert chunks == [list(range(0, 8)), list(range(8, 16)), list(range(16, PAGES))]
    monkeypatch.undo()
    # the same stack read whole: chunks larger than it
    monkeypatch.setattr(stackmemory, "STACK_CHUNK_BATCHES", 10**6)
    monkeypatch.setattr(stackmemory, "STACK_CHUNK_BYTES", 2**40)
    summary = replay(tmp_path / "acq", tmp_path / "whole", kind="insitu", model=onnx)
    assert summary.done == 1, summary.lines()
    chunked, whole = _rows(tmp_path / "chunked"), _rows(tmp_path / "whole")
    assert [r["frame"] for r in chunked] == list(range(PAGES))
    assert chunked == whole
    assert len({r["contact_angle_deg"] for r in chunked}) > 1  # frames told apart
    # the least confident frames queued for labelling, with the thumbnails of their frames
    queued = _queue(tmp_path / "chunked", path)
    assert len(queued) == label_queue.DEFAULT_CAPACITY < PAGES
    assert queued == _queue(tmp_path / "whole", path)
    # one batch of the ledger: every row committed together, exactly once
    table = pq.read_table(tmp_path / "chunked" / "frames")
    assert len(set(table.column("batch_id").to_pylist())) == 1


def test_a_stack_changed_between_chunks_is_released_and_processed_as_its_new_version(
        tmp_path, monkeypatch):
    data = _pages()
    path = _write(tmp_path / "acq" / "stack.tif", data)
    onnx = model(tmp_path / "m")
    monkeypatch.setattr(stackmemory, "STACK_CHUNK_BYTES", 1)
    real_next = frames_module._StackReader.next_chunk
    read = []

    def then_rewritten(self):
        chunk = real_next(self)
        read.append(len(chunk))
        if len(read) == 1:  # the writer rewrites the file while its first chunk is processed
            _write(tmp_path / "v2.tif", data[::-1])
            os.replace(tmp_path / "v2.tif", path)
        return chunk

    monkeypatch.setattr(frames_module._StackReader, "next_chunk", then_rewritten)
    summary = replay(tmp_path / "acq", tmp_path / "out", kind="insitu", model=onnx)
    # changed while read: no row, and the replay is incomplete (exit 3)
    assert (summary.done, summary.failed, summary.quarantined, summary.vanished,
            len(summary.changed), summary.exit_status) == (0, 0, 0, 0, 1, 3), summary.lines()
    assert read == [8]  # the later chunks are not read
    assert not (tmp_path / "out" / "frames").exists()  # no rows of a part of a version
    monkeypatch.undo()
    summary = replay(tmp_path / "acq", tmp_path / "out", kind="insitu", model=onnx)
    assert (summary.done, summary.failed, summary.quarantined) == (1, 0, 0), summary.lines()
    rows = _rows(tmp_path / "out")
    assert [r["frame"] for r in rows] == list(range(PAGES))


def _dm_stack(path: Path, n: int = 6) -> Path:
    from test_io_dm import dm_file, nm_calibration

    path.parent.mkdir(parents=True, exist_ok=True)
    return dm_file(path, _pages(n).astype(np.uint16), 10,
                   calibration=nm_calibration(0.42, n=2) + [(0.1, "s")])


def test_a_file_too_large_to_read_whole_is_refused_at_once_and_retried_with_more(
        tmp_path, monkeypatch):
    # a file of no more pages than a chunk is read whole: checked from its header first
    path = _dm_stack(tmp_path / "acq" / "movie.dm4")
    need = whole_bytes(inspect_tiff(path))
    limit = [need - 1]
    monkeypatch.setattr(stackmemory, "CHECKED_FROM_BYTES", 0)
    monkeypatch.setattr(stackmemory, "available_memory",
                        lambda limits: Limit(limit[0], "/cg/test/memory.max"))
    read = []
    monkeypatch.setattr(frames_module, "read_frames", lambda p: read.append(p) or
                        read_frames(p))
    onnx = model(tmp_path / "m")
    summary = replay(tmp_path / "acq", tmp_path / "out", kind="insitu", model=onnx)
    assert (summary.done, summary.failed, summary.quarantined) == (0, 0, 1), summary.lines()
    assert read == []  # refused from its header
    entry = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pylist()[0]
    assert entry["path"] == str(path) and entry["attempts"] == 1
    assert entry["error_type"] == StackTooLargeError.__name__
    assert entry["reason"].startswith(
        f"6 frames of 96 x 96 uint16 in one file need at least {need / GIB:.1f} GiB of memory")
    assert ("GiB are available (/cg/test/memory.max): raise that limit (the service's "
            "MemoryMax: systemctl edit nwwatch), or bin the frames" in entry["reason"])
    # a longer DigitalMicrograph stack is read a chunk at a time within that memory
    longer = _dm_stack(tmp_path / "acq2" / "long.dm4", n=PAGES)
    assert whole_bytes(inspect_tiff(longer)) > limit[0]
    monkeypatch.setattr(stackmemory, "STACK_CHUNK_BYTES", 1)  # chunks of one batch
    summary = replay(tmp_path / "acq2", tmp_path / "out2", kind="insitu", model=onnx)
    assert (summary.done, summary.quarantined) == (1, 0), summary.lines()
    assert read == []
    assert pq.read_table(tmp_path / "out2" / "frames").num_rows == PAGES
    monkeypatch.setattr(stackmemory, "STACK_CHUNK_BYTES", 256 * 2**20)
    summary = replay(tmp_path / "acq", tmp_path / "out", kind="insitu", model=onnx)
    assert (summary.done, summary.still_quarantined) == (0, 1), summary.lines()
    limit[0] = need  # MemoryMax raised, the service restarted
    summary = replay(tmp_path / "acq", tmp_path / "out", kind="insitu", model=onnx)
    assert (summary.done, summary.quarantined) == (1, 0), summary.lines()
    assert read == [path]
    assert pq.read_table(tmp_path / "out" / "quarantine.parquet").num_rows == 0
    assert pq.read_table(tmp_path / "out" / "frames").num_rows == 6


def test_an_emd_series_stored_contiguously_is_read_whole_after_the_memory_check(
        tmp_path, monkeypatch):
    # frames interleaved pixel by pixel (an HDF5 dataset without chunks): read by chunks,
    # each would cost a pass over the whole dataset, so the series is read whole, and a
    # series that cannot fit is refused before its pixels are read, naming what to do
    from test_io_emd import _write as emd_file

    (tmp_path / "acq").mkdir()
    path = emd_file(tmp_path / "acq" / "series.emd", _pages().astype(np.uint16) * 50,
                    chunked=False)
    need = whole_bytes(inspect_tiff(path))
    limit = [need - 1]
    monkeypatch.setattr(stackmemory, "CHECKED_FROM_BYTES", 0)
    monkeypatch.setattr(stackmemory, "STACK_CHUNK_BYTES", 1)  # else chunks of one batch
    monkeypatch.setattr(stackmemory, "available_memory",
                        lambda limits: Limit(limit[0], "/cg/test/memory.max"))
    onnx = model(tmp_path / "m")
    summary = replay(tmp_path / "acq", tmp_path / "out", kind="insitu", model=onnx)
    assert (summary.done, summary.quarantined) == (0, 1), summary.lines()
    entry = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pylist()[0]
    assert entry["error_type"] == StackTooLargeError.__name__
    assert (f"{PAGES} frames of 96 x 96 uint16 in a Velox EMD file whose frames are not "
            "stored apart") in entry["reason"]
    assert "save the series with an HDF5 chunk a frame" in entry["reason"]
    limit[0] = need
    summary = replay(tmp_path / "acq", tmp_path / "out", kind="insitu", model=onnx)
    assert (summary.done, summary.quarantined) == (1, 0), summary.lines()
    assert [r["frame"] for r in _rows(tmp_path / "out")] == list(range(PAGES))


# Makes the daemon's process see ``NWWATCH_TEST_AVAILABLE_BYTES`` as what it may allocate, as
# a unit's MemoryMax would (the real cgroup cannot be set here), and check every file.
_AVAILABLE_HOOK = """
import os
from nwwatch import resources
from nwwatch.service import stackmemory
_value = float(os.environ["NWWATCH_TEST_AVAILABLE_BYTES"])
stackmemory.available_memory = lambda v2_limits=resources.V2_LIMITS: resources.Limit(
    _value, "/cg/test/memory.max")
stackmemory.CHECKED_FROM_BYTES = 0
"""


def test_the_service_refuses_a_file_too_large_to_read_whole_and_reads_a_dm_stack_by_chunks(
        tmp_path):
    from servicekit import DaemonProcess, wait_rows, write_config

    dm = _dm_stack(tmp_path / "acq" / "movie.dm4")
    need = whole_bytes(inspect_tiff(dm))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_AVAILABLE_HOOK)
    res = tmp_path / "res"
    # batches of 4: a stack of 21 pages is read in chunks of 16 and 5, one of 6 whole
    cfg = write_config(tmp_path / "c.toml", tmp_path / "acq", res, model(tmp_path / "m"),
                       settle=0.2, batch_size=4)
    pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    daemon = DaemonProcess(cfg, tmp_path / "log", env={
        "PYTHONPATH": pythonpath, "NWWATCH_TEST_AVAILABLE_BYTES": str(need - 1)})
    try:
        quarantined = daemon.wait_event("file_quarantined", timeout=60)
        assert quarantined["source"] == str(dm)
        assert "6 frames of 96 x 96 uint16 in one file need at least" in quarantined["reason"]
        # a DigitalMicrograph stack larger than that is read a chunk at a time, within that
        # memory
        _dm_stack(tmp_path / "acq" / "long.dm4", n=PAGES)
        wait_rows(res, PAGES, timeout=90, proc=daemon)
    finally:
        assert daemon.terminate(timeout=30)[0] == 0
    rows = _rows(res)
    assert [r["frame"] for r in rows] == list(range(PAGES))
    assert {r["source"] for r in rows} == {str(tmp_path / "acq" / "long.dm4")}
    assert pq.read_table(res / "quarantine.parquet").to_pylist()[0]["attempts"] == 1


# ``nwwatch replay`` whose address space (RLIMIT_AS) is limited, when its first batch
# starts (model loaded, ledger open), to what it holds then plus ``margin``: a real process
# without the memory to hold the stack whole. Chunks of one network batch (of 2 pages).
_LIMITED_REPLAY = """
import resource, sys
from nwwatch.service import pipeline, stackmemory
stackmemory.STACK_CHUNK_BYTES = 1
margin = int(sys.argv.pop(1))
first_batch = pipeline._run_batch
def limited(*args, **kwargs):
    size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
                if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (size + margin, size + margin))
    return first_batch(*args, **kwargs)
pipeline._run_batch = limited
sys.argv[0] = "nwwatch"
from nwwatch.cli import main
main()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_replay_processes_a_stack_larger_than_its_memory_limit(tmp_path):
    from servicekit import write_config

    pages = 400
    frame = paint_insitu(110.0, size=512, half_width=60).astype(np.uint16) * 40
    noise = np.random.default_rng(3).integers(0, 200, (512, 512), dtype=np.uint16)
    _write(tmp_path / "acq" / "stack.tif", np.stack([frame + noise] * pages))
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.toml", tmp_path / "acq", out, model(tmp_path / "m"),
                       batch_size=2)
    margin = 256 * 2**20  # the address space a chunked run moves by (thread arenas, loads)
    # read whole, its frames alone (uint16 and float32) need twice the margin
    assert pages * 512 * 512 * 6 > 2 * margin
    run = subprocess.run(
        [sys.executable, "-c", _LIMITED_REPLAY, str(margin), "replay", str(tmp_path / "acq"),
         "--out", str(out), "--config", str(cfg)], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MALLOC_ARENA_MAX": "2",
             "OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "1 file: 1 done" in run.stderr + run.stdout
    assert pq.read_table(out / "frames").num_rows == pages


def test_the_queue_images_of_a_stack_are_read_through_one_open_file(tmp_path, monkeypatch):
    # each image the labelling queue reads again opened the file and parsed every page's
    # metadata (1.6 s a page of a 20,000-page stack, up to 16 pages a stack)
    path = _write(tmp_path / "stack.tif", _pages())
    st = os.stat(path)
    opened = []

    class Counted(frames_module.FrameReader):
        def __init__(self, p):
            opened.append(p)
            super().__init__(p)

    monkeypatch.setattr(frames_module, "FrameReader", Counted)
    source = frames_module.PageSource(path, st.st_size, st.st_mtime_ns)
    whole = read_frames(path)
    for index in (20, 3, 3, 0):
        np.testing.assert_array_equal(source.page(index)(), whole[index].image)
    assert opened == [path]
    source.close()
    other = frames_module.PageSource(path, st.st_size + 1, st.st_mtime_ns)
    assert other.page(0)() is None  # not the version processed: no image, nothing opened
    assert opened == [path]


@pytest.mark.parametrize("name", ["movie.mrcs", "series.ser", "movie.dm4", "series.emd"])
def test_the_queue_images_a_stack_holds_do_not_keep_its_chunks_in_memory(tmp_path, name):
    # a frame of a chunk read as one array is a view of it: each of the queue's 16 held
    # images kept its whole chunk alive (16 chunks of 256 MiB where 16 frames were meant)
    from nwwatch.service.batch import Item
    from nwwatch.service.ledgerdb import ItemKey

    n, pages = 64, 4
    path = _write(tmp_path / name, _pages(n))
    whole = read_frames(path)
    st = os.stat(path)
    it = Item(path, ItemKey("s", "m", "v"), st.st_size, st.st_mtime_ns, None)
    reader = frames_module._StackReader(it, pages)
    groups = [frames_module._Group([it], reader) for _ in range(n // pages)]
    try:
        for group in groups:
            for frame in reader.next_chunk():
                # each chunk's first frame is among the least confident so far: held
                confidence = frame.index / n / 10 if frame.index % pages == 0 else 0.9
                reader.offer(group, it, label_queue.Candidate(label_queue.QueueEntry(
                    str(path), frame.index, "s", confidence), frame.image))
    finally:
        reader.close()
    held = {c.entry.frame: c.image for g in groups for _, c in g.candidates
            if not callable(c.image)}
    assert sorted(held) == list(range(0, n, pages))
    for index, image in held.items():
        np.testing.assert_array_equal(image, whole[index].image)
        assert image.base is None or image.base.nbytes == image.nbytes
