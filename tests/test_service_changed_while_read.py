"""A file changed between its hashing and its reading (truncated, or rewritten in place by a
writer that reuses the name): what was read is not the content the ledger keys the result
by. A truncated read quarantined the content *hashed* — the good file — so the whole file
written back was "quarantined (in an earlier run)" for good; a rewrite recorded the new
pixels under the old content's hash. Such a file is released without an attempt and
processed as the new version it now is (docs/service.md, Exactly once)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from servicekit import model, paint_insitu

import nwwatch.service.batch as batch
from nwwatch.io import write_frame_tiff
from nwwatch.service import replay
from nwwatch.service.names import source_name


@pytest.fixture()
def acq(tmp_path):
    folder = tmp_path / "acq"
    folder.mkdir()
    write_frame_tiff(folder / "f.tif", paint_insitu(110.0, size=128, half_width=16))
    write_frame_tiff(tmp_path / "v2.tif", paint_insitu(130.0, size=128, half_width=16))
    return folder, (folder / "f.tif").read_bytes(), (tmp_path / "v2.tif").read_bytes()


def _change_after_hashing(monkeypatch, change) -> None:
    real = batch.file_sha256

    def hash_then_change(path, progress=None):
        sha = real(path)
        change(path)
        return sha

    monkeypatch.setattr(batch, "file_sha256", hash_then_change)


def test_a_file_truncated_after_hashing_does_not_quarantine_its_content(acq, tmp_path,
                                                                        monkeypatch):
    folder, v1, _ = acq
    onnx = model(tmp_path)
    out = tmp_path / "out"

    def truncate(path):
        with open(path, "r+b") as f:
            f.truncate(len(v1) // 2)

    _change_after_hashing(monkeypatch, truncate)
    s = replay(folder, out, kind="insitu", model=onnx)
    assert (s.done, s.quarantined, s.vanished, len(s.changed), s.exit_status) == \
        (0, 0, 0, 1, 3), s.lines()
    monkeypatch.undo()
    (folder / "f.tif").write_bytes(v1)  # the writer finishes: the whole file
    s = replay(folder, out, kind="insitu", model=onnx)
    assert (s.done, s.quarantined) == (1, 0), s.lines()
    assert pq.read_table(out / "frames").num_rows == 1


def test_a_file_left_truncated_is_quarantined_as_the_content_it_holds(acq, tmp_path,
                                                                       monkeypatch):
    folder, v1, _ = acq
    onnx = model(tmp_path)
    out = tmp_path / "out"
    _change_after_hashing(monkeypatch, lambda p: open(p, "r+b").truncate(len(v1) // 2))
    replay(folder, out, kind="insitu", model=onnx)
    monkeypatch.undo()
    s = replay(folder, out, kind="insitu", model=onnx)  # still truncated
    assert s.quarantined == 1 and s.still_quarantined == 0, s.lines()
    (folder / "f.tif").write_bytes(v1)
    assert replay(folder, out, kind="insitu", model=onnx).done == 1


def test_a_file_rewritten_after_hashing_is_not_recorded_under_the_old_hash(acq, tmp_path,
                                                                           monkeypatch):
    folder, v1, v2 = acq
    onnx = model(tmp_path)
    out = tmp_path / "out"
    _change_after_hashing(monkeypatch, lambda p: p.write_bytes(v2))
    s = replay(folder, out, kind="insitu", model=onnx)
    assert (s.done, s.vanished, len(s.changed), s.exit_status) == (0, 0, 1, 3), s.lines()
    monkeypatch.undo()
    s = replay(folder, out, kind="insitu", model=onnx)
    assert s.done == 1
    rows = pq.read_table(out / "frames").to_pylist()
    assert len(rows) == 1 and rows[0]["source"] == source_name(folder / "f.tif")
    assert rows[0]["source_sha256"] == batch.file_sha256(folder / "f.tif")
    assert round(rows[0]["contact_angle_deg"]) == 130
