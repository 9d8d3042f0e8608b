"""``nwwatch measure``: contact angles of label images (e.g. human annotations), or of raw
frames segmented with a model, to Parquet.

One row per image (per page for a multi-page TIFF), in the frame-row schema the daemon writes
(``nwwatch.results.schema.frame_schema``), so human and model measurements compare directly.
Given a raw frame, it segments it with the service's model and normalisation first, so "why
did this frame fail?" is one command. Optional overlays show every fit on its frame.
"""

from __future__ import annotations

import codecs
import os
import re
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click
import numpy as np

from nwwatch import DEFAULT_INSITU_MODEL, __version__
from nwwatch.atomic import atomic_write
from nwwatch.classes import (
    DROPLET,
    INSITU_CLASSES,
    NANOWIRE,
    UNLABELED,
    UnsureBandError,
    fill_unsure_band,
    interpolated_rim_problem,
    missing_class,
)
from nwwatch.io import Frame, FrameReader, ImageTooLargeError, InputError, inspect_tiff
from nwwatch.io.dataset import (
    IMAGE_SUFFIXES,
    JPEG_NAMED_PNG,
    DatasetLayoutError,
    colour_label_mask_reason,
    indexed_png_palette,
    label_values_problem,
    read_pages,
    read_tiff_frames,
    starts_as_jpeg,
)
from nwwatch.io.dm import DM_SUFFIXES
from nwwatch.io.emd import EMD_SUFFIXES
from nwwatch.io.errors import MultichannelError, PageIndexError, check_page_index
from nwwatch.io.limits import MAX_PLAUSIBLE_PIXEL_SIZE_NM, MIN_PLAUSIBLE_PIXEL_SIZE_NM
from nwwatch.io.mdoc import is_mdoc, mdoc_stack
from nwwatch.io.mrc import MRC_SUFFIXES
from nwwatch.io.png import (
    PICTURE_PNG_PARAMS,
    decode_image_file,
    encode_image,
    low_grey_bit_depth,
)
from nwwatch.io.ser import SER_SUFFIXES
from nwwatch.logsetup import held_events
from nwwatch.measure.components import select_components
from nwwatch.measure.contact_angle import measure_contact_angle
from nwwatch.measure.exchanged import OtherBackground, angle_if_exchanged, background_not_zero
from nwwatch.measure.overlay import draw_overlay
from nwwatch.measure.result import MEASUREMENT_FIELDS, MEASUREMENT_VERSION
from nwwatch.options import FiniteFloatRange, InputFile, OutputFile, model_file, say
from nwwatch.pathtext import path_text

#: the frames --images pairs with a label file: every format measure reads, TIFF and PNG first
_FRAME_SUFFIXES = IMAGE_SUFFIXES + DM_SUFFIXES + EMD_SUFFIXES + MRC_SUFFIXES + SER_SUFFIXES

def _listed(suffixes: tuple[str, ...]) -> str:
    return ", ".join(suffixes)


#: said of a file of any other name (tried as a TIFF and refused)
_FORMATS_READ = (
    f"measure reads TIFF ({_listed(IMAGE_SUFFIXES[:2])}), PNG (.png), "
    f"MRC ({_listed(MRC_SUFFIXES)}), DigitalMicrograph ({_listed(DM_SUFFIXES)}), "
    f"Velox EMD ({_listed(EMD_SUFFIXES)}) and TIA series ({_listed(SER_SUFFIXES)}) files")
#: ``--read-as auto`` takes an integer image with at most this many distinct values (0, 1, 2
#: and perhaps 255) for a label image; a raw TEM frame has many grey levels.
_LABEL_MAX_VALUES = 4
#: ``--read-as auto`` refuses as a damaged mask an image whose :data:`_LABEL_MAX_VALUES` most
#: common grey values hold at least this share of its pixels: lossy compression (JPEG) or
#: resizing with interpolation leaves a mask's areas at their values and scatters values only
#: along its edges (masks so damaged: 0.94-0.99); a TEM frame's noise spreads its pixels over
#: many values (our real crops and figure frames: at most 0.23).
_DAMAGED_MASK_SHARE = 0.9
#: The values of a label image: class ids 0, 1, 2, and 255 unlabeled.
_LABEL_VALUES = (0, NANOWIRE, DROPLET, UNLABELED)
#: ``--read-as auto`` takes an integer image of class ids (:data:`_LABEL_VALUES` on
#: :data:`_DAMAGED_MASK_SHARE` of its pixels or more) with areas (3 x 3 pixels or more) of at
#: most this many other values for a label image painted with a wrong value (a brush left at
#: 3 or 7); it is refused naming them. JPEG compression or resizing scatters a mask's other
#: values along its edges, and a low-dose frame's counts everywhere.
_PAINTED_MAX_VALUES = 4


