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


def one_ifd_for_all_pages(path: Path) -> int:
    """End the IFD chain of the stack at ``path`` at IFD 0, every page's pixels left back to
    back: ImageJ's layout for stacks over 4 GB. Returns where page 0's pixels start."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        next_pointer_at = page.offset + 2 + 12 * len(page.tags)
        data_start = page.dataoffsets[0]
    raw = bytearray(path.read_bytes())
    raw[next_pointer_at : next_pointer_at + 4] = bytes(4)  # the chain ends at IFD 0
    path.write_bytes(raw)
    return data_start


def count_parsed_pages(monkeypatch) -> list[int]:
    """``[n]``: how many TIFF pages (IFDs) tifffile parsed into a TiffPage with all its tags
    from now on (set ``[0] = 0`` to count afresh); undone with ``monkeypatch``."""
    count = [0]
    parse = tifffile.TiffPage.__init__

    def counted(self, *args, **kwargs):
        count[0] += 1
        parse(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "__init__", counted)
    return count
