"""Training frames whose labels leave the tilted facet's overlap band unlabeled, and the
interface offset that training validation reports."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from nwwatch.classes import DROPLET, NANOWIRE, UNLABELED
from nwwatch.synth import generate_insitu
from nwwatch.synth.geometry import WireSpec
from nwwatch.synth.labels import scene_labels
from training.engine import validate
from training.synth_data import (
    overlap_band,
    relabel_folder,
    training_labels,
    wire_from_truth,
    write_training_frames,
)


def _wire(tilt_deg: float) -> WireSpec:
    # Growth straight up (axis 90 deg): the facet centre at row 60, the droplet above it.
    return WireSpec(facet_row=60.0, facet_col=48.0, axis_deg=90.0, radius_px=30.0,
                    tilt_deg=tilt_deg, theta_deg=120.0)


def test_untilted_wire_has_no_overlap_band():
    assert not overlap_band((_wire(0.0),), (96, 96)).any()


def test_tilted_band_spans_the_facet_ellipse_and_only_it_is_unlabeled():
    wire = _wire(8.0)
    band = overlap_band((wire,), (96, 96), dilate_px=0)
    half = wire.radius_px * math.sin(math.radians(8.0))
    rows = np.nonzero(band[:, 48])[0]
    # Along the axis the ellipse reaches r sin(tilt) above and below the facet centre.
    assert rows.min() == pytest.approx(60 - half, abs=1.0)
    assert rows.max() == pytest.approx(60 + half, abs=1.0)
    labels, _ = scene_labels((wire,), (96, 96))
    # The truth calls the band droplet ("droplet over wire") although the wire starts above it.
    assert np.mean(labels[band] == DROPLET) > 0.8
    train = training_labels(labels, (wire,))
    changed = train != labels
    assert np.all(train[changed] == UNLABELED)
    assert np.all(np.isin(labels[changed], [NANOWIRE, DROPLET]))
    assert band.sum() <= changed.sum() <= overlap_band((wire,), (96, 96)).sum()


def test_rendered_and_relabelled_folders_agree(tmp_path):
    # Seed 1, frames 0-2 at 96 px: one untilted and two tilted wires, no distractors.
    ignored = write_training_frames(tmp_path / "train", 3, seed=1, size=96)
    generate_insitu(tmp_path / "truth", 3, seed=1, size=96)
    assert ignored > 0
    relabelled = relabel_folder(tmp_path / "truth", tmp_path / "re", prefix="x_")
    assert relabelled == ignored
    rows = pq.read_table(tmp_path / "truth" / "truth.parquet").to_pylist()
    assert wire_from_truth(rows[1]).tilt_deg > 0
    for k in range(3):
        name = f"frame_{k:05d}"
        rendered = cv2.imread(str(tmp_path / "train" / "labels" / f"{name}.png"),
                              cv2.IMREAD_UNCHANGED)
        again = cv2.imread(str(tmp_path / "re" / "labels" / f"x_{name}.png"),
                           cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(rendered, again)
        assert (tmp_path / "re" / f"x_{name}.tif").resolve() == \
            (tmp_path / "truth" / f"{name}.tif").resolve()
    first = cv2.imread(str(tmp_path / "train" / "labels" / "frame_00000.png"),
                       cv2.IMREAD_UNCHANGED)
    assert not np.any(first == UNLABELED)  # the untilted frame keeps every label


class _Fixed(torch.nn.Module):
    """Logits that put a fixed label image first."""

    size_multiple = 1

    def __init__(self, labels: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("logits", torch.nn.functional.one_hot(
            torch.from_numpy(labels.astype(np.int64)), 3).permute(2, 0, 1)[None].float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1, -1)


def test_validation_reports_the_interface_offset():
    from training.data import LabeledImage

    truth, _ = scene_labels((_wire(0.0),), (96, 96))
    shifted = truth.copy()
    # The predicted droplet reaches 3 px further down into the wire.
    band = (truth == NANOWIRE) & (np.arange(96)[:, None] < 63.5)
    shifted[band] = DROPLET
    offsets: list[np.ndarray] = []
    item = LabeledImage(stem="a", image=np.zeros((96, 96), np.float32), label=truth)
    validate(_Fixed(shifted), [item], 3, torch.device("cpu"), offsets)
    assert len(offsets) == 1 and np.median(offsets[0]) == pytest.approx(3.0, abs=0.5)
