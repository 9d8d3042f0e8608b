"""Per-frame confidence and the labelling queue: bounded, least confident kept, crash-safe,
filled by replay, never writing into the acquisition folder."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pyarrow.dataset as ds
import pytest
from servicekit import model, paint_insitu

from nwwatch.io import write_frame_tiff
from nwwatch.label.cli import queued_frames
from nwwatch.label.frames import frame_refs
from nwwatch.results.label_queue import (
    QUEUE_DIR,
    QUEUE_FILE,
    THUMB_PX,
    Candidate,
    QueueEntry,
    acquisition_folder,
    offer,
    read_queue,
)
from nwwatch.segment.confidence import frame_confidence
from nwwatch.service import replay


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _candidate(source: Path, confidence: float, frame: int = 0, size: int = 600) -> Candidate:
    """A queue candidate of a frame of ``source``, a file made here when missing (the queue
    drops the entries of files that are gone)."""
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        source.touch()
    sha = hashlib.sha256(f"{source}:{frame}".encode()).hexdigest()
    image = np.random.default_rng(frame).integers(0, 4000, (size, size // 2)).astype(np.uint16)
    return Candidate(QueueEntry(str(source), frame, sha, confidence, "ok", 120.0, "m" * 64),
                     image)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=0))
    return e / e.sum(axis=0)


def test_confidence_is_high_for_sharp_boundaries_and_halved_without_an_angle():
    labels = np.zeros((64, 64), np.uint8)
    labels[20:, 28:36] = 1
    labels[8:20, 24:40] = 2
    onehot = np.stack([labels == k for k in range(3)]).astype(np.float32)
    sharp = _softmax(12.0 * onehot)
    blurred = _softmax(4.0 * np.stack([cv2.GaussianBlur(c, (0, 0), 3.0) for c in onehot]))
    blurred_labels = blurred.argmax(axis=0).astype(np.uint8)
    high = frame_confidence(sharp, labels, True)
    low = frame_confidence(blurred, blurred_labels, True)
    assert high > 0.99 and low < 0.8 * high
    assert frame_confidence(sharp, labels, False) == pytest.approx(0.5 * high)
    # Nothing found and a coin toss everywhere: background's expected IoU is 1/3, the
    # classes expected but never labelled score 0.
    empty = np.zeros((16, 16), np.uint8)
    assert frame_confidence(_softmax(np.zeros((3, 16, 16))), empty, False) == pytest.approx(
        0.5 * (1 / 3) / 3)
    with pytest.raises(ValueError, match="probabilities"):
        frame_confidence(sharp[:, :10], labels, True)


def test_queue_is_bounded_and_keeps_the_least_confident(tmp_path):
    acq = tmp_path / "acq"
    acq.mkdir()
    results = tmp_path / "results"
    confidences = np.random.default_rng(0).uniform(0, 1, 12)
    for k, c in enumerate(confidences[:6]):
        offer(results, [_candidate(acq / f"f{k}.tif", float(c))], capacity=4)
    offer(results, [_candidate(acq / f"f{k}.tif", float(c))
                    for k, c in enumerate(confidences) if k >= 6], capacity=4)
    queue = read_queue(results)
    assert [e.confidence for e in queue] == pytest.approx(sorted(confidences)[:4])
    folder = acquisition_folder(results, acq / "f0.tif")
    thumbs = sorted((folder / "thumbs").glob("*.png"))
    assert sorted(folder / e.thumbnail for e in queue) == thumbs
    thumb = cv2.imread(str(thumbs[0]), cv2.IMREAD_UNCHANGED)
    assert thumb.dtype == np.uint8 and max(thumb.shape) == THUMB_PX
    # The same frame offered again (processed again: replay --force) replaces its entry: no
    # duplicates. (Another model's offer drops the other entries: see below.)
    worst = queue[0]
    offer(results, [Candidate(QueueEntry(worst.source, worst.frame, worst.source_sha256, 0.9,
                                         "ok", 120.0, worst.model_sha256),
                              np.zeros((8, 8), np.uint16))], capacity=4)
    again = read_queue(results)
    assert len(again) == 4 and len({e.key for e in again}) == 4
    assert again[-1].key == worst.key and again[-1].confidence == 0.9
    assert len(list((folder / "thumbs").glob("*.png"))) == 4


def test_an_image_read_on_demand_is_read_only_for_frames_that_enter_the_queue(tmp_path):
    """A cluster's driver holds rows, not images: each candidate brings a reader, called only
    when its frame enters the queue; a frame it cannot read again (None) is not queued, and
    the next least confident takes its place."""
    acq = tmp_path / "acq"
    results = tmp_path / "results"
    calls: list[int] = []

    def lazy(k: int, confidence: float, gone: bool = False) -> Candidate:
        eager = _candidate(acq / f"f{k}.tif", confidence, size=64)

        def read():
            calls.append(k)
            return None if gone else eager.image
        return Candidate(eager.entry, read)

    offer(results, [lazy(0, 0.1, gone=True), lazy(1, 0.2), lazy(2, 0.3), lazy(3, 0.9)],
          capacity=2)
    assert [e.confidence for e in read_queue(results)] == [0.2, 0.3]
    assert sorted(calls) == [0, 1, 2]  # f3 never enters: never read
    folder = acquisition_folder(results, acq / "f1.tif")
    assert len(list((folder / "thumbs").glob("*.png"))) == 2
    calls.clear()
    assert offer(results, [lazy(4, 0.95)], capacity=2) == 0 and calls == []
    # every frame offered unreadable and nothing queued before: no queue, no error
    assert offer(tmp_path / "other", [lazy(5, 0.1, gone=True)], capacity=2) == 0
    assert read_queue(tmp_path / "other") == []


def test_entries_of_another_measurement_version_leave_the_queue(tmp_path):
    """Confidences of two measurement versions are on two scales: frames offered under a new
    version drop the old version's entries (and their thumbnails) instead of ranking
    against them; entries written before the field existed count as another version."""
    acq = tmp_path / "acq"
    results = tmp_path / "results"

    def versioned(k: int, confidence: float, version: str) -> Candidate:
        cand = _candidate(acq / f"f{k}.tif", confidence, frame=k)
        return Candidate(replace(cand.entry, measurement_version=version), cand.image)

    offer(results, [versioned(k, 0.1 * k, "") for k in range(2)]
          + [versioned(k, 0.1 * k, "2.2.2") for k in range(2, 4)], capacity=8)
    assert len(read_queue(results)) == 4
    offer(results, [versioned(9, 0.95, "2.2.3")], capacity=8)
    queue = read_queue(results)
    assert [(e.frame, e.measurement_version) for e in queue] == [(9, "2.2.3")]
    folder = acquisition_folder(results, acq / "f9.tif")
    assert list((folder / "thumbs").glob("*.png")) == [folder / queue[0].thumbnail]


def test_a_new_model_leaves_no_entry_of_the_model_before_it(tmp_path):
    """The loop's model change: the service restarted with a fine-tuned model processes the
    folder again and its frames replace their entries; a frame whose file was removed before
    is not processed again, so its entry of the old model stayed, first in the queue when it
    was the least confident: another model's confidence, and a frame `nwwatch label --queue`
    can only skip. Frames offered by another model drop the other model's entries."""
    acq = tmp_path / "acq"
    acq.mkdir()
    rng = np.random.default_rng(3)
    for k, noise in enumerate((30, 0, 6, 12)):
        image = paint_insitu(110.0 + 5 * k).astype(np.float32)
        image = np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
        write_frame_tiff(acq / f"f{k}.tif", image)
    results = tmp_path / "results"
    old = model(tmp_path)
    replay(acq, results, kind="insitu", model=old)
    queue = read_queue(results)
    assert len(queue) == 4
    gone = Path(queue[0].source)  # the least confident frame's file, removed
    gone.unlink()
    (tmp_path / "new").mkdir()
    new = model(tmp_path / "new", sharpness=9.0)
    replay(acq, results, kind="insitu", model=new)
    queue = read_queue(results)
    shas = {e.model_sha256 for e in queue}
    assert len(queue) == 3 and len(shas) == 1 and shas != {queue_sha(old)}
    assert str(gone) not in {e.source for e in queue}
    folder = acquisition_folder(results, acq / "f1.tif")
    assert sorted((folder / "thumbs").glob("*.png")) == sorted(folder / e.thumbnail
                                                               for e in queue)


