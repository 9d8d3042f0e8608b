"""A fine-tune (``--init``) trains at its starting model's working scale: its frames are
brought into that scale as the runtime brings frames to the model, and the fine-tuned model
records the same scale. Trained at the frames' own size, a fine-tune on 256 px frames lost
the droplet (the runtime had run the starting model at 384 px)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from training_helpers import make_folder

from nwwatch.cli import main
from nwwatch.segment.session import Segmenter
from training.data import LabeledImage, TrainingData
from training.weights import SHIPPED_DIR
from training.working_scale import to_working_scale

torch.set_num_threads(1)
SHIPPED = Path(__file__).resolve().parents[1] / "nwwatch" / "models" / "insitu-default.onnx"
SCALE = {"frame_px": 512, "droplet_radius_px": [14.0, 200.0], "min_frame_px": 384,
         "whole_droplet_radius_px": 144.0}


def _item(stem: str, rows: int, cols: int) -> LabeledImage:
    label = np.zeros((rows, cols), np.uint8)
    label[rows // 2:, cols // 3: 2 * cols // 3] = 1
    label[: rows // 4] = 255
    label[rows // 3: rows // 2, cols // 3: 2 * cols // 3] = 2
    image = np.where(label == 2, -0.8, np.where(label == 1, 0.5, 0.0)).astype(np.float32)
    return LabeledImage(stem, image, label, image_sha256=stem, label_sha256=stem)


def test_frames_are_scaled_as_the_runtime_scales_them():
    data = TrainingData("insitu", ("background", "nanowire", "droplet"), "image",
                        [_item("small", 128, 96), _item("large", 1024, 1024),
                         _item("inside", 450, 400)],
                        unlabeled=[np.zeros((256, 256), np.float32)])
    scaled, note = to_working_scale(data, SCALE)
    shapes = {item.stem: item.label.shape for item in scaled.labeled}
    # long side up to min_frame_px (x3), down to frame_px (x0.5); in between unchanged
    assert shapes == {"small": (384, 288), "large": (512, 512), "inside": (450, 400)}
    assert scaled.unlabeled[0].shape == (384, 384)
    # all images, validation and unlabeled too (not "training images": the split's, read so)
    assert "3 of the 3 labeled and 1 unlabeled images scaled by 0.5-3" in note
    assert "384-512 px" in note
    for item in scaled.labeled:  # nearest neighbour: class ids and 255 stay what they were
        assert set(np.unique(item.label)) == {0, 1, 2, 255}
        assert item.image.dtype == np.float32 and item.image.shape == item.label.shape
    assert scaled.sha256() == data.sha256()  # the files trained on are the same
    inside = next(i for i in scaled.labeled if i.stem == "inside")
    assert inside is data.labeled[2]
    same, nothing = to_working_scale(TrainingData(
        "insitu", data.class_names, "image", [data.labeled[2]]), SCALE)
    assert nothing == "" and same.labeled == [data.labeled[2]]


def _train(args: list[str]) -> str:
    result = CliRunner().invoke(main, ["train", *args, "--quiet", "--exporter", "legacy",
                                       "--threads", "1"])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_fine_tune_keeps_its_starting_models_scale_also_when_resumed(tmp_path):
    data = make_folder(tmp_path / "DATA", n=3, size=128)
    out = tmp_path / "m.onnx"
    output = _train([str(data), "--init", "insitu-default", "--out", str(out), "--epochs", "1",
                     "--crop", "128"])
    assert ("working scale of insitu-default.onnx kept: frames resized to 512 px; smaller than "
            "384 px scaled up; droplet radius 14-207.6 px; droplets beyond 144 px seen whole"
            in output)
    assert "3 of the 3 labeled images scaled by 3 into the starting model's working scale" in output
    shipped = Segmenter(SHIPPED, providers=("cpu",)).working_scale
    assert Segmenter(out, providers=("cpu",)).working_scale == shipped
    output = _train([str(data), "--resume", "--epochs", "2", "--out", str(out)])
    assert "3 of the 3 labeled images scaled by 3" in output
    assert Segmenter(out, providers=("cpu",)).working_scale == shipped


def test_weights_without_their_model_train_at_the_frames_size(tmp_path):
    # A checkpoint with no ONNX model beside it has no scale to keep: the fine-tune reads its
    # own from its labels, as a run from scratch does.
    data = make_folder(tmp_path / "DATA", n=3, size=128)
    weights = tmp_path / "weights.pt"
    shutil.copy(SHIPPED_DIR / "insitu-default.pt", weights)
    out = tmp_path / "m.onnx"
    output = _train([str(data), "--init", str(weights), "--out", str(out), "--epochs", "1",
                     "--crop", "128"])
    assert "working scale" not in output and "scaled by" not in output
    assert Segmenter(out, providers=("cpu",)).working_scale.frame_px == 128


def test_a_frozen_encoder_keeps_its_models_scale(tmp_path):
    """--frozen-encoder froze the shipped encoder but trained (and exported) at the frames'
    own size: the frozen encoder, which cannot adapt, saw objects 3-4 times smaller than it
    learned."""
    import json

    from training.weights import load_initial_weights

    shipped = load_initial_weights("insitu-default")
    data = make_folder(tmp_path / "DATA", n=3, size=128)
    out = tmp_path / "m.onnx"
    output = _train([str(data), "--paradigm", "cct", "--arch", shipped.arch,
                     "--model-options", json.dumps(shipped.model_options),
                     "--frozen-encoder", str(SHIPPED_DIR / "insitu-default.pt"),
                     "--out", str(out), "--epochs", "1", "--steps-per-epoch", "1",
                     "--crop", "128", "--batch-size", "2"])
    assert "working scale of insitu-default.onnx (the frozen encoder's) kept" in output
    assert Segmenter(out, providers=("cpu",)).working_scale == \
        Segmenter(SHIPPED, providers=("cpu",)).working_scale
