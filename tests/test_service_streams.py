"""``[inference] streams``: several frame groups processed at once give the rows, order,
failures, label queue and QA pictures of one stream, and are in flight at once; the key is
validated and planned (default one stream) and the plan reaches the engine and its session;
one Segmenter serves concurrent calls with the outputs of serial ones."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from servicekit import model, paint_insitu

import nwwatch.service.frames as frames_module
from nwwatch import DEFAULT_INSITU_MODEL
from nwwatch.io import InputError, write_frame_tiff, write_stack_tiff
from nwwatch.logsetup import get_logger
from nwwatch.normalize import normalize_image
from nwwatch.resources import Limit, available_memory
from nwwatch.results.parquet import dataset_files
from nwwatch.segment.session import Segmenter
from nwwatch.service import replay
from nwwatch.service.batch import Item
from nwwatch.service.config import (
    ConfigError,
    TomogramSettings,
    load_config,
    one_folder_config,
)
from nwwatch.service.engines import EngineSpec, build_engines
from nwwatch.service.frames import concurrent_groups, frame_groups
from nwwatch.service.inference import AUTO_MAX_STREAMS, InferenceConfig, InferencePlan
from nwwatch.service.ledger import Ledger
from nwwatch.service.streammemory import (
    largest_frame_pixels,
    memory_streams,
    stream_bytes,
)

#: Columns that differ between any two runs (clocks, batch ids).
VARYING = {"processed_at", "batch_id", "read_ms", "segment_ms", "measure_ms", "confidence_ms"}
BAD_ANGLE = 150.0  # the frame whose measurement raises


def _acquisition(acq: Path) -> None:
    """Single frames, a three-page stack, a file that fails to read (bad input) and one whose
    measurement raises (an unexpected error), in an order that puts them in different
    groups."""
    acq.mkdir()
    for i, angle in enumerate((95.0, 105.0, 115.0, 125.0, 135.0)):
        write_frame_tiff(acq / f"a{i}.tif", paint_insitu(angle), pixel_size_nm=1.5)
    write_stack_tiff(acq / "b-stack.tif",
                     np.stack([paint_insitu(a, top=40 + k) for k, a in
                               enumerate((100.0, 120.0, 140.0))]))
    write_frame_tiff(acq / "c-broken.tif", paint_insitu(110.0, top=44))
    write_frame_tiff(acq / "d-raises.tif", paint_insitu(BAD_ANGLE))
    for i, angle in enumerate((98.0, 118.0, 138.0)):
        write_frame_tiff(acq / f"e{i}.tif", paint_insitu(angle, top=42))


@pytest.fixture()
def failing(monkeypatch):
    """Reading ``c-broken.tif`` is refused as bad input; measuring the frame painted at
    ``BAD_ANGLE`` raises. Both happen inside the frame stage."""
    read, measure = frames_module.read_frames, frames_module.measure_contact_angle
    bad_image = paint_insitu(BAD_ANGLE)

    def read_frames(path):
        if Path(path).name == "c-broken.tif":
            raise InputError(Path(path), "test: refused by the reader")
        return read(path)

    def measure_contact_angle(labels, prob, pixel_size_nm, image=None):
        if image is not None and np.array_equal(image, bad_image):
            raise RuntimeError("test: measurement failed")
        return measure(labels, prob, pixel_size_nm, image=image)

    monkeypatch.setattr(frames_module, "read_frames", read_frames)
    monkeypatch.setattr(frames_module, "measure_contact_angle", measure_contact_angle)


def _replay(tmp: Path, acq: Path, model_path: Path, streams: int) -> tuple[object, Path]:
    out = tmp / f"out{streams}"
    cfg = tmp / f"streams{streams}.toml"
    # batch_size 2: the 13 frames make several groups, more than the streams.
    cfg.write_text(one_folder_config(acq, out, model_path, threads=streams, streams=streams,
                                     batch_size=2))
    return replay(acq, out, kind="insitu", model=model_path, config=cfg,
                  overlays=Path("pics")), out


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_streams_give_the_rows_failures_queue_and_pictures_of_one(tmp_path, failing):
    acq, onnx = tmp_path / "acq", model(tmp_path)
    _acquisition(acq)
    one, out1 = _replay(tmp_path, acq, onnx, 1)
    two, out2 = _replay(tmp_path, acq, onnx, 2)
    for s in (one, two):
        assert (s.files, s.done, s.failed, s.quarantined, s.frames) == (11, 9, 1, 1, 11)
    assert one.rows == two.rows
    files1, files2 = dataset_files(out1 / "frames"), dataset_files(out2 / "frames")
    assert len(files1) == len(files2) == 1  # rows in the order they were processed
    t1, t2 = pq.read_table(files1[0]), pq.read_table(files2[0])
    assert t1.schema == t2.schema
    same = [c for c in t1.column_names if c not in VARYING]
    assert t1.select(same).to_pylist() == t2.select(same).to_pylist()
    names = [Path(s).name for s in t1.column("source").to_pylist()]
    assert names == [f"a{i}.tif" for i in range(5)] + ["b-stack.tif"] * 3 + [
        f"e{i}.tif" for i in range(3)]
    assert t1.column("frame").to_pylist()[5:8] == [0, 1, 2]
    # the same failures recorded: reasons and kinds in quarantine.parquet and the ledger
    q1, q2 = (pq.read_table(o / "quarantine.parquet").to_pylist() for o in (out1, out2))
    strip = [{k: v for k, v in r.items() if not k.endswith("_at")} for r in q1]
    assert strip == [{k: v for k, v in r.items() if not k.endswith("_at")} for r in q2]
    assert [Path(r["path"]).name for r in q1] == ["c-broken.tif"]
    again1 = replay(acq, out1, kind="insitu", model=onnx)  # the raising file is tried again
    again2 = replay(acq, out2, kind="insitu", model=onnx)
    assert (again1.skipped, again1.failed) == (again2.skipped, again2.failed) == (9, 1)
    # QA pictures and label-queue thumbnails byte for byte; the queue's entries alike
    assert _digest(out1 / "pics") == _digest(out2 / "pics") != {}
    queue1, queue2 = (sorted((o / "label-queue").glob("*/queue.json")) for o in (out1, out2))
    assert len(queue1) == len(queue2) == 1
    e1, e2 = (json.loads(q[0].read_text())["entries"] for q in (queue1, queue2))
    assert [{k: v for k, v in e.items() if k != "added_at"} for e in e1] == [
        {k: v for k, v in e.items() if k != "added_at"} for e in e2] != []
    assert ({k: v for k, v in _digest(out1 / "label-queue").items() if "thumbs" in k}
            == {k: v for k, v in _digest(out2 / "label-queue").items() if "thumbs" in k})


def _item(name: str, pages: int) -> Item:
    return Item(Path(name), None, 0, 0, None, pages=pages)


def test_frame_groups_share_a_small_batch_among_the_streams():
    items = [_item(f"f{i}", 1) for i in range(8)]
    names = lambda groups: [[it.path.name for it in g] for g in groups]  # noqa: E731
    assert len(frame_groups(items, 8, 1)) == 1  # one stream: as many as a batch holds
    assert [len(g) for g in frame_groups(items, 8, 2)] == [4, 4]
    assert [len(g) for g in frame_groups(items, 2, 2)] == [2, 2, 2, 2]
    assert [len(g) for g in frame_groups(items[:3], 8, 4)] == [1, 1, 1]
    stack = [_item("a", 1), _item("stack", 5), _item("b", 1)]
    assert names(frame_groups(stack, 4, 1)) == [["a"], ["stack"], ["b"]]  # whole files
    order = [it.path.name for g in frame_groups(items, 3, 2) for it in g]
    assert order == [f"f{i}" for i in range(8)]


def _config(tmp_path: Path, line: str) -> Path:
    acq = tmp_path / "acq"
    acq.mkdir(exist_ok=True)
    cfg = tmp_path / "c.toml"
    cfg.write_text(one_folder_config(acq, tmp_path / "out", model(tmp_path)).replace(
        "[retry]", f"{line}\n[retry]"))
    return cfg


@pytest.mark.parametrize("value", ["0", "-2", '"many"', "true", "2.5", '"AUTO"'])
def test_streams_key_is_validated(tmp_path, value):
    with pytest.raises(ConfigError, match=r"inference\.streams: must be \"auto\" or an "
                                          r"integer > 0"):
        load_config(_config(tmp_path, f"streams = {value}"))


def test_streams_default_and_plan(tmp_path):
    assert load_config(_config(tmp_path, "")).inference.streams == 1
    assert load_config(_config(tmp_path, "streams = 3")).inference.streams == 3
    assert load_config(_config(tmp_path, 'streams = "auto"')).inference.streams == "auto"
    # the default: one stream, `threads` the session's intra-op threads as given
    assert InferenceConfig().plan(gpu=False, cores=4) == InferencePlan(1, None)
    assert InferenceConfig(threads=4).plan(gpu=False) == InferencePlan(1, 4)
    # several streams on the CPU: their calls on a session of one intra-op thread, so
    # `streams` inference threads; `threads` stays for groups that run alone
    plan = InferenceConfig(threads=4, streams=3).plan(gpu=False)
    assert (plan, plan.stream_threads) == (InferencePlan(3, 4), 1)
    assert InferenceConfig(threads=2, streams=4).plan(gpu=False).stream_threads == 1
    assert InferenceConfig(threads=2, streams=4).plan(gpu=False) == InferencePlan(4, 2)
    auto = InferenceConfig(threads=2, streams="auto")
    assert auto.plan(gpu=False) == InferencePlan(2, 2)  # a stream per thread
    assert auto.plan(gpu=True) == InferencePlan(1, 2)  # a GPU: one stream, as configured
    assert auto.plan(gpu=True).stream_threads == 2
    assert auto.plan(gpu=False, frame_streams=False) == InferencePlan(1, 2)  # tomograms
    assert InferenceConfig(streams="auto").plan(gpu=False, cores=4) == InferencePlan(4, None)
    for cores in (9, 64):
        assert InferenceConfig(streams="auto").plan(gpu=False, cores=cores) == InferencePlan(
            AUTO_MAX_STREAMS, None)
    assert InferenceConfig(streams="auto").plan(gpu=False, cores=1) == InferencePlan(1, None)
    assert InferenceConfig(threads=2, streams=2).plan(gpu=True) == InferencePlan(1, 2)


@pytest.mark.parametrize(("line", "streams", "intra_op", "stream_intra_op"), [
    ("", 1, 0, None),  # the default: one stream, ONNX Runtime's default threads (0)
    ("threads = 2", 1, 2, None),
    ("threads = 2\nstreams = 2", 2, 2, 1),
    ('threads = 3\nstreams = "auto"', 3, 3, 1),
])
def test_build_engines_passes_the_planned_streams_on(tmp_path, line, streams, intra_op,
                                                     stream_intra_op):
    """The engine gets the plan's stream count; its session (for groups that run alone) the
    configured intra-op threads, and with several streams a second session of one intra-op
    thread for the concurrent calls, from the configuration file as loaded."""
    cfg = load_config(_config(tmp_path, line))
    out = tmp_path / "out"
    ledger = Ledger(out / "ledger.sqlite", out)
    try:
        (engine,) = build_engines([EngineSpec("insitu", cfg.watches[0].model)], ledger, out,
                                  inference=cfg.inference, max_attempts=3,
                                  tomogram=TomogramSettings(), log=get_logger())
        assert engine.streams == streams
        assert _intra_op(engine.segmenter) == intra_op
        if stream_intra_op is None:
            assert engine.stream_segmenter is None
        else:
            assert _intra_op(engine.stream_segmenter) == stream_intra_op
            assert engine.stream_segmenter.model_sha256 == engine.segmenter.model_sha256
    finally:
        ledger.close()


def test_a_model_file_replaced_while_its_sessions_are_made_gives_sessions_of_one_model(
        tmp_path, monkeypatch):
    """The sessions of a model (the engine's, and its concurrent streams') are of the bytes
    read once: the file replaced between the first session and the second (a fine-tuned model
    copied over the configured path as the service starts) gave the second session another
    model, whose rows would carry the first one's hash."""
    cfg = load_config(_config(tmp_path, "threads = 2\nstreams = 2"))
    model_path = Path(cfg.watches[0].model)
    other = model(tmp_path / "other.onnx", centres=(0.1, 0.5, 0.9))
    assert other.read_bytes() != model_path.read_bytes()
    made = []

    class CopiedOverAfterTheFirst(Segmenter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.model_sha256)
            if len(made) == 1:  # the copy lands between the two sessions
                model_path.write_bytes(other.read_bytes())

    monkeypatch.setattr("nwwatch.segment.session.Segmenter", CopiedOverAfterTheFirst)
    out = tmp_path / "out"
    ledger = Ledger(out / "ledger.sqlite", out)
    try:
        (engine,) = build_engines([EngineSpec("insitu", str(model_path))], ledger, out,
                                  inference=cfg.inference, max_attempts=3,
                                  tomogram=TomogramSettings(), log=get_logger())
        assert len(made) == 2
        assert engine.stream_segmenter.model_sha256 == engine.segmenter.model_sha256
        probe = normalize_image(paint_insitu(120.0))
        np.testing.assert_array_equal(engine.stream_segmenter.segment(probe).probabilities,
                                      engine.segmenter.segment(probe).probabilities)
    finally:
        ledger.close()


