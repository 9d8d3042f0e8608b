"""The frames a labelling session offers: pages of TIFF files or PNG images, one stem each."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from nwwatch.label.store import safe_stem, stem_files

if TYPE_CHECKING:
    from nwwatch.io import Frame, FrameReader


@dataclass(frozen=True)
class FrameRef:
    """One frame to label: page ``page`` of ``path``, saved under ``stem``; ``info`` holds
    what the label queue knows about it (confidence, status) when it came from the queue."""

    path: Path
    page: int
    stem: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A short hash of the file's absolute path and the page: which frame this is,
        whatever its place in a session's list (a restarted session may list others)."""
        return hashlib.sha1(os.fsencode(self.path.resolve()) + f"\0{self.page}".encode()
                            ).hexdigest()[:16]


def _pages(path: Path) -> int:
    if path.suffix.lower() == ".png":
        from nwwatch.io.dataset import read_image_2d

        read_image_2d(path)  # refused now (colour, unreadable), not in the browser later
        return 1
    from nwwatch.io import inspect_tiff
    from nwwatch.io.errors import NotATiffError
    from nwwatch.io.mdoc import is_mdoc

    try:
        return inspect_tiff(path).n_pages
    except NotATiffError as exc:
        if is_mdoc(path):
            raise  # its reason names the stack to give instead
        # A notes.txt or a JPEG matched by frames/*: "not a TIFF file" alone did not say
        # what the command takes.
        raise NotATiffError(path, f"{exc.reason}; nwwatch label reads TIFF, MRC, "
                                  "DigitalMicrograph, Velox EMD or TIA series frames or "
                                  "stacks and PNG images: give only those (e.g. "
                                  "frames/*.tif)") from None


def frame_refs(paths: Sequence[str | os.PathLike[str]],
               infos: Sequence[dict[str, Any]] | None = None,
               pages: Sequence[int | None] | None = None,
               data_dir: Path | None = None) -> list[FrameRef]:
    """One :class:`FrameRef` per page of every file (or only page ``pages[i]`` of file i).

    SerialEM's ``NAME.mdoc`` named with its MRC file ``NAME`` is passed over (its metadata is
    read with the file); named alone it is refused.

    Stems are the file's stem (``_p0003`` appended for page 3 of a stack); a stem that two
    files share gets a short hash of the file's absolute path appended, and so does a stem
    that ``data_dir`` (the DATA folder) already holds for another frame (:func:`taken_by_other`):
    ``frame_00000.tif`` of a second acquisition never opens, nor overwrites, the labels saved
    for the first one's; nor does a file rewritten under its name with another frame (where
    the path's hash is taken too, a hash of the frame's pixels). A page named twice (the
    same file given twice, or a queued frame among FRAMES too) is listed once, at its first
    place (with the queue's ``info``).

    Raises
    ------
    FileNotFoundError, nwwatch.io.InputError : a file that is not a readable TIFF.
    nwwatch.io.dataset.DatasetLayoutError : a PNG that is unreadable or not one grey image.
    """
    files = OpenFiles()  # a stack whose saved pages are compared is opened once
    try:
        return _frame_refs(paths, infos, pages, data_dir, files)
    finally:
        files.close()


