"""QA pictures of measured frames: the measurement overlay (and optionally the label image) of
one frame as PNG files inside the results folder, written atomically, named so that the same
frame of the same file content and model always lands on the same name (a retry after a
crash replaces its own picture instead of leaving a second one).

The frame row's ``overlay_path`` column holds the overlay's path relative to the results
folder; the dashboard links it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from nwwatch.atomic import atomic_write
from nwwatch.measure.overlay import draw_overlay
from nwwatch.measure.result import ContactAngleResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def picture_stem(source: str | os.PathLike[str], source_sha256: str, model_sha256: str | None,
                 frame: int) -> str:
    """``{file stem}-{sha256[:12]}-{model sha256[:8]}-p{frame:04d}``; characters other than
    ASCII letters, digits and ``._+-`` in the stem become ``_`` (the hashes keep names of
    different files apart)."""
    stem = _UNSAFE.sub("_", Path(os.fsdecode(source)).stem)[:80] or "frame"
    model = (model_sha256 or "nomodel")[:8]
    return f"{stem}-{source_sha256[:12]}-{model}-p{frame:04d}"


def _png(image: np.ndarray) -> bytes:
    # zlib level 1: encoding is most of a picture's cost (bench/bench_ops.py); files ~10 %
    # larger than at OpenCV's default level 3.
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError("PNG encoding failed")
    return data.tobytes()


def write_frame_pictures(
    results_dir: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    stem: str,
    image: np.ndarray | None,
    labels: np.ndarray,
    result: ContactAngleResult,
    *,
    save_labels: bool = False,
) -> str:
    """Write ``{folder}/{stem}.png`` (the overlay of :func:`nwwatch.measure.draw_overlay`) and,
    with ``save_labels``, ``{folder}/{stem}-labels.png`` (uint8 class ids) under
    ``results_dir``.

    Parameters
    ----------
    results_dir : the results folder.
    folder : relative to ``results_dir``; must stay inside it.
    stem : file name without suffix, e.g. from :func:`picture_stem`.
    image : the frame (H, W), any real dtype, or None to draw on the labels.
    labels : uint8 (H, W) class ids.
    result : the frame's measurement.

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
    if not (target.resolve() == root.resolve() or root.resolve() in target.resolve().parents):
        raise ValueError(f"{target}: QA pictures go inside the results folder {root}")
    overlay = target / f"{stem}.png"
    with atomic_write(overlay) as handle:
        handle.write(_png(draw_overlay(image, labels, result)))
    if save_labels:
        with atomic_write(target / f"{stem}-labels.png") as handle:
            handle.write(_png(np.ascontiguousarray(labels, dtype=np.uint8)))
    return overlay.relative_to(root).as_posix()