def _intra_op(segmenter) -> int:
    return segmenter._session.get_session_options().intra_op_num_threads


def test_two_streams_have_two_network_calls_in_flight_at_once(tmp_path, monkeypatch):
    """With ``streams = 2`` the first two network calls of a batch of four single frames
    (two groups) wait for each other at a barrier: it opens only if both are in flight at
    once. Processed one after the other, the first call waits out the timeout, the barrier
    breaks and the frames fail."""
    import nwwatch.segment.session as session

    meet = threading.Barrier(2, timeout=30)
    lock = threading.Lock()
    seen = {"calls": 0, "in_flight": 0, "most": 0}

    class MeetingSegmenter(session.Segmenter):
        def segment(self, images):
            with lock:
                seen["calls"] += 1
                first_two = seen["calls"] <= 2
                seen["in_flight"] += 1
                seen["most"] = max(seen["most"], seen["in_flight"])
            try:
                if first_two:
                    meet.wait()
                return super().segment(images)
            finally:
                with lock:
                    seen["in_flight"] -= 1

    monkeypatch.setattr(session, "Segmenter", MeetingSegmenter)
    acq, onnx = tmp_path / "acq", model(tmp_path)
    acq.mkdir()
    for i, angle in enumerate((95.0, 110.0, 125.0, 140.0)):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(angle), pixel_size_nm=1.5)
    cfg = tmp_path / "two.toml"
    cfg.write_text(one_folder_config(acq, tmp_path / "out", onnx, streams=2, batch_size=2))
    summary = replay(acq, tmp_path / "out", kind="insitu", model=onnx, config=cfg)
    assert not meet.broken
    assert seen["most"] == 2
    assert (summary.done, summary.failed, summary.frames) == (4, 0, 4)


