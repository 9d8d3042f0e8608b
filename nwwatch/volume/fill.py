"""A constant fill in a tomogram (the padding of an alignment or a mask, written as a value),
found and handed on as no data (NaN), as NaN padding is.

Reconstructions are often padded with a constant: zeros from the alignment or a mask, a
uint16 export's 0 or 65535, int16's -32768. Counted as data, such a fill dominates the 0.5
percentile of the normalisation, the Otsu reference and a model's darkest (or brightest)
grey. :func:`without_constant_fill` finds it and returns the volume as float32 with NaN at the
fill's voxels, so every rule for voxels without data applies unchanged (never solid, left out
of the grey range, the Z blur and the references; docs/tomography.md, "Constant fill").

What is a fill: the volume's lowest or highest finite value v, where

- the voxels equal to v whose six neighbours are all equal to v (a neighbour outside the
  volume counts as equal) form 6-connected blocks that touch the volume's faces, each block
  at least :data:`MIN_BLOCK_SHARE` of the volume and together at least :data:`MIN_FILL_SHARE`;
- the fill is those blocks and the voxels equal to v next to them (their one-voxel rim);
- the rest of the volume is noisy: at most :data:`MAX_PLAIN_SHARE` of its voxels of other
  values equal all six neighbours. A piecewise-constant volume (a simulation without noise, a
  label image) has its content in constant blocks: none of them is taken as fill.

Clipped noise leaves speckle (few voxels whose six neighbours are all clipped, in small
blocks); a saturated grain inside the volume does not touch its faces. A saturated region
that does touch them is taken as fill. A constant fill of a value between the lowest and the
highest (zero in a signed volume, as outside the reconstruction circle of ``nwwatch synth
tomogram``'s volumes; IMOD's fill with the mean) is not looked for: it sets neither end of the
grey range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

#: The least share of the volume a fill holds in blocks of voxels equal to all six neighbours.
MIN_FILL_SHARE = 0.01
#: The least share of the volume each of those blocks holds (smaller ones are speckle).
MIN_BLOCK_SHARE = 0.001
#: The most share of the other voxels that may equal all six neighbours (noisy data: ~0).
MAX_PLAIN_SHARE = 0.05


@dataclass(frozen=True)
class ConstantFill:
    """One fill found: its ``value`` (in the volume's units), the ``voxels`` taken as no data
    and their ``share`` of the volume's voxels."""

    value: float
    voxels: int
    share: float


def _plain_share(data: np.ndarray, equal: np.ndarray) -> float:
    """The share of the voxels of ``data`` (Z, Y, X) outside ``equal`` (bool, same shape)
    whose six neighbours hold their value (outside the volume counts as equal)."""
    plain = np.ones(data.shape, bool)
    for axis in range(3):
        p, d = np.moveaxis(plain, axis, 0), np.moveaxis(data, axis, 0)
        same = d[1:] == d[:-1]
        p[1:] &= same
        p[:-1] &= same
    others = data.size - int(np.count_nonzero(equal))
    return float(np.count_nonzero(plain & ~equal) / others) if others else 1.0


def _equal_to_six_neighbours(equal: np.ndarray) -> np.ndarray:
    """bool (Z, Y, X): the voxels of ``equal`` whose six neighbours are in ``equal`` too
    (outside the volume counts as in it)."""
    block = equal.copy()
    for axis in range(3):
        b, e = np.moveaxis(block, axis, 0), np.moveaxis(equal, axis, 0)
        b[1:] &= e[:-1]
        b[:-1] &= e[1:]
    return block


def _grow_one_voxel(region: np.ndarray, within: np.ndarray) -> np.ndarray:
    """bool (Z, Y, X): ``region`` and its six-neighbours, kept to ``within``."""
    grown = region.copy()
    for axis in range(3):
        g, r = np.moveaxis(grown, axis, 0), np.moveaxis(region, axis, 0)
        g[1:] |= r[:-1]
        g[:-1] |= r[1:]
    grown &= within
    return grown


def _face_labels(labels: np.ndarray) -> np.ndarray:
    """The labels (ints > 0) found on the six faces of ``labels`` (Z, Y, X)."""
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0],
             labels[:, :, -1]]
    found = np.unique(np.concatenate([f.reshape(-1) for f in faces]))
    return found[found > 0]


def _fill_of_value(equal: np.ndarray) -> np.ndarray | None:
    """bool (Z, Y, X): the fill among the voxels of ``equal`` (module docstring), or None."""
    size = equal.size
    need = math.ceil(MIN_FILL_SHARE * size)
    block = _equal_to_six_neighbours(equal)
    if np.count_nonzero(block) < need:
        return None
    labels, _ = ndi.label(block)  # 6-connected
    del block
    sizes = np.bincount(labels.reshape(-1))
    keep = _face_labels(labels)
    keep = keep[sizes[keep] >= max(1, math.ceil(MIN_BLOCK_SHARE * size))]
    if int(sizes[keep].sum()) < need:
        return None
    kept = np.zeros(sizes.size, bool)
    kept[keep] = True
    return _grow_one_voxel(kept[labels], equal)


def constant_fill(volume: np.ndarray) -> tuple[np.ndarray | None, tuple[ConstantFill, ...]]:
    """The constant fill of ``volume`` (Z, Y, X), any real dtype: a bool (Z, Y, X) mask of
    its voxels, or None, and one :class:`ConstantFill` per value found (the lowest and the
    highest finite value may both be one). A few passes over the
    volume when those values are rare; a labelling of the blocks (4 bytes a voxel, briefly)
    when they are not.
    """
    data = np.asarray(volume)
    if data.ndim != 3 or data.size == 0 or data.dtype.kind not in "iuf":
        return None, ()
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.any():
            return None, ()
        low = data.min(where=finite, initial=np.inf)
        high = data.max(where=finite, initial=-np.inf)
        del finite
    else:
        low, high = data.min(), data.max()
    if low == high:  # blank (refused by nwwatch.io.check_tomogram)
        return None, ()
    mask: np.ndarray | None = None
    fills = []
    for value in (low, high):
        equal = data == value
        if np.count_nonzero(equal) < math.ceil(MIN_FILL_SHARE * data.size):
            continue
        region = _fill_of_value(equal)
        if region is None or _plain_share(data, equal) > MAX_PLAIN_SHARE:
            continue
        del equal
        count = int(np.count_nonzero(region))
        fills.append(ConstantFill(float(value), count, count / data.size))
        mask = region if mask is None else mask | region
    return mask, tuple(fills)


def without_constant_fill(volume: np.ndarray) -> tuple[np.ndarray, tuple[ConstantFill, ...]]:
    """``volume`` (Z, Y, X) as the tomogram workflow segments and trains on it: unchanged
    (the same array) when it holds no constant fill (:func:`constant_fill`); else a copy,
    float32 (float64 stays float64), with NaN at the fill's voxels. The fills found are
    returned for the caller's warning."""
    mask, fills = constant_fill(volume)
    if mask is None:
        return volume, ()
    dtype = np.float64 if np.asarray(volume).dtype == np.float64 else np.float32
    out = np.array(volume, dtype=dtype)
    out[mask] = np.nan
    return out, fills


def fill_text(fills: tuple[ConstantFill, ...]) -> str:
    """The fills as the warnings say them: ``0 (21.3 % of the voxels)``, joined by ``and``."""
    return " and ".join(f"{f.value:g} ({100 * f.share:.1f} % of the voxels)" for f in fills)
