"""Checks that a file read a chunk of frames (or one frame) at a time gives the frames of the
file read whole, for the readers' tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

import nwwatch.io as nio
from nwwatch.io import Frame, read_frames

#: Log events a reader gives about a file's metadata (each as often as a whole read gives it).
_METADATA_EVENTS = {"io.pixel_size_ignored", "io.times_ignored"}


def _warnings(logs: list[dict]) -> list[tuple]:
    return [(e["event"], e.get("axis"), e.get("reason")) for e in logs
            if e["event"] in _METADATA_EVENTS]


def assert_same_frame(got: Frame, expected: Frame) -> None:
    assert got.index == expected.index
    assert got.source == expected.source
    assert got.image.dtype == expected.image.dtype and got.image.dtype.isnative
    assert got.image.flags.c_contiguous
    np.testing.assert_array_equal(got.image, expected.image)
    assert got.pixel_size_nm == expected.pixel_size_nm
    assert got.acquired_at == expected.acquired_at
    assert got.acquired_at_source == expected.acquired_at_source


def assert_chunks_are_the_whole_read(path: Path, chunk_pages: list[int],
                                     pages_at: list[int], by_page: bool = True) -> list[Frame]:
    """``nwwatch.io.read_frame_chunks`` of ``path`` for each of ``chunk_pages`` and
    ``read_frame_at`` for each of ``pages_at`` give the frames of ``read_frames``, with its
    metadata warnings, once per file; returns the frames read whole. ``by_page`` False: a
    file whose layout is read whole, as one chunk, after the chunk reader's ``whole`` call."""
    with capture_logs() as logs:
        whole = read_frames(path)
    warned = _warnings(logs)
    n = len(whole)
    for pages in chunk_pages:
        asked: list[Path] = []

        def read_whole(info: nio.TiffInfo, asked: list[Path] = asked) -> None:
            if by_page:
                pytest.fail(f"{info.path} read whole")
            asked.append(info.path)

        with capture_logs() as logs:
            chunks = list(nio.read_frame_chunks(path, pages, whole=read_whole))
        if by_page:
            assert [len(c) for c in chunks] == [min(pages, n - s) for s in range(0, n, pages)]
        else:
            assert ([len(c) for c in chunks], asked) == ([n], [path])
        read = [f for c in chunks for f in c]
        assert len(read) == n
        for got, expected in zip(read, whole, strict=True):
            assert_same_frame(got, expected)
        assert _warnings(logs) == warned, pages
    for index in pages_at:
        with capture_logs() as logs:
            frame = nio.read_frame_at(path, index)
        assert_same_frame(frame, whole[index])
        assert frame.image.base is None or frame.image.base.nbytes == frame.image.nbytes
        assert _warnings(logs) == warned, index
    with nio.FrameReader(path) as reader:  # the labelling session's pages of one file
        for index in reversed(pages_at):
            assert_same_frame(reader.frame(index), whole[index])
    with pytest.raises(nio.PageIndexError):
        nio.read_frame_at(path, n)
    return whole


def assert_read_by_chunks_past_the_whole_read_limit(path: Path, stack: np.ndarray,
                                                    monkeypatch: pytest.MonkeyPatch) -> str:
    """With ``nwwatch.io.limits.MAX_FILE_BYTES`` set to two of its pages, the file at ``path``
    (the 6 pages of ``stack``, (6, H, W)) is read in chunks of 4 and one page at a time as
    ever, and refused by ``read_frames`` (what reads a file whole) naming the file, its
    declared bytes and the limit. MAX_FILE_BYTES bounds a file read whole (every frame in
    memory at once); a recording read a chunk at a time, as the service and replay read it,
    may be longer. Returns the refusal's text."""
    n, height, width = stack.shape
    monkeypatch.setattr(nio.limits, "MAX_FILE_BYTES", 2 * stack[0].nbytes)
    assert nio.inspect_tiff(path).declared_bytes == stack.nbytes
    chunks = list(nio.read_frame_chunks(
        path, 4, whole=lambda info: pytest.fail(f"{info.path} read whole")))
    assert [[f.index for f in c] for c in chunks] == [list(range(0, 4)), list(range(4, n))]
    np.testing.assert_array_equal(np.stack([f.image for c in chunks for f in c]), stack)
    np.testing.assert_array_equal(nio.read_frame_at(path, n - 1).image, stack[n - 1])
    with pytest.raises(nio.ImageTooLargeError) as error:
        read_frames(path)
    assert str(error.value).startswith(
        f"{path}: declares {stack.nbytes} bytes of pixels once read "
        f"(shape ({n}, {height}, {width})), more than the limit of {2 * stack[0].nbytes} (")
    assert str(error.value).endswith(" GiB) for a file read whole")
    return str(error.value)