@pytest.mark.skipif(not DEFAULT_INSITU_MODEL.is_file(), reason="no shipped default model")
def test_one_segmenter_serves_concurrent_calls_as_serial_ones():
    """The shipped model (real convolutions) on one-thread runs from two threads at once."""
    seg = Segmenter(DEFAULT_INSITU_MODEL, providers=("cpu",), threads=1)
    batches = [np.stack([normalize_image(paint_insitu(a, size=128, top=40 + k))
                         for k, a in enumerate(angles)])
               for angles in ((95.0, 120.0), (105.0, 140.0), (115.0, 130.0), (100.0, 135.0))]
    serial = [seg.segment(b) for b in batches]
    concurrent: dict[int, object] = {}
    start = threading.Barrier(2)

    def work(offset: int) -> None:
        start.wait()
        for i in range(offset, len(batches), 2):
            concurrent[i] = seg.segment(batches[i])

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, expected in enumerate(serial):
        np.testing.assert_array_equal(concurrent[i].labels, expected.labels)
        np.testing.assert_array_equal(concurrent[i].probabilities, expected.probabilities)
    # Streams cut a small batch into smaller network calls: a frame's output must not depend
    # on the other frames of its call.
    whole = seg.segment(np.concatenate(batches))
    np.testing.assert_array_equal(whole.labels, np.concatenate([o.labels for o in serial]))
    np.testing.assert_array_equal(whole.probabilities,
                                  np.concatenate([o.probabilities for o in serial]))


