"""QA pictures of measured frames: the measurement overlay (and optionally the label image) of
one frame as PNG files inside the results folder, written atomically, named so that the same
frame of the same file content, model and measurement version always lands on the same name
(a retry after a crash replaces its own picture instead of leaving a second one).

The frame row's ``overlay_path`` column holds the overlay's path relative to the results
folder; the dashboard links it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from nwwatch.io.png import PICTURE_PNG_PARAMS, write_image_file
from nwwatch.paths import lies_inside
from nwwatch.pathtext import path_text

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def picture_file_stem(source: str | os.PathLike[str]) -> str:
    """The part of :func:`picture_stem` that names the file: its stem with characters other
    than ASCII letters, digits and ``._+-`` as ``_``, at most 80 of them."""
    return _UNSAFE.sub("_", Path(os.fsdecode(source)).stem)[:80] or "frame"


def picture_stem(source: str | os.PathLike[str], source_sha256: str, model_sha256: str | None,
                 frame: int, measurement_version: str) -> str:
    """``{file stem}-{sha256[:12]}-{model sha256[:8]}-m{measurement version}-p{frame:04d}``;
    characters other than ASCII letters, digits and ``._+-`` in the stem and the version
    become ``_`` (the hashes keep names of different files apart; the version keeps the
    pictures of rows measured under an earlier version, which an update leaves beside the
    new ones, from being drawn over)."""
    stem = picture_file_stem(source)
    model = (model_sha256 or "nomodel")[:8]
    version = _UNSAFE.sub("_", measurement_version)[:20]
    return f"{stem}-{source_sha256[:12]}-{model}-m{version}-p{frame:04d}"




#: A saved label image's name (:func:`write_frame_pictures` with labels): the picture's
#: stem, then ``-labels.png``.
_LABELS_NAME = re.compile(r"(?P<stem>.+)-(?P<sha12>[0-9a-f]{12})-(?P<model8>[0-9a-f]{8}|nomodel)"
                          r"-m[A-Za-z0-9._+-]{1,20}-p(?P<page>\d{4,})-labels\.png")


#: A QA picture's name (:func:`write_frame_pictures`' overlay): the picture's stem, then
#: ``.png``.
_OVERLAY_NAME = re.compile(r".+-[0-9a-f]{12}-(?:[0-9a-f]{8}|nomodel)-m[A-Za-z0-9._+-]{1,20}"
                           r"-p\d{4,}\.png")


def qa_picture_labels_name(name: str) -> str | None:
    """The name of the label image saved beside a QA picture (the overlay the service or
    replay writes, ``{picture_stem}.png``): ``{picture_stem}-labels.png``; None for any
    other name."""
    if _OVERLAY_NAME.fullmatch(name) is None:
        return None
    return name[:-len(".png")] + "-labels.png"


def saved_labels_of(name: str) -> tuple[str, str, int] | None:
    """(file stem as :func:`picture_file_stem` writes it, the first 12 hex digits of the
    file's sha256, page) of the frame a label image named as the service saves them
    (``{picture_stem}-labels.png``) was drawn on; None for any other name."""
    match = _LABELS_NAME.fullmatch(name)
    if match is None:
        return None
    return match["stem"], match["sha12"], int(match["page"])


def write_frame_pictures(
    results_dir: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    stem: str,
    overlay: np.ndarray,
    labels: np.ndarray | None = None,
) -> str:
    """Write ``{folder}/{stem}.png`` (the frame's overlay) and, when ``labels`` are given,
    ``{folder}/{stem}-labels.png`` (uint8 class ids) under ``results_dir``.

    Parameters
    ----------
    results_dir : the results folder.
    folder : relative to ``results_dir``; must stay inside it.
    stem : file name without suffix, e.g. from :func:`picture_stem`.
    overlay : uint8 (H, W, 3) BGR picture, e.g. :func:`nwwatch.measure.draw_overlay` of the
        frame, its labels and its measurement.
    labels : uint8 (H, W) class ids, or None.

    Returns
    -------
    The overlay's path relative to ``results_dir`` (POSIX separators), for ``overlay_path``.

    Raises
    ------
    ValueError : ``folder`` leads outside ``results_dir``.
    OSError : the files could not be written (nothing partial is left under the final names).
    """
    root = Path(results_dir)
    target = root / folder
    if not lies_inside(target, root):
        raise ValueError(f"{target}: QA pictures go inside the results folder {root}")
    path = write_image_file(target / f"{stem}.png", overlay, PICTURE_PNG_PARAMS, durable=True)
    if labels is not None:
        write_image_file(target / f"{stem}-labels.png",
                         np.ascontiguousarray(labels, dtype=np.uint8), PICTURE_PNG_PARAMS,
                         durable=True)
    return path_text(path.relative_to(root).as_posix())  # a row's text, non-UTF-8 names too
