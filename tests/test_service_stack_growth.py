"""A stack that grows after the service found it ready: every page of the content processed
gets its row, or the file is processed again as the new version; never recorded done with
pages missing (its ledger key is the grown content's, so the missing pages would never
come)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import tifffile
from servicekit import model, write_config

from nwwatch.io import inspect_tiff
from nwwatch.results.parquet import dataset_files
from nwwatch.segment.session import Segmenter
from nwwatch.service.flush import FlushPolicy, RowBuffer
from nwwatch.service.ledger import Ledger
from nwwatch.service.pipeline import Engine, process
from nwwatch.service.readiness import QueuedFiles, ReadyFile


@pytest.fixture()
def onnx_model(tmp_path):
    return model(tmp_path)


def _stack(path, pages: int) -> None:
    rng = np.random.default_rng(pages)
    tifffile.imwrite(path, (rng.random((pages, 48, 48)) * 255).astype(np.uint8))


def _engine(tmp_path, onnx_model) -> Engine:
    out = tmp_path / "out"
    # batch_size 1: chunks of a few pages, so 6 pages are more than one chunk
    return Engine("insitu", Segmenter(onnx_model, providers=("cpu",), threads=1),
                  Ledger(out / "ledger.sqlite", out), out, batch_size=1,
                  buffer=RowBuffer(FlushPolicy(max_rows=1, max_seconds=0)))


def _rows(out) -> int:
    return sum(pq.read_metadata(f).num_rows for f in dataset_files(out / "frames"))


def test_a_stack_grown_since_it_was_found_ready_gets_a_row_per_page(tmp_path, onnx_model):
    # before: 6 of 12 rows written, the file recorded done under the 12-page content's key
    stack = tmp_path / "stack.tif"
    _stack(stack, 6)
    st, found = stack.stat(), inspect_tiff(stack)
    _stack(stack, 12)  # the writer added pages before the batch ran
    engine = _engine(tmp_path, onnx_model)
    report = process([ReadyFile(stack, 0, st.st_size, st.st_mtime_ns, found, time.time())],
                     engine)
    assert [(o.state, o.n_rows) for o in report.files] == [("done", 12)]
    assert _rows(tmp_path / "out") == 12
    engine.ledger.close()


def test_more_pages_than_its_check_counted_is_processed_again_not_done(tmp_path, onnx_model):
    # the check's page count wrong for content of the same size: the pages beyond would get
    # no row; the file is released (no attempt charged) instead of recorded done
    stack = tmp_path / "stack.tif"
    _stack(stack, 12)
    st = stack.stat()
    short = dataclasses.replace(inspect_tiff(stack), n_pages=6)
    engine = _engine(tmp_path, onnx_model)
    report = process([ReadyFile(stack, 0, st.st_size, st.st_mtime_ns, short, time.time())],
                     engine)
    [outcome] = report.files
    assert outcome.state == "gone" and "processed again as the new version" in outcome.reason
    assert _rows(tmp_path / "out") == 0
    assert engine.ledger.queries.counts().get("done", 0) == 0
    report = process([stack], engine)  # the next look (the new version found ready)
    assert [(o.state, o.n_rows) for o in report.files] == [("done", 12)]
    engine.ledger.close()


def test_a_newer_version_found_ready_replaces_the_queued_one(tmp_path, onnx_model):
    # before: the newer ReadyFile was dropped while the path waited in the queue, so the
    # batch read the stack by the older version's page count
    from nwwatch.service.config import load_config
    from nwwatch.service.daemon import Daemon
    from nwwatch.service.watches import Watch

    folder = tmp_path / "in"
    folder.mkdir()
    stack = folder / "stack.tif"
    _stack(stack, 6)
    config = load_config(write_config(tmp_path / "c.toml", folder, tmp_path / "out",
                                      onnx_model, batch_size=64, latency_ms=60000))
    daemon = Daemon(config)
    engine = _engine(tmp_path, onnx_model)
    engine.batch_size = 64  # nothing due: the stack waits in the queue
    daemon.ledger = engine.ledger
    watch = Watch(0, config.watches[0], engine, watcher=None)
    queued = QueuedFiles()
    daemon._watches, daemon._queued = [watch], queued

    def ready_now(path):
        st = path.stat()
        return ReadyFile(path, 0, st.st_size, st.st_mtime_ns, inspect_tiff(path), time.time())

    found = [ready_now(stack)]
    daemon.tracker.poll = lambda *a, **k: (found, [])
    daemon._work([watch], queued, time.monotonic())
    assert [f.info.n_pages for f in watch.files] == [6]
    _stack(stack, 12)
    found[:] = [ready_now(stack)]
    daemon._work([watch], queued, time.monotonic())
    assert [f.info.n_pages for f in watch.files] == [12] and queued == {stack}
    engine.ledger.close()