def _recording(monkeypatch) -> list[tuple[str, int, int]]:
    """Every network call's (calling thread, intra-op threads of its session, frames)."""
    import nwwatch.segment.session as session

    calls = []

    class RecordingSegmenter(session.Segmenter):
        def segment(self, images):
            calls.append((threading.current_thread().name, _intra_op(self), len(images)))
            return super().segment(images)

    monkeypatch.setattr(session, "Segmenter", RecordingSegmenter)
    return calls


def test_a_lone_stack_takes_the_one_stream_path_with_every_thread(tmp_path, monkeypatch):
    """A call holding one group (a multi-page stack) is segmented from the calling thread,
    with reading and measurement in the worker (the one-stream path), not in a stream
    thread of its own, on the session of all ``threads``."""
    calls = _recording(monkeypatch)
    acq, onnx = tmp_path / "acq", model(tmp_path)
    acq.mkdir()
    write_stack_tiff(acq / "stack.tif", np.stack([paint_insitu(a, top=40 + k) for k, a in
                                                  enumerate((100.0, 120.0, 140.0))]))
    cfg = tmp_path / "two.toml"
    cfg.write_text(one_folder_config(acq, tmp_path / "out", onnx, threads=2, streams=2,
                                     batch_size=2))
    summary = replay(acq, tmp_path / "out", kind="insitu", model=onnx, config=cfg)
    assert (summary.done, summary.frames) == (1, 3)
    # two network batches, from this thread, with both intra-op threads
    assert calls == [(threading.current_thread().name, 2, 2),
                     (threading.current_thread().name, 2, 1)]


