"""Scaled-down copies of QA pictures for the dashboard's latest-frame panel.

An overlay is drawn at the frame's own size: 3-6 MB of PNG for a 2048² frame, 22 MB for a
4096² one, which the page would fetch whenever the latest frame changes only to show it a
few hundred pixels wide. The panel asks for ``?max_px=N`` instead and gets a JPEG whose
longer side is N; a click still opens the full-size file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

#: Bounds of ``max_px``: the panel's size in device pixels, rounded up by the page.
MIN_PREVIEW_PX = 64
MAX_PREVIEW_PX = 8192
#: JPEG quality of a preview: the thin fit lines stay clean at 90.
PREVIEW_JPEG_QUALITY = 90


@lru_cache(maxsize=16)
def _preview(path: Path, mtime_ns: int, size_bytes: int, max_px: int) -> bytes | None:
    import cv2

    from nwwatch.io.png import decode_image_file

    try:
        picture = decode_image_file(path, cv2.IMREAD_COLOR)
    except OSError:  # removed or unreadable since the stat: the caller serves or names it
        return None
    if picture is None:
        return None
    height, width = picture.shape[:2]
    factor = max_px / max(height, width)
    if factor >= 1.0:
        return None
    small = cv2.resize(picture, (max(1, round(width * factor)), max(1, round(height * factor))),
                       interpolation=cv2.INTER_AREA)  # area averaging: no aliasing of noise
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_JPEG_QUALITY])
    return np.asarray(buf).tobytes() if ok else None


def picture_preview_jpeg(path: Path, max_px: int) -> bytes | None:
    """JPEG bytes of the picture at ``path`` scaled (area averaging) so that its longer side
    is ``max_px``; None when the picture is no larger than that or cannot be decoded (the
    caller then serves the file itself, which the page shows or names as unreadable).
    Cached by path, modification time and size, so a picture rewritten under the same name
    is scaled again."""
    try:
        st = path.stat()
    except OSError:
        return None
    return _preview(path, st.st_mtime_ns, st.st_size, int(max_px))
