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
