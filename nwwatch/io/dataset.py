"""The labeled DATA folder: its layout, its pairing of images with labels, its image reader.

One parser for everyone who reads a DATA folder: ``nwwatch train`` (:mod:`training.data`),
``nwwatch evaluate`` and ``nwwatch label`` (which writes one). Layout::

    DATA/images/<stem>.tif|png      2D grey images (any size)
    DATA/labels/<stem>.png|tif      uint8 class ids, 255 = unlabeled (partial labels allowed)
    DATA/unlabeled/*.tif|png|mrc…   optional: 2D images, multi-page stacks or 3D volumes
                                    (also MRC files: .mrc, .rec, .mrcs, .map)
    DATA/dataset.toml               optional: kind, class names, normalisation scope
    DATA/truth.parquet              optional: per-image true contact angle (``file``,
                                    ``theta_apparent_deg``, ``pixel_size_nm``) for evaluate
    DATA/geometry/<stem>.json       optional: the labelling tool's shapes (nwwatch.label)

``nwwatch synth insitu OUT`` writes its frames directly in ``OUT/`` (``OUT/labels/`` beside
them): when ``DATA/images/`` does not exist, the images are the ``.tif``/``.png`` files at the
top of DATA. Images and labels pair by file stem; two files with one stem are an error. The
folder is flat: sub-folders of images/ and labels/ are not read (:func:`nested_images_warning`
names them).

dataset.toml::

    kind = "insitu"                 # or "tomogram"
    classes = ["background", "nanowire", "droplet"]
    normalization_scope = "image"   # or "volume"

With ``"volume"`` a labeled 2D slice is normalised with the range of the DATA/unlabeled/
volume that holds it (:class:`nwwatch.io.volumeranges.VolumeRanges`), as the runtime
normalises tomograms.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from nwwatch.classes import (
    INSITU_CLASSES,
    TOMOGRAM_CLASSES,
    UNLABELED,
    interpolated_rim_problem,
    misplaced_insitu_class,
)
from nwwatch.io.errors import InputError, MultichannelError, UnsupportedDtypeError
from nwwatch.io.png import decode_image_file, low_grey_bit_depth
from nwwatch.io.records import Frame, Volume
from nwwatch.io.regular import check_regular, open_regular
from nwwatch.io.tiff import TIFF_SUFFIXES, check_tomogram, read_frames, read_volume
from nwwatch.tomlfile import TomlFileError, read_toml

IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".png")


class DatasetLayoutError(ValueError):
    """A DATA folder or file that cannot be used. ``.path`` names it, ``.reason`` says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # else unpickling calls __init__(message): a worker pool hangs
        return (type(self), (self.path, self.reason))