def test_a_stack_among_single_frames_runs_alone_with_every_thread(tmp_path, monkeypatch):
    """Single frames share the streams (one intra-op thread each); the stack among them is
    a group of its own that runs after them on the one-stream path with both threads, and
    the rows keep the files' order."""
    calls = _recording(monkeypatch)
    acq, onnx = tmp_path / "acq", model(tmp_path)
    acq.mkdir()
    for i, angle in enumerate((95.0, 110.0)):
        write_frame_tiff(acq / f"a{i}.tif", paint_insitu(angle), pixel_size_nm=1.5)
    write_stack_tiff(acq / "b-stack.tif", np.stack([paint_insitu(a, top=40 + k) for k, a in
                                                    enumerate((100.0, 120.0, 140.0))]))
    for i, angle in enumerate((125.0, 135.0)):
        write_frame_tiff(acq / f"c{i}.tif", paint_insitu(angle), pixel_size_nm=1.5)
    out = tmp_path / "out"
    cfg = tmp_path / "two.toml"
    cfg.write_text(one_folder_config(acq, out, onnx, threads=2, streams=2, batch_size=2))
    summary = replay(acq, out, kind="insitu", model=onnx, config=cfg)
    assert (summary.done, summary.frames) == (5, 7)
    me = threading.current_thread().name
    stack_calls = [c for c in calls if c[0] == me]
    assert stack_calls == [(me, 2, 2), (me, 2, 1)]
    stream_calls = [c for c in calls if c[0] != me]
    assert all(name.startswith("nwwatch-stream") and threads == 1
               for name, threads, _ in stream_calls)
    assert sum(n for _, _, n in stream_calls) == 4
    assert calls[-2:] == stack_calls  # after the concurrent groups
    (table,) = [pq.read_table(f) for f in dataset_files(out / "frames")]
    assert [Path(s).name for s in table.column("source").to_pylist()] == [
        "a0.tif", "a1.tif", "b-stack.tif", "b-stack.tif", "b-stack.tif", "c0.tif", "c1.tif"]
    assert table.column("frame").to_pylist() == [0, 0, 0, 1, 2, 0, 0]


