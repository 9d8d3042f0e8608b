"""What the readers return: :class:`Frame`, :class:`Volume` and :class:`TiffInfo`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np

AcquiredAtSource = Literal["metadata", "mtime"]


@dataclass(frozen=True)
class Frame:
    """One 2-D image of an acquisition.

    Attributes
    ----------
    image : ndarray (H, W), native dtype (uint8, uint16, int16 or float32; a Velox EMD file's
        also uint32, int32 or float64), (row, col) order.
    index : int
        Page of the frame in its file, 0-based, counting the pages read (a thumbnail page
        that is not read is not counted).
    source : Path
        The file the frame was read from.
    pixel_size_nm : float or None
        Square pixel size from the file's metadata; None when the file declares none.
    acquired_at : datetime
        Timezone-aware UTC acquisition time.
    acquired_at_source : "metadata" or "mtime"
        "metadata": read from the file; "mtime": the file's modification time (an ImageJ
        series' frame interval counted back from it: docs/io.md, "Acquisition time").
    """

    image: np.ndarray
    index: int
    source: Path
    pixel_size_nm: float | None
    acquired_at: datetime
    acquired_at_source: AcquiredAtSource


@dataclass(frozen=True)
class Volume:
    """A tomogram.

    Attributes
    ----------
    data : ndarray (Z, Y, X), native dtype (uint8, uint16, int16 or float32).
    source : Path
    voxel_size_nm : (z, y, x) floats or None
        None unless the file declares all three sizes.
    declared_voxel_size_nm : (z, y, x), each a float or None
        The sizes the file declares, None on an axis it declares none for (such as the
        depth of an ImageJ stack without ``spacing=``, Fiji's default of 1 unit); by
        default ``voxel_size_nm``'s. What a model's training voxel size is compared with
        and recorded from, axis by axis.
    """

    data: np.ndarray
    source: Path
    voxel_size_nm: tuple[float, float, float] | None
    declared_voxel_size_nm: tuple[float | None, float | None, float | None] | None = None

    def __post_init__(self) -> None:
        if self.declared_voxel_size_nm is None:
            object.__setattr__(self, "declared_voxel_size_nm",
                               self.voxel_size_nm or (None, None, None))


@dataclass(frozen=True)
class TiffInfo:
    """Structure of an input file (TIFF, MRC: ``layout`` "mrc", DigitalMicrograph: "dm",
    Velox EMD: "emd", or TIA series: "ser"), read from its headers only (no pixel data).

    Attributes
    ----------
    path : Path
    size_bytes : int
        File size on disk.
    n_pages : int
        Number of 2-D images (frames or slices) read: those of the image series, or of all the
        plain series read as one stack (see :func:`nwwatch.io.series.image_series`).
    shape : tuple of int
        Series shape with singleton axes removed: (H, W) or (N, H, W) or more axes.
    axes : str
        tifffile's axis letters for ``shape``, e.g. "YX", "TYX", "ZYX", "IYX" (Y rows, X cols).
    dtype : numpy dtype, native byte order
    declared_bytes : int
        Bytes the decoded pixel data will take.
    layout : "imagej", "ome", "tiff", "mrc", "dm", "emd" or "ser"
        Which metadata convention the file follows.
    compression : str
        tifffile's name of the compression, e.g. "NONE", "LZW", "ADOBE_DEFLATE".
    """

    path: Path
    size_bytes: int
    n_pages: int
    shape: tuple[int, ...]
    axes: str
    dtype: np.dtype
    declared_bytes: int
    layout: Literal["imagej", "ome", "tiff", "mrc", "dm", "emd", "ser"]
    compression: str

    @property
    def page_shape(self) -> tuple[int, int]:
        """(H, W) of one page."""
        return (self.shape[-2], self.shape[-1])


@dataclass(frozen=True)
class OpenFrames:
    """The frames of a file opened once, its structure and every frame's metadata read:
    ``read(frames)`` gives the frames of the range ``frames`` (0-based, within
    ``info.n_pages``), reading their pixels only. ``by_page`` False: the file's layout makes
    reading a few frames cost a pass over all of them (read it whole)."""

    info: TiffInfo
    read: Callable[[range], list[Frame]]
    by_page: bool = True


@dataclass(frozen=True)
class FramesMetadata:
    """Every frame's pixel size (nm or None) and acquisition time of a file, and the times'
    source, read once for the file (the vendor readers' per-frame metadata)."""

    sizes_nm: list[float | None]
    times: list[datetime]
    source: AcquiredAtSource

    def frames(self, path: Path, stack: np.ndarray, indices: range) -> list[Frame]:
        """The frames ``indices`` of the file ``path``, their images the pages of ``stack``
        (len(indices), H, W), in order."""
        return [Frame(image=stack[k], index=i, source=path, pixel_size_nm=self.sizes_nm[i],
                      acquired_at=self.times[i], acquired_at_source=self.source)
                for k, i in enumerate(indices)]