def queue_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_queue_survives_a_restart_and_a_crash_mid_update(tmp_path):
    acq = tmp_path / "acq"
    results = tmp_path / "results"
    offer(results, [_candidate(acq / f"f{k}.tif", 0.1 * k, frame=k) for k in range(3)],
          capacity=3)
    folder = acquisition_folder(results, acq / "f0.tif")
    before = (folder / QUEUE_FILE).read_text()
    # A crash after writing a thumbnail but before queue.json: an unreferenced file and a
    # temporary left behind. The queue reads as before; the next update removes the orphan.
    (folder / "thumbs" / "deadbeef0000-0.png").write_bytes(b"x")
    (folder / f".{QUEUE_FILE}.1234.part").write_text("{partial")
    assert [e.confidence for e in read_queue(results)] == pytest.approx([0.0, 0.1, 0.2])
    assert (folder / QUEUE_FILE).read_text() == before
    offer(results, [_candidate(acq / "f9.tif", 0.05, frame=9)], capacity=3)
    assert not (folder / "thumbs" / "deadbeef0000-0.png").exists()
    assert [e.confidence for e in read_queue(results)] == pytest.approx([0.0, 0.05, 0.1])
    # A damaged queue file is started afresh, not an error.
    (folder / QUEUE_FILE).write_text("not json")
    assert read_queue(results) == []
    offer(results, [_candidate(acq / "f1.tif", 0.3, frame=1)], capacity=3)
    assert len(read_queue(results)) == 1