def test_concurrent_groups_leave_stacks_and_a_last_group_alone():
    items = [_item("a", 1), _item("b", 1), _item("stack", 5), _item("c", 1), _item("d", 1)]
    groups = frame_groups(items, 2, 2)
    assert [[it.path.name for it in g] for g in groups] == [["a", "b"], ["stack"],
                                                           ["c", "d"]]
    assert concurrent_groups(items, groups, 2, 2) == [True, False, True]
    assert concurrent_groups(items, groups, 2, 1) == [False] * 3  # one stream
    lone = [_item("stack", 5), _item("a", 1)]
    assert concurrent_groups(lone, frame_groups(lone, 2, 2), 2, 2) == [False, False]
    # pages within a group's share are no stack: 2 + 2 frames, two streams, groups of 2
    pairs = [_item("p", 2), _item("q", 2)]
    assert concurrent_groups(pairs, frame_groups(pairs, 8, 2), 8, 2) == [True, True]


def test_a_failed_group_stops_the_groups_not_yet_started(tmp_path, monkeypatch):
    """Two streams, six single frames, a group each. The second group's network call
    raises while the first is still in flight (it waits for that failure). The batch fails
    as a whole and is retried file by file, so no further group may start: the first
    group's call waits up to 5 s for the third file to be read, which happens only when a
    stream starts the third group, and must not."""
    import nwwatch.segment.session as session

    raised, third_read = threading.Event(), threading.Event()
    once = {"f0": True, "f1": True}
    reads: list[str] = []
    current = threading.local()
    read = frames_module.read_frames

    def read_frames(path):
        current.name = Path(path).name
        reads.append(current.name)
        if current.name == "f2.tif":
            third_read.set()
        return read(path)

    class FailingSegmenter(session.Segmenter):
        def segment(self, images):
            name = getattr(current, "name", None)  # streams read in their own thread
            if name == "f0.tif" and once.pop("f0", False):
                assert raised.wait(30)
                third_read.wait(5)  # set only if a third group started (a failure)
            if name == "f1.tif" and once.pop("f1", False):
                raised.set()
                raise RuntimeError("test: the runtime failed once")
            return super().segment(images)

    monkeypatch.setattr(frames_module, "read_frames", read_frames)
    monkeypatch.setattr(session, "Segmenter", FailingSegmenter)
    acq, onnx = tmp_path / "acq", model(tmp_path)
    acq.mkdir()
    for i in range(6):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(95.0 + 8 * i), pixel_size_nm=1.5)
    cfg = tmp_path / "two.toml"
    cfg.write_text(one_folder_config(acq, tmp_path / "out", onnx, threads=2, streams=2,
                                     batch_size=1))
    summary = replay(acq, tmp_path / "out", kind="insitu", model=onnx, config=cfg)
    assert (summary.done, summary.failed, summary.frames) == (6, 0, 6)
    # the failed batch read the first two files only; then each file on its own, in order
    assert sorted(reads[:2]) == ["f0.tif", "f1.tif"]
    assert reads[2:] == [f"f{i}.tif" for i in range(6)]


def test_memory_per_stream_recovers_the_measured_replays():
    """The estimate is fitted to the replays measured in docs/service.md (batch_size 8,
    3 classes): +194 MB per extra stream at 512², about +840 MB at 2048² (MB = 2**20 B);
    it never falls below them and scales with the frame area."""
    mb = 2**20
    assert 194 * mb <= stream_bytes(512 * 512, 8, 3) <= 1.03 * 194 * mb
    assert 840 * mb <= stream_bytes(2048 * 2048, 8, 3) <= 1.03 * 840 * mb
    large = stream_bytes(4096 * 4096, 8, 3)
    assert 2.8 * 2**30 < large < 2.9 * 2**30
    assert stream_bytes(2048 * 2048, 4, 3) < stream_bytes(2048 * 2048, 8, 3)


