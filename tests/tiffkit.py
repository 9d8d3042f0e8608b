"""TIFF files as writers leave them, for the reader's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from nwwatch.io import write_stack_tiff


def first_page_only(path: Path, stack: np.ndarray) -> Path:
    """``stack`` (N, H, W) written as an ImageJ stack whose writer stopped after page 0: IFD 0
    ends the chain and only page 0's pixels are in the file (tifffile logs about it)."""
    write_stack_tiff(path, stack)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        next_pointer_at = page.offset + 2 + 12 * len(page.tags)
        page0_end = page.dataoffsets[0] + page.databytecounts[0]
    raw = bytearray(path.read_bytes()[:page0_end])
    raw[next_pointer_at : next_pointer_at + 4] = bytes(4)
    path.write_bytes(raw)
    return path