def test_replay_records_confidence_and_fills_the_queue_outside_the_acquisition(tmp_path):
    acq = tmp_path / "acq"
    acq.mkdir()
    rng = np.random.default_rng(1)
    for k, noise in enumerate((0, 6, 12, 18, 24)):
        image = paint_insitu(110.0 + 5 * k).astype(np.float32)
        image = np.clip(image + rng.normal(0, noise, image.shape), 0, 255).astype(np.uint8)
        write_frame_tiff(acq / f"f{k}.tif", image)
    write_frame_tiff(acq / "empty.tif", np.full((96, 96), 200, np.uint8))
    snapshot = _snapshot(acq)
    results = tmp_path / "results"
    summary = replay(acq, results, kind="insitu", model=model(tmp_path))
    assert summary.frames == 6
    rows = ds.dataset(results / "frames", format="parquet").to_table().to_pandas()
    assert rows.confidence.between(0, 1).all()
    by_source = rows.set_index("source").confidence
    assert by_source[os.path.abspath(acq / "empty.tif")] <= 0.5  # no angle: halved
    painted = by_source.drop(os.path.abspath(acq / "empty.tif"))
    assert painted.idxmax() == os.path.abspath(acq / "f0.tif")  # the noise-free frame
    queue = read_queue(results)
    assert len(queue) == 6
    assert [e.confidence for e in queue] == pytest.approx(sorted(by_source))
    assert all(e.confidence == pytest.approx(by_source[e.source]) for e in queue)
    assert _snapshot(acq) == snapshot  # nothing written into the acquisition folder
    assert all(Path(e.folder).is_relative_to(results / QUEUE_DIR) for e in queue)
    doc = json.loads((Path(queue[0].folder) / QUEUE_FILE).read_text())
    assert doc["acquisition"] == os.path.abspath(acq)
    # Replaying again (nothing new) keeps the queue as it is.
    replay(acq, results, kind="insitu", model=model(tmp_path))
    assert read_queue(results) == queue
    # `nwwatch label --queue RESULTS` opens them least confident first; a vanished one is
    # skipped with a warning.
    (acq / "f4.tif").unlink()
    paths, pages, infos, warnings = queued_frames(results)
    assert len(paths) == 5 and len(warnings) == (1 if any(
        e.source.endswith("f4.tif") for e in queue) else 0)
    refs = frame_refs(paths, infos, pages)
    assert [r.info["confidence"] for r in refs] == sorted(r.info["confidence"] for r in refs)