def test_memory_bounds_the_streams():
    per_stream = stream_bytes(2048 * 2048, 8, 3)
    assert memory_streams(8, 3 * per_stream, 2048 * 2048, 8, 3) == 4  # the first + 3
    assert memory_streams(8, 3 * per_stream - 1, 2048 * 2048, 8, 3) == 3
    assert memory_streams(8, 0, 2048 * 2048, 8, 3) == 1
    assert memory_streams(8, 3 * per_stream, 512 * 512, 8, 3) == 8  # small frames: the cap
    assert memory_streams(8, None, 4096 * 4096, 8, 3) == 8  # no bound
    assert memory_streams(8, 0, 0, 8, 3) == 8  # frame size unknown: no bound


def test_frame_pixels_come_from_the_structural_check(tmp_path):
    from nwwatch.io import inspect_tiff

    write_stack_tiff(tmp_path / "s.tif", np.zeros((3, 40, 60), np.uint16))
    write_frame_tiff(tmp_path / "f.tif", np.zeros((50, 70), np.uint8))
    infos = [inspect_tiff(tmp_path / "s.tif"), None, inspect_tiff(tmp_path / "f.tif")]
    assert largest_frame_pixels(infos) == 50 * 70
    assert largest_frame_pixels(infos[:1]) == 40 * 60
    assert largest_frame_pixels([None]) == 0
    assert available_memory().value > 0  # this machine's figure


@pytest.mark.parametrize("memory_streams_fit", [0, 1])
def test_auto_streams_are_bounded_by_the_memory_available(tmp_path, monkeypatch,
                                                          memory_streams_fit):
    """``streams = "auto"`` with two threads: when half the available memory (monkeypatched)
    holds no extra stream for these frames, every call runs alone on the one-stream path;
    when it holds one, the four single frames share two streams. An explicit ``streams``
    is not bounded."""
    import nwwatch.service.streammemory as streammemory

    calls = _recording(monkeypatch)
    size = 96  # paint_insitu's frames
    per_stream = stream_bytes(size * size, 2, 3)
    available = 2 * per_stream * memory_streams_fit + 2 * per_stream // 3
    monkeypatch.setattr(streammemory, "available_memory",
                        lambda: Limit(available, "test"))
    acq, onnx = tmp_path / "acq", model(tmp_path)
    acq.mkdir()
    for i, angle in enumerate((95.0, 110.0, 125.0, 140.0)):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(angle, size=size), pixel_size_nm=1.5)
    cfg = tmp_path / "auto.toml"
    cfg.write_text(one_folder_config(acq, tmp_path / "out", onnx, threads=2, streams="auto",
                                     batch_size=2))
    summary = replay(acq, tmp_path / "out", kind="insitu", model=onnx, config=cfg)
    assert (summary.done, summary.frames) == (4, 4)
    me = threading.current_thread().name
    if memory_streams_fit == 0:
        assert calls == [(me, 2, 2), (me, 2, 2)]  # one stream, both threads
    else:
        assert len(calls) == 2  # two groups of two frames, each in a stream, one thread
        assert all(n.startswith("nwwatch-stream") and (t, k) == (1, 2) for n, t, k in calls)
    out = tmp_path / "out"
    ledger = Ledger(out / "l2.sqlite", out)
    try:
        cfg2 = load_config(_config(tmp_path, "threads = 2\nstreams = 2"))
        (engine,) = build_engines([EngineSpec("insitu", cfg2.watches[0].model)], ledger, out,
                                  inference=cfg2.inference, max_attempts=3,
                                  tomogram=TomogramSettings(), log=get_logger())
        assert engine.stream_memory_bytes is None
    finally:
        ledger.close()
