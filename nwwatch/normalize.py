"""The one definition of input normalisation, shared by training and the runtime, and the
display stretch of frames (overlays, thumbnails, the labelling page).

A model's metadata records ``NORMALIZATION`` so that a runtime refuses a model trained with
another definition instead of silently feeding it differently scaled images.
"""

from __future__ import annotations

import numpy as np

#: Identifier written into every exported model's metadata.
NORMALIZATION = "percentile-0.5-99.5-to-pm1-v1"

_LOW_PERCENTILE = 0.5
_HIGH_PERCENTILE = 99.5
# Percentiles on a strided subsample: ~64k values give the same range to <0.1 % and cost
# ~1 ms instead of ~10 ms on a 512x512 frame.
_MAX_SAMPLES = 65_536
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def intensity_range(image: np.ndarray) -> tuple[float, float]:
    """Robust (low, high) intensity of ``image``: its 0.5 and 99.5 percentiles.

    Parameters
    ----------
    image : ndarray, any shape, any real dtype
        A frame (H, W), a volume (Z, Y, X) or a batch. Non-finite values are ignored.

    Returns
    -------
    (low, high) : tuple of float
        ``high > low`` always (a constant image gets ``high = low + 1``).
    """
    flat = np.asarray(image).reshape(-1)
    step = max(1, flat.size // _MAX_SAMPLES)
    sample = flat[::step]
    if not np.issubdtype(sample.dtype, np.integer):
        sample = sample.astype(np.float64, copy=False)
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = _percentiles(sample, (_LOW_PERCENTILE, _HIGH_PERCENTILE))
    if not high > low:
        high = low + 1.0
    return float(low), float(high)


def _percentiles(sample: np.ndarray, percents: tuple[float, ...]) -> list[float]:
    """``np.percentile(sample, percents)`` (linear interpolation) from the order statistics
    of ``sample``: counted (a histogram over all values) for 8- and 16-bit unsigned samples,
    else from one partial sort in the sample's own dtype (np.percentile converts to float64
    first: twice the time). Both give np.percentile's values exactly."""
    n = sample.size
    positions = [q / 100.0 * (n - 1) for q in percents]
    lows = [int(np.floor(pos)) for pos in positions]
    kth = sorted({k for lo in lows for k in (lo, min(lo + 1, n - 1))})
    if sample.dtype in (np.uint8, np.uint16):
        # Counting is ~4x faster than np.partition on a 512x512 detector frame's sample.
        at = _ranked_values(np.bincount(sample), kth)
    else:
        ordered = np.partition(sample, kth)
        at = {k: ordered[k] for k in kth}
    out = []
    for pos, lo in zip(positions, lows, strict=True):
        a, b = float(at[lo]), float(at[min(lo + 1, n - 1)])
        out.append(a + (b - a) * (pos - lo))
    return out


#: Bins per block of :func:`_ranked_values`' two-level search.
_RANK_BLOCK = 256


def _ranked_values(counts: np.ndarray, ranks: list[int]) -> dict[int, int]:
    """The value of each 0-based rank in ``ranks`` of the sample of non-negative integers
    whose count per value is ``counts`` (``np.bincount``): the first value whose cumulative
    count exceeds the rank, found in two levels (the block of ``_RANK_BLOCK`` bins whose
    cumulative count first exceeds it, then the bin within that block): the same values as
    a search of the whole cumulative sum (integer sums are exact in any grouping), without
    summing every one of a 16-bit frame's tens of thousands of bins in sequence."""
    starts = np.arange(0, counts.size, _RANK_BLOCK)
    blocks = np.cumsum(np.add.reduceat(counts, starts)).tolist()
    found = np.searchsorted(blocks, ranks, side="right").tolist()
    at: dict[int, int] = {}
    for rank, block in zip(ranks, found, strict=True):
        before = blocks[block - 1] if block else 0
        lo = block * _RANK_BLOCK
        within = np.cumsum(counts[lo : lo + _RANK_BLOCK])
        at[rank] = lo + int(np.searchsorted(within, rank - before, side="right"))
    return at


def normalize_image(
    image: np.ndarray, value_range: tuple[float, float] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Scale raw detector counts to float32 in [-1, 1] for a network.

    ``value_range`` maps to [-1, 1] and values beyond it are clipped (hot pixels, the
    burned-in scale bar). Without it, the range is :func:`intensity_range` of ``image``
    itself; pass the range of a whole volume to normalise its slices consistently.

    Parameters
    ----------
    image : ndarray, (H, W) or any shape, uint8/uint16/int16/float32/float64
    value_range : (low, high), optional
    out : float32 ndarray of ``image``'s shape, optional
        Written in place and returned (e.g. one frame of a batch array), instead of a new
        array.

    Returns
    -------
    ndarray, float32, same shape as ``image``, values in [-1, 1]; NaN becomes -1.
    """
    low, high = intensity_range(image) if value_range is None else value_range
    if high - low > _FLOAT32_MAX:
        # value - low would overflow float32 (a volume spanning -3.4e38..3.4e38): in float64.
        wide = (np.asarray(image, dtype=np.float64) - low) * (2.0 / (high - low)) - 1.0
        np.clip(wide, -1.0, 1.0, out=wide)
        if out is None:
            out = np.empty(wide.shape, np.float32)
        out[...] = wide
        np.nan_to_num(out, copy=False, nan=-1.0)
        return out
    scale = np.float32(2.0 / (high - low))
    # In place in one array (the expression form allocates three); the frame converted to
    # float32 by a copy first (the cast np.subtract's dtype makes, in a fraction of its time).
    if out is None:
        out = np.empty(np.shape(image), np.float32)
    if out.dtype == np.float32:
        np.copyto(out, image)
        np.subtract(out, np.float32(low), out=out)
    else:  # another output dtype: the difference still taken in float32
        np.subtract(image, np.float32(low), dtype=np.float32, out=out)
    out *= scale
    out -= np.float32(1.0)
    np.clip(out, -1.0, 1.0, out=out)
    if not np.issubdtype(np.asarray(image).dtype, np.integer):
        np.nan_to_num(out, copy=False, nan=-1.0)
    return out


def stretch_to_uint8(image: np.ndarray,
                     value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Display scaling: the 0.5-99.5 percentile range of ``image``'s finite values (any
    shape, any real dtype), or ``value_range`` (low, high) when given, to 0-255 (uint8, same
    shape); a constant image maps to mid-grey 128 (black read as a dark frame, or a broken
    picture), NaN pixels (no data) to 0."""
    raw = np.asarray(image)
    if value_range is None and raw.dtype in _SMALL_INTS and raw.size:
        return _stretch_small_ints(raw)
    img = np.asarray(raw, dtype=np.float32)
    finite = np.isfinite(img)
    if value_range is not None:
        lo, hi = value_range
    elif finite.any():
        lo, hi = np.percentile(img if finite.all() else img[finite],
                               (_LOW_PERCENTILE, _HIGH_PERCENTILE))
    else:
        lo, hi = 0.0, 1.0
    if not hi > lo:  # no contrast: every finite value at mid-grey
        scaled = np.where(finite, np.float32(128.0), np.float32(0.0))
        return scaled.astype(np.uint8)
    scaled = np.clip((img - lo) * (255.0 / (hi - lo)), 0, 255)
    # NaN would be cast to an undefined value, with numpy's RuntimeWarning on stderr.
    return np.nan_to_num(scaled, copy=False, nan=0.0).astype(np.uint8)


#: Integer dtypes whose values a histogram and a lookup table cover cheaply (camera frames).
_SMALL_INTS = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.int16))