def test_a_queued_frame_whose_name_is_not_utf8_is_opened(tmp_path):
    """A frame named with a byte that is not UTF-8 (0xE9, Latin-1's é) is queued under its
    text form (``\\xe9``, as the ``source`` column writes it). `nwwatch label --queue` looked
    for that text, which names no file, and skipped the frame as "no longer there"."""
    acq = tmp_path / "acq"
    acq.mkdir()
    latin1 = acq / os.fsdecode(b"caf\xe9 0.tif")
    try:
        write_frame_tiff(latin1, paint_insitu(115.0))
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    write_frame_tiff(acq / "plain.tif", paint_insitu(120.0))
    results = tmp_path / "results"
    assert replay(acq, results, kind="insitu", model=model(tmp_path)).frames == 2
    assert {e.source for e in read_queue(results)} == {
        str(acq / "caf\\xe9 0.tif"), str(acq / "plain.tif")}
    paths, pages, infos, warnings = queued_frames(results)
    assert warnings == []
    assert sorted(paths) == sorted([latin1, acq / "plain.tif"])
    assert len(frame_refs(paths, infos, pages)) == 2
    latin1.unlink()  # gone: named by its text form
    paths, pages, infos, warnings = queued_frames(results)
    assert paths == [acq / "plain.tif"]
    assert warnings == [f"{acq}/caf\\xe9 0.tif: queued frame 0 is no longer there; skipped"]


