"""Fine-tuning defaults (`nwwatch train DATA --init insitu-default --out`) and the labelling
tool's round trip: a DATA folder it writes fine-tunes the shipped weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from label_helpers import plain_params, render, truth_geometry
from training_helpers import capture_train

from bench.bench_finetune import new_look
from nwwatch.cli import main
from nwwatch.evaluate import evaluate_folder
from nwwatch.label.store import save_labeled_frame
from nwwatch.modelinfo import describe_model, format_model
from training.checkpoint import load_checkpoint
from training.config import FINETUNE_DEFAULTS
from training.data import make_split

torch.set_num_threads(1)
SHIPPED = Path(__file__).resolve().parents[1] / "nwwatch" / "models" / "insitu-default.onnx"


def test_init_alone_selects_the_fine_tuning_recipe(tmp_path, monkeypatch):
    seen = capture_train(monkeypatch)
    out = str(tmp_path / "m.onnx")
    CliRunner().invoke(main, ["train", str(tmp_path), "--init", "insitu-default", "--out", out])
    config = seen["config"]
    assert (config.optimizer, config.lr, config.epochs, config.crop, config.batch_size,
            config.val_fraction, config.val_min_images) == (
        "adamw", 1e-3, 80, 384, 4, 0.1, 6) == tuple(FINETUNE_DEFAULTS.values())
    assert config.init == "insitu-default" and config.arch == ""
    # What the user sets wins; a --val-fraction given drops the small-data rule.
    CliRunner().invoke(main, ["train", str(tmp_path), "--init", "insitu-default", "--out", out,
                              "--optimizer", "sgd", "--lr", "0.02", "--epochs", "5",
                              "--val-fraction", "0.3"])
    config = seen["config"]
    assert (config.optimizer, config.lr, config.epochs, config.crop, config.val_fraction,
            config.val_min_images) == ("sgd", 0.02, 5, 384, 0.3, 2)
    # Without --init the from-scratch defaults stay.
    CliRunner().invoke(main, ["train", str(tmp_path), "--out", out])
    assert (seen["config"].optimizer, seen["config"].lr) == ("sgd", 0.01)


@pytest.mark.parametrize(("n", "n_val"), [(1, 0), (3, 0), (5, 0), (6, 1), (10, 1), (20, 2)])
def test_fine_tuning_split_leaves_enough_to_train(n, n_val):
    split = make_split([f"s{k}" for k in range(n)], FINETUNE_DEFAULTS["val_fraction"], 0,
                       FINETUNE_DEFAULTS["val_min_images"])
    assert len(split.val) == n_val and len(split.train) == n - n_val


@pytest.mark.slow
def test_init_alone_fine_tunes_tool_data_from_the_shipped_weights(tmp_path):
    """`nwwatch train DATA --init insitu-default --out` on two frames the labelling tool
    wrote (frames of a look the shipped model was not trained on): the full default recipe
    (80 iterations here, on 128 px crops: the frames are smaller than the 384 px default),
    starting from the shipped weights, improves the model."""

    data = tmp_path / "DATA"
    for k in range(2):
        params = new_look(plain_params(77, k, 128))
        image, _, _ = render(params, seed=k)
        save_labeled_frame(data, f"f{k}", image, truth_geometry(params))
    before = evaluate_folder(SHIPPED, data, threads=1, angles=False).metrics.mean_iou
    out = tmp_path / "mine.onnx"
    # Only output options besides the three the issue names: no progress bar, the faster
    # of the two verified exporters.
    result = CliRunner().invoke(main, ["train", str(data), "--init", "insitu-default",
                                       "--out", str(out), "--quiet", "--exporter", "legacy"])
    assert result.exit_code == 0, result.output
    saved = load_checkpoint(out.with_suffix(".pt"))
    config = saved["config"]
    assert (config["optimizer"], config["lr"], config["epochs"], config["crop"]) == (
        "adamw", 1e-3, 80, 384)
    assert saved["split"]["val"] == [] and config["init"] == "insitu-default"
    history = [h["train_mean_iou"] for h in saved["history"]]
    after = evaluate_folder(out, data, threads=1, angles=False).metrics.mean_iou
    # Started from the shipped weights (same architecture, loaded by the engine) and improved.
    assert saved["inference"]["config"]["widths"] == [4, 8, 16, 32, 64, 128, 160]
    assert after > before + 0.05, (before, history[::10], after)
    # what it started from, by the model_sha256 the shipped model's rows carry (the .pt's
    # own sha256 is no row's): `nwwatch model` names it
    init = saved["provenance"]["init"]
    assert init["model_sha256"] == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    shown = format_model(describe_model(out)[0])
    assert (f"started from: {init['weights']} (sha256 {init['sha256'][:12]}), the weights of "
            f"{SHIPPED.name} (model_sha256 {init['model_sha256'][:12]}, as in its rows)") in shown
