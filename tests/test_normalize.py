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
    flat = image.reshape(-1)
    sample = flat[::max(1, flat.size // 65_536)].astype(np.float64)
    expected = np.percentile(sample, [0.5, 99.5])
    if not expected[1] > expected[0]:
        expected[1] = expected[0] + 1.0
    np.testing.assert_allclose(intensity_range(image), expected, rtol=1e-12, atol=1e-9)


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
