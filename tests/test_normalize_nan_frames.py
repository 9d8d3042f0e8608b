"""NaN pixels of an in-situ frame (no data: a drift-corrected frame's border, a masked
region) through the shipped model, as the service feeds it: read as the darkest grey, the
model called a NaN patch in the vacuum droplet and a NaN border band wire, and the labels
beside them changed; filled from the nearest pixels with data, neither."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from nwwatch import DEFAULT_INSITU_MODEL
from nwwatch.classes import BACKGROUND, DROPLET
from nwwatch.io.dataset import pair_folder, read_pair
from nwwatch.normalize import normalize_image
from nwwatch.segment.session import Segmenter
from nwwatch.synth import generate_insitu


@pytest.fixture(scope="module")
def frame_and_segmenter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nan_frames")
    generate_insitu(folder, 2, seed=3, size=256)
    _, image_path, label_path = pair_folder(folder)[1]
    raw, truth = read_pair(image_path, label_path, 3)
    return raw, truth, Segmenter(DEFAULT_INSITU_MODEL, providers=("cpu",), threads=1)


def _labels(segmenter: Segmenter, image: np.ndarray) -> np.ndarray:
    return segmenter.segment(normalize_image(image)).labels[0]


def test_a_nan_patch_in_the_vacuum_is_not_segmented_as_droplet(frame_and_segmenter):
    raw, truth, segmenter = frame_and_segmenter
    # A 40 x 40 patch whose every pixel lies 22 px or more inside the vacuum.
    inside = cv2.erode((truth == BACKGROUND).astype(np.uint8), np.ones((45, 45), np.uint8),
                       borderValue=0)
    centres = np.argwhere(inside > 0)
    row, col = centres[len(centres) // 2]
    patch = np.zeros(raw.shape, bool)
    patch[row - 20:row + 20, col - 20:col + 20] = True
    holed = raw.astype(np.float32)
    holed[patch] = np.nan
    clean = _labels(segmenter, raw)
    labels = _labels(segmenter, holed)
    # As the darkest grey: 97 % of the patch droplet and 0.8 % of the other labels changed.
    assert np.count_nonzero(labels[patch] == DROPLET) == 0
    assert np.mean(labels[patch] == BACKGROUND) >= 0.95
    assert np.mean(labels[~patch] == clean[~patch]) >= 0.998


def test_a_nan_border_band_leaves_the_labels_beside_it(frame_and_segmenter):
    raw, _, segmenter = frame_and_segmenter
    holed = raw.astype(np.float32)
    holed[:, :24] = np.nan  # the left 24 columns, as a drift correction leaves them
    band = np.isnan(holed)
    clean = _labels(segmenter, raw)
    labels = _labels(segmenter, holed)
    # As the darkest grey: 70 % of the band wire, 0.9 % of the labels beside it changed.
    assert np.mean(labels[~band] == clean[~band]) >= 0.998