def test_label_command_serves_the_queue_first_and_stops_on_sigterm(tmp_path):
    import signal
    import subprocess
    import sys
    import urllib.request

    acq = tmp_path / "acq"
    acq.mkdir()
    for k in range(3):
        write_frame_tiff(acq / f"q{k}.tif", paint_insitu(100.0 + 20 * k))
    extra = tmp_path / "extra.tif"
    write_frame_tiff(extra, paint_insitu(120.0))
    results = tmp_path / "results"
    replay(acq, results, kind="insitu", model=model(tmp_path))
    queue = read_queue(results)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "label", str(extra),
         "--queue", str(results), "--out", str(tmp_path / "DATA"), "--no-browser", "--port",
         "0", "--model", str(model(tmp_path))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "api/frames", timeout=60) as response:
            frames = json.loads(response.read())["frames"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.endswith(f"label stopped (SIGTERM): nothing was saved to {tmp_path / 'DATA'}\n")
    assert [f["name"] for f in frames] == [Path(e.source).name for e in queue] + ["extra.tif"]
    assert [f["info"]["confidence"] for f in frames[:3]] == pytest.approx(
        [e.confidence for e in queue])


def test_a_frame_of_another_acquisition_with_a_saved_stem_gets_its_own(tmp_path, monkeypatch):
    # before: video frames are all frame_00000.tif, ...; labelling a second acquisition into
    # the same DATA opened the first one's saved shapes on it, and Save overwrote its image
    # and labels.
    from label_helpers import plain_params, render, truth_geometry

    from nwwatch.label.server import LabelSession
    from nwwatch.label.store import save_labeled_frame

    monkeypatch.chdir(tmp_path)
    params = plain_params(21, 0)
    first, second = render(params, seed=1)[0], render(params, seed=2)[0]
    for folder, image in (("a", first), ("b", second)):
        (tmp_path / folder).mkdir()
        write_frame_tiff(tmp_path / folder / "frame_00000.tif", image, pixel_size_nm=0.5)
    data = tmp_path / "DATA"
    [ref_a] = frame_refs([Path("a/frame_00000.tif")], data_dir=data)
    assert ref_a.stem == "frame_00000"
    save_labeled_frame(data, ref_a.stem, first, truth_geometry(params),
                       {"path": "a/frame_00000.tif", "page": 0})  # as saved before: relative
    [ref_b] = frame_refs([tmp_path / "b/frame_00000.tif"], data_dir=data)
    assert ref_b.stem.startswith("frame_00000_")
    assert LabelSession([ref_b], data).is_saved(0) is False
    # The same file, named another way, and the same frame moved elsewhere keep the stem.
    assert frame_refs([tmp_path / "a/frame_00000.tif"], data_dir=data)[0].stem == ref_a.stem
    (tmp_path / "a").rename(tmp_path / "moved")
    assert frame_refs([tmp_path / "moved/frame_00000.tif"], data_dir=data)[0].stem == ref_a.stem


def test_a_frame_named_twice_is_listed_once(tmp_path, monkeypatch):
    # before: listed twice, the second time under a hashed stem: one frame, two stems, two
    # copies in DATA for training.
    monkeypatch.chdir(tmp_path)
    write_frame_tiff(tmp_path / "f.tif", np.zeros((16, 16), np.uint16))
    refs = frame_refs([Path("f.tif"), tmp_path / "f.tif"], [{"confidence": 0.1}, {}], [0, None])
    assert [(r.stem, r.info) for r in refs] == [("f", {"confidence": 0.1})]


def test_queued_frames_labelled_already_come_last_and_another_model_is_named(tmp_path):
    """After a fine-tune on the first round's frames, those frames came back at the head of
    the queue (their angle still refused), listed as any other; and the proposals came from
    the shipped model while the queue was ranked by the fine-tuned one, without a word."""
    from nwwatch.label.cli import _labelled_queue_last, _other_ranking_model
    from nwwatch.label.frames import FrameRef

    data = tmp_path / "DATA"
    (data / "geometry").mkdir(parents=True)
    refs = [FrameRef(tmp_path / f"f{k}.tif", 0, f"f{k}", {"confidence": 0.1 * k,
                                                           "model_sha256": "b" * 64})
            for k in range(4)] + [FrameRef(tmp_path / "extra.tif", 0, "extra", {})]
    assert _labelled_queue_last(refs, data) == (refs, "")
    for stem in ("f0", "f2"):
        (data / "geometry" / f"{stem}.json").write_text("{}")
    ordered, note = _labelled_queue_last(refs, data)
    assert [r.stem for r in ordered] == ["f1", "f3", "f0", "f2", "extra"]
    assert [r.info.get("queue_rank") for r in ordered] == [2, 4, 1, 3, None]
    assert note == f"2 of the 4 queued frames are labelled in {data} already: listed after " \
                   "the other queued frames"
    assert _other_ranking_model(refs, "b" * 64, "mine.onnx") == ""
    assert _other_ranking_model(refs, "a" * 64, "insitu-default.onnx") == (
        f"the queue was ranked by the model {'b' * 12} (the rows' model_sha256), the "
        f"proposals come from insitu-default.onnx {'a' * 12}: give that model's file as "
        "--model to start from its labels")


def _two_queued_frames(tmp_path: Path) -> tuple[list[Path], Path]:
    """Two frames in an acquisition folder, both offered to the queue of RESULTS."""
    from nwwatch.filehash import file_sha256

    acq = tmp_path / "acq"
    acq.mkdir()
    sources = [acq / f"f{k}.tif" for k in range(2)]
    for k, path in enumerate(sources):
        write_frame_tiff(path, np.full((16, 16), k, np.uint16))
    results = tmp_path / "results"
    offer(results, [Candidate(QueueEntry(str(p), 0, file_sha256(p), 0.1 * k), np.zeros((8, 8)))
                    for k, p in enumerate(sources)])
    return sources, results


def test_a_queued_frame_rewritten_since_is_skipped_with_a_warning(tmp_path):
    # before: opened as the queued frame; its confidence and the recorded source_sha256 (in
    # the saved geometry) were another frame's.
    sources, results = _two_queued_frames(tmp_path)
    write_frame_tiff(sources[0], np.full((16, 16), 7, np.uint16))  # re-recorded
    paths, pages, infos, warnings = queued_frames(results)
    assert paths == [sources[1]]
    assert warnings == [f"{sources[0]}: rewritten since frame 0 was queued (its SHA-256 "
                        "differs); skipped"]


def test_a_queued_frame_replaced_by_a_fifo_is_skipped_and_named_as_such(tmp_path):
    # before: "no longer there", though the name was there (and hashing it would block).
    sources, results = _two_queued_frames(tmp_path)
    sources[0].unlink()
    os.mkfifo(sources[0])
    paths, pages, infos, warnings = queued_frames(results)
    assert paths == [sources[1]]
    assert warnings == [f"{sources[0]}: queued frame 0 cannot be opened (not a regular file: "
                        "a FIFO (named pipe); only regular files are read); skipped"]


def test_a_stack_grown_page_by_page_keeps_one_entry_per_page(tmp_path):
    """A writer that closes a stack after each page makes each version a new file (service.md,
    "a file is its content"); every version's pages were queued as new frames, keyed by the
    version's SHA-256, so the queue filled with the same pages again and again, and `nwwatch
    label --queue` skipped all but the newest version's ("rewritten since"): in a live run,
    a 12-page stack closed after each page left 3 of its 16 entries openable."""
    import tifffile

    acq = tmp_path / "acq"
    acq.mkdir()
    stack = acq / "stack.tif"
    results = tmp_path / "results"
    rng = np.random.default_rng(3)
    for k in range(4):  # the acquisition program appends a page and closes the file
        image = paint_insitu(110.0 + 5 * k).astype(np.float32)
        image = np.clip(image + rng.normal(0, 6 * k, image.shape), 0, 255).astype(np.uint8)
        tifffile.imwrite(stack, image, append=True)
        replay(acq, results, kind="insitu", model=model(tmp_path))
    queue = read_queue(results)
    assert sorted((e.source, e.frame) for e in queue) == [(str(stack), k) for k in range(4)]
    paths, pages, infos, warnings = queued_frames(results)
    assert warnings == [] and sorted(pages) == [0, 1, 2, 3]
    folder = acquisition_folder(results, stack)
    assert sorted((folder / "thumbs").glob("*.png")) == sorted(folder / e.thumbnail for e in queue)


def test_a_file_put_back_to_earlier_content_leaves_no_entry_of_the_other_content(tmp_path):
    """v1 -> v2 -> v1 under one name: v1 is not processed again (the ledger keys on content),
    so nothing replaced v2's entry, which stayed queued (and took one of the queue's places)
    although its frame was no longer there; `nwwatch label --queue` skipped it with a
    warning. Now it leaves the queue when the revert is recorded."""
    from nwwatch.filehash import file_sha256

    acq = tmp_path / "acq"
    acq.mkdir()
    path = acq / "f.tif"
    write_frame_tiff(tmp_path / "v2.tif", paint_insitu(130.0, size=128, half_width=16))
    write_frame_tiff(path, paint_insitu(100.0, size=128, half_width=16))
    v1, v2 = path.read_bytes(), (tmp_path / "v2.tif").read_bytes()
    write_frame_tiff(acq / "g.tif", paint_insitu(115.0, size=128, half_width=16))
    results, onnx = tmp_path / "results", model(tmp_path)
    replay(acq, results, kind="insitu", model=onnx)
    path.write_bytes(v2)
    replay(acq, results, kind="insitu", model=onnx)
    sha_v2 = file_sha256(path)
    assert sorted((Path(e.source).name, e.source_sha256 == sha_v2)
                  for e in read_queue(results)) == [("f.tif", True), ("g.tif", False)]
    path.write_bytes(v1)  # back to v1: skipped as done, recorded as reverted
    assert replay(acq, results, kind="insitu", model=onnx).skipped == 2
    assert (results / "reverted.parquet").is_file()
    queue = read_queue(results)
    assert [Path(e.source).name for e in queue] == ["g.tif"]  # v2's entry is gone
    paths, pages, infos, warnings = queued_frames(results)
    assert paths == [acq / "g.tif"] and warnings == []
    folder = acquisition_folder(results, path)
    assert sorted((folder / "thumbs").glob("*.png")) == [folder / queue[0].thumbnail]


def test_a_folder_whose_name_is_near_the_file_name_limit_gets_its_queue(tmp_path):
    """Was `label_queue_failed` (File name too long) for every batch of a folder whose name
    is over 246 bytes (the queue folder adds 9): its frames were never queued. Names of
    multi-byte characters count in bytes."""
    results = tmp_path / "results"
    for k, name in enumerate(("M" * 250, "ü" * 127)):
        acq = tmp_path / name
        acq.mkdir()
        write_frame_tiff(acq / "f0.tif", paint_insitu(110.0 + k))  # two contents
        replay(acq, results, kind="insitu", model=model(tmp_path))
        folder = acquisition_folder(results, acq / "f0.tif")
        assert len(folder.name.encode()) <= 255 and folder.name.startswith(name[:100])
        (entry,) = [e for e in read_queue(results) if Path(e.folder) == folder]
        assert entry.source == os.path.abspath(acq / "f0.tif")
    short = acquisition_folder(results, tmp_path / ("S" * 246) / "f.tif")
    assert short.name.startswith("S" * 246 + "-")  # names that fitted keep their folder


def test_an_entry_whose_file_is_gone_leaves_the_queue(tmp_path):
    """Frames offered at processing time and never recorded (the service killed before its
    rows were written), whose files were then deleted, stayed queued for good: `nwwatch
    label --queue` skipped them, and they held the places of frames it could open. Dropped
    at the acquisition's next update; a file that cannot be looked at now is not gone."""
    acq = tmp_path / "acq"
    results = tmp_path / "results"
    offer(results, [_candidate(acq / f"f{k}.tif", 0.1 * k) for k in range(3)], capacity=3)
    (acq / "f0.tif").unlink()
    offer(results, [_candidate(acq / "f3.tif", 0.5)], capacity=3)
    assert [Path(e.source).name for e in read_queue(results)] == ["f1.tif", "f2.tif", "f3.tif"]
    import nwwatch.results.label_queue as label_queue

    def stale_handle(path):
        raise OSError(116, "Stale file handle", path)

    real = label_queue.os.lstat
    label_queue.os.lstat = stale_handle
    try:
        offer(results, [_candidate(acq / "f4.tif", 0.05)], capacity=3)
    finally:
        label_queue.os.lstat = real
    assert [Path(e.source).name for e in read_queue(results)] == ["f4.tif", "f1.tif", "f2.tif"]


def test_one_frame_in_two_folders_under_one_name_is_listed_once(tmp_path):
    """A queued copy (acq/frame_00000.tif, replayed) and the file its labels were saved from
    (syn/frame_00000.tif), both given: the second was listed under a hashed name as a new
    frame, and saving it put the same pixels into DATA twice with other labels."""
    image = np.arange(256, dtype=np.uint16).reshape(16, 16)
    for folder in ("acq", "syn"):
        (tmp_path / folder).mkdir()
        write_frame_tiff(tmp_path / folder / "frame_00000.tif", image)
    (tmp_path / "other").mkdir()
    write_frame_tiff(tmp_path / "other" / "frame_00000.tif", image[::-1].copy())
    refs = frame_refs([tmp_path / "acq/frame_00000.tif", tmp_path / "syn/frame_00000.tif",
                       tmp_path / "other/frame_00000.tif"], data_dir=tmp_path / "DATA")
    assert [r.path.parent.name for r in refs] == ["acq", "other"]
    assert refs[0].stem == "frame_00000" and refs[1].stem.startswith("frame_00000_")


def _offer_frames(results: Path, acq: Path, confidences: list[float], model_sha256: str,
                  version: str) -> list[Path]:
    """Frames of ``acq``, one per confidence, offered to the queue of RESULTS as ``model_sha256``
    under measurement ``version`` ranked them ("": an entry written before the field)."""
    from nwwatch.filehash import file_sha256

    acq.mkdir(parents=True)
    sources = [acq / f"frame_{k:05d}.tif" for k in range(len(confidences))]
    for k, path in enumerate(sources):
        write_frame_tiff(path, np.full((16, 16), k, np.uint16))
    offer(results, [Candidate(QueueEntry(str(p), 0, file_sha256(p), c, "ok", None,
                                         model_sha256, version), np.zeros((8, 8)))
                    for p, c in zip(sources, confidences, strict=True)])
    return sources


def test_queues_of_two_models_and_versions_are_listed_apart_and_named(tmp_path):
    """RESULTS of a service updated from 2.2.2 (band margin, about 0.76 here) with another
    model: runY's queue was not processed since, runX's was under 2.2.19 (expected mIoU,
    0.47-0.96). `nwwatch label --queue` ranked the eight together by confidence, runY's
    frames between runX's, and its warning named runY's model as the one that ranked 'the
    queue'. Each series is listed apart now, the newest version's first, and both named."""
    from nwwatch.label.cli import _other_ranking_model
    from nwwatch.label.frames import FrameRef

    results = tmp_path / "RESULTS"
    old_sha, new_sha = "2b" * 32, "c2" * 32
    run_y = _offer_frames(results, tmp_path / "acq" / "runY", [0.768, 0.758, 0.766, 0.764],
                          old_sha, "")
    run_x = _offer_frames(results, tmp_path / "acq" / "runX", [0.957, 0.477, 0.959, 0.480],
                          new_sha, "2.2.19")
    queue = read_queue(results)
    assert [(e.model_sha256, e.measurement_version) for e in queue] == (
        [(new_sha, "2.2.19")] * 4 + [(old_sha, "")] * 4)
    paths, pages, infos, warnings = queued_frames(results)
    assert paths == [run_x[i] for i in (1, 3, 0, 2)] + [run_y[i] for i in (1, 3, 2, 0)]
    assert warnings == [
        "the queued frames were ranked by 2 models or measurement versions, whose "
        "confidences are on different scales: listed one after the other, each least "
        f"confident first: 4 of the model {new_sha[:12]} measurement 2.2.19, then 4 of the "
        f"model {old_sha[:12]} measurement (version not recorded: before 2.2.3)"]
    refs = [FrameRef(p, 0, p.stem, info) for p, info in zip(paths, infos, strict=True)]
    assert _other_ranking_model(refs, new_sha, "insitu-default.onnx") == (
        f"4 of the 8 queued frames were ranked by the model {old_sha[:12]} (the rows' "
        f"model_sha256), the proposals come from insitu-default.onnx {new_sha[:12]}: give "
        "that model's file as --model to start from its labels")
    # of one measurement version, the model that queued last comes first (its hash sorts
    # before the other's, so an order by hash would put it second)
    run_z = _offer_frames(results, tmp_path / "acq" / "runZ", [0.9, 0.5], "0a" * 32, "2.2.19")
    assert queued_frames(results)[0][:4] == [run_z[1], run_z[0], run_x[1], run_x[3]]


def test_a_queue_folder_and_its_partition_end_in_the_same_hash(tmp_path):
    """docs/service.md joins a queue folder and its acquisition's partition by the hash after
    the last '-': their names differ for a folder name of other letters than ASCII
    (run_2_ünï / run_2__n_) or of more than 60 characters, the hash does not."""
    from nwwatch.results.parquet import acquisition_partition

    for name in ("run 2 ünï", "x" * 100, "plain"):
        source = str(tmp_path / "acq" / name / "f.tif")
        queue = acquisition_folder(tmp_path / "res", source).name
        partition = acquisition_partition(source).split("=", 1)[1]
        assert queue.rsplit("-", 1)[1] == partition.rsplit("-", 1)[1]
        assert (queue == partition) == (name == "plain")
