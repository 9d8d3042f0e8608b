"""The frame confidence: the expected mIoU against a per-class count, and a constructed pair
of frames it ranks as their mIoU does where the boundary-band margin (the confidence before
measurement 2.2.3) ranks them backwards; the band margin itself: the top-two margin against
np.partition, ties included, the band gathered by index against a boolean mask, and found
in the objects' box against the whole frame."""

from __future__ import annotations

import numpy as np
import pytest

from nwwatch.segment.confidence import (
    _top_two_margin,
    band_margin,
    boundary_band,
    expected_iou,
    frame_confidence,
)
from nwwatch.segment.metrics import confusion_matrix, metrics_from_confusion


def _random_softmax(seed: int, shape=(3, 40, 50)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=shape).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    return probs, probs.argmax(axis=0).astype(np.uint8)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_top_two_margin_equals_the_partition_with_ties(n_classes):
    rng = np.random.default_rng(n_classes)
    values = rng.integers(0, 4, size=(n_classes, 500)).astype(np.float32) / 4  # many ties
    top = np.partition(values, -2, axis=0)[-2:]
    np.testing.assert_array_equal(_top_two_margin(values), top[1] - top[0])


def test_band_margin_is_the_mean_margin_over_the_band():
    rng = np.random.default_rng(3)
    labels = np.zeros((40, 50), np.uint8)
    labels[10:30, 5:20] = 1
    labels[12:25, 30:45] = 2
    logits = rng.normal(size=(3, 40, 50)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=0)
    band = boundary_band(labels)
    values = probs[:, band]
    top = np.partition(values, -2, axis=0)[-2:]
    assert band_margin(probs, labels) == pytest.approx(float(np.mean(top[1] - top[0])), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confidence_is_the_expected_miou_halved_without_a_valid_angle(seed):
    probs, labels = _random_softmax(seed)
    labels[labels == 2] = 1 if seed == 2 else 2  # seed 2: class 2 never labelled
    ious = []
    for c in range(3):
        mine = labels == c
        inside = probs[c][mine].sum(dtype=np.float64)
        ious.append(inside / (mine.sum() + probs[c][~mine].sum(dtype=np.float64)))
    np.testing.assert_allclose(expected_iou(probs, labels), ious, rtol=1e-6)
    assert frame_confidence(probs, labels, True) == pytest.approx(np.mean(ious), rel=1e-6)
    assert frame_confidence(probs, labels, False) == pytest.approx(0.5 * np.mean(ious), rel=1e-6)
    # A float16 softmax sums without overflow.
    assert frame_confidence(probs.astype(np.float16), labels, True) == pytest.approx(
        np.mean(ious), abs=1e-3)


def test_a_class_neither_labelled_nor_expected_is_left_out():
    probs = np.zeros((3, 8, 8), np.float32)
    probs[0], probs[1, :, :4], probs[0, :, :4] = 1.0, 1.0, 0.0
    labels = probs.argmax(axis=0).astype(np.uint8)
    iou = expected_iou(probs, labels)
    assert iou[:2].tolist() == [1.0, 1.0] and np.isnan(iou[2])
    assert frame_confidence(probs, labels, True) == 1.0
    with pytest.raises(ValueError, match="probabilities must be"):
        frame_confidence(probs[:, :4], labels, True)


def _wire_and_droplet(radius_px: float, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Softmax (3, size, size) and the truth of a frame: a wire below row 80 with a sharp
    edge, a droplet on it whose outline the model spreads over a few pixels and places 1.5 px
    inside the true one (the same hesitation and offset whatever the droplet's size)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    wire = 1 / (1 + np.exp(-(rows - 80) / 0.2))
    dist = np.hypot(rows - 80, cols - size / 2)
    drop = 1 / (1 + np.exp(-(radius_px - dist) / 1.0))
    probs = np.stack([(1 - drop) * (1 - wire), (1 - drop) * wire, drop]).astype(np.float32)
    truth = np.where(rows >= 80, 1, 0).astype(np.uint8)
    truth[dist <= radius_px + 1.5] = 2
    return probs, truth


def test_a_small_droplet_ranks_below_a_large_one_as_its_miou_does():
    scores = {}
    for radius in (8.0, 30.0):
        probs, truth = _wire_and_droplet(radius)
        labels = probs.argmax(axis=0).astype(np.uint8)
        miou = metrics_from_confusion(confusion_matrix(truth, labels, 3)).mean_iou
        scores[radius] = (miou, band_margin(probs, labels), frame_confidence(probs, labels, True))
    (miou_small, band_small, conf_small), (miou_large, band_large, conf_large) = scores.values()
    # The same outline costs the small droplet more of its IoU ...
    assert miou_small < miou_large - 0.02
    # ... which the band margin does not see: the wire's sharp edge is more of a small
    # droplet's band, so it calls the worse frame the surer one (the growth video's reversal).
    assert band_small > band_large
    # The expected mIoU ranks the two frames as their mIoU does.
    assert conf_small < conf_large


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


@pytest.mark.parametrize("n_classes", [1, 2, 3, 4, 7, 8, 9])
def test_frame_confidence_is_the_nanmean_of_the_ious_to_the_last_bit(n_classes, monkeypatch):
    # frame_confidence sums fewer than eight IoUs in Python (numpy's order) instead of calling
    # np.nanmean: the same float for any values, absent (NaN) classes, none present and the
    # clip included, on both sides of the eight.
    import nwwatch.segment.confidence as confidence

    rng = np.random.default_rng(n_classes)
    for k in range(300):
        iou = rng.random(n_classes) * rng.choice([1.0, 1e-3, 1e3])
        iou[rng.random(n_classes) < (0.3 if k % 50 else 1.0)] = np.nan  # all absent, at times
        monkeypatch.setattr(confidence, "expected_iou", lambda probs, labels, v=iou: v)
        want = (float(np.clip(np.nanmean(iou), 0.0, 1.0)) if np.isfinite(iou).any() else 0.0)
        for valid, factor in ((True, 1.0), (False, confidence.INVALID_ANGLE_FACTOR)):
            got = frame_confidence(np.empty((n_classes, 1, 1)), np.empty((1, 1)), valid)
            assert np.float64(got).view(np.int64) == np.float64(want * factor).view(np.int64)