class LabelFileError(click.ClickException):
    """An input file that cannot be measured: names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # else unpickling calls __init__(message) and fails
        return (type(self), (self.path, self.reason))


def _read_pages(path: Path) -> list[np.ndarray]:
    return [frame.image for frame in _read_frames(path, as_labels=True)]


def _read_frames(path: Path, as_labels: bool | None = False) -> list[Frame]:
    """The pages of ``path`` as frames. A TIFF is read by :func:`nwwatch.io.read_frames`,
    as the service reads it: the same refusals, the file's pixel size and acquisition times.
    A PNG (label images) has neither: pixel size None, acquired at the file's mtime.
    ``as_labels`` (True: read as labels; None: either, ``--read-as auto``) gives a colour
    TIFF of a label mask's few colours the label mask's advice
    (:func:`nwwatch.io.dataset.colour_label_mask_reason`), not the frame's."""
    if path.is_symlink() and not path.exists():  # named by a shell glob, its target gone
        raise LabelFileError(path, f"a symbolic link to {os.fsdecode(os.readlink(path))!r}, "
                                   "which does not exist")
    try:
        if path.suffix.lower() != ".png":
            return read_tiff_frames(path)
        pages = read_pages(path)
        depth = low_grey_bit_depth(path)
        if depth in (2, 4):
            # class ids stored in 2 or 4 bits (a PNG optimiser's lossless choice) decode
            # scaled to 0..255 (0, 85, 170); read as stored, as train and evaluate read them.
            # A 1-bit image stays 0/255: two classes at most, refused as a 0/255 mask.
            pages = (pages // (255 // (2 ** depth - 1))).astype(np.uint8)
    except DatasetLayoutError as exc:
        # a colour TIFF, or a colour PNG (the PNG reader's own reason)
        if (isinstance(exc.__cause__, MultichannelError)
                or exc.reason.startswith("colour image")):
            picture = _picture_reason(path)
            if picture is not None:  # "save it as greyscale" would be no help
                raise LabelFileError(path, picture) from None
            if _picture_name(path):  # named so, yet not drawn so: a colour mask, perhaps
                raise LabelFileError(path, f"{exc.reason}; if it is an nwwatch overlay "
                                           "picture cut short of its caption band, give the "
                                           "label image or frame it was drawn from") from None
        colour = (colour_label_mask_reason(path, as_labels)
                  if isinstance(exc.__cause__, MultichannelError) else None)
        if colour is not None:  # a colour mask: the frame's advice (the raw file) is no help
            raise LabelFileError(path, colour) from None
        if isinstance(exc.__cause__, ImageTooLargeError) and _sound_structure(path):
            # a recording too long to hold whole, which replay reads a chunk at a time
            raise LabelFileError(path, f"{exc.reason}; `nwwatch replay {path} --out RESULTS` "
                                       "processes it a chunk of pages at a time where its "
                                       "layout allows (docs/io.md)") from None
        # an .mdoc's reason says what to give instead
        known = path.suffix.lower() in _FRAME_SUFFIXES or is_mdoc(path)
        # e.g. a JPEG: any other name is tried as a TIFF, so say which formats are read
        jpeg = (" (a JPEG mask: its lossy compression changed the class ids along every "
                "edge, so save the mask losslessly, as PNG; a JPEG frame: convert it to PNG)"
                if path.suffix.lower() in (".jpg", ".jpeg") else "")
        raise LabelFileError(path, exc.reason if known else f"{exc.reason}; {_FORMATS_READ}"
                                                            f"{jpeg}") from None
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return [Frame(image=page, index=i, source=path, pixel_size_nm=None, acquired_at=mtime,
                  acquired_at_source="mtime") for i, page in enumerate(pages)]


def _picture_name(path: Path) -> bool:
    """Whether ``path`` is named as nwwatch names its QA pictures (the service's or replay's
    overlay, or measure's ``_overlay.png``)."""
    from nwwatch.results.pictures import qa_picture_labels_name

    return qa_picture_labels_name(path.name) is not None or bool(
        _PICTURE_NAME.search(path.name))


#: A caption band (:func:`nwwatch.measure.draw_overlay`) is at least this many rows: one
#: line of text at the smallest caption scale and its margin.
_CAPTION_MIN_ROWS = 12
#: ... and its anti-aliased text holds at least this many grey (or red) levels; a colour
#: label mask's bottom rows hold a colour or two.
_CAPTION_MIN_LEVELS = 16
#: The caption's text starts int(8 * scale) columns in (scale at least 0.6) on black, its
#: dark box 2 px before: these first columns of every band row are black.
_CAPTION_MARGIN_COLS = 4
#: Below its last line of text the band keeps int(10 * scale) rows (at least 6), of which
#: the descenders of its smallest text leave at least 4 black; 3 asked, AA's margin.
_CAPTION_BOTTOM_BLACK_ROWS = 3


def _has_caption_band(path: Path) -> bool:
    """Whether the colour PNG at ``path`` ends in the caption band nwwatch draws below every
    overlay picture (:func:`nwwatch.measure.overlay._with_caption`): rows of white or red
    anti-aliased text on black, their left margin black, the last rows black. Only those rows
    are read: a colour label mask with class 0 (black) in its bottom rows and anti-aliased
    shapes above them is no band."""
    try:
        image = decode_image_file(path)
    except OSError:
        return False
    if image is None or image.ndim != 3 or image.shape[-1] < 3 or image.dtype != np.uint8:
        return False
    blue, green, red = (image[..., i].astype(np.int16) for i in range(3))
    text = (blue == green) & ((red == blue) | (blue == 0))  # grey, or red on black
    margin = ~image[:, :_CAPTION_MARGIN_COLS, :3].any(axis=(1, 2))
    rows = text.all(axis=1) & margin
    band_rows = len(rows) - (int(np.flatnonzero(~rows)[-1]) + 1 if not rows.all() else 0)
    if (band_rows < _CAPTION_MIN_ROWS
            or image[-_CAPTION_BOTTOM_BLACK_ROWS:, :, :3].any()):
        return False
    levels = np.unique(red[len(rows) - band_rows:])
    return levels.size - int(levels[0] == 0) >= _CAPTION_MIN_LEVELS


def _picture_reason(path: Path) -> str | None:
    """Why ``path``, a colour image, is not measured when it is one of nwwatch's QA pictures
    (named as the service's or replay's overlay, or measure's ``_overlay.png``, and with
    their caption band: a colour label mask may be saved under such a name): what to give
    instead; None for any other image."""
    from nwwatch.results.pictures import qa_picture_labels_name

    if not _picture_name(path) or not _has_caption_band(path):
        return None
    labels = qa_picture_labels_name(path.name)
    if labels is None:
        return ("an nwwatch measure overlay picture (--overlays), not a frame or a label "
                "image; give the label image or frame it was drawn from")
    what = ("an nwwatch QA picture (the overlay the service or replay --overlays drew), not "
            "a frame or a label image")
    saved = path.with_name(labels)
    if saved.is_file():
        return (f"{what}; give its {saved}, which --save-labels writes beside it (with "
                "--images FRAMES for its frame)")
    return (f"{what}; no label image was saved beside it ({saved} is written by replay "
            "--save-labels): measure the frame it was drawn on, which the model segments "
            "(--model MODEL for the one that drew the picture), or replay it with "
            "--save-labels and give that label image")


def _sound_structure(path: Path) -> bool:
    """Whether ``path`` passes its structural check (:func:`nwwatch.io.inspect_tiff`): a file
    refused as too large only when read whole."""
    try:
        inspect_tiff(path)
    except (InputError, OSError):
        return False
    return True


def looks_like_labels(pages: list[np.ndarray]) -> bool:
    """True for pages with at most a handful of distinct values (NaN one of them), class ids
    or not (a float mask in another numbering, Fiji's 0/127/255, is refused as labels naming
    its values rather than segmented as a picture of labels), and for integer pages of class
    ids painted with a few other values (:func:`painted_labels`)."""
    return all(np.unique(p).size <= _LABEL_MAX_VALUES or painted_labels(p) for p in pages)


def painted_labels(page: np.ndarray) -> bool:
    """True for an integer page (H, W) of class ids with areas of a few other values
    (:data:`_PAINTED_MAX_VALUES`): a label image with a wrong value painted in, which
    :func:`read_labels` refuses naming the values that are not class ids."""
    if not np.issubdtype(page.dtype, np.integer) or page.ndim != 2 or min(page.shape) < 3:
        return False
    values, counts = np.unique(page, return_counts=True)
    is_id = np.isin(values, _LABEL_VALUES)
    others = values[~is_id]
    if not 0 < others.size <= _PAINTED_MAX_VALUES or (
            counts[is_id].sum() < _DAMAGED_MASK_SHARE * page.size):
        return False
    # an area: a pixel of another value whose 8 neighbours hold the same value
    inner = page[1:-1, 1:-1]
    area = ~np.isin(inner, _LABEL_VALUES)
    height, width = page.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                area &= inner == page[1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx]
    return bool(area.any())


def damaged_mask_problem(page: np.ndarray) -> str | None:
    """Why ``page`` (H, W) reads as a label image damaged by lossy compression or
    interpolation rather than as a frame, or None: its few most common grey values hold
    nearly all its pixels (:data:`_DAMAGED_MASK_SHARE`)."""
    values, counts = np.unique(page, return_counts=True)
    top = np.argsort(counts)[::-1][:_LABEL_MAX_VALUES]
    share = float(counts[top].sum()) / page.size
    if values.size <= _LABEL_MAX_VALUES or share < _DAMAGED_MASK_SHARE:
        return None
    areas = np.sort(values[top][counts[top] >= 0.01 * page.size])  # named: 1 % or more
    held = ", ".join(f"{v:g}" for v in areas)
    return (f"reads as a damaged mask, not a frame: {100 * share:.1f} % of its pixels "
            f"hold its {len(top)} most common grey values (areas of {held}) and the rest "
            f"{values.size - len(top)} other values, as JPEG compression or resizing with "
            "interpolation leaves a mask; export the mask again losslessly (PNG or TIFF) at "
            "its frame's size; a frame of so few grey levels (a blank or very low-dose "
            "frame) is measured with --read-as frames")


def _float_class_ids(page: np.ndarray) -> bool:
    """A float page whose every value is one of the class ids 0, 1, 2 or 255 (exactly)."""
    return page.dtype.kind == "f" and bool(np.isin(page, _LABEL_VALUES).all())


def read_labels(path: Path, pages: list[np.ndarray] | None = None
                ) -> tuple[list[np.ndarray], list[int]]:
    """Label pages of ``path`` (PNG or TIFF) as uint8 (H, W) arrays with values in {0, 1, 2}
    (``pages``: the file's pages when already read), and per page how many unlabeled (255)
    pixels were given the class of the nearest labeled pixel
    (:func:`nwwatch.classes.fill_unsure_band`, which says when they cannot be)."""
    if path.suffix.lower() == ".png" and starts_as_jpeg(path):
        raise LabelFileError(path, JPEG_NAMED_PNG)  # its edge ids look like another cause
    pages = _read_pages(path) if pages is None else pages
    out = []
    filled_px = []
    for page in pages:
        # which page of a stack is at fault (the whole file is skipped)
        page_said = f"page {len(out)}: " if len(pages) > 1 else ""
        if _float_class_ids(page):
            page = page.astype(np.uint8)  # exact: 0.0, 1.0, 2.0 and 255.0 only
        if not np.issubdtype(page.dtype, np.integer):
            values = np.unique(page)  # NaN once
            shown = ", ".join("NaN" if np.isnan(v) else f"{v:g}"
                              for v in values[:_LABEL_MAX_VALUES + 1])
            more = f" and {values.size - _LABEL_MAX_VALUES - 1} more" \
                if values.size > _LABEL_MAX_VALUES + 1 else ""
            raise LabelFileError(path, f"{page_said}labels must be class ids 0 background, "
                                       f"1 nanowire, 2 droplet (255 unlabeled), got a "
                                       f"{page.dtype} image of the values {shown}{more}; save "
                                       "the label image as uint8 with those ids")
        bad = np.setdiff1d(np.unique(page), [0, NANOWIRE, DROPLET])
        filled_px.append(0)
        if bad.size == 1 and bad[0] == UNLABELED:
            page = page.astype(np.uint8)
            try:  # as evaluate measures a DATA folder's labels: one rule
                filled = fill_unsure_band(page)
            except UnsureBandError as exc:
                raise LabelFileError(
                    path, f"labels must be 0 background, 1 nanowire, 2 droplet; {page_said}{exc}"
                ) from None
            filled_px[-1] = int(np.count_nonzero(page == UNLABELED))
            page = filled
        elif bad.size:
            # as the DATA readers say it; which of another tool's ids means which class is the
            # user's to say, not guessed
            values, counts = np.unique(page, return_counts=True)
            raise LabelFileError(path, page_said + label_values_problem(
                values, len(INSITU_CLASSES), counts))
        rim = interpolated_rim_problem(page)
        # a noise-like label map (a model gone wrong) gets its labels_noisy row: its wire
        # pixels between droplet and background are noise, not an interpolated rim
        if rim and select_components(page.astype(np.uint8)).reason_code == "labels_noisy":
            rim = None
        if rim:  # else a wire rim around the droplet moves or refuses the angle, unexplained
            raise LabelFileError(path, page_said + rim)
        out.append(page.astype(np.uint8))
    return out, filled_px


def _acquisition_frames(images: Path) -> list[Path]:
    """The files measure reads as frames in ``images`` and, where it is a Gatan In-Situ
    recording (or one of its Hour_NN/Minute_NN/Second_NN folders), in its time tree
    (:func:`nwwatch.paths.acquisition_of`: the service's acquisition of each file); other
    sub-folders hold other acquisitions and are not searched."""
    from nwwatch.paths import acquisition_named, acquisition_of, is_time_tree_folder

    top = os.path.abspath(images)
    recording = acquisition_named(top)
    found = []
    for folder, subfolders, files in os.walk(top):
        subfolders[:] = sorted(d for d in subfolders if is_time_tree_folder(d))
        for name in files:
            path = Path(folder) / name
            if (path.suffix.lower() in _FRAME_SUFFIXES
                    and (folder == top or acquisition_of(str(path)) == recording)
                    and path.is_file()):
                found.append(path)
    return found


class _SavedLabelFrames:
    """The frames in ``--images`` that label images saved by the service or replay
    (``--save-labels``) were drawn on, for one ``measure`` run.

    The folder is listed once (:func:`_acquisition_frames`); each candidate's sha256 is
    computed once; and a frame is read alone, by :class:`nwwatch.io.FrameReader`, from the
    file last asked for, kept open: the labels of a stack's pages come one after another,
    and each would otherwise hash the stack and decode all its pages again, and a recording
    too long to read whole would give its labels no frame."""

    def __init__(self, images: Path) -> None:
        self.images = images
        self._named: dict[str, list[Path]] | None = None
        self._sha256: dict[Path, str] = {}
        self._reader: tuple[Path, FrameReader, list[dict]] | None = None
        #: the readers' ``io.pixel_size_ignored`` events of the files frames were served from
        #: since last taken (:meth:`take_events`): said once per label, as a whole read said
        #: them, though the file is opened once
        self.events: list[dict] = []

    def named(self, stem: str) -> list[Path]:
        """The files whose stem, made safe as a picture's name makes it
        (:func:`nwwatch.results.pictures.picture_file_stem`), is ``stem``, sorted."""
        from nwwatch.results.pictures import picture_file_stem

        if self._named is None:
            self._named = {}
            for path in _acquisition_frames(self.images):
                self._named.setdefault(picture_file_stem(path), []).append(path)
        return sorted(self._named.get(stem, []))

    def sha256(self, path: Path) -> str:
        """The file's sha256, computed once."""
        from nwwatch.filehash import file_sha256

        if path not in self._sha256:
            self._sha256[path] = file_sha256(path)
        return self._sha256[path]

    def frame(self, path: Path, page: int) -> Frame:
        """Page ``page`` of ``path``, read alone; the file's ``io.pixel_size_ignored`` events
        added to :attr:`events`. Raises PageIndexError where the file has no such page,
        LabelFileError where it cannot be read."""
        if path.suffix.lower() == ".png":  # a PNG frame: one page, read as measure reads it
            frames = _read_frames(path)
            check_page_index(path, page, len(frames))
            return frames[page]
        if self._reader is None or self._reader[0] != path:
            self.close()
            try:
                with held_events("io.pixel_size_ignored") as opened:  # read when opened
                    reader = FrameReader(path)
            except InputError as exc:
                raise LabelFileError(Path(exc.path), exc.reason) from None
            except FileNotFoundError:
                raise LabelFileError(path, "file not found") from None
            self._reader = (path, reader, opened)
        _, reader, opened = self._reader
        try:
            # an MRC file's header and .mdoc are read with its first frame, not when opened
            with held_events("io.pixel_size_ignored") as read:
                frame = reader.frame(page)
        except PageIndexError:
            raise
        except InputError as exc:
            raise LabelFileError(Path(exc.path), exc.reason) from None
        finally:
            opened.extend(e for e in read if e not in opened)
            self.events.extend(opened)
        return frame

    def take_events(self) -> list[dict]:
        """:attr:`events`, emptied."""
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        """Close the file kept open."""
        if self._reader is not None:
            self._reader[1].close()
            self._reader = None


def _pages_named(path: Path, n_pages: int) -> str:
    """``path[0]``, or ``path[0..k]`` for the pages of a multi-page label file."""
    return f"{path}[0]" if n_pages == 1 else f"{path}[0..{n_pages - 1}]"


def _without_frame(label_frames: list[Frame] | None, overlays: bool,
                   pixel_size_nm: float | None) -> str:
    """What a label file measured without its frame from --images gets instead of the
    frame's: its overlay on the labels (with --overlays), no pixel size (where neither the
    file nor --pixel-size-nm gives one), and its own time (a PNG: its mtime)."""
    told = []
    if overlays:
        told.append("its overlay is drawn on the labels")
    frames = label_frames or []
    if pixel_size_nm is None and not any(f.pixel_size_nm is not None for f in frames):
        told.append("its row has no pixel size (the *_nm columns are null; --pixel-size-nm "
                    "gives one)")
    if frames and frames[0].acquired_at_source == "mtime":
        told.append("its acquired_at is the label file's modification time, not the "
                    "frame's acquisition time")
    elif frames:
        told.append("its acquired_at is the label file's own, not the frame's")
    return "measured without its frame" + (": " + "; ".join(told) if told else "")


def _other_shape_warning(labels: str, frame: str, frame_shape: tuple[int, ...],
                         labels_shape: tuple[int, ...], pixel_size_nm: float | None,
                         label_frames: list[Frame] | None = None,
                         overlays: bool = False) -> str:
    """The warning for labels (``labels``: ``path[page]``) of another shape than their frame
    (a mask resized, or drawn on a resized copy): its pixels are not the frame's, so the
    frame's pixel size is not used; a --pixel-size-nm given is applied to the labels' pixels,
    and the warning says how their size compares with the frame's pixels."""
    said = (f"warning: {labels}: its frame {frame} has shape {frame_shape}, labels "
            f"{labels_shape}; {_without_frame(label_frames, overlays, pixel_size_nm)}")
    if pixel_size_nm is None:
        return f"{said} (the frame's pixel size is not the labels')"
    # a labels' pixel spans frame/labels frame pixels along each axis
    rows, cols = (f / n for f, n in zip(frame_shape[:2], labels_shape[:2], strict=True))
    if abs(rows - cols) <= 0.01 * max(rows, cols):
        size = (f"{rows:.3g}x the frame's (the labels are {1 / rows:.3g}x its size): if "
                f"{pixel_size_nm:g} nm is the frame's pixel size, give --pixel-size-nm "
                f"{pixel_size_nm * rows:.4g} for these labels")
    else:
        size = (f"{rows:.3g}x the frame's along rows and {cols:.3g}x along columns (not "
                "square: its *_nm columns mix the two); resize the labels to the frame's "
                "shape with nearest-neighbour interpolation")
    return (f"{said}; --pixel-size-nm {pixel_size_nm:g} applied to the labels' pixels, which "
            f"are {size}")


def _saved_labels_frame(saved_frames: _SavedLabelFrames, path: Path,
                        labels: list[np.ndarray], pixel_size_nm: float | None = None,
                        label_frames: list[Frame] | None = None, overlays: bool = False
                        ) -> list | None:
    """The frame a label image saved by the service or replay (``--save-labels``:
    ``{stem}-{sha12}-{model8}-m{version}-p{page}-labels.png``) was drawn on: that page of
    the file in ``--images`` (or the time tree of the Gatan In-Situ recording it names) whose
    stem the name carries and whose content hash starts with its ``sha12``, as a one-item
    list, or [None] with a warning naming the labels and page, why, and what the row gets
    instead; None when the name is not such a picture's."""
    from nwwatch.results.pictures import saved_labels_of

    saved = saved_labels_of(path.name)
    if saved is None:
        return None
    stem, sha12, page = saved
    images = saved_frames.images
    named_as = _pages_named(path, len(labels))
    instead = _without_frame(label_frames, overlays, pixel_size_nm)
    # the picture's name carries the stem made safe (odd characters as _, 80 at most)
    named = saved_frames.named(stem)
    # every acquisition of a synthetic video names its frames alike: the content decides
    same = [p for p in named if saved_frames.sha256(p).startswith(sha12)]
    if not same:
        other = (f" ({', '.join(p.name for p in named[:3])} there holds other content: "
                 "not the frame these labels were saved from)" if named else "")
        say(f"warning: {named_as}: no frame named {stem} whose sha256 starts {sha12} in "
            f"{images}{other}; {instead}", err=True)
        return [None]
    if len(labels) != 1:
        say(f"warning: {named_as}: {len(labels)} pages, a saved label image holds one; "
            f"{instead}", err=True)
        return [None] * len(labels)
    try:
        frame = saved_frames.frame(same[0], page)
    except PageIndexError as exc:
        say(f"warning: {named_as}: its name names page {page} of {same[0]}, which has "
            f"{exc.n_pages} page(s); {instead}", err=True)
        return [None]
    except LabelFileError as exc:
        say(f"warning: {named_as}: its frame cannot be read ({exc.format_message()}); "
            f"{instead}", err=True)
        return [None]
    if frame.image.shape != labels[0].shape:
        say(_other_shape_warning(named_as, f"{same[0]} page {page}", frame.image.shape,
                                 labels[0].shape, pixel_size_nm, label_frames, overlays),
            err=True)
        return [None]
    return [frame]


def _grey_frames(saved_frames: _SavedLabelFrames | None, path: Path,
                 labels: list[np.ndarray], pixel_size_nm: float | None = None,
                 label_frames: list[Frame] | None = None, overlays: bool = False) -> list:
    """The frames a label file's pages were drawn on: page k of the grey image with the same
    stem in ``--images`` (``saved_frames.images``; for a label image the service saved,
    ``--save-labels``: the page of the file its name names, :func:`_saved_labels_frame`), or
    None per page (a warning names the label file and pages, says why and what the rows get
    instead: ``label_frames``, the file's own, ``overlays``: whether --overlays was given;
    all None without ``--images``). They are the overlays' backgrounds, and their pixel size
    and time are the labels' when the shapes match (``pixel_size_nm``: --pixel-size-nm,
    which a warning of another shape names)."""
    none: list = [None] * len(labels)
    if saved_frames is None:
        return none
    saved = _saved_labels_frame(saved_frames, path, labels, pixel_size_nm, label_frames,
                                overlays)
    if saved is not None:
        return saved
    images = saved_frames.images
    stem = path.stem
    named_as = _pages_named(path, len(labels))
    instead = _without_frame(label_frames, overlays, pixel_size_nm)
    for suffix in _FRAME_SUFFIXES:
        candidate = images / f"{stem}{suffix}"
        if candidate.exists():
            try:
                frames = _read_frames(candidate)
            except LabelFileError as exc:  # an overlay's background: not worth the run
                say(f"warning: {named_as}: its frame cannot be read "
                    f"({exc.format_message()}); {instead}", err=True)
                return none
            if len(frames) != len(labels):  # page k of the labels is not drawn on another frame
                say(f"warning: {named_as}: its frame {candidate} has {len(frames)} page(s), "
                    f"the labels {len(labels)}; {instead}", err=True)
                return none
            if frames[0].image.shape != labels[0].shape:
                # a resized mask's pixels are not the frame's: its size would be wrong
                say(_other_shape_warning(named_as, str(candidate), frames[0].image.shape,
                                         labels[0].shape, pixel_size_nm, label_frames,
                                         overlays), err=True)
                return none
            return frames
    # e.g. labels named frame_mask.png beside frame.tif: said, not paired by a guess
    near = sorted(p.name for p in images.iterdir()
                  if p.suffix.lower() in _FRAME_SUFFIXES and stem.startswith(p.stem))
    named = f" ({', '.join(near[:3])} there: name the labels after their frame)" if near else ""
    say(f"warning: {named_as}: no {stem}.tif, .tiff or .png (or {stem} in another format "
        f"measure reads) in {images}{named}; {instead}", err=True)
    return none


#: the metadata a reader's ``io.pixel_size_ignored`` event names as its ``source``
_CALIBRATION_SOURCES = {
    "tags": "TIFF resolution tags", "imagej": "ImageJ metadata", "ome": "OME metadata",
    "fei": "FEI metadata", "jeol": "JEOL metadata", "emd": "Velox EMD metadata",
    "ser": "SER calibration", "dm": "DM calibration", "mrc": "MRC header", "mdoc": ".mdoc file",
}


def _pixel_size_used(option_nm: float | None, frame: Frame,
                     grey: Frame | None) -> tuple[float | None, str]:
    """(the pixel size a page is measured with, where it comes from: "--pixel-size-nm" or the
    file that declares it; None, "" for none)."""
    if option_nm is not None:
        return option_nm, "--pixel-size-nm"
    if frame.pixel_size_nm is not None:
        return frame.pixel_size_nm, str(frame.source)
    if grey is not None and grey.pixel_size_nm is not None:
        return grey.pixel_size_nm, str(grey.source)
    return None, ""


def _ignored_calibrations(path: Path, events: list[dict],
                          sizes_nm: list[tuple[float | None, str]]) -> list[str]:
    """One warning line per file whose calibration the readers ignored (``events``: their
    ``io.pixel_size_ignored`` events while ``path`` and its --images frame were read), naming
    what was ignored and the pixel size ``path``'s pages are measured with instead. The log
    said it as a raw JSON line per axis and page."""
    ignored: dict[str, dict[tuple[str, str], list[str]]] = {}
    lines = []
    for event in events:
        if event.get("sections"):
            # an .mdoc's per-section sizes against the header (io/mdoc.py): its reason says
            # which sections get which size; it is no single size used "instead"
            lines.append(f"warning: {event.get('path', path)}: {event.get('reason', '')}")
            continue
        axes = ignored.setdefault(str(event.get("path", path)), {}).setdefault(
            (str(event.get("source", "")), str(event.get("reason", ""))), [])
        if event.get("axis") and event["axis"] not in axes:
            axes.append(str(event["axis"]))
    used: list[str] = []
    for size_nm, origin in dict.fromkeys(sizes_nm):
        used.append("without a pixel size, in pixels (give --pixel-size-nm, or its frame with "
                    "--images)" if size_nm is None else f"with --pixel-size-nm {size_nm:g} "
                    "instead" if origin == "--pixel-size-nm" else
                    f"with {size_nm:.6g} nm from {origin} instead")
    for where, found in ignored.items():
        what = "; ".join(
            f"{_CALIBRATION_SOURCES.get(source, source or 'its metadata')}"
            f"{', ' + ' and '.join(axes) if axes else ''}: {reason}"
            for (source, reason), axes in found.items())
        whose = "" if where == str(path) else f" (the frame of {path})"
        measured = "measured" if where == str(path) else f"{path} measured"
        lines.append(f"warning: {where}{whose}: its pixel size is ignored ({what}); "
                     f"{measured} {'; '.join(used)}")
    return lines


def _overlay_name(path: Path, index: int, n_pages: int, used: set[str], folder: Path,
                  picture: bytes) -> str:
    """``<stem>[_<page>]_overlay.png``, made unique within one run (``..._overlay-2.png``):
    a frame and its label image share a stem, and one overlay must not replace the other;
    nor one in ``folder`` from an earlier run that is not this ``picture`` (the encoded PNG),
    even the earlier picture of the same frame in the output this run replaces: any output
    may name a picture (a run of several files shares the pictures of another's that are
    the same bytes), and a picture redrawn under its name would show another angle than
    those rows. The same picture again (the same frame measured again) keeps its name. A
    stem longer than 200 bytes is cut there: what is added, and the atomic writer's temporary
    name, stay within Linux's 255-byte file names (such files were measured, their overlay
    "File name too long")."""
    # decoded as os.fsdecode does, a character the cut splits left out (not final: held back)
    stem = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(
        os.fsencode(path.stem)[:200], final=False)
    base = stem + (f"_{index:04d}" if n_pages > 1 else "") + "_overlay"
    name, n = f"{base}.png", 1
    while name in used or not _free_for(folder / name, picture):
        n += 1
        name = f"{base}-{n}.png"
    used.add(name)
    return name


def _pictures_named(out: Path) -> dict[tuple[str, int], set[Path]]:
    """The overlay pictures the rows of ``out`` (an earlier output of the command, or none)
    name, as resolved paths, by their rows' (source, frame)."""
    import pyarrow.parquet as pq

    local = os.path.abspath(out)  # a relative "a:b.parquet" is no URI
    try:
        if not {"overlay_path", "source", "frame"} <= set(pq.read_schema(local).names):
            return {}
        rows = pq.read_table(local, columns=["overlay_path", "source", "frame"]).to_pylist()
    except (OSError, ValueError):  # no earlier output, or not one that reads
        return {}
    named: dict[tuple[str, int], set[Path]] = {}
    for r in rows:
        if r["overlay_path"]:
            named.setdefault((r["source"], r["frame"]), set()).add(
                (out.parent / r["overlay_path"]).resolve())
    return named


def _say_pictures_left(replaced: dict[tuple[str, int], set[Path]], rows: list[dict],
                       out: Path) -> None:
    """Name the pictures the replaced output's rows named that its new ``rows`` name no
    longer (a frame whose picture changed, now under a new name; a page a file no longer
    has; a file not measured again): they are left, as another output may name them."""
    earlier = set().union(*replaced.values()) if replaced else set()
    now = {(out.parent / r["overlay_path"]).resolve() for r in rows if r.get("overlay_path")}
    left = sorted(p for p in earlier - now if p.is_file())
    if left:
        shown = ", ".join(str(p) for p in left[:3]) + (
            f" and {len(left) - 3} more" if len(left) > 3 else "")
        say(f"note: {len(left)} picture(s) that the earlier rows of {out} named and its rows "
            f"no longer name are left as they were, since another output may name them "
            f"(delete them if none does): {shown}")


def _free_for(path: Path, picture: bytes) -> bool:
    """Whether ``picture`` may be written at ``path``: nothing there, or the same bytes."""
    try:
        if path.stat().st_size != len(picture):
            return False
        return path.read_bytes() == picture
    except FileNotFoundError:
        return True
    except OSError:  # cannot be read: not taken over
        return False


def _overlay_path(picture: Path, out: Path) -> str:
    """The row's ``overlay_path``: relative to the Parquet file's folder when the overlay lies
    under it (as the service's is relative to RESULTS), else absolute; POSIX separators."""
    picture, folder = picture.resolve(), out.resolve().parent
    return path_text((picture.relative_to(folder) if picture.is_relative_to(folder)
                      else picture).as_posix())


class ModelRunError(RuntimeError):
    """A model that loaded but failed to segment a frame."""


class _FrameSegmenter:
    """The model of ``--model``, loaded on the first raw frame (label images need none)."""

    def __init__(self, model: Path | None) -> None:
        self.model = model
        self._segmenter = None

    def load(self):
        """The Segmenter; a model that cannot be loaded or is not in-situ is a usage error
        naming it."""
        from nwwatch.segment.session import ModelLoadError, Segmenter

        if self._segmenter is None:
            path = self.model or DEFAULT_INSITU_MODEL
            try:
                segmenter = Segmenter(path, providers=("cpu",))
                segmenter.require_kind("insitu", "measuring raw frames")
            except ModelLoadError as exc:
                raise click.BadParameter(str(exc), param_hint="'--model'") from None
            self._segmenter = segmenter
        return self._segmenter

    def __call__(self, page: np.ndarray):
        """(labels uint8 (H, W), probabilities float32 (C, H, W), provenance dict)."""
        from nwwatch.normalize import normalize_image

        seg = self.load()
        try:
            out = seg.segment(normalize_image(page))
        except MemoryError:  # the machine's, not the model's
            raise
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors derive from Exception
            # loaded, yet unable to run on this frame (its size, a broken graph): the file is
            # skipped naming the model, as the service fails it, not a traceback
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ModelRunError(f"the model {seg.model_path} failed on it "
                                f"({type(exc).__name__}: {first})") from exc
        return out.labels[0], out.probabilities[0], {
            "model_name": seg.name, "model_sha256": seg.model_sha256, "provider": seg.provider}


#: Names ``--out`` may not have: other formats' (the rows are Parquet whatever the name).
OTHER_FORMAT_SUFFIXES = (".csv", ".tsv", ".txt", ".xls", ".xlsx", ".ods", ".json", ".h5",
                         ".hdf5", ".feather", ".arrow", ".tif", ".tiff", ".png", ".jpg")

#: Columns of every frame row ``measure`` writes, whatever its version.
_OUTPUT_KEY_COLUMNS = {"source", "frame", "status", "reason_code", "contact_angle_deg",
                       "measurement_version"}


def _is_earlier_output(path: Path) -> bool:
    """True when ``path`` is empty or a Parquet file with the columns this command writes (an
    earlier run's output: no ``batch_id``). Another Parquet file (a DATA folder's
    truth.parquet, a copy of the service's rows, another program's table) is not one to
    replace."""
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic == b"":
        return True
    if magic != b"PAR1":
        return False
    import pyarrow.parquet as pq  # lazily, as in _write

    try:
        names = set(pq.read_schema(os.path.abspath(path)).names)
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError: not readable
        return False
    # columns of every version's rows, not the whole schema: an upgrade adds columns
    if not _OUTPUT_KEY_COLUMNS <= names:
        return False
    if "batch_id" in names:  # the service's or replay's rows (a copy): they carry a batch
        try:
            batches = pq.read_table(os.path.abspath(path), columns=["batch_id"]).column(0)
        except (OSError, ValueError):
            return False
        return batches.null_count == len(batches)
    return True


def _write(rows: list[dict], out: Path) -> None:
    """The rows in the service's frame schema, through the one atomic Parquet writer."""
    from nwwatch.results.parquet import rows_to_table, write_table_atomic  # pyarrow: lazily
    from nwwatch.results.schema import frame_schema

    write_table_atomic(rows_to_table(rows, frame_schema(MEASUREMENT_FIELDS)), out)


@click.command("measure")
@click.argument("inputs", nargs=-1, required=True, type=InputFile(dangling_links=True))
@click.option("--out", "out", required=True, type=OutputFile("angles.parquet"),
              help="Parquet file to write (one row per image or page).")
@click.option("--pixel-size-nm", default=None,
              type=FiniteFloatRange(min=MIN_PLAUSIBLE_PIXEL_SIZE_NM,
                                    max=MAX_PLAUSIBLE_PIXEL_SIZE_NM),
              help="Pixel size in nm (1 pm to 10 µm, as for the files' own); fills the *_nm "
                   "columns  [default: the file's own (TIFF, MRC, DigitalMicrograph, EMD, TIA), "
                   "as the service reads it; none for PNG].")
@click.option("--overlays", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for one overlay PNG per image or page.")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of the frames the label images were drawn on, by "
                                 "stem: the overlays' backgrounds, and the labels' pixel "
                                 "size when they declare none and the shapes match.")
@click.option("--read-as", "read_as", type=click.Choice(["auto", "labels", "frames"]),
              default="auto", show_default=True,
              help="labels: class ids (0 background, 1 nanowire, 2 droplet); frames: raw "
                   "frames, segmented with --model first; auto: images with at most "
                   f"{_LABEL_MAX_VALUES} distinct values, or integer ones of class ids with "
                   "areas of a few other values (painted in by mistake), are labels; images "
                   "with nearly all pixels on so few values "
                   "on every page (a mask saved as JPEG or resized) are refused; anything "
                   "else a frame.")
@click.option("--model", callback=model_file, metavar="MODEL",
              default=None, help="ONNX in-situ model for raw frames (default: the shipped one).")
def measure(inputs: tuple[Path, ...], out: Path, pixel_size_nm: float | None,
            overlays: Path | None, images: Path | None, read_as: str,
            model: Path | None) -> None:
    """Measure contact angles on INPUTS: label images (PNG/TIFF: 0 background, 1 nanowire,
    2 droplet) or raw frames, which are segmented with the model first.

    A file named twice (e.g. by two shell globs) is measured once.

    TIFF, MRC, DigitalMicrograph, Velox EMD and TIA series files are read as the service
    reads them: a file it refuses is named and skipped (exit status 1), and each row gets the
    file's pixel size and acquisition time. SerialEM's NAME.mdoc is read with its MRC file
    NAME: named beside it (a shell glob) it is passed over, named alone it is refused; so
    is TIA's NAME.emi beside its series' NAME_1.ser (its metadata, not read).

    Ctrl-C, SIGTERM or a hang-up (SIGHUP) writes the rows measured so far to --out and exits
    130, 143 or 129; the last line says how many rows were written and which files were not
    measured."""
    from nwwatch.stopsignals import sigterm_as_interrupt

    run = _Run(inputs, overlays)
    try:
        # SIGTERM and a hang-up unwind as Ctrl-C does: the rows measured so far are written
        with sigterm_as_interrupt(hangup=True):
            try:
                _measure(run, out, pixel_size_nm, overlays, images, read_as, model)
            except KeyboardInterrupt as stop:
                _stopped(stop, run, out)
    except KeyboardInterrupt as stop:
        # one that came while the command's modules were imported, raised as the block opens
        _stopped(stop, run, out)
    finally:
        run.close()


#: The name of a picture :func:`_overlay_name` gives.
_PICTURE_NAME = re.compile(r"_overlay(-\d+)?\.png$")


class _Run:
    """What ``measure`` has done so far: the rows, the files skipped, and where it is in
    INPUTS, for the line of a run a stop signal ends."""

    def __init__(self, inputs: tuple[Path, ...], overlays: Path | None = None) -> None:
        # a file named twice (overlapping globs, a relative and an absolute spelling) gives
        # its rows once, as replay processes it once
        unique: dict[str, Path] = {}
        for path in inputs:
            unique.setdefault(os.path.abspath(path), path)
        self.inputs = tuple(unique.values())
        self.rows: list[dict] = []
        self.skipped = 0
        self.swapped_valid: list[str] = []
        #: refused label pages that read as masks whose background is not 0
        self.other_background: list[str] = []
        #: index in ``inputs`` of the file being read or measured (len(inputs): all done)
        self.position = 0
        #: where the rows of the file at ``position`` begin in ``rows``, and its number of
        #: pages (None: not read yet)
        self.file_start = 0
        self.file_pages: int | None = None
        self._named = {os.path.abspath(path) for path in inputs}
        # the --overlays folder: the pictures an earlier run wrote there are passed over
        # (`measure same/*.png --overlays same` run twice read them as colour label masks,
        # refused them, and exited 1)
        self._pictures = None if overlays is None else os.path.abspath(overlays)
        # TIA writes NAME.emi (the series' metadata, not read) beside NAME_1.ser, NAME_2.ser
        self._emis = {os.path.abspath(path.with_name(path.stem.rpartition("_")[0] + ".emi"))
                      for path in inputs if path.suffix.lower() == ".ser"}
        #: the first input measured of each content (sha256), for the note on a copy
        self.contents: dict[str, Path] = {}
        #: the --images frames saved label images pair with (a file kept open: :meth:`close`)
        self.saved_frames: _SavedLabelFrames | None = None
        #: the pictures the output to be replaced names (:func:`_pictures_named`), said when
        #: its new rows no longer name them, at the end or at a stop signal
        self.replaced: dict[tuple[str, int], set[Path]] = {}

    def close(self) -> None:
        """Close the --images file kept open."""
        if self.saved_frames is not None:
            self.saved_frames.close()

    @property
    def file_rows(self) -> int:
        """Rows of the file at ``position`` already in ``rows`` (a multi-page file's pages):
        counted from the list, so a stop signal between a row's append and anything after it
        cannot make them disagree."""
        return len(self.rows) - self.file_start

    def passed_over(self, path: Path) -> bool:
        """Companions named with their data (a shell glob): SerialEM's metadata, read with
        its stack; TIA's ``.emi`` beside its series' ``.ser`` files, not read; the QA
        pictures of an earlier run in the ``--overlays`` folder; a QA picture of the service
        or replay whose saved label image is among the inputs."""
        from nwwatch.results.pictures import qa_picture_labels_name

        if (self._pictures is not None
                and os.path.dirname(os.path.abspath(path)) == self._pictures
                and _PICTURE_NAME.search(path.name)):
            return True
        labels = qa_picture_labels_name(path.name)
        if labels is not None and os.path.abspath(path.with_name(labels)) in self._named:
            return True  # `measure qa/frame_00001*`: its label image is measured
        if path.suffix.lower() == ".emi":
            return os.path.abspath(path) in self._emis
        return is_mdoc(path) and os.path.abspath(mdoc_stack(path)) in self._named

    def not_measured(self) -> str:
        """Which inputs were not measured: the one at ``position`` and those after it."""
        # the file's last row is in: stopped before the next file (its lines, its notes)
        done = 0 < self.file_rows == self.file_pages
        left = [p for p in self.inputs[self.position + int(done):] if not self.passed_over(p)]
        if not left:
            return "every file was measured"
        first = str(left[0])
        if self.file_rows and not done:
            first += (f" from page {self.file_rows} on (its first {self.file_rows} "
                      "page(s) are in the rows)")
        after = f" and the {len(left) - 1} after it" if len(left) > 1 else ""
        return f"{len(left)} file(s) not measured: {first}{after}"


def _stopped(stop: KeyboardInterrupt, run: _Run, out: Path) -> NoReturn:
    """Write the rows measured so far (atomically, as at the end of a run), say what was
    written and which files were not measured, and exit with the stop signal's status."""
    from nwwatch.stopsignals import STOP_SIGNALS, interrupt_exit_status, interrupt_name

    # A second signal while the rows are written would cut the write short (the atomic
    # writer then keeps the earlier file) and raise out of this handler: ignored until the
    # line is out. The process exits right after.
    main_thread = threading.current_thread() is threading.main_thread()  # signal's rule
    sigint = signal.getsignal(signal.SIGINT)
    for signum in STOP_SIGNALS if main_thread else ():
        signal.signal(signum, signal.SIG_IGN)
    _say_misnumbered(run)  # a terminal hung up takes no more lines: dropped
    if not run.rows:
        written = f"nothing was written to {out}"
    else:
        try:
            _write(run.rows, out)
        except OSError as exc:
            written = (f"the {len(run.rows)} row(s) measured could not be written to {out} "
                       f"({exc.strerror or exc})")
        else:
            written = f"wrote {len(run.rows)} row(s) to {out}"
            _say_pictures_left(run.replaced, run.rows, out)  # before the last line
    skipped = f"; {run.skipped} file(s) skipped (see above)" if run.skipped else ""
    say(f"measure interrupted ({interrupt_name(stop)}): {written}; "
        f"{run.not_measured()}{skipped}", err=True)
    if main_thread:  # everything is written: a Ctrl-C now ends the process at once
        signal.signal(signal.SIGINT, signal.SIG_DFL if sigint is signal.default_int_handler
                      else sigint)
    sys.exit(interrupt_exit_status(stop))


def _say_misnumbered(run: _Run) -> None:
    """The counts of refused label pages whose ids read as another numbering."""
    if run.swapped_valid:
        say(f"{len(run.swapped_valid)} refused label page(s) give an angle with the "
            "nanowire and droplet ids exchanged: check the masks' class order (first: "
            + ", ".join(run.swapped_valid[:3]) + ")")
    if run.other_background:
        say(f"{len(run.other_background)} refused label page(s) read as masks whose "
            "background is not 0: check the masks' class ids (first: "
            + ", ".join(run.other_background[:3]) + ")")


def _darkest_id(palette: np.ndarray | None, labels: np.ndarray) -> int | None:
    """The class id among those ``labels`` (H, W) hold that ``palette`` (an indexed PNG's,
    (N, 3) RGB) draws darkest, when darker than 0's colour (an image editor's indexed
    colours put the background's black elsewhere); else None."""
    if palette is None:
        return None
    used = [k for k in (0, NANOWIRE, DROPLET) if k < len(palette) and (labels == k).any()]
    if 0 not in used:
        return None
    luma = {k: float(np.dot(palette[k], (0.299, 0.587, 0.114))) for k in used}
    darkest = min(used, key=lambda k: luma[k])
    return darkest if luma[darkest] < luma[0] else None


def _renumbered(renumbering: dict[int, int], angle_deg: float) -> str:
    """"renumbered 1 -> 0, 0 -> 1, 2 -> 2, it gives 102.61 deg"."""
    order = ", ".join(f"{old} -> {new}" for old, new in renumbering.items())
    return f"renumbered {order}, it gives {angle_deg:.2f} deg"


def _other_background_note(page: str, other: OtherBackground, palette: np.ndarray | None,
                           labels: np.ndarray) -> str:
    """The note under a refused label page that reads as a mask whose background is
    ``other.background_id`` (:func:`nwwatch.measure.exchanged.background_not_zero`)."""
    k = other.background_id
    why = []
    if other.border_share > other.zero_border_share:
        why.append(f"{k} holds {100 * other.border_share:.0f} % of the frame's border, 0 "
                   f"{100 * other.zero_border_share:.0f} %")
    if palette is not None:
        entries = ", ".join(f"{i}: {tuple(int(c) for c in palette[i])}"
                            for i in (0, NANOWIRE, DROPLET)
                            if i < len(palette) and (labels == i).any())
        darkest = f", {k} the darkest" if _darkest_id(palette, labels) == k else ""
        why.append(f"its palette (index: RGB) {entries}{darkest}: an indexed-colour PNG is "
                   "read as its palette indices, not its colours")
    measured = _renumbered(other.renumbering, other.angle_deg)
    if other.other_renumbering is not None and other.other_angle_deg is not None:
        # either object may be the wire: the ids do not say, the user does
        measured = (f"with {k} as background both orders of the two other ids give an angle: "
                    f"{measured}; {_renumbered(other.other_renumbering, other.other_angle_deg)}"
                    "; which of the two is the nanowire is yours to say")
    return (f"  note: {page} reads as a mask whose background is {k}, not 0 ("
            + "; ".join(why) + f"); {measured}; nwwatch reads 0 background, 1 nanowire, "
            "2 droplet: renumber the mask (docs/measurement.md, 'Masks from other tools')")


def _measure(run: _Run, out: Path, pixel_size_nm: float | None, overlays: Path | None,
             images: Path | None, read_as: str, model: Path | None) -> None:
    """The command's work: every input of ``run`` measured, its rows kept in ``run`` as
    they are measured and written to ``out`` at the end."""
    from nwwatch.filehash import file_sha256
    from nwwatch.options import refuse_inside_results, require_writable

    # Outputs checked before the work: an unwritable --out found after it loses every row.
    # A results file is the service's: replaced, its rows were lost to the ledger.
    refuse_inside_results(out, "'--out'")
    if overlays is not None:  # PNGs in a results dataset break its readers
        refuse_inside_results(overlays, "'--overlays'", folder_example="overlays")
    if out.is_file() and not _is_earlier_output(out):
        # e.g. 'measure --out frames/*.tif': the shell made the first frame the output; or
        # '--out DATA/truth.parquet', the truth evaluate scores against
        raise click.BadParameter(f"{out} exists and is not an earlier output of nwwatch "
                                 "measure; it is not replaced", param_hint="'--out'")
    if out.suffix.lower() in OTHER_FORMAT_SUFFIXES:  # rows.csv held Parquet bytes, exit 0
        raise click.BadParameter(
            f"{out}: the rows are written as Parquet; name the file .parquet (for a CSV: "
            f"pandas.read_parquet(FILE).to_csv(...))", param_hint="'--out'")
    segment = _FrameSegmenter(model)
    if model is not None:  # a wrong --model found at the first raw frame loses the rows before it
        segment.load()
    # after the model: a refused command leaves no new folder behind
    require_writable(out, "'--out'")
    if overlays is not None:
        require_writable(overlays, "'--overlays'", folder=True)
    rows = run.rows
    if images is not None:
        run.saved_frames = _SavedLabelFrames(images)
    used_names: set[str] = set()
    # the pictures the output to be replaced names: those its new rows no longer name are
    # said at the end (left, never redrawn: another output may name them)
    # (with or without --overlays: rows without overlay_path no longer name them either)
    replaced = run.replaced = _pictures_named(out)
    for position, path in enumerate(run.inputs):
        run.position, run.file_start, run.file_pages = position, len(rows), None
        if run.passed_over(path):
            continue
        filled_px: list[int] = []
        try:
            with held_events("io.pixel_size_ignored") as ignored:  # said below, once
                frames = _read_frames(path, as_labels={"labels": True, "auto": None}.get(
                    read_as, False))
            pages = [frame.image for frame in frames]
            is_labels = read_as == "labels" or (read_as == "auto" and looks_like_labels(pages))
            if is_labels:
                try:
                    pages, filled_px = read_labels(path, pages)
                except LabelFileError as exc:
                    if read_as == "labels" or all(
                            np.isin(p, _LABEL_VALUES).all() for p in pages) or any(
                            map(painted_labels, pages)):
                        raise  # class ids (with unlabeled pixels, or painted): not a frame
                    # e.g. a blank frame: few grey levels made auto read it as labels
                    raise LabelFileError(path, f"{exc.reason}; read as labels: at most "
                                               f"{_LABEL_MAX_VALUES} distinct values (a raw "
                                               "frame: --read-as frames measures it as "
                                               "one)") from None
            elif read_as == "auto":
                # segmented by the model, a damaged mask would give rows of a picture of labels.
                # A damaged mask file is so on every page; a series with one dark page (beam
                # blanked: a few counts) is frames.
                damaged = damaged_mask_problem(pages[0]) if pages else None
                if damaged is not None and all(map(damaged_mask_problem, pages[1:])):
                    raise LabelFileError(path, damaged)
        except LabelFileError as exc:
            say(f"skipped {exc.format_message()}", err=True)
            run.skipped += 1
            continue
        run.file_pages = len(pages)
        source_sha256 = file_sha256(path)
        # a copy or a link under another name: its rows are given again (the user named it),
        # said so that they are not counted as two frames
        first = run.contents.setdefault(source_sha256, path)
        if first is not path:
            say(f"note: {path} has the same content as {first} (a copy or a link): measured "
                "again, its rows repeat that file's (replay processes such copies once)")
        with held_events("io.pixel_size_ignored") as ignored_grey:
            greys = (_grey_frames(run.saved_frames, path, pages, pixel_size_nm, frames,
                                  overlays is not None) if is_labels else None)
        if run.saved_frames is not None:  # those of a frame file opened for an earlier label
            ignored_grey = [*ignored_grey, *run.saved_frames.take_events()]
        # --pixel-size-nm stands for files that declare none, or declare a wrong one; a
        # label image declaring none has the pixels of its frame in --images
        sizes_nm = [_pixel_size_used(pixel_size_nm, frames[index],
                                     None if greys is None else greys[index])
                    for index in range(len(pages))]
        for line in _ignored_calibrations(path, [*ignored, *ignored_grey], sizes_nm):
            say(line, err=True)
        for index, page in enumerate(pages):
            start = time.perf_counter()
            extra: dict = {}
            if is_labels:
                labels, grey, probability = page, None, None
            else:
                try:
                    labels, probabilities, extra = segment(page)
                except ModelRunError as exc:
                    kept = (f" from page {index} on (its first {index} page(s) are in the "
                            "rows)" if index else "")
                    say(f"skipped {path}{kept}: {exc}", err=True)
                    run.skipped += 1
                    break
                grey, probability = page, probabilities[DROPLET]
                extra["segment_ms"] = 1000.0 * (time.perf_counter() - start)
            t = time.perf_counter()
            # A raw frame also places the facet line on its intensity step, as the service
            # does; label images are measured on their labels alone.
            frame = frames[index]
            size_nm = sizes_nm[index][0]
            # a label image's own time is its file's (a PNG's mtime, a TIFF's save): its
            # frame's, when --images gives it, is the acquisition's
            when = greys[index] if greys is not None and greys[index] is not None else frame
            result = measure_contact_angle(labels, probability, pixel_size_nm=size_nm,
                                           image=None if is_labels else page)
            elapsed_ms = 1000.0 * (time.perf_counter() - t)
            if not is_labels:
                from nwwatch.segment.confidence import frame_confidence

                extra["confidence"] = frame_confidence(probabilities, labels,
                                                       result.angle_valid)
            if overlays is not None:
                if greys is not None and greys[index] is not None:
                    grey = greys[index].image
                picture = overlays
                try:
                    # encoded as the service's QA pictures are
                    encoded = encode_image(draw_overlay(grey, labels, result), ".png",
                                           PICTURE_PNG_PARAMS)
                    # a name holding another picture gets -2, -3, ...: any output may name it
                    picture = overlays / _overlay_name(path, index, len(pages), used_names,
                                                       overlays, encoded)
                    # not synced, as before: a picture, many of them, on a network share too
                    with atomic_write(picture, durable=False) as handle:
                        handle.write(encoded)
                    extra["overlay_path"] = _overlay_path(picture, out)
                except OSError as exc:
                    what = picture if picture != overlays else f"{path} (frame {index})"
                    say(f"warning: {what}: the overlay could not be written "
                        f"({exc.strerror or exc})", err=True)
            rows.append({
                # the absolute path, as the service's (text Arrow can encode)
                "source": path_text(os.path.abspath(path)),
                "frame": index,
                **result.as_row(),
                **extra,
                "source_sha256": source_sha256,
                "acquired_at": when.acquired_at,
                "acquired_at_source": when.acquired_at_source,
                "processed_at": datetime.now(UTC),
                "nwwatch_version": __version__,
                "measurement_version": MEASUREMENT_VERSION,
                "measure_ms": elapsed_ms,
            })
            angle = (f"{result.contact_angle_deg:.2f} deg"
                     if result.contact_angle_deg is not None else "-")
            note = f" ({result.reason})" if result.reason else ""
            what = "labels" if is_labels else "frame"
            say(f"{path}[{index}] ({what}): {result.status} [{result.reason_code}] "
                f"{angle}{note}")
            if filled_px and filled_px[index]:
                say(f"  note: {filled_px[index]} unlabeled ({UNLABELED}) px of "
                    f"{path.name}[{index}] were given the class of the nearest labeled "
                    "pixel (a boundary midway across an unsure band, or run on to the "
                    "frame's border)")
                missing = None if result.angle_valid else missing_class(labels)
                if missing is not None:  # e.g. a mask painted 0/255/2: 255 its wire?
                    name = INSITU_CLASSES[missing]
                    say(f"  note: no {name} ({missing}) pixel in {path.name}[{index}]: if its "
                        f"{UNLABELED} px mark the {name}, renumber them to {missing} "
                        f"({UNLABELED} means unlabeled)")
            if is_labels and not result.angle_valid:
                # said, not corrected: the row keeps the refusal
                swapped_deg = angle_if_exchanged(labels, result, size_nm)
                if swapped_deg is not None:
                    run.swapped_valid.append(f"{path}[{index}]")
                    say(f"  note: with 1 and 2 exchanged (1 droplet, 2 nanowire) it "
                        f"gives {swapped_deg:.2f} deg; if your tool "
                        "numbers them so, renumber the mask (docs/measurement.md, "
                        "'Masks from other tools')")
                else:
                    palette = indexed_png_palette(path)
                    other = background_not_zero(labels, result, size_nm,
                                                _darkest_id(palette, labels))
                    if other is not None:
                        run.other_background.append(f"{path}[{index}]")
                        say(_other_background_note(f"{path.name}[{index}]", other, palette,
                                                   labels))
    run.position = len(run.inputs)
    _say_misnumbered(run)
    if rows:
        try:
            _write(rows, out)
        except OSError as exc:  # e.g. the disk filled up during the run
            raise click.ClickException(f"{out}: cannot write the results "
                                       f"({exc.strerror or exc})") from None
        say(f"wrote {len(rows)} row(s) to {out}")
        _say_pictures_left(replaced, rows, out)
    if run.skipped:
        # with no row, say so: a Parquet file already at --out is an earlier run's, not this one's
        unwritten = "" if rows else f"; nothing written to {out}"
        raise click.ClickException(f"{run.skipped} file(s) skipped, unreadable or refused "
                                   f"(see above){unwritten}")
