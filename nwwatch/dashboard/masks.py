"""Pictures of a tomogram's mask for the dashboard: three central orthogonal slices."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

#: The most a picture's axis is stretched to show its voxels' true aspect.
MAX_STRETCH = 16


def mask_slices(mask: np.ndarray,
                voxel_size_nm: tuple[float, float, float] | None = None) -> np.ndarray:
    """uint8 (H, W) picture of the central (z, y, x) slices of a (Z, Y, X) mask side by
    side, solid white, pore/vacuum black, separated by a grey gap of 4 px (grey also below
    a slice shorter than the tallest). With ``voxel_size_nm`` (z, y, x), each slice's axes
    are stretched (nearest voxel, at most :data:`MAX_STRETCH` times) to their true lengths,
    the finest axis one pixel a voxel: a volume of 2 nm slices and 0.5 nm pixels drawn
    voxel for pixel showed its grain four times flatter than it is."""
    z, y, x = (s // 2 for s in mask.shape)
    views = [mask[z], mask[:, y, :], mask[:, :, x]]
    if voxel_size_nm is not None and all(v and v > 0 for v in voxel_size_nm):
        import cv2

        finest = min(voxel_size_nm)
        scale = [min(v / finest, MAX_STRETCH) for v in voxel_size_nm]
        axes = [(1, 2), (0, 2), (0, 1)]  # (rows, cols) of each view, as (z, y, x) indices
        views = [cv2.resize((v > 0).astype(np.uint8), None, fx=scale[c], fy=scale[r],
                            interpolation=cv2.INTER_NEAREST)
                 if (scale[r], scale[c]) != (1.0, 1.0) else v
                 for v, (r, c) in zip(views, axes, strict=True)]
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
        volume = read_volume(path)
        picture = mask_slices(np.asarray(volume.data), volume.voxel_size_nm)
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