def _stretch_small_ints(image: np.ndarray) -> np.ndarray:
    """:func:`stretch_to_uint8` of an 8- or 16-bit integer image without float copies of it:
    the percentiles from its histogram, interpolated between the order statistics as
    ``np.percentile`` does (same values, same rounding), and the scaling as a table over the
    dtype's values. A 4096² 16-bit frame took ~1.1 s through float arrays (a partition and
    float64 arithmetic on every pixel), ~0.1 s so."""
    flat = image.ravel()
    if image.dtype.kind == "i":  # signed: flip the sign bit, which keeps the order
        unsigned = np.dtype(f"u{image.dtype.itemsize}")
        flat = flat.view(unsigned) ^ unsigned.type(1 << (8 * image.dtype.itemsize - 1))
        offset = -(1 << (8 * image.dtype.itemsize - 1))
    else:
        offset = 0
    cumulative = np.cumsum(np.bincount(flat, minlength=1 << (8 * image.dtype.itemsize)))
    last = int(cumulative[-1]) - 1

    def order_statistic(k: int) -> float:
        return float(np.searchsorted(cumulative, k, side="right") + offset)

    ends = []
    for q in (_LOW_PERCENTILE, _HIGH_PERCENTILE):
        position = last * (q / 100.0)
        k = int(np.floor(position))
        a, b = order_statistic(k), order_statistic(min(k + 1, last))
        gamma = position - k
        ends.append(b - (b - a) * (1 - gamma) if gamma >= 0.5 else a + (b - a) * gamma)
    lo, hi = np.float64(ends[0]), np.float64(ends[1])  # float64, as np.percentile's ends
    if not hi > lo:
        return np.full(image.shape, 128, np.uint8)
    values = np.arange(offset, offset + cumulative.size, dtype=np.float32)
    table = np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return table[flat].reshape(image.shape)
