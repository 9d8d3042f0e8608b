"""The one definition of input normalisation, shared by training and the runtime, and the
display stretch of frames (overlays, thumbnails, the labelling page).

A model's metadata records ``NORMALIZATION`` so that a runtime refuses a model trained with
another definition instead of silently feeding it differently scaled images. Pixels without
data (NaN or infinite) are not part of that scaling: they get the value of the nearest pixel
with data in their plane (``nan_fill="nearest"``, what every model is fed, in training and at
run time: :data:`NAN_FILL`), or the darkest grey (``"darkest"``) where only the pixels with
data are read on.
"""

from __future__ import annotations

import math

import numpy as np

#: Identifier written into every exported model's metadata.
NORMALIZATION = "percentile-0.5-99.5-to-pm1-v1"

_LOW_PERCENTILE = 0.5
_HIGH_PERCENTILE = 99.5
# Percentiles on a subsample of about 64k values (about 1 ms instead of about 10 ms on a
# 512x512 frame). Frames of up to 4 x 64k pixels (512^2: the sizes the shipped models were
# trained at) are sampled every k-th pixel in memory order, the sample those models learned
# their ranges from (an even grid instead moved the shipped model's angles on held-out
# frames: 18 valid of 60 against 20, bench/results/model_angles_2.2.19_grid_sample.json);
# larger frames on an even grid over rows and columns (:func:`_frame_grid`): the stride took whole
# columns, 32 of a 2048^2 frame, so a wire along them weighed by where they fell and a
# one-column shift moved the shipped model's angle by 1.75 deg. A volume's is an even grid
# over every axis of about 1M voxels (:func:`_grid`; every voxel of a 96^3 volume), about
# 10-20 ms once per volume.
_MAX_SAMPLES = 65_536
_STRIDED_MAX_PX = 4 * _MAX_SAMPLES
_MAX_VOLUME_SAMPLES = 1 << 20
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: What pixels without data (NaN or infinite) become, per model kind: the nearest pixel with
#: data in their plane. The darkest grey instead would be segmented as droplet or wire in a
#: frame's NaN patch or drift-corrected border (docs/models.md, "Input normalisation"), and
#: reach a tomogram's data beside its padding through a model's in-plane blur: a wall of
#: solid for a bright-field model, solid eaten for a HAADF one (docs/tomography.md).
#: Training and the runtime both use it.
NAN_FILL = {"insitu": "nearest", "tomogram": "nearest"}


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
    array = np.asarray(image)
    if array.ndim >= 3 and sum(n > 1 for n in array.shape) <= 2:
        # a frame with axes of one ((1, H, W) from napari or xarray) is sampled as the frame
        # is: the same range, so the same segmentation
        array = array.reshape([n for n in array.shape if n > 1] or [array.size])
    if array.ndim >= 3:
        sample = array[np.ix_(*_grid(array.shape, _MAX_VOLUME_SAMPLES))].reshape(-1)
    elif array.ndim == 2 and array.size > _STRIDED_MAX_PX:
        sample = _frame_grid(array).reshape(-1)
    else:  # a frame up to 512^2, a 1-D array: evenly strided in memory order
        flat = array.reshape(-1)
        sample = flat[::max(1, flat.size // _MAX_SAMPLES)]
    if not np.issubdtype(sample.dtype, np.integer):
        # ordered in its own dtype (the same order statistics as in float64, without the copy)
        finite = np.isfinite(sample)
        if not finite.all():
            sample = sample[finite]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = _percentiles(sample, (_LOW_PERCENTILE, _HIGH_PERCENTILE))
    if not high > low:
        high = low + 1.0
    return float(low), float(high)


def _frame_grid(frame: np.ndarray) -> np.ndarray:
    """A view of an even grid of about :data:`_MAX_SAMPLES` pixels of ``frame`` (H, W), the
    same step on both axes, centred (the grid's first and last rows and columns mirror each
    other where the step allows): the same pixels for the frame transposed, nearly the same
    flipped or shifted. Slicing, not the index arrays of :func:`_grid`: a view costs nothing
    per frame."""
    step = max(1, math.ceil(math.sqrt(frame.size / _MAX_SAMPLES)))
    if step == 1:
        return frame
    rows, cols = (((n - 1) % step) // 2 for n in frame.shape)
    return frame[rows::step, cols::step]


def _grid(shape: tuple[int, ...], most: int) -> tuple[np.ndarray, ...]:
    """Index arrays (for ``np.ix_``) of an even grid over every axis of a frame or volume,
    the same step k on every axis (about ``most`` samples, at least a 2^ndim-th of that;
    every element of a smaller array), each axis's indices centred on it and their own
    mirror image: the same pixels for the frame or volume flipped, turned by 90 degrees in a
    plane of equal axes, or transposed, so the same range. No row, column or plane weighs
    more than another (a face of zeros, as reconstructions pad, stays a face's share). (A
    stride through the voxels in memory order took every sample from one face of a
    256 x 256 x N volume.)"""
    step = max(1, math.ceil((math.prod(shape) / most) ** (1.0 / len(shape))))
    return tuple(_axis_grid(n, step) for n in shape)


def _axis_grid(n: int, step: int) -> np.ndarray:
    """``n // step`` indices of an axis of length ``n``, ``step`` apart from its centre out
    (a position half-way between two indices rounded away from the centre, one on the centre
    itself taking both), so the set is its own mirror image (``i`` and ``n - 1 - i``)."""
    if step <= 1:
        return np.arange(n)
    centre = (n - 1) / 2.0
    count = max(1, n // step)
    chosen: set[int] = set()
    for j in range(count):
        x = centre + (j - (count - 1) / 2.0) * step
        if x < centre:
            chosen.add(math.floor(x))
        elif x > centre:
            chosen.add(math.ceil(x))
        else:
            chosen.update((math.floor(x), math.ceil(x)))
    return np.array(sorted(chosen))


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


def _checked_range(value_range) -> tuple[float, float]:
    """``value_range`` as (low, high) floats, finite with low < high; else ValueError naming
    it (reversed, it inverted the image; NaN gave NaN; equal, a ZeroDivisionError)."""
    try:
        low, high = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be (low, high) numbers, got {value_range!r}") \
            from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"value_range must be finite with low < high, got ({low:g}, {high:g})")
    return low, high


def normalize_image(
    image: np.ndarray, value_range: tuple[float, float] | None = None,
    out: np.ndarray | None = None, nan_fill: str = "nearest",
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
    nan_fill : "nearest" or "darkest"
        What pixels without data (NaN, +inf or -inf) become: the normalised value of the
        nearest pixel with data in the same (H, W) plane (the last two axes; -1 in a plane
        without data), or -1. Frames whose pixels all have data are the same either way.

    Returns
    -------
    ndarray, float32, same shape as ``image``, values in [-1, 1].
    """
    if nan_fill not in ("nearest", "darkest"):
        raise ValueError(f"nan_fill must be 'nearest' or 'darkest', got {nan_fill!r}")
    kind = np.asarray(image).dtype.kind if not isinstance(image, np.ndarray) else image.dtype.kind
    if kind not in "uif":  # complex, bool, text: numpy's cast errors named no argument
        raise ValueError(f"image must hold real numbers (integers or floats), got dtype "
                         f"{np.asarray(image).dtype}")
    if out is not None and (np.shape(out) != np.shape(image)
                            or not np.issubdtype(out.dtype, np.floating)):
        raise ValueError(f"out must be a float array of image's shape {np.shape(image)}, got "
                         f"{out.dtype} {np.shape(out)}")
    if value_range is None:
        low, high = intensity_range(image)
    else:
        low, high = _checked_range(value_range)
    if high - low > _FLOAT32_MAX:
        # value - low would overflow float32 (a volume spanning -3.4e38..3.4e38): in float64.
        wide = (np.asarray(image, dtype=np.float64) - low) * (2.0 / (high - low)) - 1.0
        missing = _no_data(image, wide)
        np.clip(wide, -1.0, 1.0, out=wide)
        if out is None:
            out = np.empty(wide.shape, np.float32)
        out[...] = wide
        _fill_no_data(out, missing, nan_fill)
        return out
    scale = np.float32(2.0 / (high - low))
    # In place in one array (the expression form allocates three); the frame converted to
    # float32 by a copy first (the cast np.subtract's dtype makes, in a fraction of its time).
    if out is None:
        out = np.empty(np.shape(image), np.float32)
    if out.dtype == np.float32:
        if kind == "f" and np.asarray(image).dtype.itemsize > 4:
            with np.errstate(over="ignore"):  # a float64 value beyond float32's: inf, clipped
                np.copyto(out, image)
        else:
            np.copyto(out, image)
        np.subtract(out, np.float32(low), out=out)
    else:  # another output dtype: the difference still taken in float32
        np.subtract(image, np.float32(low), dtype=np.float32, out=out)
    out *= scale
    out -= np.float32(1.0)
    missing = None if kind in "ui" else _no_data(image, out)
    np.clip(out, -1.0, 1.0, out=out)
    _fill_no_data(out, missing, nan_fill)
    return out


def _no_data(image: np.ndarray, scaled: np.ndarray) -> np.ndarray | None:
    """bool mask of the pixels of float ``image`` without data (NaN or infinite), None when
    there are none, found on its ``scaled`` copy before the clip: one pass over a frame with
    data everywhere. A finite value that overflowed in the scaling (a hot pixel beyond
    float32's range) is data, clipped as any value beyond the range; a value without data
    stays one in the scaling, so the mask is then ``image``'s own. One bool buffer of the
    image's size for both (a volume's padding: no further volume-sized temporaries)."""
    mask = np.isfinite(scaled)
    if mask.all():
        return None
    np.isfinite(image, out=mask)
    np.logical_not(mask, out=mask)
    return mask if mask.any() else None


def _fill_no_data(out: np.ndarray, missing: np.ndarray | None, nan_fill: str) -> None:
    """Replace the ``missing`` pixels of normalised ``out`` in place, as
    :func:`normalize_image` says."""
    if missing is None:
        return
    if nan_fill == "darkest":
        out[missing] = -1.0
        return
    planes, holes = np.atleast_2d(out), np.atleast_2d(missing)
    for index in np.ndindex(planes.shape[:-2]):
        if holes[index].any():
            _fill_nearest(planes[index], holes[index])


def _fill_nearest(plane: np.ndarray, hole: np.ndarray) -> None:
    """Give each ``hole`` pixel of 2-D ``plane`` (in place) the value of the nearest pixel
    outside it (OpenCV's 5x5-mask Euclidean distance transform; ties broken by OpenCV), or -1
    when the whole plane is a hole. Only the holes' bounding box grown by one pixel is
    transformed: its rim holds data wherever the frame does not end it, and the nearest data
    pixel of a hole pixel lies in that box (clamping a farther one onto the rim brings it
    closer), so a NaN patch costs its own size, not the frame's."""
    if hole.all():
        plane[...] = -1.0
        return
    import cv2

    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    values, holes = plane[box], np.ascontiguousarray(hole[box], np.uint8)
    # Each data pixel (0 in the source) gets its own label, and each hole pixel the label of
    # the data pixel its distance was propagated from, one step of the 5x5 mask (2 px at
    # most) from a hole pixel: the lookup table is filled from those data pixels' labels
    # only (all of a 4096² frame's took several times as long).
    _, label = cv2.distanceTransformWithLabels(holes, cv2.DIST_L2, cv2.DIST_MASK_5,
                                               labelType=cv2.DIST_LABEL_PIXEL)
    inside = holes.view(bool)
    rim = cv2.dilate(holes, _MASK_REACH).view(bool) & ~inside
    table = np.empty(int(label.max()) + 1, values.dtype)
    table[label[rim]] = values[rim]
    values[inside] = table[label[inside]]


#: The pixels one step of the 5x5 distance mask reaches.
_MASK_REACH = np.ones((5, 5), np.uint8)


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
    # a hot pixel near float32's maximum overflows to inf, which the clip takes to 255: no
    # numpy RuntimeWarning on stderr (the service's log is JSON lines)
    with np.errstate(over="ignore", invalid="ignore"):
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
