"""`nwwatch train --init`: fine-tuning starts from the given weights, checked first."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from training_helpers import make_folder

from nwwatch.cli import main
from training.checkpoint import CheckpointError, load_checkpoint
from training.config import TrainConfig
from training.engine import TrainingError, train
from training.weights import load_initial_weights, shipped_weights, write_slim_weights

torch.set_num_threads(1)
TINY = {"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]}


def _run(tmp_path, name, data, epochs=2, **kwargs):
    config = TrainConfig(out=str(tmp_path / f"{name}.onnx"), data=str(data), epochs=epochs,
                         steps_per_epoch=3, batch_size=2, crop=32, seed=1, val_fraction=0.0,
                         **{"export": False, **kwargs})
    return train(config, progress=False)


def test_init_starts_from_the_weights_and_keeps_their_architecture(tmp_path):
    data = make_folder(tmp_path / "data", n=4, size=32)
    first = _run(tmp_path, "base", data, epochs=3, model_options=dict(TINY))
    slim = write_slim_weights(tmp_path / "base.pt", tmp_path / "slim.pt", source="test")
    initial = load_initial_weights(str(slim))
    assert initial.arch == "unet" and initial.model_options["widths"] == [4, 8, 16]
    # No --model-options: the architecture comes from the weights.
    tuned = _run(tmp_path, "tuned", data, epochs=1, init=str(slim))
    saved = load_checkpoint(tmp_path / "tuned.pt")
    assert saved["config"]["model_options"]["widths"] == [4, 8, 16]
    assert saved["config"]["init"] == str(slim)
    # Trained from the weights, its first validation is as good as the base's last one; a run
    # from random weights with the same seed and steps is not.
    scratch = _run(tmp_path, "scratch", data, epochs=1, model_options=dict(TINY))
    base_score = first.history[-1]["train_mean_iou"]
    assert tuned.history[0]["train_mean_iou"] >= base_score - 0.05
    assert tuned.history[0]["train_mean_iou"] > scratch.history[0]["train_mean_iou"]
    # An .onnx path means the checkpoint beside it.
    assert load_initial_weights(str(tmp_path / "base.onnx")).path == tmp_path / "base.pt"


def test_init_errors_name_the_weights_and_the_mismatch(tmp_path):
    data = make_folder(tmp_path / "data", n=4, size=32)
    _run(tmp_path, "base", data, epochs=1, model_options=dict(TINY))
    weights = str(tmp_path / "base.pt")
    with pytest.raises(TrainingError, match=r"base\.pt.*--model-options \['widths'\]"):
        _run(tmp_path, "x", data, init=weights, model_options={"widths": [4, 8, 32]})
    with pytest.raises(TrainingError, match=r"'unet' model, not --arch 'pspnet'"):
        _run(tmp_path, "x", data, init=weights, arch="pspnet")
    with pytest.raises(TrainingError, match="contrastive"):
        _run(tmp_path, "x", data, init=weights, paradigm="contrastive")
    with pytest.raises(CheckpointError, match=r"nope.*shipped: \["):
        _run(tmp_path, "x", data, init="nope")


def test_init_checks_the_number_of_classes(tmp_path):
    data = make_folder(tmp_path / "data", n=4, size=32)
    _run(tmp_path, "base", data, epochs=1, model_options=dict(TINY))
    two = make_folder(tmp_path / "two", n=4, size=32)
    # (a tomogram folder: an in-situ one of two classes is refused before --init is read)
    (two / "dataset.toml").write_text('kind = "tomogram"\nclasses = ["pore", "solid"]\n'
                                      'normalization_scope = "image"\n')
    for label in (two / "labels").glob("*.png"):
        image = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(label), (image > 0).astype("uint8"))
    with pytest.raises(TrainingError, match=r"3 classes.*the data 2"):
        _run(tmp_path, "x", two, init=str(tmp_path / "base.pt"))


def test_init_checks_the_class_names(tmp_path):
    # before: only the number was compared, so weights whose class 1 is the nanowire trained
    # on data whose class 1 is the droplet without a word
    data = make_folder(tmp_path / "data", n=4, size=32)
    _run(tmp_path, "base", data, epochs=1, model_options=dict(TINY))
    # (a reordered in-situ list is refused by the DATA folder's own check, nwwatch.io.dataset)
    (data / "dataset.toml").write_text('classes = ["background", "wire", "drop"]\n')
    with pytest.raises(TrainingError, match=r"base\.pt: the weights' classes \['background', "
                                            r"'nanowire', 'droplet'\], the data's \["
                                            r"'background', 'wire', 'drop'\]"):
        _run(tmp_path, "x", data, init=str(tmp_path / "base.pt"))
    assert not (tmp_path / "x.pt").exists()


def test_shipped_default_weights_are_the_shipped_model():
    """training/pretrained/insitu-default.pt must be the weights of the shipped ONNX model."""
    from importlib.resources import files

    from nwwatch.normalize import normalize_image
    from nwwatch.segment.session import Segmenter
    from nwwatch.synth import render_insitu_frame, sample_frame_params
    from training.checkpoint import load_inference_model

    assert "insitu-default" in shipped_weights()
    initial = load_initial_weights("insitu-default")
    segmenter = Segmenter(files("nwwatch") / "models" / "insitu-default.onnx",
                          providers=("cpu",), threads=1)
    assert initial.arch == segmenter.metadata.arch
    assert initial.class_names == list(segmenter.metadata.class_names)
    model = load_inference_model(shipped_weights()["insitu-default"])
    rng = np.random.default_rng(5)
    frame, _, _ = render_insitu_frame(sample_frame_params(rng, size=256), rng)
    image = normalize_image(frame)
    with torch.no_grad():
        torch_labels = model(torch.from_numpy(image)[None, None]).argmax(1)[0].numpy()
    # The network itself, without the runtime's working-scale resizing.
    onnx_labels = segmenter.segment_native(image[None]).labels[0]
    assert (torch_labels == onnx_labels).mean() > 0.999


def test_cli_init_option(tmp_path, monkeypatch):
    data = make_folder(tmp_path / "data", n=4, size=32)
    _run(tmp_path, "base", data, epochs=1, model_options=dict(TINY))
    out = tmp_path / "cli.onnx"
    monkeypatch.chdir(tmp_path)  # --init relative: the model names the full path
    result = CliRunner().invoke(main, [
        "train", str(data), "--out", str(out), "--init", "base.pt",
        "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop", "32",
        "--threads", "1", "--exporter", "legacy", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "--init" in json.dumps(load_checkpoint(tmp_path / "cli.pt")["config"]["command"])
    # The model names the weights it started from by their hash (before: only the command's
    # --init value, which says nothing once the file is retrained or replaced), and by their
    # absolute path (before: "base.pt" as typed).
    from nwwatch.filehash import file_sha256
    from nwwatch.segment.session import Segmenter

    provenance = Segmenter(out, providers=("cpu",)).metadata.extra["provenance"]
    assert provenance["init"] == {"weights": str(tmp_path / "base.pt"),
                                  "sha256": file_sha256(tmp_path / "base.pt")}


def test_init_weights_with_an_option_this_version_lacks_are_refused_naming_it(tmp_path):
    # Weights written by another version: the same option check as --model-options, as a
    # CheckpointError naming the file, instead of a TypeError from inside the builder.
    from training.checkpoint import save_checkpoint

    payload = load_checkpoint(shipped_weights()["insitu-default"])
    payload["inference"] = {**payload["inference"],
                            "config": {**payload["inference"]["config"], "skip_gates": True}}
    payload.pop("format")
    odd = tmp_path / "odd.pt"
    save_checkpoint(odd, payload)
    with pytest.raises(CheckpointError, match=r"odd\.pt: unknown key\(s\) 'skip_gates' for "
                                              r"'unet' \(known: act, "):
        load_initial_weights(str(odd))


def test_init_with_weights_not_written_by_nwwatch_train_says_what_it_takes(tmp_path):
    # a state_dict saved by the user's own script, a text file named .pt: each says what
    # --init takes
    state = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Conv2d(1, 3, 3).state_dict(), state)
    with pytest.raises(CheckpointError, match=r"state_dict\.pt: not an nwwatch training "
                                              r"checkpoint \(a torch file without the "
                                              r"'format': 1 entry .*a plain state_dict or "
                                              r"another program's weights\?\): give the "
                                              r"MODEL\.pt that nwwatch train wrote$"):
        load_initial_weights(str(state))
    text = tmp_path / "notes.pt"
    text.write_text("hello\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt: not a readable checkpoint \(.*\): "
                                              r"give the MODEL\.pt that nwwatch train wrote$"):
        load_initial_weights(str(text))


def test_init_with_an_onnx_model_that_has_no_checkpoint_says_so(tmp_path):
    # before: "--init .../insitu-default.onnx: no such checkpoint file, and not shipped weights"
    # for the shipped model itself, whose weights are --init insitu-default
    from importlib.resources import files

    shipped = str(files("nwwatch") / "models" / "insitu-default.onnx")
    with pytest.raises(CheckpointError, match=r"insitu-default\.pt \(the checkpoint next to "
                                              r"this ONNX model\) not found.*--init "
                                              r"insitu-default"):
        load_initial_weights(shipped)
    # a copy of the shipped model, wherever and however named, gets the same hint
    copy = tmp_path / "models" / "our-model.onnx"
    copy.parent.mkdir()
    copy.write_bytes((files("nwwatch") / "models" / "insitu-default.onnx").read_bytes())
    with pytest.raises(CheckpointError, match=r"our-model\.pt \(the checkpoint next to this "
                                              r"ONNX model\) not found.*--init insitu-default$"):
        load_initial_weights(str(copy))
    (tmp_path / "mine.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"mine\.pt \(the checkpoint next to this ONNX "
                                              r"model\) not found: an exported model holds "
                                              r"no training weights$"):
        load_initial_weights(str(tmp_path / "mine.onnx"))


def test_init_with_an_onnx_model_that_does_not_exist_says_so(tmp_path):
    # before: "--init .../mine2.onnx: .../mine2.pt (the checkpoint next to this ONNX model) not
    # found: an exported model holds no training weights" for a mistyped model path, as if
    # the model were there and its checkpoint lost
    missing = tmp_path / "mine2.onnx"
    with pytest.raises(CheckpointError, match=r"mine2\.onnx: no such file \(nor .*mine2\.pt, "
                                              r"the checkpoint .*shipped weights: "
                                              r"\['insitu-default'\]$"):
        load_initial_weights(str(missing))


def test_init_of_a_model_copied_over_another_runs_model_is_refused(tmp_path):
    # Was: a redeploy by copying mine2.onnx over mine.onnx left round 1's mine.pt beside it;
    # `--init mine.onnx` fine-tuned round 1's weights under mine2's working scale without a
    # word, and the new model recorded only "--init mine.onnx".
    import shutil

    data = make_folder(tmp_path / "data", n=4, size=32)
    more = make_folder(tmp_path / "more", n=5, size=32, seed=7)
    _run(tmp_path, "mine", data, epochs=1, model_options=dict(TINY), export=True)
    _run(tmp_path, "mine2", more, epochs=1, model_options=dict(TINY), export=True)
    assert load_initial_weights(str(tmp_path / "mine.onnx")).path == tmp_path / "mine.pt"
    shutil.copyfile(tmp_path / "mine2.onnx", tmp_path / "mine.onnx")
    with pytest.raises(CheckpointError, match=r"mine\.pt is not the checkpoint mine\.onnx was "
                                              r"exported from"):
        load_initial_weights(str(tmp_path / "mine.onnx"))
    shutil.copyfile(tmp_path / "mine2.pt", tmp_path / "mine.pt")  # its own run's beside it
    assert load_initial_weights(str(tmp_path / "mine.onnx")).path == tmp_path / "mine.pt"


def test_a_fine_tune_scores_its_starting_weights_and_warns_when_no_epoch_beats_them(
        tmp_path):
    # before: the starting weights were never scored, and a fine-tune whose every epoch
    # scored below them exported its best epoch with no word of it
    from training.engine import TrainResult, starting_weights_warning
    from training.modelmeta import model_file_metadata

    data = make_folder(tmp_path / "data", n=4, size=32)
    _run(tmp_path, "base", data, epochs=4, model_options=dict(TINY))
    out = tmp_path / "tuned.onnx"
    # a learning rate far too high: the trained epochs score below the starting weights
    args = ["train", str(data), "--init", str(tmp_path / "base.pt"), "--out", str(out),
            "--steps-per-epoch", "3", "--batch-size", "2", "--crop", "32", "--lr", "5",
            "--seed", "1", "--threads", "1", "--quiet", "--exporter", "legacy"]
    result = CliRunner().invoke(main, [*args, "--epochs", "2"])
    assert result.exit_code == 0, result.output
    saved = load_checkpoint(tmp_path / "tuned.pt")
    start = saved["start"]
    assert start["epoch"] == 0 and start["weights"] == str(tmp_path / "base.pt")
    assert start["metrics"]["train_mean_iou"] == start["score"]
    trained = [h["train_mean_iou"] for h in saved["history"]]
    assert len(trained) == 2 and max(trained) < start["score"]
    lines = result.output.splitlines()
    assert (f"epoch 0/2 (the --init weights, before training) train mIoU "
            f"{start['score']:.4f}") in lines
    # which weights are exported is unchanged: the trained ones
    assert any(line.startswith("exported: the weights of epoch 2 of 2") for line in lines)
    warning = lines[-1]
    assert warning.startswith(f"warning: the exported weights (epoch 2) score mIoU "
                              f"{trained[-1]:.4f} on the training images (no image held out), "
                              f"no higher than the weights this fine-tune started from (--init "
                              f"{tmp_path / 'base.pt'}): mIoU {start['score']:.4f} before "
                              f"training (epoch 0). Label more frames")
    assert "nwwatch evaluate" in warning and "Label more frames" in warning
    meta = model_file_metadata(out)
    assert meta.extra["start_metrics"]["train_mean_iou"] == pytest.approx(start["score"])

    # a resume keeps the record of the starting weights (its own are trained ones)
    resumed = CliRunner().invoke(main, ["train", "--resume", "--out", str(out), "--epochs", "3",
                                        "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert "epoch 0/" not in resumed.output
    assert load_checkpoint(tmp_path / "tuned.pt")["start"] == start
    assert model_file_metadata(out).extra["start_metrics"] == meta.extra["start_metrics"]

    # exported weights above the starting weights: no warning; a run from random weights: none
    beaten = TrainResult(None, out, {"train_mean_iou": 0.7}, 2,
                         [{"epoch": 1, "train_mean_iou": 0.5}, {"epoch": 2, "train_mean_iou": 0.7}],
                         exported_epoch=2,
                         start={"epoch": 0, "weights": "w", "score": 0.6, "metrics": {}})
    assert starting_weights_warning(beaten) is None
    beaten.start = None
    assert starting_weights_warning(beaten) is None


def test_a_fine_tune_without_held_out_images_warns_when_its_last_epoch_falls_below_the_start(
        tmp_path):
    # before: the warning compared the starting weights with the best epoch, but with no image
    # held out the last epoch is exported: epochs 0.4212, 0.0481, 0.0506 from a start of
    # 0.1954 exported epoch 3 (0.0506) with no warning, as epoch 1 was above the start
    from training.engine import TrainResult, starting_weights_warning

    data = make_folder(tmp_path / "data", n=4, size=32)
    _run(tmp_path, "base", data, epochs=2, model_options=dict(TINY), threads=1)
    # a learning rate high enough that the first epoch rises above the start and the last
    # falls below it (seed 2)
    tuned = train(TrainConfig(out=str(tmp_path / "tuned.onnx"), data=str(data), epochs=3,
                              steps_per_epoch=3, batch_size=2, crop=32, seed=2, lr=1.0,
                              threads=1, val_fraction=0.0, init=str(tmp_path / "base.pt"),
                              export=False), progress=False)
    scores = [h["train_mean_iou"] for h in tuned.history]
    start = tuned.start["score"]
    assert not tuned.validation_images and tuned.exported_epoch == 3
    assert max(scores) > start > scores[-1], (start, scores)  # the situation the test needs
    assert tuned.metrics["train_mean_iou"] == pytest.approx(scores[-1])
    warning = starting_weights_warning(tuned)
    best = scores.index(max(scores)) + 1
    assert warning is not None and warning.startswith(
        f"warning: the exported weights (epoch 3) score mIoU {scores[-1]:.4f} on the training "
        f"images (no image held out), no higher than the weights this fine-tune started from "
        f"(--init {tmp_path / 'base.pt'}): mIoU {start:.4f} before training (epoch 0); epoch "
        f"{best} scored {max(scores):.4f}, but the last epoch is exported when no image is held "
        f"out. Label more frames")

    # the same with the numbers fixed: the exported (last) epoch is what is compared
    fell = TrainResult(None, tmp_path / "x.pt", {"train_mean_iou": 0.3}, 2,
                       [{"epoch": 1, "train_mean_iou": 0.7}, {"epoch": 2, "train_mean_iou": 0.3}],
                       exported_epoch=2,
                       start={"epoch": 0, "weights": "w", "score": 0.6, "metrics": {}})
    assert starting_weights_warning(fell).startswith(
        "warning: the exported weights (epoch 2) score mIoU 0.3000 on the training images")
    # held out: the exported epoch is the best one, and above the start: no warning
    kept = TrainResult(None, tmp_path / "x.pt", {"val_mean_iou": 0.7}, 2,
                       [{"epoch": 1, "val_mean_iou": 0.7}, {"epoch": 2, "val_mean_iou": 0.3}],
                       exported_epoch=1, validation_images=["img03"],
                       start={"epoch": 0, "weights": "w", "score": 0.6, "metrics": {}})
    assert starting_weights_warning(kept) is None


def test_a_fine_tune_with_a_bad_crop_fails_before_scoring_its_starting_weights(tmp_path):
    # before: the --init weights were scored over the evaluation images ("epoch 0/1 ...")
    # and only then was --crop 30 refused
    data = make_folder(tmp_path / "data", n=4, size=32)
    _run(tmp_path, "base", data, epochs=1, model_options=dict(TINY), threads=1)
    lines: list[str] = []
    config = TrainConfig(out=str(tmp_path / "bad.onnx"), data=str(data), epochs=1,
                         steps_per_epoch=2, batch_size=2, crop=30, seed=1, threads=1,
                         init=str(tmp_path / "base.pt"), export=False)
    with pytest.raises(TrainingError, match=r"--crop 30 is not a multiple of 4"):
        train(config, progress=False, echo=lines.append)
    assert not [line for line in lines if line.startswith("epoch 0")], lines
    assert not (tmp_path / "bad.pt").exists()
