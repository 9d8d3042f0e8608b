"""A constant fill in a tomogram (the padding of an alignment or a mask, written as a value),
found and handed on as no data (NaN), as NaN padding is.

Reconstructions are often padded with a constant: zeros from the alignment or a mask, a
uint16 export's 0 or 65535, int16's -32768. Counted as data, such a fill dominates the 0.5
percentile of the normalisation, the Otsu reference and a model's darkest (or brightest)
grey. :func:`without_constant_fill` finds it and returns the volume as float32 with NaN at the
fill's voxels, so every rule for voxels without data applies unchanged (never solid, left out
of the grey range, the Z blur and the references; docs/tomography.md, "Constant fill").

Detection is conservative: a fill missed is counted as data (today's behaviour, usually
flagged by the verdict), while data taken as fill would silently vanish from the mask. A fill
is the volume's lowest or highest finite value v where, all together:

- the volume has at least :data:`MIN_SLICES` slices;
- the (y, x) columns equal to v in every slice (the fill's footprint) form 4-connected regions
  that reach the side (x or y) faces, each at least :data:`MIN_BLOCK_SHARE` of the volume and
  together at least :data:`MIN_FILL_SHARE`: alignment and masking padding fills the same
  columns in every slice, a saturated grain or clipped noise does not;
- the voxels equal to v 6-connected to those columns but outside them are at most
  :data:`MAX_SPILL` of the columns' voxels (a grain's cross-section changes along Z, clipped
  noise spreads around: both spill);
- the histogram has a gap beside v: the voxels within :data:`GAP_WINDOW` of the data's
  0.5-99.5 percentile range above the lowest (below the highest) value are at most
  :data:`MAX_GAP_SHARE` of the voxels equal to v (clipping leaves a continuous tail);
- the rest of the volume is noisy: at most :data:`MAX_PLAIN_SHARE` of its voxels (those of
  neither extreme) equal all six neighbours. A piecewise-constant volume (a simulation without
  noise, a label image) has its content in constant blocks: none of them is taken as fill.

The fill is those columns, through every slice. Not found (counted as data): padding that
varies along Z (a rotated volume's corners, a stack aligned slice by slice), whole constant
slices, padding whose value the data also reach next to it (a HAADF vacuum clipped at the
padding's value), a fill of a value between the lowest and the highest (zero in a signed
volume; IMOD's fill with the mean: it sets neither end of the grey range), any fill of a
volume of fewer than :data:`MIN_SLICES` slices. Taken as fill although data: a region
saturated at the extreme, with no voxel escaping the clip, that is a straight prism through
every slice reaching a side face with nothing near its value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from nwwatch.io.volumeranges import VolumeRanges
from nwwatch.volume.nodata import count_with_data

#: The fewest slices a volume needs for a fill to be looked for: in a thinner one a grain's
#: cross-section barely changes from slice to slice.
MIN_SLICES = 8
#: The least share of one side of the slice a region of a fill's columns runs along: padding
#: runs along a side (a shifted image's strip, a mask's outside), a grain cut by a side
#: meets it along a chord.
MIN_SIDE_COVER = 0.5
#: ... or of each of two sides meeting at a corner (the corners outside an inscribed
#: circular mask cover 0.43 of each; a grain in a corner rarely reaches that far along both).
MIN_CORNER_COVER = 0.4
#: The least share of the volume a fill holds.
MIN_FILL_SHARE = 0.01
#: The least share of the volume each region of its columns holds (smaller ones are speckle).
MIN_BLOCK_SHARE = 0.001
#: The most voxels of the fill's value connected to its columns but outside them, per voxel of
#: the columns.
MAX_SPILL = 0.002
#: The width beside the fill's value searched for data, as a share of the data's 0.5-99.5
#: percentile range.
GAP_WINDOW = 0.01
#: The most voxels within that width, per voxel of the fill's value.
MAX_GAP_SHARE = 0.01
#: The most share of the other voxels that may equal all six neighbours (noisy data: ~0).
MAX_PLAIN_SHARE = 0.05


@dataclass(frozen=True)
class ConstantFill:
    """One fill found: its ``value`` (in the volume's units), the ``voxels`` taken as no data
    and their ``share`` of the volume's voxels."""

    value: float
    voxels: int
    share: float


def _plain_share(data: np.ndarray, extreme: np.ndarray) -> float:
    """The share of the voxels of ``data`` (Z, Y, X) whose six neighbours hold their value
    (outside the volume counts as equal), among those outside ``extreme`` (bool, same shape:
    the voxels of either extreme value) and of the value most such voxels hold (a clip value
    inside the range, as a HAADF vacuum clipped at 0 in a signed volume)."""
    plain = np.ones(data.shape, bool)
    for axis in range(3):
        p, d = np.moveaxis(plain, axis, 0), np.moveaxis(data, axis, 0)
        same = d[1:] == d[:-1]
        p[1:] &= same
        p[:-1] &= same
    plain &= ~extreme
    values = data[plain]
    del plain
    others = data.size - int(np.count_nonzero(extreme))
    if values.size:
        found, counts = np.unique(values, return_counts=True)
        mode = found[np.argmax(counts)]
        others -= int(np.count_nonzero((data == mode) & ~extreme))
        values = values[values != mode]
    return float(values.size / others) if others > 0 else 1.0


def _side_regions(columns: np.ndarray, min_columns: int) -> np.ndarray:
    """bool (Y, X): the 4-connected regions of ``columns`` of at least ``min_columns`` columns
    that run along at least :data:`MIN_SIDE_COVER` of one side of the slice, or at least
    :data:`MIN_CORNER_COVER` of each of two sides meeting at a corner (a corner of a
    circular mask covers 0.43 of each)."""
    labels, count = ndi.label(columns)
    sizes = np.bincount(labels.reshape(-1), minlength=count + 1)
    covers = np.stack([np.bincount(side, minlength=count + 1) / side.size
                       for side in (labels[0], labels[:, -1], labels[-1], labels[:, 0])])
    # half of one side, or a corner's two sides (adjacent in this order) each 0.4 of theirs
    corner = np.minimum(covers, np.roll(covers, -1, axis=0)).max(axis=0)
    kept = ((covers.max(axis=0) >= MIN_SIDE_COVER) | (corner >= MIN_CORNER_COVER)) \
        & (sizes >= min_columns)
    kept[0] = False
    return kept[labels]


def _spill_checked(equal: np.ndarray, footprint: np.ndarray, min_columns: int) -> np.ndarray:
    """bool (Y, X): the columns of ``footprint`` (of ``equal`` (Z, Y, X) in every slice, or
    without data) all of whose 6-connected blocks of ``equal`` hold at most :data:`MAX_SPILL`
    voxels outside the footprint per voxel inside it, in regions reaching the side as
    :func:`_side_regions`."""
    labels, _ = ndi.label(equal)  # 6-connected
    total = np.bincount(labels.reshape(-1))
    inside_voxels = np.broadcast_to(footprint, equal.shape) & equal
    inside = np.bincount(labels[inside_voxels], minlength=total.size)
    del inside_voxels
    bad = (inside > 0) & (total - inside > MAX_SPILL * inside)
    bad[0] = False  # voxels of other values (NaN in a fill's column) spill nothing
    spilled = bad[labels].any(axis=0)
    return _side_regions(footprint & ~spilled, min_columns)


def _gap_beside(data: np.ndarray, value, low_end: bool, at_value: int,
                extremes: tuple) -> bool:
    """Whether the voxels of ``data`` within :data:`GAP_WINDOW` of the robust range of the
    values other than ``extremes`` (the lowest and highest: a fill at the other end would
    stretch the range to the dtype's) beside ``value`` (above it for the lowest, below for the
    highest) are at most :data:`MAX_GAP_SHARE` of ``at_value``."""
    step = max(1, round((data.size / 1_000_000) ** (1 / 3)))
    sample = data[::step, ::step, ::step].reshape(-1)
    keep = (sample != extremes[0]) & (sample != extremes[1])
    sample = sample[keep & np.isfinite(sample)] if data.dtype.kind == "f" else sample[keep]
    if sample.size == 0:
        return False
    lo, hi = np.percentile(sample.astype(np.float64), [0.5, 99.5])
    width = GAP_WINDOW * (hi - lo)
    if data.dtype.kind in "iu":
        width = max(width, 1.0)
    if width <= 0:
        return False
    v = float(value)
    near = (data > value) & (data <= v + width) if low_end else (
        (data < value) & (data >= v - width))
    return int(np.count_nonzero(near)) <= MAX_GAP_SHARE * at_value


def constant_fill(volume: np.ndarray) -> tuple[np.ndarray | None, tuple[ConstantFill, ...]]:
    """The constant fill of ``volume`` (Z, Y, X), any real dtype: a bool (Z, Y, X) mask of
    its voxels, or None, and one :class:`ConstantFill` per value found (the lowest and the
    highest finite value may both be one; module docstring). A few passes over the volume
    when those values fill no column; a labelling of their voxels (4 bytes a voxel, briefly)
    when they do.
    """
    data = np.asarray(volume)
    if (data.ndim != 3 or data.size == 0 or data.dtype.kind not in "iuf"
            or data.shape[0] < MIN_SLICES):
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
    depth = data.shape[0]
    with_data = count_with_data(data)
    need = math.ceil(MIN_FILL_SHARE * with_data)
    min_columns = max(1, math.ceil(MIN_BLOCK_SHARE * data.size / depth))
    footprints = []
    for value in (low, high):
        # a column of the fill in every slice, or without data (NaN padding beside or over
        # a mask's fill), and of the value in at least MIN_SLICES of them
        columns = np.ones(data.shape[1:], bool)
        hits = np.zeros(data.shape[1:], np.int32)
        for page in data:
            equal = page == value
            hits += equal
            columns &= equal | np.isnan(page) if data.dtype.kind == "f" else equal
        columns &= hits >= MIN_SLICES
        footprint = _side_regions(columns, min_columns)
        # the voxels of the value in the footprint (NaN in its columns is no fill's)
        if int(hits[footprint].sum()) < need:
            continue
        equal = data == value
        footprint = _spill_checked(equal, footprint, min_columns)
        del equal
        voxels = int(hits[footprint].sum())
        if voxels < need or not _gap_beside(data, value, value == low, voxels, (low, high)):
            continue
        footprints.append((value, footprint, voxels))
    if not footprints:
        return None, ()
    if _plain_share(data, (data == low) | (data == high)) > MAX_PLAIN_SHARE:
        return None, ()
    columns = np.zeros(data.shape[1:], bool)
    fills = []
    for value, footprint, count in footprints:
        fills.append(ConstantFill(float(value), count, count / data.size))
        columns |= footprint
    return np.broadcast_to(columns, data.shape).copy(), tuple(fills)


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


class FillsAsNaN:
    """(path, (Z, H, W) pages) -> the pages with their constant fill as NaN
    (:func:`without_constant_fill`), the ``no_data`` of
    :class:`nwwatch.io.volumeranges.VolumeRanges`; ``found`` maps each file that held one to
    its fills, in the order they were found."""

    def __init__(self) -> None:
        self.found: dict[object, tuple[ConstantFill, ...]] = {}

    def __call__(self, path: object, pages: np.ndarray) -> np.ndarray:
        out, fill = without_constant_fill(pages)
        if fill:
            self.found[path] = fill
        return out


def data_volumes(root, kind: str, scope: str) -> tuple[VolumeRanges | None, FillsAsNaN]:
    """The volumes of the DATA folder ``root`` (its ``unlabeled/`` files) as the runtime
    reads them, their constant fills as NaN, and the fills found (filled as they are read):
    for a scope-``"volume"`` model or data (their grey range) and for any tomogram one
    (its slices, whatever the scope; one whose volume is not there is used as is); None
    for in-situ frames of scope ``"image"``. Training, ``evaluate`` and calibration read
    DATA alike through it."""
    fills = FillsAsNaN()
    wanted = scope == "volume" or kind == "tomogram"
    return (VolumeRanges(root, no_data=fills) if wanted else None), fills


def fill_text(fills: tuple[ConstantFill, ...]) -> str:
    """The fills as the warnings say them: ``0 (21.3 % of the voxels)``, joined by ``and``."""
    return " and ".join(f"{f.value:g} ({100 * f.share:.1f} % of the voxels)" for f in fills)
