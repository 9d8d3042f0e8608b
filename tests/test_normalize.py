import numpy as np
import pytest

from nwwatch.normalize import NORMALIZATION, intensity_range, normalize_image


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_normalize_maps_robust_range_to_pm1(dtype):
    rng = np.random.default_rng(0)
    image = rng.integers(10, 100, size=(64, 64)).astype(dtype)
    out = normalize_image(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert out.min() == -1.0 and out.max() == 1.0
    low, high = intensity_range(image)
    inside = (image > low) & (image < high)
    expected = (image[inside].astype(np.float64) - low) / (high - low) * 2 - 1
    np.testing.assert_allclose(out[inside], expected, atol=1e-5)


def test_hot_pixels_do_not_change_the_scaling():
    rng = np.random.default_rng(1)
    image = rng.normal(1000, 50, size=(128, 128)).astype(np.float32)
    hot = image.copy()
    hot[::37, ::41] = 65535  # < 0.5 % of pixels
    # The 99.5th percentile moves by a few ranks, never to the hot value.
    assert intensity_range(hot)[1] < 1300
    normal = hot != 65535
    np.testing.assert_allclose(normalize_image(image)[normal], normalize_image(hot)[normal],
                               atol=0.05, err_msg="hot pixels changed the scaling")
    assert np.all(normalize_image(hot)[~normal] == 1.0)


def test_constant_and_nan_images_are_finite():
    assert np.all(normalize_image(np.full((8, 8), 7.0)) == -1.0)
    image = np.ones((8, 8), np.float32)
    image[0, 0] = np.nan
    assert np.isfinite(normalize_image(image)).all()


def test_explicit_range_is_used_for_volume_slices():
    volume = np.stack([np.full((4, 4), v, np.float32) for v in (0.0, 5.0, 10.0)])
    rng = intensity_range(volume)
    slices = [normalize_image(s, rng) for s in volume]
    assert slices[0][0, 0] == -1.0 and slices[2][0, 0] == 1.0
    assert abs(slices[1][0, 0]) < 0.01
    assert NORMALIZATION.endswith("v1")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32,
                                   np.float64])
