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
