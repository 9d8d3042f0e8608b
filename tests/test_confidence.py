"""The frame confidence: the top-two margin against np.partition, ties included, and the
band gathered by index against a boolean mask, and found in the objects' box against the
whole frame."""

from __future__ import annotations

import numpy as np
import pytest

from nwwatch.segment.confidence import _top_two_margin, boundary_band, frame_confidence


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_top_two_margin_equals_the_partition_with_ties(n_classes):
    rng = np.random.default_rng(n_classes)
    values = rng.integers(0, 4, size=(n_classes, 500)).astype(np.float32) / 4  # many ties
    top = np.partition(values, -2, axis=0)[-2:]
    np.testing.assert_array_equal(_top_two_margin(values), top[1] - top[0])


def test_confidence_is_the_mean_margin_over_the_band():
    rng = np.random.default_rng(3)
    labels = np.zeros((40, 50), np.uint8)
    labels[10:30, 5:20] = 1
    labels[12:25, 30:45] = 2
    logits = rng.normal(size=(3, 40, 50)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    band = boundary_band(labels)
    values = probs[:, band]
    top = np.partition(values, -2, axis=0)[-2:]
    expected = float(np.mean(top[1] - top[0]))
    assert frame_confidence(probs, labels, True) == pytest.approx(expected, rel=1e-6)
    assert frame_confidence(probs, labels, False) == pytest.approx(0.5 * expected, rel=1e-6)


@pytest.mark.parametrize("band_px", [1, 2, 3])
def test_band_from_the_objects_box_equals_the_whole_frame_band(band_px):
    from nwwatch.segment.confidence import _band_indices

    rng = np.random.default_rng(band_px)
    for _ in range(150):
        labels = np.zeros((int(rng.integers(1, 40)), int(rng.integers(1, 40))), np.uint8)
        for _ in range(int(rng.integers(0, 5))):  # blobs anywhere, at the borders too
            r, c = rng.integers(0, labels.shape[0]), rng.integers(0, labels.shape[1])
            labels[r:r + int(rng.integers(1, 7)), c:c + int(rng.integers(1, 7))] = \
                rng.integers(0, 3)
        np.testing.assert_array_equal(_band_indices(labels, band_px),
                                      np.flatnonzero(boundary_band(labels, band_px)))
