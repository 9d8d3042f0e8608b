"""Voxels without data: counted a slice at a time (one count for the cross-check's solid
floor, the constant fill's share and the metrics' mask), and a slice without any data given
the nearest data slice's grey."""

from __future__ import annotations

import numpy as np

from nwwatch.volume.metrics import voxels_with_data
from nwwatch.volume.nodata import count_with_data, data_per_slice, fill_slices_without_data


def test_the_voxels_with_data_are_the_finite_ones_counted_per_slice():
    volume = np.ones((4, 3, 5), np.float32)
    volume[0] = np.nan
    volume[1, :, :2] = np.inf
    volume[2, 0, 0] = -np.inf
    np.testing.assert_array_equal(data_per_slice(volume), [0, 9, 14, 15])
    assert count_with_data(volume) == np.count_nonzero(np.isfinite(volume)) == 38
    assert np.count_nonzero(voxels_with_data(volume)) == 38
    scattered = np.random.default_rng(0).normal(size=(5, 6, 7))
    scattered[np.random.default_rng(1).random(scattered.shape) < 0.3] = np.nan
    scattered[0, :2] = np.inf
    scattered[3, 1, 1] = -np.inf
    for dtype in (np.float32, np.float64):
        volume = scattered.astype(dtype)
        assert count_with_data(volume) == np.count_nonzero(np.isfinite(volume))
        np.testing.assert_array_equal(data_per_slice(volume),
                                      np.isfinite(volume).sum(axis=(1, 2)))
    integers = np.zeros((4, 3, 5), np.uint16)
    np.testing.assert_array_equal(data_per_slice(integers), [15] * 4)
    assert count_with_data(integers) == 60 and voxels_with_data(integers) is None


def test_a_slice_without_data_takes_the_nearest_data_slice():
    normalised = np.arange(7, dtype=np.float32)[:, None, None] * np.ones((7, 2, 3), np.float32)
    fill_slices_without_data(normalised, np.array([0, 0, 1, 1, 0, 1, 0], bool))
    # slices 0 and 1 from 2; 4 between 3 and 5 from the lower; 6 from 5
    np.testing.assert_array_equal(normalised[:, 0, 0], [2, 2, 2, 3, 3, 5, 5])
    # every slice, or none, with data: unchanged
    for with_data in (np.ones(7, bool), np.zeros(7, bool)):
        untouched = np.arange(7, dtype=np.float32)[:, None, None] * np.ones((7, 2, 3))
        fill_slices_without_data(untouched, with_data)
        np.testing.assert_array_equal(untouched[:, 0, 0], np.arange(7))