def read_pages(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a grey image file (TIFF or PNG) as a stack of pages.

    A TIFF goes through :func:`nwwatch.io.read_frames`, the reader the service and replay
    use, so a file they refuse (colour, float64, non-square pixels, truncated, ...) is
    refused here with the same reason. A PNG (label images, exported frames) is read with
    OpenCV; an RGB PNG with three equal channels is read as grey, and so is an RGBA one
    whose every pixel is opaque (a transparent pixel's grey is no class). An indexed PNG
    with a colour palette (a label export) is read as its palette indices.

    Returns
    -------
    ndarray (Z, H, W) in the file's dtype; Z = 1 for a plain 2D image.

    Raises
    ------
    DatasetLayoutError : naming the file: unreadable, colour image, or not 2D/3D. For a
        TIFF, ``reason`` is the :class:`~nwwatch.io.errors.InputError`'s, chained as its
        cause.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        return np.stack([frame.image for frame in read_tiff_frames(path)])
    _as_layout_error(check_regular, path)  # a FIFO would block OpenCV and Pillow
    indices = _palette_indices(path)
    if indices is not None:
        return indices[None]
    try:
        data = _as_layout_error(decode_image_file, path)
    except OSError as exc:
        raise DatasetLayoutError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if data is None:
        if path.stat().st_size == 0:  # OpenCV says only that it cannot read it
            raise DatasetLayoutError(path, "empty file (0 bytes): not saved, or still being "
                                           "written")
        raise DatasetLayoutError(path, "cannot be read as a PNG image")
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        if data.shape[-1] == 4:  # a painted "transparent" pixel has no class in its grey
            transparent = int(np.count_nonzero(data[..., 3] != np.iinfo(data.dtype).max))
            if transparent:
                raise DatasetLayoutError(path, f"{transparent} transparent pixels (alpha below "
                                               f"opaque): the grey value is what is read; "
                                               f"save the image without transparency (a "
                                               f"label mask: paint pixels to leave out 255, "
                                               f"unlabeled)")
        channels = data[..., :3]
        if not (np.array_equal(channels[..., 0], channels[..., 1])
                and np.array_equal(channels[..., 0], channels[..., 2])):
            raise DatasetLayoutError(path, "colour image; nwwatch needs single-channel grey "
                                           "images (a frame: save it as greyscale; a colour "
                                           "label mask: renumber its colours to class ids, "
                                           "docs/measurement.md, 'Masks from other tools')")
        data = channels[..., 0]
    if data.ndim != 2 or min(data.shape) == 0:
        raise DatasetLayoutError(path, f"expected a 2D image, got shape {data.shape}")
    return data[None]


def _palette_indices(path: Path) -> np.ndarray | None:
    """The palette indices (H, W) uint8 of an indexed-colour PNG with a colour palette: label
    exports (PASCAL VOC, CVAT's segmentation masks) store the class ids as indices and draw
    them in colours, which is all OpenCV decodes. None for any other PNG, and for a grey
    palette (R = G = B for every entry), whose grey values are read as for a grey PNG."""
    read = _colour_palette_png(path, pixels=True)
    return None if read is None else read[1]


def indexed_png_palette(path: str | os.PathLike[str]) -> np.ndarray | None:
    """The palette (N, 3) uint8 RGB of a PNG :func:`read_pages` reads as its palette indices
    (an indexed-colour PNG with a colour palette): entry i is the colour index i is drawn in,
    which says which index an image editor's "convert to indexed" gave the background.
    None for any other file."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        return None
    read = _colour_palette_png(path, pixels=False)
    return None if read is None else read[0]


def _colour_palette_png(path: Path, pixels: bool
                        ) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(palette (N, 3) uint8, its indices (H, W) uint8 when ``pixels``) of an indexed-colour
    PNG with a colour palette; None for any other PNG (a grey palette included)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode != "P":
                return None
            palette = np.frombuffer(bytes(image.getpalette() or []), np.uint8).reshape(-1, 3)
            if (palette[:, 0] == palette[:, 1]).all() and (palette[:, 0] == palette[:, 2]).all():
                return None
            return palette, np.asarray(image, dtype=np.uint8) if pixels else None
    except (OSError, UnidentifiedImageError, ValueError):
        return None  # OpenCV reads it, or names it as unreadable


#: A colour TIFF with at most this many colours reads as a colour label mask (three classes,
#: perhaps an unlabeled colour and a stray one), not as a picture saved as displayed, whose
#: contrast and colour table give it many.
LABEL_MASK_MAX_COLOURS = 8


#: Pixels of the strided sample of a colour TIFF whose colours are counted first.
_COLOUR_SAMPLE_PIXELS = 65536


def _distinct_colours(pixels: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """The distinct colours (K, C) of ``pixels`` (N, C) of 8- or 16-bit integers, in the
    order of their channels' values. ``known``: colours (K0, C) already seen among them (a
    sample's): only the pixels of other colours are sorted, so a mask's pass over all its
    pixels is a comparison with its few colours."""
    unsigned = np.ascontiguousarray(pixels).view(f"u{pixels.dtype.itemsize}")
    bits = 8 * pixels.dtype.itemsize
    if bits * pixels.shape[1] > 64:  # no integer holds a colour: rows compared
        found = np.unique(unsigned if known is None else np.concatenate(
            [known.view(unsigned.dtype), unsigned]), axis=0)
        return found.view(pixels.dtype)
    # one number per colour (uint32 for up to four 8-bit channels): unique on 1-D is fast
    code_type = np.uint32 if bits * pixels.shape[1] <= 32 else np.uint64

    def packed(rows: np.ndarray) -> np.ndarray:
        codes = np.zeros(rows.shape[0], code_type)
        for channel in range(rows.shape[1]):
            codes <<= code_type(bits)
            codes |= rows[:, channel]
        return codes

    codes = packed(unsigned)
    if known is not None:
        seen = packed(np.ascontiguousarray(known).view(unsigned.dtype))
        other = np.ones(codes.shape, bool)
        for code in seen:  # a few colours: no sort of all the pixels, as np.isin may
            other &= codes != code
        codes = np.concatenate([seen, codes[other]])
    codes = np.unique(codes)
    shifts = bits * np.arange(pixels.shape[1] - 1, -1, -1, dtype=code_type)
    mask = code_type((1 << bits) - 1)
    return ((codes[:, None] >> shifts) & mask).astype(unsigned.dtype).view(pixels.dtype)


def colour_label_mask_reason(path: str | os.PathLike[str], as_labels: bool | None = None
                             ) -> str | None:
    """Why a TIFF of several samples per pixel (RGB, RGBA: refused by the TIFF reader as a
    picture saved as displayed) is not read, said for a colour label mask: what to do is
    to renumber its colours to class ids, not to give the acquisition software's file.
    ``as_labels`` True: the file is read as labels whatever its colours; None: when its first
    page holds at most :data:`LABEL_MASK_MAX_COLOURS` colours; False: never. None for any
    other file, or one that cannot be read here (the reader's own reason stands)."""
    if as_labels is False or Path(path).suffix.lower() not in TIFF_SUFFIXES:
        return None
    import tifffile

    from nwwatch.io.limits import MAX_FRAME_PIXELS

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            shape = tuple(page.shape)
            if (page.samplesperpixel < 2 or page.planarconfig != 1 or len(shape) != 3
                    or shape[-1] != page.samplesperpixel
                    or shape[0] * shape[1] * shape[2] > MAX_FRAME_PIXELS):
                return None  # planes stored apart: frames written as colour (the reader says)
            data = page.asarray()
    except Exception:  # noqa: BLE001 - tifffile's errors are of many types: its reason stands
        return None
    if data.dtype.kind not in "ui" or data.dtype.itemsize > 2:
        return None
    channels = data.shape[-1]
    # a picture shows its many colours in a strided sample: no pass over all its pixels
    stride = max(1, math.isqrt(data.shape[0] * data.shape[1] // _COLOUR_SAMPLE_PIXELS))
    colours = _distinct_colours(data[::stride, ::stride].reshape(-1, channels))
    counted_all = stride == 1
    if not counted_all and len(colours) <= LABEL_MASK_MAX_COLOURS:
        # the few colours of a mask: its other pixels may hold a stray one
        colours = _distinct_colours(data.reshape(-1, channels), colours)
        counted_all = True
    if as_labels is None and len(colours) > LABEL_MASK_MAX_COLOURS:
        return None
    if len(colours) <= LABEL_MASK_MAX_COLOURS:
        held = f"{len(colours)} colours, " + ", ".join(
            str(tuple(int(v) for v in colour)) for colour in colours)
    elif counted_all:
        held = f"{len(colours)} colours"
    else:  # a picture's count, on its sample alone
        held = f"more than {LABEL_MASK_MAX_COLOURS} colours"
    return (f"{channels} channels per pixel (shape {data.shape}) holding {held}: a colour "
            f"label mask; nwwatch reads class ids from single-channel grey images: renumber "
            f"its colours to class ids (docs/measurement.md, 'Masks from other tools')")


T = TypeVar("T")


def _as_layout_error(read: Callable[[str | os.PathLike[str]], T],
                     path: str | os.PathLike[str]) -> T:
    """``read(path)`` with its :class:`~nwwatch.io.errors.InputError` (and a missing file)
    raised as :class:`DatasetLayoutError`, the error of the DATA-folder readers."""
    try:
        return read(path)
    except InputError as exc:
        raise DatasetLayoutError(exc.path, exc.reason) from exc
    except FileNotFoundError as exc:
        raise DatasetLayoutError(path, "file not found") from exc


def read_tiff_frames(path: str | os.PathLike[str]) -> list[Frame]:
    """:func:`nwwatch.io.read_frames`, raising :class:`DatasetLayoutError` for what it refuses."""
    return _as_layout_error(read_frames, path)


def read_tiff_volume(path: str | os.PathLike[str]) -> Volume:
    """:func:`nwwatch.io.read_volume` and :func:`nwwatch.io.check_tomogram`, as the service
    reads tomograms, raising :class:`DatasetLayoutError` for what they refuse: a tomogram
    trained on is read, and refused, as it is served."""
    return _as_layout_error(lambda p: check_tomogram(read_volume(p)), path)


def read_image_2d(path: str | os.PathLike[str]) -> np.ndarray:
    """One 2D grey image (H, W) in the file's dtype; a multi-page file is an error."""
    pages = read_pages(path)
    if pages.shape[0] != 1:
        raise DatasetLayoutError(path, f"expected a 2D image, this file has {pages.shape[0]} "
                                       f"pages")
    return pages[0]


def _save_as_uint8(num_classes: int) -> str:
    return (f"save the labels as uint8 (class ids 0..{num_classes - 1}, {UNLABELED} unlabeled; "
            f"e.g. labels.astype('uint8') in numpy)")


def check_label(label: np.ndarray, num_classes: int, path: str | os.PathLike[str]) -> np.ndarray:
    """Validate a label image: integer ids in [0, num_classes) or 255. Returns uint8 (H, W)."""
    if not np.issubdtype(label.dtype, np.integer):
        advice = _save_as_uint8(num_classes)
        if np.issubdtype(label.dtype, np.floating) and label.size:
            finite = label[np.isfinite(label)]
            if finite.size == 0 or np.any(finite != np.round(finite)):
                # Converting grey levels to uint8 gives no class ids: most likely the image
                # was given where its labels belong.
                shown = (f"values from {finite.min():.4g} to {finite.max():.4g}, not whole "
                         f"numbers" if finite.size else "no finite value")
                advice = (f"it holds {shown}: an image rather than its labels? Labels hold "
                          f"class ids 0..{num_classes - 1}, {UNLABELED} unlabeled, as uint8")
        raise DatasetLayoutError(path, f"labels must be integer class ids, got {label.dtype}: "
                                       f"{advice}")
    values, counts = np.unique(label, return_counts=True)
    problem = label_values_problem(values, num_classes, counts)
    if problem and _one_id_past_the_classes(values, num_classes):
        # an extra class or ids counted from 1: the folder's other label images tell which
        problem = label_values_problem(values, num_classes, counts,
                                       others=_other_labels_numbering(Path(path), num_classes))
    if problem:
        raise DatasetLayoutError(path, problem)
    rim = interpolated_rim_problem(label) if num_classes >= len(INSITU_CLASSES) else None
    if rim:  # trained or scored, the rim teaches and grades a wire around every droplet
        raise DatasetLayoutError(path, rim)
    return label.astype(np.uint8)


#: Below this share of an image's pixels, values that are not class ids are taken for a
#: stray stroke or a lossy save's residue, not for a class of another numbering.
STRAY_VALUES_SHARE = 0.005

#: How the other label images of a label's folder number their classes
#: (:func:`label_values_problem`'s ``others``).
OthersNumbering = Literal["from_0", "from_1"]


def _one_id_past_the_classes(values: np.ndarray, num_classes: int) -> bool:
    """0 .. ``num_classes`` and no 255: a class painted beyond the classes (contamination as a
    4th in-situ class), or ids counted from 1 with 0 unlabeled (napari, ilastik)."""
    bad = values[(values >= num_classes) & (values != UNLABELED) | (values < 0)]
    return (bad.tolist() == [num_classes] and values.size > 0 and values[0] == 0
            and UNLABELED not in values)


def _other_labels_numbering(path: Path, num_classes: int) -> tuple[OthersNumbering, str] | None:
    """How the other label images in ``path``'s folder (a DATA folder's ``labels/``) number
    their classes, with one of them named: ``"from_1"`` when one of them also holds
    0 .. ``num_classes`` and no 255 (a tool's ids counted from 1), ``"from_0"`` when every one
    holds class ids 0 .. ``num_classes`` - 1 or 255 only (this image has a class the others
    lack); None when there is no other, or they say neither. Files that cannot be read are
    passed over (the run names them)."""
    if path.parent.name != "labels" or not path.parent.is_dir():
        return None  # a --labels file among unrelated images: no folder convention to read
    others = [p for p in list_images(path.parent) if p.name != path.name]
    in_range = []
    for other in others:
        try:
            values = np.unique(_label_page(other, num_classes))
        except DatasetLayoutError:
            continue
        if not np.issubdtype(values.dtype, np.integer):
            continue
        if _one_id_past_the_classes(values, num_classes):
            return "from_1", other.name
        if not label_values_problem(values, num_classes):
            in_range.append(other.name)
    if in_range and len(in_range) == len(others):
        return "from_0", in_range[0]
    return None


def _extra_class_hint(num_classes: int) -> str:
    """What to do with a class painted as ``num_classes``, one past the classes."""
    if num_classes == len(INSITU_CLASSES):
        merge = ("give its pixels 0 background, as docs/training.md labels what else the "
                 "frames show (carbon film, contamination)")
    else:
        merge = f"give its pixels one of the classes 0..{num_classes - 1}"
    return (f"a class of its own painted as {num_classes} (contamination, carbon film)? "
            f"Only 0..{num_classes - 1} are trained: {merge}, e.g. numpy.where(labels == "
            f"{num_classes}, 0, labels), or {UNLABELED} to leave those pixels unlabeled")


def label_values_problem(values: np.ndarray, num_classes: int,
                         counts: np.ndarray | None = None,
                         others: tuple[OthersNumbering, str] | None = None) -> str | None:
    """Which of a label image's distinct integer ``values`` (sorted, as ``np.unique`` gives
    them, with their pixel ``counts`` when known) are not class ids (0 .. ``num_classes`` - 1,
    or 255 unlabeled), and what to do, or None when all are: the one way the DATA readers
    and ``nwwatch measure`` say it. ``others``: how the other label images of its folder
    number their classes, and one of them (``"from_0"``: as here; ``"from_1"``: ids counted
    from 1), which decides between an extra class and a tool's numbering for 0..N without
    255."""
    is_bad = (values >= num_classes) & (values != UNLABELED) | (values < 0)
    bad = values[is_bad]
    stray = counts is not None and counts[is_bad].sum() < STRAY_VALUES_SHARE * counts.sum()
    if bad.size:
        hint = ""
        # every id one too high (no 0 and no 255 anywhere, N the only stray value): the
        # numbering is off (ids counted from 1), however few pixels the last id has (a small
        # droplet), not a stray brush stroke; scribbles on 255 have no 0 either
        counted_from_1 = (0 not in values and UNLABELED not in values
                          and bad.tolist() == [num_classes])
        if stray and not counted_from_1:
            # a brush stroke of a wrong value, a JPEG's residue: renumbering the whole image
            # (as for another tool's ids) would ruin it
            hint = (f"; only {int(counts[is_bad].sum())} px of "
                    f"{int(counts.sum())} hold them: painted in by mistake, or left by a "
                    f"lossy save (JPEG)? give those pixels their class (or {UNLABELED}, "
                    "unlabeled), or export the mask again losslessly")
        elif _one_id_past_the_classes(values, num_classes):
            # 0..N without 255: a class painted beyond the classes, or classes counted from 1
            # with 0 unlabeled (napari's Labels layer, ilastik), whose 0 would be read as the
            # first class here. Shifting an extra class's image renumbers every class (0
            # background -> unlabeled, 1 wire -> background) and then trains without a word.
            shift = (f"numpy.where(labels == 0, {UNLABELED}, labels - 1) (their class 1 "
                     f"becomes 0)")
            extra = _extra_class_hint(num_classes)
            kind, named = others if others is not None else (None, "")
            if kind == "from_0":
                hint = (f"; 0..{num_classes} and no {UNLABELED}, where the other label images "
                        f"beside it hold class ids 0..{num_classes - 1} (e.g. {named}): "
                        f"{extra} (its ids are those of the others: do not shift them)")
            elif kind == "from_1":
                hint = (f"; 0..{num_classes} and no {UNLABELED}, as in {named} beside it: "
                        f"labels with 0 unlabeled and classes counted from 1 (napari, "
                        f"ilastik)? Here class ids count from 0 and {UNLABELED} is "
                        f"unlabeled: convert every such label image with {shift}")
            elif num_classes == len(TOMOGRAM_CLASSES):
                # docs/tomography.md paints a slice's classes in napari from 1: that reading first
                hint = (f"; 0..{num_classes} and no {UNLABELED}: labels with 0 unlabeled and "
                        f"classes counted from 1 (napari, ilastik)? Here class ids count "
                        f"from 0 and {UNLABELED} is unlabeled: convert them with {shift}. "
                        f"Or {extra}")
            else:
                hint = (f"; 0..{num_classes} and no {UNLABELED}: {extra}. Or, only if 0 "
                        f"means unlabeled and the classes count from 1 (napari, ilastik; "
                        f"then every label image holds {num_classes} where it has that "
                        f"class): convert them with {shift}")
        else:
            # another tool's grey levels or ids: which value means which class is the
            # user's to say, so the table is theirs to write
            hint = (f"; another tool's grey levels or ids (a 0/127/255 grey mask, ids counted "
                    f"from 1)? renumber them to 0..{num_classes - 1} with a table: "
                    f"docs/measurement.md, 'Masks from other tools'")
            if UNLABELED in values:
                hint += f" (here {UNLABELED} reads as unlabeled, not as a class)"
        return (f"label values {bad.tolist()[:10]} out of range: expected "
                f"0..{num_classes - 1} or {UNLABELED} (unlabeled){hint}")
    return None


def list_images(folder: Path) -> list[Path]:
    """Image files (.tif, .tiff, .png; not hidden) of ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_file()
                  and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def loose_images_warning(root: Path) -> str | None:
    """Why images directly in the DATA folder ``root`` beside its ``images/`` are not read
    (frames are read from images/), or None: said by train and evaluate, not passed over."""
    if not (root / "images").is_dir():
        return None
    loose = list_images(root)
    if not loose:
        return None
    return (f"{len(loose)} image(s) directly in {root} (e.g. {loose[0].name}) are not read: "
            f"with DATA/images/ there, frames are read from it; move them into images/ (their "
            f"labels into labels/)")


def nested_image_folders(folder: Path) -> dict[Path, int]:
    """{sub-folder: its number of image files} for the sub-folders of ``folder`` (at any
    depth; hidden ones, such as .ipynb_checkpoints, passed over) that hold images
    (:func:`list_images`), sorted: a DATA folder is flat, so none of them is read."""
    found: dict[Path, int] = {}
    if not folder.is_dir():
        return found
    for parent, dirs, _ in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in dirs:
            count = len(list_images(Path(parent) / name))
            if count:
                found[Path(parent) / name] = count
    return found


def _nested_said(root: Path, nested: dict[Path, int]) -> str:
    """``images/sub (2 images), ...``: sub-folders named under the DATA folder ``root``."""
    shown = [f"{path.relative_to(root)} ({count} image{'' if count == 1 else 's'})"
             for path, count in list(nested.items())[:5]]
    more = len(nested) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def nested_images_warning(root: Path) -> str | None:
    """Why images in sub-folders of the DATA folder ``root``'s ``images/`` and ``labels/`` are
    not read (a DATA folder is flat), or None: said by train and evaluate, not passed over."""
    nested: dict[Path, int] = {}
    if (root / "images").is_dir():  # without it, DATA's own sub-folders are its layout
        nested.update(nested_image_folders(root / "images"))
    nested.update(nested_image_folders(root / "labels"))
    if not nested:
        return None
    return (f"images in sub-folders of {root} are not read: {_nested_said(root, nested)}; a "
            f"DATA folder is flat: move them up into images/ (their labels into labels/)")


def _found_below(folder: Path, stem: str) -> Path | None:
    """A file named ``stem`` with any suffix in a sub-folder of ``folder``, or None."""
    for sub in nested_image_folders(folder):
        found = sorted(p for p in sub.glob(f"{glob.escape(stem)}.*") if p.is_file())
        if found:
            return found[0]
    return None


def list_unlabeled(folder: Path) -> list[Path]:
    """The files of a DATA/unlabeled/ ``folder`` (not hidden), sorted: images as
    :func:`list_images`, and MRC files (:data:`nwwatch.io.mrc.MRC_SUFFIXES`): a tomogram's
    unlabeled volume is often the reconstruction itself (.rec, .mrc)."""
    from nwwatch.io.mrc import is_mrc

    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and (p.suffix.lower() in IMAGE_SUFFIXES or is_mrc(p)))


def by_stem(paths: list[Path]) -> dict[str, Path]:
    """{stem: path}; two files with one stem raise :class:`DatasetLayoutError`."""
    out: dict[str, Path] = {}
    for path in paths:
        if path.stem in out:
            raise DatasetLayoutError(path, f"two files with the stem {path.stem!r} "
                                           f"({out[path.stem].name} and {path.name})")
        out[path.stem] = path
    return out


def read_dataset_toml(root: Path) -> tuple[str, tuple[str, ...], str]:
    """(kind, class_names, normalization_scope) from DATA/dataset.toml, or in-situ defaults."""
    path = root / "dataset.toml"
    if not path.is_file():
        return "insitu", INSITU_CLASSES, "image"
    try:
        config = read_toml(path)
    except TomlFileError as exc:
        raise DatasetLayoutError(path, exc.reason) from None
    known = ("classes", "kind", "normalization_scope")
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise DatasetLayoutError(path, f"unknown keys {unknown} (known: {', '.join(known)})")
    kind = config.get("kind", "insitu")
    if kind not in ("insitu", "tomogram"):
        raise DatasetLayoutError(path, f"kind: {kind!r} must be 'insitu' or 'tomogram'")
    default = INSITU_CLASSES if kind == "insitu" else TOMOGRAM_CLASSES
    classes = config.get("classes", list(default))
    if kind == "tomogram" and (not isinstance(classes, list) or len(classes) != 2):
        # The tomogram masks, metrics and verdicts are binary: a third class would be
        # trained and then dropped from every mask without a word.
        raise DatasetLayoutError(path, f"classes: a tomogram has two classes, 0 pore or "
                                       f"vacuum and 1 solid (e.g. {list(TOMOGRAM_CLASSES)}), "
                                       f"got {classes!r}")
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) for c in classes)):
        raise DatasetLayoutError(path, "classes: expected a list of at least two names")
    misplaced = misplaced_insitu_class(classes) if kind == "insitu" else None
    if misplaced:  # else a model whose droplet the service measures as the wire
        raise DatasetLayoutError(path, f"{misplaced}: renumber the labels to that order and "
                                       f"list the classes so")
    scope = config.get("normalization_scope", "image" if kind == "insitu" else "volume")
    if scope not in ("image", "volume"):
        raise DatasetLayoutError(path, f"normalization_scope: {scope!r} must be 'image' or "
                                       f"'volume'")
    return kind, tuple(classes), scope


def image_folder(root: Path) -> Path:
    """DATA/images when it exists, else DATA itself (the layout ``nwwatch synth`` writes)."""
    return root / "images" if (root / "images").is_dir() else root


def pair_folder(root: str | os.PathLike[str]) -> list[tuple[str, Path, Path]]:
    """Sorted (stem, image path, label path) triples of a DATA folder.

    Raises
    ------
    DatasetLayoutError : naming the file or folder: missing folder, no labels folder, no
        images, image without label, label without image, two files with one stem.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(root, "data folder not found")
    if not any(root.iterdir()):
        raise DatasetLayoutError(root, "empty folder: expected DATA/images/<stem>.tif and "
                                       "DATA/labels/<stem>.png (`nwwatch label FRAMES --out "
                                       "DATA` writes them)")
    image_dir = image_folder(root)
    label_dir = root / "labels"
    if not label_dir.is_dir():  # DATA/images given as DATA: say so, not "images/labels"
        hint = (f"; {root} is a DATA folder's {root.name}/: give {root.parent} as DATA"
                if root.name in ("images", "labels") and (root.parent / "labels").is_dir() else "")
        if not hint and (root / "train" / "labels").is_dir():
            # `nwwatch synth tomogram OUT` writes its DATA folder as OUT/train
            hint = f"; {root / 'train'} holds one: give it as DATA"
        if not hint and (root / "frames").is_dir():
            hint = (f"; {root} is a results folder (the service's or replay's rows), not "
                    f"labeled frames: `nwwatch label --queue {root} --out DATA` makes a DATA "
                    f"folder from its least confident frames")
        elif not hint and (root / "volumes").is_dir():
            hint = (f"; {root} is a results folder of tomograms, not labeled slices "
                    f"(docs/tomography.md: label a slice, then nwwatch train --volume)")
        raise DatasetLayoutError(label_dir, f"labels folder not found (DATA/labels/<stem>.png)"
                                            f"{hint}")
    images = list_images(image_dir)
    if not images:
        jpegs = sorted(p.name for p in image_dir.glob("*.[jJ][pP]*[gG]") if p.is_file())
        said = (f" ({jpegs[0]} and other JPEG files are not read: convert the frames to TIFF "
                f"or PNG)" if len(jpegs) > 1 else f" ({jpegs[0]} is not read: convert it to "
                f"TIFF or PNG)" if jpegs else "")
        nested = nested_image_folders(image_dir) if image_dir != root else {}
        if nested:  # e.g. images/day1/, images/day2/: said, not "no images"
            said += (f"; its sub-folders are not read: {_nested_said(root, nested)}: a DATA "
                     f"folder is flat, move the images up into {image_dir.name}/ (their "
                     f"labels into labels/)")
        raise DatasetLayoutError(image_dir, f"no images (.tif, .tiff, .png) in this folder"
                                            f"{said}")
    image_by_stem = by_stem(images)
    label_by_stem = by_stem(list_images(label_dir))
    for stem, path in image_by_stem.items():
        if stem not in label_by_stem:
            other = sorted(p for p in label_dir.glob(f"{glob.escape(stem)}.*") if p.is_file())
            if other:  # a JPEG (or other) label: listed nowhere, so say why it is not read
                raise DatasetLayoutError(path, f"no label for this image: {other[0]} is not "
                                               f"read (labels are PNG or TIFF; save them "
                                               f"losslessly: JPEG changes the class ids)")
            # e.g. labels/img01_mask.png, labels/IMG01.png: said, not paired by a guess
            same_but_case = sorted(name for name in label_by_stem
                                   if name.lower() == stem.lower())
            longer = sorted(name for name in label_by_stem
                            if name.lower().startswith(stem.lower()))
            below = _found_below(label_dir, stem)
            if same_but_case:
                named = (f"; {label_by_stem[same_but_case[0]].name} is there, a name that "
                         f"differs in letter case only: name each label file after its image, "
                         f"case included")
            elif longer:
                named = (f"; {label_by_stem[longer[0]].name} is there: name each label file "
                         f"after its image")
            elif below is not None:
                named = (f"; {below.relative_to(root)} is there, in a sub-folder, which is "
                         f"not read: a DATA folder is flat, move it up into labels/")
            else:
                named = ""
            raise DatasetLayoutError(path, f"no label for this image (expected "
                                           f"{label_dir / stem}.png){named}")
    for stem, path in label_by_stem.items():
        if stem not in image_by_stem:
            other = sorted(p for p in image_dir.glob(f"{glob.escape(stem)}.*") if p.is_file())
            below = _found_below(image_dir, stem) if image_dir != root else None
            said = (f"; {other[0].name} is not read (frames are TIFF or PNG: convert it)"
                    if other else f"; {below.relative_to(root)} is there, in a sub-folder, "
                    f"which is not read: a DATA folder is flat, move it up into "
                    f"{image_dir.name}/" if below is not None else "")
            raise DatasetLayoutError(path, f"label without an image (expected {image_dir / stem}"
                                           f".tif){said}")
    return [(stem, image_by_stem[stem], label_by_stem[stem]) for stem in sorted(image_by_stem)]


def _wide_integer_hint(path: str | os.PathLike[str], kind: str) -> str:
    """For 32- and 64-bit integer labels, what napari's saved Labels layer (an int32 or int64
    volume, 0 unlabeled, classes counted from 1) needs besides the pixel type, said at once:
    the conversion of its ids and, for a file of several pages, the labeled slice's page."""
    if not any(kind.endswith(t) for t in ("int32", "int64")):
        return ""
    hint = (f"; from napari or ilastik (0 unlabeled, classes counted from 1)? convert them: "
            f"numpy.where(labels == 0, {UNLABELED}, labels - 1).astype('uint8')")
    try:  # header only: the structural checks before the pixel type passed
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    except Exception:  # the hint is a courtesy: the refusal stands without it
        return hint
    pages = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    if pages > 1:
        hint += (f"; this file has {pages} pages (a labels volume?): save the labeled "
                 f"slice's page alone, labels[Z] with Z its --slice")
    return hint


#: Why a label file that :func:`starts_as_jpeg` under a ``.png`` name is refused.
JPEG_NAMED_PNG = ("a JPEG file named .png (a lossy save): JPEG changes the class ids at edges; "
                  "save the labels as PNG (lossless) from the tool that drew them")


def starts_as_jpeg(path: str | os.PathLike[str]) -> bool:
    """Whether the file begins with the JPEG start-of-image marker (FF D8 FF)."""
    try:
        with open_regular(path) as file:  # a FIFO would block a plain open()
            return file.read(3) == b"\xff\xd8\xff"
    except (OSError, InputError):
        return False  # the reader names the file and why it cannot be read


def read_label_image(path: str | os.PathLike[str],
                     num_classes: int = len(INSITU_CLASSES)) -> np.ndarray:
    """A label image: uint8 (H, W) class ids in [0, ``num_classes``) or 255 (unlabeled), as
    ``nwwatch synth`` and the labelling page write them (in-situ: 3 classes; tomograms:
    ``len(TOMOGRAM_CLASSES)``). Raises :class:`DatasetLayoutError` naming the file when it is
    missing, unreadable, not a single 2D image or holds other values."""
    return check_label(_label_page(path, num_classes), num_classes, path)


def _label_page(path: str | os.PathLike[str], num_classes: int) -> np.ndarray:
    """The one page (H, W) of a label file as read, its values not checked."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:  # else a JPEG was "not a TIFF file"
        raise DatasetLayoutError(path, f"labels are read from PNG or TIFF files, not "
                                       f"{suffix or 'a file without suffix'}: save them "
                                       f"losslessly (JPEG changes the class ids at edges)")
    if suffix == ".png" and starts_as_jpeg(path):
        # OpenCV decodes by content: the JPEG's edge values (a 3 between 2 and 0) would be
        # reported as another tool's class numbering, or trained on where they fall in range
        raise DatasetLayoutError(path, JPEG_NAMED_PNG)
    try:
        # A label image's pixel size is never used: read_volume takes any calibration (a
        # tomogram's slice may have x != y), where read_frames refuses non-square pixels.
        pages = read_pages(path) if suffix == ".png" else _as_layout_error(read_volume,
                                                                           path).data
    except DatasetLayoutError as exc:
        colour = (colour_label_mask_reason(path, as_labels=True)
                  if isinstance(exc.__cause__, MultichannelError) else None)
        if colour is not None:  # the frame reader's advice (the acquisition's file) is no help
            raise DatasetLayoutError(exc.path, colour) from exc
        if not isinstance(exc.__cause__, UnsupportedDtypeError):
            raise
        # The image reader's advice (float32 for int32 pixels) is for images, not class ids.
        kind = exc.reason.split(" is not supported")[0]
        raise DatasetLayoutError(exc.path, f"{kind} is not read for labels: "
                                           f"{_save_as_uint8(num_classes)}"
                                           f"{_wide_integer_hint(path, kind)}") from exc
    depth = low_grey_bit_depth(path) if suffix == ".png" else None
    if depth is not None:
        # a 1-, 2- or 4-bit image holds class ids 0..2**depth - 1 (a binary mask, a fully
        # labeled mask an optimiser shrank), which OpenCV scales to 0..255: a 1-bit mask's
        # foreground read as unlabeled, a 2-bit one's classes 1 and 2 as 85 and 170
        pages = (pages // (255 // (2 ** depth - 1))).astype(np.uint8)
    if pages.shape[0] != 1:
        raise DatasetLayoutError(path, f"expected a 2D image, this file has {pages.shape[0]} "
                                       f"pages (a labels volume?): labels are one 2-D image per "
                                       f"labeled image or slice; save the page of each labeled "
                                       f"slice alone (labels[Z] in numpy, Z its --slice)")
    return pages[0]


def read_pair(image_path: Path, label_path: Path, num_classes: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(image (H, W) native dtype, label uint8 (H, W)) of one pair, checked to match."""
    image = read_image_2d(image_path)
    label = read_label_image(label_path, num_classes)
    if label.shape != image.shape:
        raise DatasetLayoutError(label_path, f"label shape {label.shape} != image shape "
                                             f"{image.shape} of {image_path.name}: a label "
                                             f"image has one class per pixel of its image; "
                                             f"resize it with nearest-neighbour interpolation "
                                             f"(never linear) or label the image at its size")
    return image, label


def folder_class_names(root: str | os.PathLike[str]) -> tuple[str, ...]:
    """The class names of the DATA folder ``root`` (its ``dataset.toml``'s, else in-situ's),
    for messages written before the run reads the folder: the in-situ ones when its
    ``dataset.toml`` is refused (the run names that file)."""
    try:
        return read_dataset_toml(Path(root))[1]
    except DatasetLayoutError:
        return INSITU_CLASSES


def mask_like_labels(root: str | os.PathLike[str]) -> list[Path]:
    """Label images of the DATA folder ``root`` holding exactly the values 0 and 255: most
    likely 0/255 binary masks, whose foreground (255 = unlabeled) would be left out of
    training and scoring without a word. Empty for a folder :func:`pair_folder` refuses; a
    label :func:`read_label_image` refuses is passed over (the run names it)."""
    try:
        pairs = pair_folder(root)
    except DatasetLayoutError:
        return []
    return mask_like_files([label_path for _, _, label_path in pairs])


def mask_like_files(label_paths: Sequence[Path]) -> list[Path]:
    """Those of ``label_paths`` holding exactly the values 0 and 255 (as
    :func:`mask_like_labels`; e.g. ``train --volume``'s ``--labels``); a file
    :func:`read_label_image` refuses is passed over (the run names it)."""
    found = []
    for label_path in label_paths:
        try:
            values = set(np.unique(read_label_image(label_path)).tolist())
        except DatasetLayoutError:
            continue
        if values == {0, UNLABELED}:
            found.append(label_path)
    return found
