"""Overlapping tiles for slices larger than a model's working size, blended back smoothly."""

from __future__ import annotations

import numpy as np


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``range(length)`` with >= ``overlap``.

    The last tile is aligned to the end, so every tile lies fully inside (when
    ``length >= tile``); a length not above ``tile`` gives the single start 0.
    """
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got {tile}, {overlap}")
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def blend_weights(tile_shape: tuple[int, int], overlap: int) -> np.ndarray:
    """float32 (H, W) weights: 1 in the middle, ramping linearly down over ``overlap`` px.

    Never zero (the outermost pixel gets ``1 / (overlap + 1)``), so pixels on the slice's
    border, which only one tile covers, still get a weight.
    """
    def ramp(n: int) -> np.ndarray:
        index = np.arange(n, dtype=np.float32)
        edge = np.minimum(index, n - 1 - index) + 1.0
        return np.minimum(edge / np.float32(overlap + 1), np.float32(1.0))

    return np.outer(ramp(tile_shape[0]), ramp(tile_shape[1])).astype(np.float32)
