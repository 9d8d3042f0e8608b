"""PNG (and other OpenCV image) files read and written through Python's own file calls.

``cv2.imread`` and ``cv2.imwrite`` take the path as a C string: OpenCV's Python binding
crashes the interpreter (SIGSEGV) on a ``str`` path holding a byte that is not UTF-8 (Python
keeps such a byte as a lone surrogate, ``'fr\\udce9me.png'``), a name a Windows share or an
old acquisition PC writes. Here the bytes go through ``open``, which takes every name the
file system does, and OpenCV only encodes or decodes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

# OpenCV's own log lines ("[ERROR:0@0.1] global grfmt_png.cpp ... IHDR chunk shall be
# first") went to stderr beside the reader's refusal, which names the file and the cause.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

#: ``cv2.imencode`` parameters of QA pictures (overlays, their label images): zlib level 1.
#: Encoding is most of a picture's cost (bench/bench_ops.py); files ~10 % larger than at
#: OpenCV's default level 3, which wrote noisy frames' overlays ~1.9x larger than level 1.
PICTURE_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]


def decode_image_file(path: str | os.PathLike[str], flags: int = cv2.IMREAD_UNCHANGED
                      ) -> np.ndarray | None:
    """The image in the file at ``path`` as ``cv2.imread(path, flags)`` returns it: an
    array, or None when OpenCV cannot decode the bytes (an empty file too).

    Raises OSError (naming the path) when the file cannot be read."""
    data = Path(path).read_bytes()
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)


def write_image_file(path: str | os.PathLike[str], image: np.ndarray,
                     params: list[int] | None = None, durable: bool = False) -> Path:
    """Write ``image`` to ``path`` in the format its suffix names (as ``cv2.imwrite`` with
    ``params``), atomically (:func:`nwwatch.atomic.atomic_write`: never a partial file at
    ``path``); ``durable``: fsynced, for files that must survive a power cut. Returns ``path``.

    Raises OSError naming the path when OpenCV cannot encode the image or the file cannot
    be written."""
    from nwwatch.atomic import atomic_write

    path = Path(path)
    data = encode_image(image, path.suffix or ".png", params, path)
    with atomic_write(path, durable=durable) as handle:
        handle.write(data)
    return path


def encode_image(image: np.ndarray, suffix: str = ".png", params: list[int] | None = None,
                 path: str | os.PathLike[str] = "") -> bytes:
    """``image`` encoded as a file of the format ``suffix`` names (as ``cv2.imencode`` with
    ``params``); OSError naming ``path`` when OpenCV cannot encode it."""
    ok, data = cv2.imencode(suffix, image, params or [])
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the image as {suffix}")
    return data.tobytes()


def low_grey_bit_depth(path: str | os.PathLike[str]) -> int | None:
    """The bit depth (1, 2 or 4) of a PNG of grey pixels stored in fewer than 8 bits (IHDR
    colour type 0), whose values 0..2**depth - 1 OpenCV decodes scaled to 0..255; None for
    any other file, or one that cannot be read (its reader then says why). Optimisers
    (optipng, oxipng) store a mask of few small values so, and Pillow a mode "1" image."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(26)
    except OSError:
        return None
    if (len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
            and head[24] in (1, 2, 4) and head[25] == 0):
        return head[24]
    return None
