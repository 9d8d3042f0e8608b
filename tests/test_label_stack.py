"""Pages of a multi-page TIFF stack in the labelling session: each kept page holds its own
pixels, not the whole stack it was read from."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from nwwatch.io import write_stack_tiff
from nwwatch.label.frames import frame_refs
from nwwatch.label.server import LabelSession


def test_pages_kept_by_the_session_do_not_keep_their_stacks(tmp_path):
    # before: every page opened was a view of the whole stack it was read from, and the
    # session keeps up to 9 frames: 9 copies of a 16-bit stack of hundreds of pages.
    rng = np.random.default_rng(0)
    pages, side = 24, 128
    stack = rng.integers(0, 4000, (pages, side, side), dtype=np.uint16)
    write_stack_tiff(tmp_path / "stack.tif", stack)
    session = LabelSession(frame_refs([tmp_path / "stack.tif"]), tmp_path / "DATA")
    assert [r.stem for r in session.frames[:2]] == ["stack_p0000", "stack_p0001"]
    gc.collect()
    tracemalloc.start()
    try:
        for k in range(6):
            image = session.image(k).image
            assert image.dtype == np.uint16 and np.array_equal(image, stack[k])
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 2 * stack.nbytes  # 6 pages (and a little); before: 6 stacks


def test_opening_a_page_reads_that_page_not_the_whole_stack(tmp_path):
    # before: each opening read the whole stack and kept one page: a page of a 40-page
    # 4096 x 4096 16-bit stack took 1.3 s and 1.4 GB (peak) before the model even ran.
    rng = np.random.default_rng(1)
    pages, side = 40, 256
    stack = rng.integers(0, 4000, (pages, side, side), dtype=np.uint16)
    write_stack_tiff(tmp_path / "stack.tif", stack)
    session = LabelSession(frame_refs([tmp_path / "stack.tif"]), tmp_path / "DATA")
    gc.collect()
    tracemalloc.start()
    try:
        image = session.image(pages - 1).image
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(image, stack[-1])
    assert peak < 4 * stack[0].nbytes  # before: the whole stack, 40 pages


def _stack_files(folder, stack):
    """The stack written as the layouts a camera or Fiji writes (TIFF kinds, MRC)."""
    import mrcfile
    import tifffile

    files = {"shaped": {"photometric": "minisblack"},
             "zlib": {"photometric": "minisblack", "compression": "zlib"},
             "imagej": {"imagej": True, "metadata": {"axes": "TYX"}},
             "ome": {"ome": True, "photometric": "minisblack", "metadata": {"axes": "TYX"}},
             "uniform": {"photometric": "minisblack", "metadata": None},
             "big_endian": {"photometric": "minisblack", "byteorder": ">"}}
    for name, kwargs in files.items():
        tifffile.imwrite(folder / f"{name}.tif", stack, **kwargs)
    with tifffile.TiffWriter(folder / "page_per_write.tif") as writer:
        for page in stack:  # one series per page, as software growing a file writes it
            writer.write(page, photometric="minisblack")
    with mrcfile.new(folder / "movie.mrc") as mrc:
        mrc.set_data(stack.astype(np.int16))
        mrc.voxel_size = 2.5
    return sorted(folder.glob("*.tif")) + [folder / "movie.mrc"]


def test_one_page_read_alone_is_that_page_of_the_stack_read_whole(tmp_path):
    import pytest

    from nwwatch.io import PageIndexError, read_frame_at, read_frames

    rng = np.random.default_rng(2)
    stack = rng.integers(0, 4000, (10, 24, 40), dtype=np.uint16)
    for path in _stack_files(tmp_path, stack):
        whole = read_frames(path)
        for index in (0, 3, 9):
            frame = read_frame_at(path, index)
            expected = whole[index]
            assert frame.image.dtype == expected.image.dtype, path.name
            assert np.array_equal(frame.image, expected.image), (path.name, index)
            assert frame.index == index
            assert (frame.pixel_size_nm, frame.acquired_at, frame.acquired_at_source) == (
                expected.pixel_size_nm, expected.acquired_at, expected.acquired_at_source)
        with pytest.raises(PageIndexError, match=r"page 10 out of range \(0\.\.9\)"):
            read_frame_at(path, 10)