def _frame_refs(paths: Sequence[str | os.PathLike[str]],
                infos: Sequence[dict[str, Any]] | None, pages: Sequence[int | None] | None,
                data_dir: Path | None, files: OpenFiles) -> list[FrameRef]:
    from nwwatch.io import check_regular
    from nwwatch.io.mdoc import is_mdoc, mdoc_stack

    refs: list[FrameRef] = []
    seen: dict[str, FrameRef] = {}
    listed: set[tuple[Path, int]] = set()
    named = {os.path.abspath(p) for p in paths}
    for i, raw in enumerate(paths):
        path = Path(raw)
        if is_mdoc(path) and os.path.abspath(mdoc_stack(path)) in named:
            continue  # SerialEM's metadata named with its stack (a shell glob): read with it
        try:
            check_regular(path)  # a FIFO or a folder: refused by name, never waited on
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: frame file not found") from None
        n = _pages(path)
        wanted = [pages[i]] if pages is not None and pages[i] is not None else range(n)
        resolved = path.resolve()  # once a file: a stack lists thousands of pages
        for page in wanted:
            if (resolved, int(page)) in listed:
                continue  # named twice (overlapping globs, a queued frame given again): once
            listed.add((resolved, int(page)))
            stem = safe_stem(path.stem) + (f"_p{page:04d}" if n > 1 else "")
            if n > 1 and page == 0 and data_dir is not None and _saved_as(
                    data_dir, safe_stem(path.stem), path, files):
                # a stack that grew since its one page was saved: that frame keeps its stem
                stem = safe_stem(path.stem)
            ref = FrameRef(path, int(page), stem, dict(infos[i]) if infos else {})
            if stem in seen and _same_frame(seen[stem], ref, files):
                # the same frame under the same name in two folders (a queued copy and the
                # file its labels were saved from): listed once, as a frame named twice is
                continue
            if stem in seen or (data_dir is not None
                                and taken_by_other(data_dir, stem, path, page, files)):
                stem = other_stem(data_dir, stem, path, int(page), files)
                ref = FrameRef(path, int(page), stem, ref.info)
            seen[stem] = ref
            refs.append(ref)
    return refs