@pytest.mark.parametrize("size", [(1, 1), (7, 9), (512, 512), (3, 300, 300)])
def test_intensity_range_is_numpys_percentiles_of_the_sample(dtype, size):
    rng = np.random.default_rng(size[0])
    image = rng.gamma(2.0, 300.0, size=size).astype(dtype)
    if image.ndim == 3:  # a volume: every voxel of one this small
        sample = image.astype(np.float64)
    else:  # up to 512^2: every k-th pixel in memory order (the shipped models' sample)
        flat = image.reshape(-1)
        sample = flat[::max(1, flat.size // 65_536)].astype(np.float64)
    expected = np.percentile(sample, [0.5, 99.5])
    if not expected[1] > expected[0]:
        expected[1] = expected[0] + 1.0
    np.testing.assert_allclose(intensity_range(image), expected, rtol=1e-12, atol=1e-9)


def test_a_large_frames_range_does_not_depend_on_which_columns_a_stride_meets():
    # Was: a stride through the frame in memory order took 32 whole columns of a 2048^2
    # frame; a bright wire along some columns weighed by where they fell, so the frame
    # shifted by one column, flipped or transposed got another range (8-17 % of it), and the
    # shipped model another angle (1.75 deg, beyond 2 sigma).
    rng = np.random.default_rng(3)
    frame = rng.normal(100.0, 5.0, size=(2048, 2048)).astype(np.float32)
    frame[:, 1000:1020] += 400.0  # a bright wire 20 px wide (1 % of the frame)
    exact = np.percentile(frame, [0.5, 99.5])
    width = exact[1] - exact[0]
    ranges = [intensity_range(f) for f in (frame, np.roll(frame, 1, axis=1),
                                           np.roll(frame, 30, axis=1), frame[:, ::-1],
                                           frame.T, np.ascontiguousarray(frame.T))]
    for low, high in ranges:
        assert abs(low - exact[0]) < 0.02 * width and abs(high - exact[1]) < 0.02 * width
    assert ranges[4] == ranges[5] == ranges[0]  # the transposed frame: the same pixels


def test_the_display_stretch_of_a_hot_pixel_near_the_float32_maximum_warns_nothing():
    # before: "RuntimeWarning: overflow encountered in multiply" on replay's stderr and among
    # the service's JSON log lines (the labelling queue's picture of the frame)
    import warnings

    from nwwatch.normalize import stretch_to_uint8

    image = np.random.default_rng(0).normal(1000, 10, (64, 64)).astype(np.float32)
    image[0, 0], image[0, 1], image[0, 2] = 3e38, np.inf, -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = stretch_to_uint8(image)
    assert out[0, 0] == 255 and out[0, 1] == 255 and out[0, 2] == 0


@pytest.mark.parametrize("given_range", [False, True])
def test_the_display_stretch_of_a_frame_with_nan_pixels(given_range):
    """A float32 frame with NaN pixels (no data, e.g. an aligned stack's padding) replayed as
    in-situ printed numpy's "RuntimeWarning: invalid value encountered in cast" on stderr
    (the labelling queue's picture), and without a range the picture was black: the
    percentiles were NaN. NaN pixels are black; the others scale as without them."""
    import warnings

    from nwwatch.normalize import stretch_to_uint8

    image = np.linspace(0.0, 100.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    holed = image.copy()
    holed[:8] = np.nan
    value_range = intensity_range(holed) if given_range else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = stretch_to_uint8(holed, value_range)
    assert np.all(out[:8] == 0)
    finite = image[8:]
    expected = stretch_to_uint8(finite, value_range)
    np.testing.assert_array_equal(out[8:], expected)
    assert expected.max() == 255 and expected.min() == 0  # not a black picture


def test_a_range_wider_than_float32_holds_is_mapped_without_overflow():
    # A float32 volume whose values span more than float32's largest number (a volume
    # stored with -3.4e38 and +3.4e38 in it): (value - low) overflowed to inf, so every
    # value above the middle of the range became +1.
    top = float(np.finfo(np.float32).max)
    image = np.linspace(-top, top, 4001, dtype=np.float32).reshape(1, -1)
    low, high = intensity_range(image)
    out = normalize_image(image)
    assert np.isfinite(out).all()
    expected = np.clip((image.astype(np.float64) - low) / (high - low) * 2 - 1, -1, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out[0, 3000] < 0.9  # three quarters up the range: was +1


def test_a_constant_image_is_shown_mid_grey_not_black():
    # the overlay of a frame without wire or droplet (a blank frame, refused) was solid black,
    # which reads as a dark frame or a broken picture
    from nwwatch.normalize import stretch_to_uint8

    flat = np.full((8, 8), 200, np.uint16)
    assert np.all(stretch_to_uint8(flat) == 128)
    holed = flat.astype(np.float32)
    holed[0] = np.nan
    out = stretch_to_uint8(holed)
    assert np.all(out[0] == 0) and np.all(out[1:] == 128)


def _float_stretch(image: np.ndarray) -> np.ndarray:
    """The display stretch through float arrays, as np.percentile defines it."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5))
    if not hi > lo:
        return np.full(img.shape, 128, np.uint8)
    return np.clip((img - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_the_display_stretch_of_integer_frames_is_numpys_percentile_stretch(dtype):
    from nwwatch.normalize import stretch_to_uint8

    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    for trial in range(150):
        low = int(rng.integers(info.min, info.max))
        high = int(rng.integers(low, info.max, endpoint=True))
        image = rng.integers(low, high, size=(int(rng.integers(1, 60)), 37), endpoint=True,
                             dtype=dtype)
        if trial % 10 == 0:
            image[:] = image.flat[0]  # constant: mid-grey
        if trial % 7 == 0:
            image = image[:, ::3]  # not contiguous
        out = stretch_to_uint8(image)
        assert out.shape == image.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, _float_stretch(image), err_msg=f"{low}..{high}")


def test_the_display_stretch_of_a_2048_frame_is_the_float_stretch():
    """8- and 16-bit frames are stretched from their histogram through a lookup table, not
    float copies (a 4096² frame's overlay took 1.1 s, 1.0 s of it the stretch:
    docs/service.md): on a camera-sized frame the same pixels as the float path."""
    from nwwatch.normalize import stretch_to_uint8

    rng = np.random.default_rng(0)
    frame = rng.normal(2000.0, 300.0, (2048, 2048)).astype(np.uint16)
    np.testing.assert_array_equal(stretch_to_uint8(frame),
                                  stretch_to_uint8(frame.astype(np.float32)))


@pytest.mark.parametrize("seed", range(6))
def test_ranked_values_are_those_of_the_whole_cumulative_count(seed):
    from nwwatch.normalize import _RANK_BLOCK, _ranked_values

    rng = np.random.default_rng(seed)
    # Empty leading bins, a histogram shorter than one block, exactly some blocks, and long.
    size = [1, 7, _RANK_BLOCK, 3 * _RANK_BLOCK, 3 * _RANK_BLOCK + 1, 25_000][seed]
    counts = rng.integers(0, 4, size) * (rng.random(size) < 0.3)
    counts[rng.integers(0, size)] += 1  # at least one value
    counts[: size // 3] = 0
    n = int(counts.sum())
    cumulative = np.cumsum(counts)
    ranks = sorted({0, n - 1, n // 2, min(1, n - 1), max(n - 2, 0),
                    *rng.integers(0, n, 8).tolist(),
                    *(int(c) for c in cumulative[:: max(1, size // 5)] if c < n)})
    expected = np.searchsorted(cumulative, ranks, side="right").tolist()
    assert _ranked_values(counts, ranks) == dict(zip(ranks, expected, strict=True))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("q", [(0.5, 99.5), (0.0, 100.0), (50.0,), (1.0, 25.0, 99.0)])
def test_counted_percentiles_equal_numpys_exactly(dtype, q):
    from nwwatch.normalize import _percentiles

    rng = np.random.default_rng(len(q))
    high = np.iinfo(dtype).max
    for size in (1, 2, 999, 65_536):
        sample = rng.normal(0.6 * high, 0.1 * high, size).clip(0, high).astype(dtype)
        assert _percentiles(sample, q) == np.percentile(sample, q).tolist()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32,
                                   np.float64])
def test_normalized_values_are_the_float32_arithmetic_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    image = (rng.gamma(2.0, 300.0, size=(3, 40, 50)) - 200.0 * (dtype == np.int16))
    image = image.astype(dtype)
    low, high = intensity_range(image)
    scale = np.float32(2.0 / (high - low))
    expected = np.subtract(image, np.float32(low), dtype=np.float32) * scale - np.float32(1.0)
    expected = np.clip(expected, -1.0, 1.0)
    into = np.full((3, 40, 50), np.nan, np.float32)
    for got in (normalize_image(image), normalize_image(image, out=into)):
        assert got.dtype == np.float32 and got.shape == image.shape
        assert got.tobytes() == expected.tobytes()


def test_a_float64_output_array_holds_the_float32_arithmetic():
    image = np.random.default_rng(4).integers(0, 4096, (33, 47)).astype(np.uint16)
    wide = np.empty(image.shape, np.float64)
    assert normalize_image(image, out=wide) is wide
    low, high = intensity_range(image)
    expected = np.subtract(image, np.float32(low), dtype=np.float32).astype(np.float64)
    expected *= np.float32(2.0 / (high - low))
    expected -= np.float32(1.0)
    np.clip(expected, -1.0, 1.0, out=expected)
    assert wide.tobytes() == expected.tobytes()


def _ramp_frame() -> np.ndarray:
    """A float32 frame whose every pixel differs: a ramp across the columns, a small one down
    the rows, so the pixel a NaN takes its value from can be named."""
    rows, cols = np.indices((48, 64), dtype=np.float32)
    return 1000.0 + 10.0 * cols + 0.01 * rows


def test_nan_pixels_of_a_frame_take_the_nearest_pixel_with_data():
    """NaN became -1, the darkest grey, which the in-situ model reads as droplet or wire (a
    drift-corrected frame's NaN border, a masked region): it takes the value of the nearest
    pixel with data instead, and the pixels with data keep their values."""
    image = _ramp_frame()
    holed = image.copy()
    holed[:6] = np.nan  # a band along the top edge, as after drift correction
    holed[20:30, 30:34] = np.nan  # a masked patch, 4 columns wide
    value_range = intensity_range(image)
    expected = normalize_image(image, value_range)
    out = normalize_image(holed, value_range)
    assert np.isfinite(out).all()
    data = np.isfinite(holed)
    assert out[data].tobytes() == expected[data].tobytes()
    # The band: the pixel below it in the same column (1 px nearer than any other).
    np.testing.assert_array_equal(out[:6], np.broadcast_to(expected[6], (6, 64)))
    # The patch's middle rows (4 px or more from its top and bottom): its left two columns
    # from column 29, its right two from column 34; none of it -1 (the ramp's middle).
    np.testing.assert_array_equal(out[23:27, 30:32], np.repeat(expected[23:27, 29:30], 2, 1))
    np.testing.assert_array_equal(out[23:27, 32:34], np.repeat(expected[23:27, 34:35], 2, 1))
    assert (np.abs(out[20:30, 30:34]) < 0.2).all()


def test_scattered_nan_pixels_take_a_neighbours_value_and_darkest_keeps_minus_one():
    rng = np.random.default_rng(7)
    image = rng.normal(1000.0, 30.0, (128, 128)).astype(np.float32)
    holed = image.copy()
    dead = rng.random(image.shape) < 0.01
    dead[0, 0] = dead[-1, -1] = True  # corners: their neighbours lie on one side only
    holed[dead] = np.nan
    out = normalize_image(holed)
    neighbours = [np.pad(out, 1, constant_values=np.nan)[1 + dr:129 + dr, 1 + dc:129 + dc]
                  for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1),
                                 (1, -1), (1, 1))]
    near = np.zeros(image.shape, bool)
    for n, (dr, dc) in zip(neighbours, ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1),
                                        (1, -1), (1, 1)), strict=True):
        source = np.pad(dead, 1, constant_values=True)[1 + dr:129 + dr, 1 + dc:129 + dc]
        near |= (n == out) & ~source  # equal to a neighbour that has data
    isolated = dead & (np.pad(dead, 1)[:-2, 1:-1] == 0)  # every dead pixel here has one
    assert near[dead].all() and isolated.any()
    darkest = normalize_image(holed, nan_fill="darkest")
    assert np.all(darkest[dead] == -1.0)
    assert darkest[~dead].tobytes() == out[~dead].tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_frame_without_nan_is_the_same_with_either_fill(dtype):
    image = np.random.default_rng(8).gamma(2.0, 300.0, (3, 40, 50)).astype(dtype)
    nearest = normalize_image(image)
    assert nearest.tobytes() == normalize_image(image, nan_fill="darkest").tobytes()
    into = np.full(image.shape, np.nan, np.float32)
    assert normalize_image(image, out=into).tobytes() == nearest.tobytes()


def test_nan_is_filled_per_plane_of_a_batch_and_a_plane_without_data_is_minus_one():
    image = _ramp_frame()
    batch = np.stack([image, image, np.full(image.shape, np.nan, np.float32)])
    batch[0, :, :10] = np.nan  # the left edge of plane 0: plane 1 must not lend its values
    value_range = intensity_range(image)
    out = np.empty(batch.shape, np.float32)
    assert normalize_image(batch, value_range, out=out) is out
    expected = normalize_image(image, value_range)
    np.testing.assert_array_equal(out[0, :, :10],
                                  np.broadcast_to(expected[:, 10:11], (48, 10)))
    assert out[1].tobytes() == expected.tobytes()
    assert np.all(out[2] == -1.0)
    # The float64 path (a range wider than float32 holds) fills the same way.
    wide = np.array([[-3e38, np.nan, 3e38]], np.float32)
    assert normalize_image(wide, (-3.4e38, 3.4e38))[0, 1] in (
        normalize_image(wide, (-3.4e38, 3.4e38))[0, 0],
        normalize_image(wide, (-3.4e38, 3.4e38))[0, 2])


def test_infinite_pixels_are_no_data_as_nan_is():
    # +inf and -inf were clipped to +1 and -1 before the fill, which looked for NaN only: the
    # brightest and the darkest grey, which a model carried onto the data beside them (a
    # tomogram's +inf padding: a wall of solid for a HAADF model), where everything else
    # (the runtime's never-solid rule, the Z blur, the counts of voxels with data, the
    # contact angle's refinement) takes them for no data.
    row = np.array([[np.inf, -np.inf, np.nan, 10.0, 20.0, 30.0]], np.float32)
    np.testing.assert_array_equal(normalize_image(row, (10.0, 30.0)),
                                  [[-1.0, -1.0, -1.0, -1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(normalize_image(row[:, ::-1], (10.0, 30.0)),
                                  [[1.0, 0.0, -1.0, -1.0, -1.0, -1.0]])
    image = _ramp_frame()
    value_range = intensity_range(image)
    expected = normalize_image(image, value_range)
    for fill in (np.inf, -np.inf):
        holed = image.copy()
        holed[:6] = fill
        holed[20:30, 30:34] = -fill
        nan_holed = np.where(np.isfinite(holed), holed, np.nan).astype(np.float32)
        for dtype in (np.float32, np.float64):
            out = normalize_image(holed.astype(dtype), value_range)
            assert out.tobytes() == normalize_image(nan_holed, value_range).tobytes()
            np.testing.assert_array_equal(out[:6], np.broadcast_to(expected[6], (6, 64)))
        darkest = normalize_image(holed, value_range, nan_fill="darkest")
        assert np.all(darkest[~np.isfinite(holed)] == -1.0)
    # the float64 path (a range wider than float32 holds) as well
    wide = normalize_image(np.array([[-3e38, np.inf, 3e38]], np.float32), (-3.4e38, 3.4e38))
    assert wide[0, 1] in (wide[0, 0], wide[0, 2])
    # a finite float64 value beyond float32's range is data (clipped), not no data
    hot = np.array([[0.0, 1e300, 10.0]], np.float64)
    np.testing.assert_array_equal(normalize_image(hot, (0.0, 10.0)), [[-1.0, 1.0, 1.0]])


def test_a_padded_volume_is_normalised_with_one_mask_of_temporary_memory():
    # The mask of the voxels without data was made of several volume-sized bool temporaries
    # (isfinite of the scaled copy and of the input, each negated): a 64 x 512 x 512 float32
    # tomogram with NaN padding needed 48 MiB beyond its output, where one mask is 16 MiB.
    import tracemalloc

    volume = np.random.default_rng(3).normal(100.0, 20.0, (48, 64, 64)).astype(np.float32)
    volume[:, :, :20] = np.nan  # padding columns
    volume[:2] = np.nan  # slices without data
    volume[5, 40:44, 50:54] = np.inf
    value_range = intensity_range(volume)
    expected = normalize_image(np.where(np.isfinite(volume), volume, np.nan), value_range)
    tracemalloc.start()
    try:
        out = normalize_image(volume, value_range)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one bool mask, and the fill's plane-sized work arrays (4 masks' worth before)
    assert peak_bytes - out.nbytes < 2.5 * volume.size
    assert out.tobytes() == expected.tobytes()


def test_an_unknown_nan_fill_is_refused():
    with pytest.raises(ValueError, match="nan_fill must be 'nearest' or 'darkest', got 'zero'"):
        normalize_image(np.ones((4, 4), np.float32), nan_fill="zero")


@pytest.mark.parametrize("seed", range(4))
def test_every_nan_pixel_takes_a_nearest_pixel_with_data(seed):
    """Blobs, bands and single pixels of NaN: each takes the value of a pixel with data whose
    distance is the Euclidean distance to the nearest one (OpenCV's 5x5-mask transform is
    within 2 % of it), read from a frame whose every value names its pixel."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (70, 90)
    image = np.arange(shape[0] * shape[1], dtype=np.float64).reshape(shape)
    hole = ndimage.binary_dilation(rng.random(shape) < 0.004, iterations=int(rng.integers(1, 6)))
    hole |= rng.random(shape) < 0.01
    hole[:, : int(rng.integers(0, 15))] = True
    holed = image.copy()
    holed[hole] = np.nan
    out = normalize_image(holed, (0.0, float(image.size - 1)), nan_fill="nearest")
    source = np.rint((out.astype(np.float64) + 1.0) / 2.0 * (image.size - 1)).astype(int)
    rows, cols = np.divmod(source, shape[1])
    assert not hole[rows[hole], cols[hole]].any()  # each value is one of a pixel with data
    r, c = np.indices(shape)
    taken = np.hypot(rows - r, cols - c)[hole]
    nearest = ndimage.distance_transform_edt(hole)[hole]
    assert np.all(taken <= nearest * 1.02 + 1e-9)


@pytest.mark.parametrize(("value_range", "says"), [
    ((100.0, 0.0), "finite with low < high, got .100, 0."),  # inverted the image
    ((float("nan"), 100.0), "finite with low < high, got .nan, 100."),  # all NaN
    ((5.0, 5.0), "finite with low < high, got .5, 5."),  # ZeroDivisionError
    ((1.0,), r"\(low, high\) numbers, got \(1.0,\)"),  # "not enough values to unpack"
])
def test_a_value_range_that_is_not_low_below_high_is_refused_naming_it(value_range, says):
    image = np.array([[0, 50, 100]], np.uint16)
    with pytest.raises(ValueError, match=f"value_range must be {says}"):
        normalize_image(image, value_range=value_range)


@pytest.mark.parametrize("shape", [(64, 16384, 8), (64, 64, 64), (37, 100, 81), (9, 512, 512)])
def test_a_volumes_range_is_the_same_flipped_turned_or_scaled(shape):
    """A stride through the voxels in memory order took every sample of a 64 x 16384 x 8
    volume (and of any Z x Y x X with Z Y a multiple of 65536) from its x = 0 face: a face of
    zeros gave the range (0, 1), and the volume flipped or transposed another range."""
    rng = np.random.default_rng(0)
    volume = rng.normal(0.0, 1.0, shape).astype(np.float32)
    volume[:, :, 0] = 0.0
    low, high = intensity_range(volume)
    true_low, true_high = np.percentile(volume, [0.5, 99.5])
    assert abs(low - true_low) < 0.1 and abs(high - true_high) < 0.1
    same = [volume[::-1], volume[:, ::-1], volume[:, :, ::-1]]
    if shape[1] == shape[2]:
        same += [volume.transpose(0, 2, 1), np.rot90(volume, axes=(1, 2))]
    for other in same:
        assert intensity_range(np.ascontiguousarray(other)) == (low, high)
    assert intensity_range(volume * np.float32(2)) == (2 * low, 2 * high)


def test_a_face_of_zeros_weighs_as_a_face_in_a_volumes_range():
    """A grid that always took both faces of every axis counted each face plane several
    times: a face of zeros (0.2 % of the voxels) became 0.8 % of the sample and set the low
    end of the range to 0 (a 256^3 mask then read 99.6 % solid)."""
    rng = np.random.default_rng(0)
    volume = rng.gamma(4.0, 30.0, (100, 512, 256)).astype(np.float32)  # sampled every 3rd
    volume[:, :, 0] = 0.0
    low, high = intensity_range(volume)
    true_low, true_high = np.percentile(volume, [0.5, 99.5])
    # a grid takes the face or not: its zeros weigh between nothing and a column's share
    without_face = np.percentile(volume[:, :, 1:], 0.5)
    assert 0.9 * true_low <= low <= 1.05 * without_face
    assert high == pytest.approx(true_high, rel=0.02)


def test_a_frame_with_axes_of_one_gets_the_frames_range():
    # before: (1, H, W) was sampled as a volume, (H, W) by a stride: 0.6 % apart at 512 px
    rng = np.random.default_rng(3)
    frame = rng.gamma(4.0, 300.0, (512, 512)).astype(np.uint16)
    for shaped in (frame[None], frame[:, :, None], frame[None, :, None, :]):
        assert intensity_range(shaped) == intensity_range(frame)
    np.testing.assert_array_equal(normalize_image(frame[None])[0], normalize_image(frame))


def test_normalize_names_a_bad_image_or_out():
    # before: numpy's broadcast and cast errors, a ComplexWarning, none naming the argument
    frame = np.arange(64.0).reshape(8, 8)
    with pytest.raises(ValueError, match=r"out must be a float array of image's shape"):
        normalize_image(frame, out=np.empty((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"out must be a float array .* got int16"):
        normalize_image(frame, out=np.empty((8, 8), np.int16))
    with pytest.raises(ValueError, match=r"image must hold real numbers .* complex128"):
        normalize_image(frame.astype(complex))
    out = np.empty((8, 8), np.float32)
    assert normalize_image(frame, out=out) is out
