"""Read frames, in-situ stacks and tomograms from TIFF files; check a file's structure.

All readers check the file's structure first (:func:`inspect_tiff`), so bad input raises an
:class:`~nwwatch.io.errors.InputError` subclass naming the file before any pixel memory is
allocated. Pixel data keep their native dtype (uint8, uint16, int16 or float32). A file named
as an MRC file (:data:`nwwatch.io.mrc.MRC_SUFFIXES`) is read by :mod:`nwwatch.io.mrc`, and
one named as a DigitalMicrograph file (:data:`nwwatch.io.dm.DM_SUFFIXES`) by
:mod:`nwwatch.io.dm`, one named as a Velox EMD file (``.emd``) by :mod:`nwwatch.io.emd`, and
one named as a TIA series file (``.ser``) by :mod:`nwwatch.io.ser`, through the same three
functions, so every caller reads every format (DigitalMicrograph, EMD and TIA as in-situ
frames only: :func:`read_volume` refuses them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import structlog
import tifffile

from nwwatch.io.dm import (
    inspect_dm,
    is_dm,
    open_dm_frames,
    read_dm_frames,
    read_dm_volume,
)
from nwwatch.io.emd import (
    inspect_emd,
    is_emd,
    open_emd_frames,
    read_emd_frames,
    read_emd_volume,
)
from nwwatch.io.errors import (
    JOIN_SLICES_HINT,
    BlankImageError,
    TruncatedTiffError,
    UnsupportedLayoutError,
    check_page_index,
)
from nwwatch.io.limits import ANISOTROPY_TOLERANCE, check_whole_read_bytes
from nwwatch.io.mdoc import mdoc_path
from nwwatch.io.metadata import (
    acquisition_times,
    check_declared_aspect,
    declared_sizes_nm,
    fei_calibration_key,
    fei_image_size,
    frame_pixel_size_nm,
    imagej_default_depth_nm,
    unit_text,
)
from nwwatch.io.mrc import (
    _FrameMetadata,
    _mrc_frames_with,
    inspect_mrc,
    is_mrc,
    read_mrc_frame_chunks,
    read_mrc_frames,
    read_mrc_volume,
)
from nwwatch.io.records import Frame, OpenFrames, TiffInfo, Volume
from nwwatch.io.regular import open_input
from nwwatch.io.ser import (
    inspect_ser,
    is_ser,
    open_ser_frames,
    read_ser_frames,
    read_ser_volume,
)
from nwwatch.io.series import image_series, series_n_pages, tagged_pages
from nwwatch.io.structure import corrupt_structure_refused, open_tiff

_log = structlog.get_logger("nwwatch.io")

#: The suffixes of TIFF files (lower case), as every reader and watcher takes them.
TIFF_SUFFIXES = (".tif", ".tiff")


def inspect_tiff(path: str | os.PathLike[str]) -> TiffInfo:
    """Check that ``path`` is a complete, readable single-channel TIFF, reading headers only.

    Used by the service to decide that a file is complete and sane before reading it.

    Parameters
    ----------
    path : path of a .tif/.tiff file (plain, ImageJ, OME or BigTIFF), of an MRC file
        (:func:`nwwatch.io.mrc.inspect_mrc`), of a DigitalMicrograph file
        (:func:`nwwatch.io.dm.inspect_dm`), of a Velox EMD file
        (:func:`nwwatch.io.emd.inspect_emd`) or of a TIA series file
        (:func:`nwwatch.io.ser.inspect_ser`).

    Returns
    -------
    TiffInfo with pages, squeezed shape, axes, dtype and declared size.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    InputError
        EmptyFileError, NotATiffError, TruncatedTiffError, ImageTooLargeError,
        UnsupportedDtypeError, MultichannelError or UnreadableFileError.
    """
    if is_mrc(path):
        return inspect_mrc(path)
    if is_dm(path):
        return inspect_dm(path)
    if is_emd(path):
        return inspect_emd(path)
    if is_ser(path):
        return inspect_ser(path)
    with open_tiff(path) as (_, info):
        return info


def read_frames(path: str | os.PathLike[str]) -> list[Frame]:
    """Read every page of a single-frame file or an in-situ stack as a :class:`Frame`.

    Parameters
    ----------
    path : path of a TIFF with one page (H, W) or several pages (N, H, W); pages of
        hyperstacks with more axes are returned in file order, and so are the pages of a
        file written one ``TiffWriter.write`` call per page (one tifffile series each).

    Returns
    -------
    list of Frame, one per page, ``index`` 0..N-1. ``image`` is (H, W) in the file's dtype,
    H without the rows of an FEI / Thermo Fisher page's data bar (:func:`_image_rows`);
    ``pixel_size_nm`` from the metadata or None (resolution tags: of the page's own series);
    ``acquired_at`` UTC from the metadata (``acquired_at_source`` "metadata") or else the
    file's mtime ("mtime"; an ImageJ series' frame interval counted back from it).

    Raises
    ------
    FileNotFoundError, InputError (see :func:`inspect_tiff`), and
    AnisotropicPixelsError when the file declares different x and y pixel sizes. An MRC
    file: :func:`nwwatch.io.mrc.read_mrc_frames` (one frame per section); a
    DigitalMicrograph file: :func:`nwwatch.io.dm.read_dm_frames` (one frame, or one per
    plane of a 3-D image); a Velox EMD file: :func:`nwwatch.io.emd.read_emd_frames`; a TIA
    series file: :func:`nwwatch.io.ser.read_ser_frames` (one frame per valid element).
    """
    path = Path(path)
    if is_mrc(path):
        return read_mrc_frames(path)
    if is_dm(path):
        return read_dm_frames(path)
    if is_emd(path):
        return read_emd_frames(path)
    if is_ser(path):
        return read_ser_frames(path)
    with open_tiff(path) as (tif, info):
        series = image_series(tif)[0]
        meta = _page_metadata(path, tif, info, series)
        height, width = info.page_shape
        stack = _read_pixels(path, info, series).reshape(info.n_pages, height, width)
    # each image a C-contiguous block of the stack's page
    return [meta.frame(i, stack[i]) for i in range(info.n_pages)]


@dataclass(frozen=True)
class _PageMetadata:
    """What :func:`read_frames` gives each page of a TIFF besides its pixels."""

    path: Path
    sizes_nm: list[float | None]
    times: list[datetime]
    source: str
    rows: int  # of each page, without an FEI data bar (:func:`_image_rows`)

    def frame(self, index: int, page: np.ndarray) -> Frame:
        """Page ``index`` (H, W) as its :class:`Frame`."""
        return Frame(image=page[:self.rows], index=index, source=self.path,
                     pixel_size_nm=self.sizes_nm[index], acquired_at=self.times[index],
                     acquired_at_source=self.source)


def _page_metadata(path: Path, tif: tifffile.TiffFile, info: TiffInfo,
                   series: list[tifffile.TiffPageSeries]) -> _PageMetadata:
    """Every page's pixel size, time and image rows, read once for the file."""
    with corrupt_structure_refused(path):  # later pages' tags are parsed here
        pages = tagged_pages(series)
        sizes_nm = _page_pixel_sizes_nm(path, tif, pages, info.n_pages)
        times, source = acquisition_times(path, tif, pages, info.n_pages, _mtime(tif))
        rows = _image_rows(path, series, info.page_shape, pages)
    return _PageMetadata(path, sizes_nm, times, source, rows)


