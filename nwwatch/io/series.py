"""Which of a TIFF's image series are read as the frames (or slices), and their shapes.

tifffile splits a file into series: one per ``TiffWriter.write`` call of its own format, one
per OME image, one for an ImageJ hyperstack, and a separate one for a reduced-resolution page
that comes first. :func:`image_series` picks the pages nwwatch reads, in file order.
"""

from __future__ import annotations

import math

import tifffile

#: Axes of samples (RGB, extra samples) and channels: refused, nwwatch reads grey images.
CHANNEL_AXES = "SC"
# tifffile's series kinds of files without OME, ImageJ or vendor metadata
_PLAIN_KINDS = frozenset({"shaped", "generic", "uniform"})


def squeezed(series: tifffile.TiffPageSeries) -> tuple[tuple[int, ...], str]:
    """Series shape and axes without singleton axes; Y and X always kept."""
    shape = series.get_shape(False)
    axes = series.get_axes(False)
    keep = [i for i, (n, a) in enumerate(zip(shape, axes, strict=True)) if n != 1 or a in "YX"]
    return tuple(shape[i] for i in keep), "".join(axes[i] for i in keep)


def image_series(
    tif: tifffile.TiffFile,
) -> tuple[list[tifffile.TiffPageSeries], list[tifffile.TiffPageSeries]]:
    """The series read as one stack of pages, in file order, and the series not read.

    The stack is the candidate with the most frames (ties: the first in the file), so that
    a survey image, an overview or a thumbnail saved before an in-situ series (not marked
    reduced) does not stand for the series. A candidate is one series of an OME, ImageJ or
    vendor file (an OME image, an ImageJ hyperstack), or, in a file without such metadata
    (tifffile kinds "shaped", "generic", "uniform"), every plain series of single-channel
    2-D pages of one page shape and pixel type: tifffile makes one series per
    ``TiffWriter.write`` call of its own (shaped) format, so a file that acquisition
    software grew one page at a time holds one series per page. A series of
    reduced-resolution pages (``NewSubfileType`` 1, e.g. a preview written before the image)
    is never read while the file holds another. Nor are the pages tifffile makes a pyramid
    level of a plain ("generic") series, being a half, third or quarter its size (pages
    written after the camera's binning changed): they are listed among the series not read,
    so that they are named.
    """
    levels = [level for s in tif.series if s.kind == "generic" for level in s.levels[1:]]
    full = [s for s in tif.series if not s.keyframe.is_reduced]
    reduced = [s for s in tif.series if s.keyframe.is_reduced] + levels
    if not full:  # nothing but reduced pages: those are the image
        full, reduced = reduced, []
    # candidates in the order of their first series: max() keeps the first of a tie
    candidates: dict[object, list[tifffile.TiffPageSeries]] = {}
    for i, series in enumerate(full):
        key = ((squeezed(series)[0][-2:], series.dtype) if _is_plain_stack(series)
               else ("series", i))
        candidates.setdefault(key, []).append(series)
    read = max(candidates.values(), key=lambda stack: sum(map(series_n_frames, stack)))
    chosen = {id(series) for series in read}
    ignored = [series for series in full if id(series) not in chosen]
    if len(read) > 1:  # (a series' pages are read only here: a long stack's are many)
        pages = [page for series in read for page in series.pages]
        indices = [getattr(page, "index", None) for page in pages]
        if all(isinstance(i, int) for i in indices) and indices != sorted(indices):
            # tifffile groups a plain file's pages by their storage (strips, compression),
            # not by runs: pages 0, 2, 4 and 1, 3, 5 were read as frames 0-5. One series a
            # page, in file order.
            read = [tifffile.TiffPageSeries([page], page.shape, page.dtype, page.axes,
                                            parent=tif, kind="generic")
                    for page in sorted(pages, key=lambda page: page.index)]
    return read, ignored + reduced


def _is_plain_stack(series: tifffile.TiffPageSeries) -> bool:
    """A series without a metadata convention, of 2-D pages on at most one stack axis."""
    shape, axes = squeezed(series)
    return (series.kind in _PLAIN_KINDS and len(axes) <= 3 and axes.endswith("YX")
            and not any(a in CHANNEL_AXES for a in axes))


def series_n_pages(series: tifffile.TiffPageSeries) -> int:
    """2-D pages in ``series`` (the product of its axes before Y)."""
    shape, axes = squeezed(series)
    return math.prod(shape[: axes.index("Y")])


def series_n_frames(series: tifffile.TiffPageSeries) -> int:
    """Images in ``series``: the product of its axes before Y but channels (a colour or
    multi-channel image is one image); 0 for a series without 2-D pages."""
    shape, axes = squeezed(series)
    if "Y" not in axes:
        return 0
    y = axes.index("Y")
    return math.prod(n for n, a in zip(shape[:y], axes[:y], strict=True)
                     if a not in CHANNEL_AXES)


def channel_hint(axes: str, shape: tuple[int, ...], imagej: bool, planar_separate: bool) -> str:
    """What to do with a series refused as channels, starting "; ". Grey pages written with
    tifffile's defaults are told how to write them: ``tifffile.imwrite(path, stack,
    imagej=True)`` declares a (N, Y, X) array as channels (Z slices of a tomogram, or
    frames), and ``tifffile.imwrite(path, stack)`` stores 3 or 4 grey frames as one RGB(A)
    image with separate planes unless given ``photometric``. Other colour pictures (samples
    per pixel) are told to give the raw single-channel data, not a picture saved as
    displayed; other channels, to save the one to measure."""
    if axes == "CYX" and imagej:
        return ("; if the pages are Z slices or frames, save them so: "
                "tifffile.imwrite(path, data, imagej=True, metadata={'axes': 'ZYX'}) "
                "(or 'TYX'), or in Fiji Image > Hyperstacks > Re-order Hyperstack")
    if axes[:1] == "S" and shape[0] in (3, 4) and planar_separate:
        return ("; a stack of 3 or 4 frames written by tifffile.imwrite without "
                "photometric='minisblack' is stored so: write it with that argument, or one "
                "file per frame")
    if "S" in axes:
        # Several samples per pixel: RGB(A) or grey with alpha, what a view saved as shown
        # on screen is, with its contrast, colour table and annotations applied.
        return ("; a colour picture is most likely the image saved as displayed (a "
                "screenshot, or 'Save as displayed' / export as picture, with the display's "
                "contrast, colour table, scale bar and annotations burnt in): give the raw "
                "single-channel data instead, the acquisition software's own file (.dm3/"
                ".dm4, .emd, .ser, read as they are) or its raw grey TIFF export (one value "
                "per pixel: 8- or 16-bit integers or 32-bit float)")
    return ("; save the one channel to measure as a grey image (Fiji: Image > Color > Split "
            "Channels, then File > Save As > Tiff of that channel)")


def tagged_pages(series: list[tifffile.TiffPageSeries]) -> list:
    """The pages of ``series`` in file order; those of a plain series (no OME, ImageJ or vendor
    metadata) each as a TiffPage with its own tags. tifffile gives the pages after the first
    of a "uniform" series (8 or more pages of one shape) as TiffFrames, which carry no tags
    but the pixels' offsets, while a plain writer stamps every page with its own DateTime and
    may change its resolution (the magnification) between pages. Pages of other series are
    as tifffile gives them: their sizes and times are the file's metadata."""
    pages: list = []
    for part in series:
        plain = part.kind in _PLAIN_KINDS
        pages += [page.aspage() if plain and isinstance(page, tifffile.TiffFrame) else page
                  for page in part.pages]
    return pages

