"""Pictures of a tomogram's mask for the dashboard: three central orthogonal slices."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np


def mask_slices(mask: np.ndarray) -> np.ndarray:
    """uint8 (H, W) picture of the central (z, y, x) slices of a (Z, Y, X) mask side by
    side, solid white, pore/vacuum black, separated by a grey gap of 4 px (grey also below
    a slice shorter than the tallest)."""
    z, y, x = (s // 2 for s in mask.shape)
    views = [mask[z], mask[:, y, :], mask[:, :, x]]
    height = max(v.shape[0] for v in views)
    parts = []
    for v in views:
        pad = np.full((height, v.shape[1]), 128, np.uint8)
        pad[:v.shape[0]] = (v > 0) * 255
        parts += [pad, np.full((height, 4), 128, np.uint8)]
    return np.hstack(parts[:-1])


@lru_cache(maxsize=32)
def _png(path: Path, mtime_ns: int) -> bytes | None:
    import cv2

    from nwwatch.io import InputError, read_volume

    try:
        picture = mask_slices(np.asarray(read_volume(path).data))
    except (InputError, OSError):
        return None
    ok, buf = cv2.imencode(".png", picture)
    return buf.tobytes() if ok else None


def mask_slices_png(path: Path) -> bytes | None:
    """PNG bytes of :func:`mask_slices` for the mask TIFF at ``path``; None when unreadable."""
    try:
        return _png(Path(path), path.stat().st_mtime_ns)
    except OSError:
        return None
