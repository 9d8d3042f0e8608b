"""Voxels without data: NaN or infinite voxels of a float volume (the padding of an aligned
reconstruction; a constant fill once :func:`nwwatch.volume.fill.without_constant_fill` made
it NaN). Every voxel of an integer volume has data. Counted a slice at a time, so that no
volume-sized bool copy is made to learn that a volume has none."""

from __future__ import annotations

import math

import numpy as np


def data_per_slice(volume: np.ndarray) -> np.ndarray:
    """int64 (Z,): the number of voxels with data (finite) in each slice of ``volume``
    (Z, Y, X); every voxel of an integer volume."""
    data = np.asarray(volume)
    if data.dtype.kind != "f":
        return np.full(data.shape[0], math.prod(data.shape[1:]), np.int64)
    return np.array([np.count_nonzero(np.isfinite(plane)) for plane in data], np.int64)


def count_with_data(volume: np.ndarray) -> int:
    """The number of voxels of ``volume`` (Z, Y, X) with data (:func:`data_per_slice`)."""
    return int(data_per_slice(volume).sum())


def fill_slices_without_data(normalised: np.ndarray, with_data: np.ndarray) -> None:
    """Give each slice of ``normalised`` (Z, Y, X, in place) whose ``with_data`` (bool (Z,))
    is False the values of the nearest slice with data along Z (the lower one of two as
    near); nothing when every slice, or none, has data.

    A model that reads across slices (a Z-blurred volume sliced along Y and X by tri-planar
    fusion, a slab's neighbour slices) would otherwise see the slice's -1 (what
    :func:`nwwatch.normalize.normalize_image` gives a plane without data) beside the data, and
    a bright-field model call the data next to it solid. Within a slice with data, no data
    already has the nearest data's grey in that slice."""
    has = np.asarray(with_data, dtype=bool)
    if has.all() or not has.any():
        return
    data_z = np.flatnonzero(has)
    for z in np.flatnonzero(~has):
        normalised[z] = normalised[data_z[np.argmin(np.abs(data_z - z))]]