class FrameReader:
    """The frames of one file (those of :func:`read_frames`), read one at a time from a file
    opened once: a page of a long in-situ stack costs its own pixels, not a parse of every
    page's metadata.

    A TIFF is opened and its structure checked when the reader is made, and every page's
    metadata (pixel sizes, times, the rows above an FEI data bar, and their warnings) read
    then, once; the file stays open until :meth:`close`. So is a DigitalMicrograph, EMD or
    TIA file, its structure and every frame's metadata read when the reader is made. So is
    an MRC file opened, its header read again (from that open file) for each frame, its
    pixel sizes and times (header and SerialEM .mdoc) with the first one only.

    The reader serves the file as it was when opened: :meth:`changed` says when it was
    written, replaced or removed since (then open a new reader). Not for use from several
    threads at once.

    Raises as :func:`read_frames` when made (an MRC file: what opening it raises; its
    header's and .mdoc's errors at the first frame).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp = _file_stamp(self.path)  # before opening: a write meanwhile is seen
        self._files = ExitStack()
        self._mrc: BinaryIO | None = None
        self._mrc_metadata: _FrameMetadata | None = None
        self._opened: OpenFrames | None = None
        self._closed = False
        try:
            if is_mrc(self.path):
                # kept open: a file replaced since is not read with the first one's metadata
                self._mrc = self._files.enter_context(open_input(self.path))
                return
            self._opened = self._files.enter_context(_open_frames(self.path))
        except BaseException:
            self._files.close()
            raise

    def frame(self, index: int) -> Frame:
        """Frame ``index``, reading that page's pixels only.

        Raises as :func:`read_frames`, and PageIndexError when the file has no frame
        ``index``.
        """
        path = self.path
        if self._closed:
            raise ValueError(f"{path}: frame read from a closed FrameReader")
        if self._opened is not None:
            check_page_index(path, index, self._opened.info.n_pages)
            return self._opened.read(range(index, index + 1))[0]
        if self._mrc is not None:
            if self._mrc_metadata is not None:  # the sections there were when first read
                check_page_index(path, index, len(self._mrc_metadata[0]))
            # the .mdoc is parsed with the first frame only
            (frame,), self._mrc_metadata = _mrc_frames_with(path, range(index, index + 1),
                                                            self._mrc_metadata, self._mrc)
            return frame
        raise ValueError(f"{path}: frame read from a closed FrameReader")

    def changed(self) -> bool:
        """Whether the file (or an MRC file's .mdoc) was written, replaced or removed since
        the reader opened it."""
        return _file_stamp(self.path) != self._stamp

    def close(self) -> None:
        """Close the file."""
        self._files.close()
        self._mrc = None
        self._opened = None
        self._closed = True

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _file_stamp(path: Path) -> tuple:
    """(device, inode, size, modification time in ns) of ``path`` and, of an MRC file, of the
    .mdoc beside it; None for a file that is not there."""
    def stamp(file: Path) -> tuple[int, int, int, int] | None:
        try:
            st = file.stat()
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns

    return (stamp(path), stamp(mdoc_path(path)) if is_mrc(path) else None)


def _open_frames(path: Path) -> AbstractContextManager[OpenFrames]:
    """The opener of the frames of a TIFF, DigitalMicrograph, EMD or TIA file
    (:class:`nwwatch.io.records.OpenFrames`; an MRC file is read by :mod:`nwwatch.io.mrc`)."""
    if is_emd(path):
        return open_emd_frames(path)
    if is_ser(path):
        return open_ser_frames(path)
    if is_dm(path):
        return open_dm_frames(path)
    return _open_tiff_frames(path)


@contextmanager
def _open_tiff_frames(path: Path) -> Iterator[OpenFrames]:
    """The frames of :func:`read_frames` of a TIFF opened once, its structure checked and
    every page's metadata read (and warned about) once; each page's pixels read when asked,
    or, where the pages cannot be read alone (:func:`_planes_by_page`; ``by_page`` False),
    every page's at each read."""
    with open_tiff(path) as (tif, info):
        series = image_series(tif)[0]
        meta = _page_metadata(path, tif, info, series)
        by_page = _planes_by_page(series)

        def read(pages: range) -> list[Frame]:
            if by_page:
                return [meta.frame(i, _read_page_pixels(path, info, series, i)) for i in pages]
            height, width = info.page_shape
            stack = _read_pixels(path, info, series).reshape(info.n_pages, height, width)
            return [meta.frame(i, stack[i]) for i in pages]

        yield OpenFrames(info, read, by_page)


def read_frame_at(path: str | os.PathLike[str], index: int) -> Frame:
    """Frame ``index`` of :func:`read_frames` (its page of a stack), reading only that page's
    pixels, from a file of any format: one frame of a long recording is opened without the
    whole stack in memory (a 40-page 4096 x 4096 stack is 1.3 GB). The file is opened for
    this one frame (its metadata read, for a TIFF every page's): to read several frames of a
    file, keep a :class:`FrameReader`.

    Raises as :func:`read_frames`, and PageIndexError when the file has no frame ``index``.
    """
    with FrameReader(path) as reader:
        return reader.frame(index)


def read_frame_chunks(path: str | os.PathLike[str], pages: int,
                      whole: Callable[[TiffInfo], None] | None = None
                      ) -> Iterator[list[Frame]]:
    """The frames of :func:`read_frames`, in order, ``pages`` at a time (the last chunk may be
    shorter), reading only each chunk's pixels: a long in-situ stack is processed without the
    whole of it in memory. A TIFF, DigitalMicrograph, EMD or TIA file is opened once for all
    chunks (its metadata read, and warned about, once); an MRC file's header is read again
    for each chunk (its pixel sizes and times, and their warnings, are the first chunk's); a
    TIFF whose pages share one IFD (ImageJ's layout for stacks over 4 GB) is read a plane at
    a time from its contiguous pixel data. A TIFF whose pages share one IFD but not one
    contiguous block of pixels, and an EMD series whose frames are not stored apart
    (:func:`nwwatch.io.emd.frames_by_chunk`), cannot be read page by page: such a file comes
    whole, as one chunk, refused beyond :data:`nwwatch.io.limits.MAX_FILE_BYTES` and then
    after ``whole`` was called with its structural check (the service's memory check raises
    there); a stack read by page has no such limit.

    Raises as :func:`read_frames`, when the chunk that meets the problem is read, and what
    ``whole`` raises.
    """
    path = Path(path)
    if pages < 1:
        raise ValueError(f"pages must be >= 1, got {pages}")
    if is_mrc(path):
        yield from read_mrc_frame_chunks(path, pages)
        return
    with _open_frames(path) as opened:
        info = opened.info
        if not opened.by_page:
            # the reader's limit first: no memory would let a file over it be read
            check_whole_read_bytes(path, info.declared_bytes, info.shape)
            if whole is not None:
                whole(info)
            yield opened.read(range(info.n_pages))
            return
        for start in range(0, info.n_pages, pages):
            yield opened.read(range(start, min(info.n_pages, start + pages)))


def _planes_by_page(series: list[tifffile.TiffPageSeries]) -> bool:
    """Whether every page of ``series`` can be read alone by :func:`_read_page_pixels`: pages
    with their own IFD, or pages sharing one IFD whose pixels are one contiguous block."""
    return all(len(part.pages) == series_n_pages(part) or part.dataoffset is not None
               for part in series)


def _read_page_pixels(path: Path, info: TiffInfo, series: list[tifffile.TiffPageSeries],
                      index: int) -> np.ndarray:
    """Page ``index`` (H, W) of :func:`_read_pixels`'s stack, reading that page only."""
    height, width = info.page_shape
    start, data = 0, None
    try:
        for part in series:
            n = series_n_pages(part)
            if index < start + n:
                if len(part.pages) < n:  # pages sharing one IFD: tifffile keys only the first
                    data = _shared_ifd_plane(path, part, index - start, height * width)
                else:
                    data = part.asarray(key=index - start)
                break
            start += n
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # decoder errors of corrupt compressed data, short reads
        raise TruncatedTiffError(path, f"pixel data of page {index} could not be read "
                                       f"({exc})") from exc
    if data is None or data.size != height * width:  # not one plane per page: read all
        return _read_pixels(path, info, series).reshape(info.n_pages, height, width)[index]
    data = data.reshape(height, width)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def _shared_ifd_plane(path: Path, part: tifffile.TiffPageSeries, index: int,
                      plane_pixels: int) -> np.ndarray | None:
    """Plane ``index`` of ``part``, a series whose pages share one IFD (ImageJ's layout for
    stacks over 4 GB: the planes back to back, uncompressed), read from its own bytes; None
    when the series' data is not one contiguous block (then read whole)."""
    if part.dataoffset is None:
        return None
    dtype = np.dtype(part.dtype).newbyteorder(part.parent.byteorder)
    handle = part.parent.filehandle
    handle.seek(part.dataoffset + index * plane_pixels * dtype.itemsize)
    raw = handle.read(plane_pixels * dtype.itemsize)
    if len(raw) != plane_pixels * dtype.itemsize:
        raise TruncatedTiffError(path, f"pixel data of page {index} could not be read (the "
                                       f"file ends {len(raw)} bytes into it)")
    return np.frombuffer(raw, dtype).copy()


def read_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a tomogram: a plain multi-page TIFF, an ImageJ hyperstack, an OME-TIFF or an MRC
    file.

    Singleton channel and time axes are dropped; a single page is a volume of one slice.

    Parameters
    ----------
    path : path of a TIFF whose pages are the Z slices.

    Returns
    -------
    Volume with ``data`` (Z, Y, X) in the file's dtype, Y without the rows of an FEI /
    Thermo Fisher page's data bar (:func:`_image_rows`), ``voxel_size_nm`` (z, y, x)
    when the file declares all three sizes, else None, and ``declared_voxel_size_nm`` those
    it declares (an ImageJ stack without ``spacing=`` declares no depth unless its pixels
    are 1 unit: :func:`_imagej_depth_nm`).

    Raises
    ------
    FileNotFoundError, InputError (see :func:`inspect_tiff`), and UnsupportedLayoutError
    for data with more than one axis besides Y and X (e.g. a time series of volumes). An MRC
    file: :func:`nwwatch.io.mrc.read_mrc_volume` (sections are Z slices); a
    DigitalMicrograph file is refused (:func:`nwwatch.io.dm.read_dm_volume`: its 3-D images
    are series in time), and so are a Velox EMD file (:func:`nwwatch.io.emd.read_emd_volume`)
    and a TIA series file (:func:`nwwatch.io.ser.read_ser_volume`): image series, not
    tomograms.
    """
    path = Path(path)
    if is_mrc(path):
        return read_mrc_volume(path)
    if is_dm(path):
        return read_dm_volume(path)
    if is_emd(path):
        return read_emd_volume(path)
    if is_ser(path):
        return read_ser_volume(path)
    with open_tiff(path) as (tif, info):
        stack_axes = info.axes[: info.axes.index("Y")]
        if len(stack_axes) > 1:
            raise UnsupportedLayoutError(
                path, f"{len(info.shape)}-D data (axes {info.axes}, shape {info.shape}); "
                "a volume has one axis besides Y and X"
            )
        series = image_series(tif)[0]
        with corrupt_structure_refused(path):
            source, sizes = declared_sizes_nm(path, tif, series[0].keyframe)
            if source == "imagej" and sizes[0] is None:
                sizes = (_imagej_depth_nm(path, tif, sizes[2]), sizes[1], sizes[2])
            rows = _image_rows(path, series, info.page_shape)
        height, width = info.page_shape
        data = _read_pixels(path, info, series).reshape(info.n_pages, height, width)
        if rows < height:
            data = np.ascontiguousarray(data[:, :rows])
    voxel_size_nm = None if None in sizes else (sizes[0], sizes[1], sizes[2])
    return Volume(data=data, source=path, voxel_size_nm=voxel_size_nm,
                  declared_voxel_size_nm=(sizes[0], sizes[1], sizes[2]))


def _imagej_depth_nm(path: Path, tif: tifffile.TiffFile, pixel_size_nm: float | None
                     ) -> float | None:
    """The z size of an ImageJ stack without ``spacing=`` (:func:`~nwwatch.io.metadata.
    imagej_default_depth_nm`): its 1 unit where the pixels are 1 unit too (cubic voxels,
    whether the depth was set or not), else None, said in an ``io.voxel_depth_implied``
    warning: ImageJ's default depth is no calibration, and taken as one it made the volume's
    nm metrics and its voxel size check against a model's training size (a 0.32 nm volume
    read 1000 x 0.32 x 0.32 nm) wrong."""
    depth_nm = imagej_default_depth_nm(tif)
    if depth_nm is None:
        return None
    if (pixel_size_nm is not None
            and abs(depth_nm - pixel_size_nm) <= ANISOTROPY_TOLERANCE * depth_nm):
        return depth_nm
    meta = tif.imagej_metadata
    unit = unit_text(str(meta.get("zunit", meta["unit"])))
    ratio = None if pixel_size_nm is None else depth_nm / pixel_size_nm
    times = ("" if ratio is None
             else f", {ratio:.0f} times the pixel size" if ratio >= 10
             else f", {ratio:.3g} times the pixel size")
    _log.warning("io.voxel_depth_implied", path=str(path), voxel_depth_nm=depth_nm,
                 pixel_size_nm=pixel_size_nm,
                 reason=f"no spacing= in the ImageJ metadata: Fiji shows the slices 1 {unit} "
                        f"apart{times}, its default depth, which such a file does not tell "
                        "from a depth set to 1 unit; the volume's depth is not declared, so "
                        "it has no voxel size (no mask or row of it has one, nor a model "
                        "trained on it) and its depth is not checked against a model's: "
                        "set the voxel depth (Fiji: Image > Properties) and save again")
    return None


def check_tomogram(volume: Volume) -> Volume:
    """``volume`` unchanged when it can be segmented as a tomogram; else an InputError.

    :func:`read_volume` reads a single page as a volume of one slice; the tomogram workflow
    (training, the service, replay) refuses it here, as it refuses a volume without contrast,
    whose mask would be empty and whose row would look like a valid result.

    Raises
    ------
    UnsupportedLayoutError : fewer than 2 slices along Z (a 2-D image), or slices less than
        2 px high or wide (a section or a line of voxels: Z x 1 x X, Z x Y x 1, Z x 1 x 1).
    BlankImageError : no finite voxel, or every finite voxel has the same value.
    """
    data = volume.data
    if data.ndim > 3:  # a Volume built by hand; read_volume gives (Z, Y, X) only
        raise UnsupportedLayoutError(
            volume.source, f"{data.ndim}-D data (shape {data.shape}); a volume is (Z, Y, X)")
    if data.ndim != 3 or data.shape[0] < 2:
        raise UnsupportedLayoutError(
            volume.source, f"a 2-D image ({' x '.join(map(str, data.shape[-2:]))} px), not a "
            "volume: a tomogram has at least 2 slices along Z (a multi-page TIFF, pages = Z "
            f"slices); one file per slice? {JOIN_SLICES_HINT}")
    if min(data.shape[1:]) < 2:
        # The same rule as for Z: a volume extends along all three axes. A slice one pixel
        # high or wide has no in-plane neighbours to segment with, and a mask one voxel thick
        # has no volume metrics (its surface is all of it).
        kind = "a line of voxels" if max(data.shape[1:]) < 2 else "a 2-D section"
        raise UnsupportedLayoutError(
            volume.source, f"{data.shape[0]} slices of {data.shape[1]} x {data.shape[2]} px: "
            f"{kind}, not a volume: a tomogram has at least 2 voxels along each of Z, Y and X")
    low, high = np.inf, -np.inf
    no_data = 0  # NaN or infinite voxels
    for page in data:  # slice by slice: no copy of the volume
        finite = page[np.isfinite(page)] if page.dtype.kind == "f" else page.ravel()
        no_data += page.size - finite.size
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    if low > high:
        raise BlankImageError(volume.source, "no finite voxel (every value is NaN or "
                                             "infinite): nothing to segment")
    if low == high:
        low += 0.0  # -0.0 (low is the first page's minimum) reads as 0, not "-0"
        # A padded reconstruction whose data is one value: "every voxel" would misstate
        # a volume that is mostly NaN padding.
        which = (f"every voxel with data has the value {low:g} (the other {no_data:,} are "
                 "NaN or infinite)" if no_data else f"every voxel has the value {low:g}")
        raise BlankImageError(volume.source, f"{which}: a blank volume, nothing to segment")
    return volume


def _page_pixel_sizes_nm(
    path: Path, tif: tifffile.TiffFile, pages: list, n_pages: int
) -> list[float | None]:
    """Pixel size of every page (``pages``: :func:`nwwatch.io.series.tagged_pages`): its own
    resolution tags and FEI metadata, or its keyframe's for a TiffFrame (a page of an OME or
    ImageJ series, whose sizes are the file's), read once per distinct set. Raises
    AnisotropicPixelsError for pixels whose x and y differ, calibrated or not (resolution
    tags without a length unit)."""
    if len(pages) != n_pages:  # ImageJ's layout for large stacks: one IFD for all pages
        pages = pages[:1] * n_pages
    by_tags: dict[tuple, float | None] = {}
    sizes: list[float | None] = []
    for page in pages:
        page = page if isinstance(page, tifffile.TiffPage) else page.keyframe
        key = (*(page.tags.valueof(code) for code in (282, 283, 296)),  # X/YRes, ResUnit
               *fei_calibration_key(page))
        if key not in by_tags:
            source, sizes_nm = declared_sizes_nm(path, tif, page)
            by_tags[key] = frame_pixel_size_nm(path, sizes_nm, source)
            if not source:  # no size declared: an aspect without one is refused alike
                check_declared_aspect(path, tif, page)
        sizes.append(by_tags[key])
    return sizes


def _image_rows(path: Path, series: list[tifffile.TiffPageSeries],
                page_shape: tuple[int, int], pages: list | None = None) -> int:
    """Rows of each page that hold the image: all ``page_shape[0]``, or the ``[Image]``
    ``ResolutionY`` of FEI / Thermo Fisher pages (tag 34682) whose data bar (text and a
    scale bar) lies in the rows below (:func:`~nwwatch.io.metadata.fei_image_size`); said
    in an ``io.databar_cropped`` warning. Every page read (``pages``: those of
    :func:`nwwatch.io.series.tagged_pages`, found here when not given) has to declare the
    same size, with fewer rows than the page and its width (``ResolutionX``). Metadata that
    declares fewer rows but does not fit the pages (another width, other sizes on other
    pages: a resampled or edited file) leaves every row, with an ``io.databar_kept``
    warning."""
    height, width = page_shape

    def declared(sizes: set) -> bool:
        return any(rows is not None and rows < height for rows, _ in sizes)

    # The first page of each series first: a file without a shorter FEI image (nearly every
    # file) is not parsed page by page.
    if not declared({fei_image_size(part.keyframe) for part in series}):
        return height
    pages = tagged_pages(series) if pages is None else pages
    sizes = {fei_image_size(page if isinstance(page, tifffile.TiffPage) else page.keyframe)
             for page in pages}
    if len(sizes) > 1:
        _log.warning("io.databar_kept", path=str(path), page_rows=height,
                     reason=f"pages declare different FEI [Image] sizes (rows, columns) "
                            f"{sorted(sizes, key=str)}: every row is read, data bar included")
        return height
    ((rows, columns),) = sizes
    if columns != width:
        _log.warning("io.databar_kept", path=str(path), page_rows=height,
                     reason=f"FEI [Image] ResolutionX {columns} is not the page's width "
                            f"{width} (resampled or edited after saving?): every row is read, "
                            f"data bar included")
        return height
    _log.warning("io.databar_cropped", path=str(path), image_rows=rows, page_rows=height,
                 reason=f"FEI [Image] ResolutionY {rows} of the page's {height} rows: the "
                        f"{height - rows} rows below the image (the microscope's data bar) "
                        "are not read")
    return rows


def _read_pixels(path: Path, info: TiffInfo,
                 series: list[tifffile.TiffPageSeries]) -> np.ndarray:
    """The pixels of ``series`` (:func:`nwwatch.io.series.image_series`'s stack), in the
    shape of ``info``, read whole (:func:`nwwatch.io.limits.check_whole_read_bytes` first)."""
    check_whole_read_bytes(path, info.declared_bytes, info.shape)
    try:
        if len(series) == 1:
            data = series[0].asarray()
        else:  # one series per page or group of pages: filled in place, one part at a time
            data = np.empty((info.n_pages, *info.page_shape), series[0].dtype)
            start = 0
            for part in series:
                part_data = part.asarray().reshape(-1, *info.page_shape)
                data[start:start + len(part_data)] = part_data
                start += len(part_data)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # decoder errors of corrupt compressed data, short reads
        # which page of a stack: the user can cut it out or export the recording again
        page = _failing_page(series) if info.n_pages > 1 else None
        where = "" if page is None else f" of page {page}"
        raise TruncatedTiffError(path, f"pixel data{where} could not be read ({exc})") from exc
    data = data.reshape(info.shape)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def _failing_page(series: list[tifffile.TiffPageSeries]) -> int | None:
    """The index of the first page of ``series`` whose pixels cannot be decoded, or None
    (pages sharing one IFD are not read one by one). Read only after the stack failed."""
    start = 0
    for part in series:
        n = series_n_pages(part)
        if len(part.pages) >= n:
            for k in range(n):
                try:
                    part.asarray(key=k)
                except Exception:  # noqa: BLE001 - any decoder error marks the page
                    return start + k
        start += n
    return None


def _mtime(tif: tifffile.TiffFile) -> datetime:
    stat = os.fstat(tif.filehandle.fileno())
    return datetime.fromtimestamp(stat.st_mtime, UTC)