def _same_frame(a: FrameRef, b: FrameRef, files: OpenFiles) -> bool:
    """Whether two frames listed under one name hold the same pixels (read only when their
    names collide)."""
    from nwwatch.io import InputError

    try:
        first, second = read_frame(a, files)[0], read_frame(b, files)[0]
    except (OSError, ValueError, InputError):  # one unreadable: both listed, the page says why
        return False
    return same_pixels(first, second)


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two frames hold the same pixels: one shape and equal values, a NaN equal to a
    NaN (a float frame with a NaN border, as an aligned or drift-corrected frame has, is
    the frame it was saved as). The dtype is not compared: a frame's saved copy written as
    float32 by another program holds its pixels all the same."""
    if a.shape != b.shape:
        return False
    # equal_nan only where a NaN can be: an integer frame's pixels are compared as they are
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc" or b.dtype.kind in "fc"))


def other_stem(data_dir: Path | None, base: str, path: Path, page: int, files: OpenFiles,
               pixels: np.ndarray | None = None) -> str:
    """The stem of page ``page`` of ``path`` where ``base`` is another frame's: ``base`` and a
    short hash of the file's absolute path, or, where DATA holds that for another frame too
    (the file rewritten with another frame again), a hash of the frame's ``pixels`` (read
    from the file when None)."""
    stem = f"{base}_{hashlib.sha1(os.fsencode(path.resolve())).hexdigest()[:6]}"
    if data_dir is not None and taken_by_other(data_dir, stem, path, page, files, pixels):
        if pixels is None:
            pixels = read_frame(FrameRef(path, page, base), files)[0]
        stem = f"{base}_{hashlib.sha1(pixels.tobytes()).hexdigest()[:6]}"
    return stem


def _saved_as(data_dir: Path, stem: str, path: Path, files: OpenFiles) -> bool:
    """Whether DATA holds page 0 of ``path`` saved as ``stem`` (its image, those pixels)."""
    return bool(stem_files(Path(data_dir) / "images", stem)) and not taken_by_other(
        data_dir, stem, path, 0, files)


def taken_by_other(data_dir: Path, stem: str, path: Path, page: int, files: OpenFiles,
                   pixels: np.ndarray | None = None, unreadable_taken: bool = True) -> bool:
    """Whether DATA holds ``stem`` for another frame than page ``page`` of ``path``: its saved
    image is not this frame's pixels (the same frame moved to another folder is the same
    frame; a file rewritten with another frame under its name is another), or, with no
    image saved, its geometry names another source file or page (a relative source path is
    taken from the current folder, as the command's own paths are). A stem in ``images/``
    without a geometry file (a folder written by other means, its image a TIFF or a PNG) is
    taken too, unless it holds this frame's pixels (``pixels``: this frame's as shown, read
    from the file when None). A geometry file that does not read, without an image, is taken
    unless ``unreadable_taken`` is False."""
    images = stem_files(Path(data_dir) / "images", stem)
    geometry_file = Path(data_dir) / "geometry" / f"{stem}.json"
    if not images and not geometry_file.exists():
        return False
    same_source = False
    try:
        source = json.loads(geometry_file.read_text()).get("source") or {}
        same_source = (Path(str(source.get("path"))).resolve() == path.resolve()
                       and int(source.get("page", 0)) == page)
    except (OSError, ValueError, TypeError, AttributeError):
        # no or broken geometry: the pixels decide
        same_source = not unreadable_taken and not images
    if not images:
        return not same_source
    try:
        saved = read_frame(FrameRef(images[0], 0, stem))[0]
        mine = pixels if pixels is not None else read_frame(FrameRef(path, page, stem), files)[0]
    except Exception:  # noqa: BLE001 - an unreadable saved image is not this frame's
        return not same_source
    return not same_pixels(saved, mine)


class FramePixels(NamedTuple):
    """One frame as the labelling tool keeps it."""

    image: np.ndarray  #: (H, W) in the file's dtype
    pixel_size_nm: float | None
    #: UTC, from the file's metadata; None when only its modification time is known (a PNG,
    #: a TIFF without a time), which is not written into DATA as an acquisition time
    acquired_at: datetime | None


class OpenFiles:
    """The frame files a labelling session reads from, each kept open as a
    :class:`nwwatch.io.FrameReader` (a TIFF's metadata of every page read once) while it is
    unchanged on disk: turning the pages of a long stack reads one page each, not the
    metadata of all of them. The ``keep`` files used last stay open (a session over
    thousands of single-frame files does not hold thousands open); one written, replaced or
    removed since it was opened is opened again. Not for use from several threads at once
    (:class:`nwwatch.label.server.LabelSession` reads under its lock)."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self._readers: dict[Path, FrameReader] = {}  # the one used last, last

    def frame(self, path: Path, index: int) -> Frame:
        """Frame ``index`` of ``path`` (:meth:`nwwatch.io.FrameReader.frame`)."""
        from nwwatch.io import FrameReader

        reader = self._readers.pop(path, None)
        if reader is not None and reader.changed():
            reader.close()
            reader = None
        if reader is None:
            reader = FrameReader(path)
            while len(self._readers) >= self.keep:
                self._readers.pop(next(iter(self._readers))).close()
        self._readers[path] = reader
        return reader.frame(index)

    def close(self) -> None:
        """Close every file kept open."""
        while self._readers:
            self._readers.popitem()[1].close()


def read_frame(ref: FrameRef, files: OpenFiles | None = None) -> FramePixels:
    """One frame's pixels, pixel size and acquisition time, read through ``files`` (else
    from the file opened for this frame alone).

    Raises
    ------
    FileNotFoundError : the file is gone (removed or renamed after the frames were listed);
        the message names it.
    nwwatch.io.InputError : a TIFF that cannot be read now, or has no page ``ref.page`` any
        more (rewritten with fewer pages).
    nwwatch.io.dataset.DatasetLayoutError : a PNG that cannot be read now.
    """
    from nwwatch.io import InputError

    if not ref.path.exists():  # (tifffile's own words name neither the frame nor the cause)
        raise FileNotFoundError(f"{ref.path}: frame file not found (removed or renamed after "
                                "the labelling started?)")
    if ref.path.suffix.lower() == ".png":
        from nwwatch.io.dataset import read_image_2d

        return FramePixels(read_image_2d(ref.path), None, None)
    from nwwatch.io import PageIndexError, read_frame_at

    try:
        # Only this page's pixels: a long stack is not read whole at every opening.
        frame = (read_frame_at(ref.path, ref.page) if files is None
                 else files.frame(ref.path, ref.page))
    except PageIndexError as exc:
        raise InputError(ref.path, f"{exc.reason}: the file changed after the labelling "
                                   "started") from None
    # A page of a file read whole (a TIFF whose pages share one IFD and not one block of
    # pixels) is a view of its stack: copied, so that the frames the session keeps
    # (LabelSession.image) hold one page each.
    base = frame.image.base
    whole = isinstance(base, np.ndarray) and base.nbytes > frame.image.nbytes
    image = frame.image.copy() if whole else frame.image
    return FramePixels(image, frame.pixel_size_nm,
                       frame.acquired_at if frame.acquired_at_source == "metadata" else None)
