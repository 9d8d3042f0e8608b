"""`nwwatch train` end to end: ONNX that the runtime loads, resume, tomogram workflow, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from training_helpers import capture_train, make_folder, write_two_phase_volume

from nwwatch.cli import main
from nwwatch.segment.session import Segmenter
from training.checkpoint import load_checkpoint
from training.config import FOLDER_DEFAULTS, VOLUME_DEFAULTS, TrainConfig
from training.engine import train

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)
TINY = json.dumps({"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]})
FAST = ["--threads", "1", "--batch-size", "2", "--crop", "32", "--steps-per-epoch", "2",
        "--exporter", "legacy", "--quiet", "--model-options", TINY]


def test_train_end_to_end_writes_a_model_the_runtime_loads(tmp_path):
    data = make_folder(tmp_path / "data", n=5, size=40)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(out), "--epochs", "1",
                                       "--seed", "3", *FAST])
    assert result.exit_code == 0, result.output
    segmenter = Segmenter(out, providers=("cpu",))
    meta = segmenter.metadata
    assert meta.paradigm == "supervised" and meta.kind == "insitu" and meta.arch == "unet"
    assert meta.class_names == ("background", "nanowire", "droplet")
    assert len(meta.training_data_sha256) == 64
    assert meta.training_command.startswith("nwwatch train ") and "--seed 3" in \
        meta.training_command
    assert "val_mean_iou" in meta.validation_metrics
    labels = segmenter.segment(np.zeros((40, 44), np.float32)).labels
    assert labels.shape == (1, 40, 44)
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint["epoch"] == 1 and checkpoint["config"]["seed"] == 3
    assert sorted(checkpoint["split"]["train"] + checkpoint["split"]["val"]) == \
        [f"img{k:02d}" for k in range(5)]
    # An interrupted run is exported from its checkpoint alone (no DATA argument needed).
    out.unlink()
    again = CliRunner().invoke(main, ["train", "--resume", "--export-only", "--out", str(out),
                                      "--exporter", "legacy", "--quiet"])
    assert again.exit_code == 0, again.output
    assert Segmenter(out, providers=("cpu",)).metadata.training_data_sha256 == \
        meta.training_data_sha256


def test_an_export_that_fails_its_check_says_what_is_kept_without_a_traceback(tmp_path,
                                                                              monkeypatch):
    # An exporter that writes a graph disagreeing with torch ended the run with a traceback
    # of ExportVerificationError, and said nothing of the checkpoint that keeps the weights.
    import training.export as export_module

    def disagreeing(*args, **kwargs):
        raise export_module.ExportVerificationError(
            "shape (N, H, W) = (1, 32, 32): ONNX probabilities differ from torch by 0.0166 > "
            "atol 0.0001")

    monkeypatch.setattr(export_module, "export_onnx", disagreeing)
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(out), "--epochs", "1",
                                       *FAST])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)
    assert f"{out} not written: shape (N, H, W)" in result.output
    assert f"{tmp_path / 'm.pt'} keeps the trained weights" in result.output
    assert f"nwwatch train --resume --export-only --exporter dynamo --out {out}" in result.output
    assert not out.exists() and (tmp_path / "m.pt").is_file()
    # resumed without --exporter, the run's own exporter (legacy, in FAST) failed: dynamo is
    # the other one, whatever --exporter's default
    again = CliRunner().invoke(main, ["train", "--resume", "--export-only", "--out", str(out),
                                      "--quiet"])
    assert again.exit_code == 1
    assert f"--export-only --exporter dynamo --out {out}" in again.output
    given = CliRunner().invoke(main, ["train", "--resume", "--export-only", "--out", str(out),
                                      "--quiet", "--exporter", "dynamo"])
    assert given.exit_code == 1
    assert f"--export-only --exporter legacy --out {out}" in given.output


def test_resume_continues_from_the_checkpoint_epoch(tmp_path):
    data = make_folder(tmp_path / "data", n=4, size=32)
    config = TrainConfig(out=str(tmp_path / "r.onnx"), data=str(data), epochs=1,
                         steps_per_epoch=2, batch_size=2, crop=32, export=False,
                         model_options=json.loads(TINY))
    first = train(config, progress=False)
    assert [h["epoch"] for h in first.history] == [1]
    saved = load_checkpoint(tmp_path / "r.pt")
    assert saved["iteration"] == 2
    config.epochs = 3
    resumed = train(config, resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert load_checkpoint(tmp_path / "r.pt")["iteration"] == 6
    # Resume keeps the saved split and refuses changed data.
    assert load_checkpoint(tmp_path / "r.pt")["split"] == saved["split"]
    label = np.zeros((32, 32), np.uint8)
    cv2.imwrite(str(data / "labels" / "img00.png"), label)
    with pytest.raises(ValueError, match="training data changed"):
        train(config, resume=True, progress=False)


def test_tomogram_workflow_contrastive(tmp_path):
    write_two_phase_volume(tmp_path / "vol.tif")
    labels = np.full((32, 32), 255, np.uint8)
    labels[2:8, 2:8] = 0
    labels[2:8, 20:26] = 1
    cv2.imwrite(str(tmp_path / "s2.png"), labels)
    out = tmp_path / "tomo.onnx"
    args = ["train", "--volume", str(tmp_path / "vol.tif"), "--slice", "2", "--labels",
            str(tmp_path / "s2.png"), "--paradigm", "contrastive", "--out", str(out),
            "--epochs", "1", "--classifier-steps", "3", *FAST]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    meta = Segmenter(out, providers=("cpu",)).metadata
    assert meta.kind == "tomogram" and meta.normalization_scope == "volume"
    assert meta.class_names == ("pore", "solid") and meta.paradigm == "contrastive"
    # 36 labeled pixels of each class: said once (the engine says it, not also the CLI)
    assert result.output.count("warning: only 36 labeled pore pixels (fewer than 50)") == 1
    # Another --out: the finished run's files are not replaced (test_training_outputs.py).
    again = [a if a != str(out) else str(tmp_path / "again.onnx") for a in args]
    bad = CliRunner().invoke(main, [*again[:4], "9", *again[5:]])
    assert bad.exit_code != 0 and "slice index 9 out of range" in bad.output
    # A crop the network cannot halve down its levels: a clear error, not torch's traceback.
    odd = CliRunner().invoke(main, [*again, "--crop", "30"])
    assert odd.exit_code == 1 and isinstance(odd.exception, SystemExit)  # no traceback
    assert "--crop 30 is not a multiple of 4" in odd.output and "try 32" in odd.output


def test_a_0_255_mask_given_to_train_volume_is_warned_of_as_in_a_data_folder(tmp_path):
    # before: beside a proper slice's labels it was trained on without a word, its solid
    # (255) left out and all the rest of the slice taken for pore
    write_two_phase_volume(tmp_path / "vol.tif")
    labels = np.full((32, 32), 255, np.uint8)
    labels[2:12, 2:10], labels[2:12, 20:28] = 0, 1
    cv2.imwrite(str(tmp_path / "s2.png"), labels)
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    cv2.imwrite(str(tmp_path / "s3_mask.png"), mask)
    result = CliRunner().invoke(main, [
        "train", "--volume", str(tmp_path / "vol.tif"), "--slice", "2", "--labels",
        str(tmp_path / "s2.png"), "--slice", "3", "--labels", str(tmp_path / "s3_mask.png"),
        "--paradigm", "contrastive", "--out", str(tmp_path / "m.onnx"), "--epochs", "1",
        "--classifier-steps", "3", *FAST])
    assert result.exit_code == 0, result.output
    assert (f"warning: {tmp_path / 's3_mask.png'}: only 0 and 255 (unlabeled); a 0/255 mask? "
            "Its 255 pixels are left out; label images hold class ids (0 pore, 1 solid)") \
        in result.output
    assert "s2.png: only 0 and 255" not in result.output


def test_a_tomogram_data_folder_with_few_labels_warns_as_train_volume_does(tmp_path):
    """`nwwatch train OUT/train` on a tomogram DATA folder stored the few labeled pixels in the
    model, so that every mask it made was `suspect` (`few_labeled_pixels`), but said nothing
    while training; `train --volume` warns."""
    from nwwatch.synth.tomogram import generate_tomogram

    generate_tomogram(tmp_path / "syn", size=32, seed=1)
    root = tmp_path / "syn" / "train"
    (label_path,) = (root / "labels").glob("*.png")
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    for class_id in (0, 1):  # keep 20 pixels of each class
        keep = np.flatnonzero(label == class_id)[:20]
        label.flat[np.setdiff1d(np.flatnonzero(label == class_id), keep)] = 255
    cv2.imwrite(str(label_path), label)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["train", str(root), "--out", str(out), "--epochs", "1",
                                       *FAST])
    assert result.exit_code == 0, result.output
    for name in ("pore", "solid"):
        assert result.output.count(f"warning: only 20 labeled {name} pixels") == 1, \
            result.output
    assert Segmenter(out, providers=("cpu",)).metadata.extra["class_pixel_counts"] == {
        "pore": 20, "solid": 20}
    # One network, no choice of method: said, with the tomogram workflow's command (on the
    # 64³ synthetic volume this route gave IoU 0.300 where --volume gave 0.737).
    assert "note: a tomogram DATA folder trains one network" in result.output
    assert "nwwatch train --volume" in result.output
    # Its null voxel size is no volume that declared none: `nwwatch model` said it was.
    extra = Segmenter(out, providers=("cpu",)).metadata.extra
    assert extra["voxel_size_nm"] is None and extra["voxel_size_source"] == "data_folder"
    shown = CliRunner().invoke(main, ["model", str(out)]).output
    assert ("training voxel size: unknown (trained on a DATA folder, whose labeled slices are "
            "2-D images; volumes are not checked against it)") in shown


def test_volume_help_says_how_slices_are_counted_and_what_0_means():
    # Fiji numbers slices from 1; --slice counts from 0, and vacuum is labeled 0 with pore.
    text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    assert "counted from 0 (Fiji's slice n is n - 1)" in text
    assert "0 pore or vacuum, 1 solid, 255 unlabeled" in text
    assert "(the threshold and the forest of --volume have none)" in text  # no MODEL.pt


def test_the_help_of_each_paradigms_own_option_names_its_paradigm():
    # before: --embedding-dim and --aux-per-perturbation had no help, though given with another
    # paradigm they are a usage error
    from training.cli import train as command
    from training.config import OPTION_PARADIGMS

    helps = {param.name: param.help or "" for param in command.params}
    for name, owners in OPTION_PARADIGMS.items():
        if len(owners) == 1:
            assert helps[name].startswith(owners[0]), (name, helps[name])


def test_options_that_would_be_ignored_are_usage_errors(tmp_path):
    # --volume won and DATA was ignored without a word.
    volume = tmp_path / "v.tif"
    tifffile.imwrite(volume, np.zeros((4, 16, 16), np.float32), photometric="minisblack")
    cv2.imwrite(str(tmp_path / "l.png"), np.full((16, 16), 255, np.uint8))
    result = CliRunner().invoke(main, ["train", str(make_folder(tmp_path / "d", n=2, size=16)),
                                       "--volume", str(volume), "--slice", "1", "--labels",
                                       str(tmp_path / "l.png"), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "not both" in result.output
    # --candidates with --paradigm (one network, no selection) was ignored too.
    result = CliRunner().invoke(main, ["train", "--volume", str(volume), "--slice", "1",
                                       "--labels", str(tmp_path / "l.png"), "--paradigm",
                                       "supervised", "--candidates", "threshold",
                                       "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "--candidates" in result.output


@pytest.mark.parametrize("value", ["", " , "])
def test_perturbations_naming_none_is_a_usage_error(tmp_path, value):
    # "" trained cct with the default perturbations without a word
    data = make_folder(tmp_path / "d", n=2, size=16)
    result = CliRunner().invoke(main, ["train", str(data), "--paradigm", "cct",
                                       "--perturbations", value,
                                       "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "--perturbations names no perturbation" in result.output
    assert not (tmp_path / "m.pt").exists()


def test_bad_layout_is_a_clear_error(tmp_path):
    data = make_folder(tmp_path / "data", n=2, size=32)
    (data / "labels" / "img01.png").unlink()
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "x.onnx"),
                                       *FAST])
    assert result.exit_code != 0
    assert "img01.tif: no label for this image" in result.output


@pytest.mark.parametrize("given, named, listed", [
    (["--arch", "nosucharch"], "--arch", "'nosucharch': choose one of pspnet, unet, unet-paper"),
    (["--model-options", '{"widht": [4, 8]}'], "--model-options",
     "unknown key(s) 'widht' for 'unet' (known: act, decoder_convs, down, dropout,"),
    (["--arch", "unet-paper", "--model-options", '{"layers": [2]}'], "--model-options",
     "'layers' for 'unet-paper'"),
    (["--arch", "pspnet", "--model-options", '{"widths": [4]}'], "--model-options",
     "(known: base_width, bins, decoder_widths, layers, ppm_channels)"),
    (["--device", "gpu"], "--device", "'gpu': choose auto, cpu, cuda or cuda:N"),
    (["--paradigm", "cct", "--perturbations", "dropout,bogus"], "--perturbations",
     "'bogus': choose from dropout, feature_drop, feature_noise, vat, cutout, context_masking, "
     "object_masking"),
], ids=["arch", "option", "paper-option", "pspnet-option", "device", "perturbation"])
def test_unknown_architecture_option_or_device_is_a_usage_error(tmp_path, given, named,
                                                                  listed):
    data = make_folder(tmp_path / "data", n=2, size=32)
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "x.onnx"),
                                       "--epochs", "1", "--quiet", *given])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert f"Invalid value for {named}" in result.output and listed in result.output
    assert not (tmp_path / "x.pt").exists()


def test_pseudo_label_records_provenance(tmp_path):
    data = make_folder(tmp_path / "data", n=4, size=32, unlabeled=3)
    teacher = TrainConfig(out=str(tmp_path / "t.onnx"), data=str(data), epochs=1,
                          steps_per_epoch=1, batch_size=2, crop=32, export=False,
                          model_options=json.loads(TINY))
    train(teacher, progress=False)
    student = TrainConfig(out=str(tmp_path / "s.onnx"), data=str(data), epochs=1,
                          paradigm="pseudo-label", teacher=str(tmp_path / "t.pt"),
                          confidence=0.5, steps_per_epoch=1, batch_size=2, crop=32,
                          export=False, model_options=json.loads(TINY))
    train(student, progress=False)
    provenance = load_checkpoint(tmp_path / "s.pt")["provenance"]
    # The full path, as --init's and --frozen-encoder's (before: the file name "t.pt" alone)
    assert provenance["teacher"] == str(tmp_path / "t.pt")
    assert len(provenance["teacher_sha256"]) == 64
    assert provenance["confidence"] == 0.5 and provenance["pseudo_labeled_images"] == 3
    assert 0.0 <= provenance["kept_fraction"] <= 1.0


@pytest.mark.parametrize(("extra", "given"), [
    ([], {"self_negatives": "all"}),  # the paper's negatives unless asked
    (["--arch", "unet", "--epochs", "3", "--crop", "96"],
     # another architecture drops the default one's options
     {"arch": "unet", "model_options": {}, "epochs": 3, "crop": 96}),
    (["--self-negatives", "other-class"], {"self_negatives": "other-class"}),
])
def test_volume_workflow_takes_the_volume_recipe_then_what_is_given(tmp_path, monkeypatch,
                                                                    extra, given):
    # The folder defaults (lean UNet, 600 iterations of 8 x 256 px crops) called a whole
    # synthetic noise-limited volume solid; --volume takes VOLUME_DEFAULTS, the recipe
    # bench_tomography measures, and the options given on top.
    seen = capture_train(monkeypatch)
    volume = tmp_path / "v.tif"
    tifffile.imwrite(volume, np.zeros((4, 16, 16), np.float32), photometric="minisblack")
    labels = tmp_path / "l.png"
    cv2.imwrite(str(labels), np.full((16, 16), 255, np.uint8))
    result = CliRunner().invoke(main, ["train", "--volume", str(volume), "--slice", "1",
                                       "--labels", str(labels), "--paradigm", "contrastive",
                                       "--out", str(tmp_path / "m.onnx"), *extra])
    assert "captured" in result.output
    config = seen["config"].to_dict()
    expected = {**VOLUME_DEFAULTS, **given}
    assert {k: config[k] for k in expected} == expected
    assert config["arch"] != FOLDER_DEFAULTS["arch"] or "--arch" in extra


def test_folder_workflow_takes_the_folder_recipe_then_what_is_given(tmp_path, monkeypatch):
    seen = capture_train(monkeypatch)
    CliRunner().invoke(main, ["train", str(tmp_path), "--out", str(tmp_path / "m.onnx")])
    config = seen["config"].to_dict()
    assert {k: config[k] for k in FOLDER_DEFAULTS} == FOLDER_DEFAULTS
    CliRunner().invoke(main, ["train", str(tmp_path), "--out", str(tmp_path / "m.onnx"),
                              "--epochs", "7", "--crop", "128", "--dice-weight", "0.5"])
    config = seen["config"].to_dict()
    assert {k: config[k] for k in FOLDER_DEFAULTS} == {
        **FOLDER_DEFAULTS, "epochs": 7, "crop": 128, "dice_weight": 0.5}


def test_resume_without_epochs_keeps_the_checkpoints_epoch_count(tmp_path, monkeypatch):
    seen = capture_train(monkeypatch)
    out = str(tmp_path / "m.onnx")
    CliRunner().invoke(main, ["train", "--resume", "--out", out])
    assert seen["config"].epochs == 1  # the engine keeps max(checkpoint's, this)
    CliRunner().invoke(main, ["train", "--resume", "--out", out, "--epochs", "40"])
    assert seen["config"].epochs == 40


def test_volume_fine_tuning_takes_the_weights_architecture(tmp_path):
    # --init with --volume and no --arch: the run is the weights' architecture (here the
    # volume default unet-paper), not the folder default the option would otherwise imply.
    volume = tmp_path / "v.tif"
    tifffile.imwrite(volume, np.random.default_rng(0).normal(size=(4, 16, 16)).astype(
        np.float32), photometric="minisblack")
    labels = np.full((16, 16), 255, np.uint8)
    labels[:4, :4], labels[8:12, 8:12] = 0, 1
    cv2.imwrite(str(tmp_path / "l.png"), labels)
    common = ["train", "--volume", str(volume), "--slice", "1", "--labels",
              str(tmp_path / "l.png"), "--epochs", "1", "--steps-per-epoch", "1",
              "--batch-size", "2", "--crop", "16", "--threads", "1", "--quiet",
              "--exporter", "legacy"]
    first = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "a.onnx"),
                                      "--paradigm", "supervised",  # no method selection
                                      "--model-options", '{"widths": [4, 8]}'])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "b.onnx"),
                                       "--init", str(tmp_path / "a.pt")])
    assert second.exit_code == 0, second.output
    config = load_checkpoint(tmp_path / "b.pt")["config"]
    assert config["arch"] == "unet-paper" and config["model_options"]["widths"] == [4, 8]
    assert load_checkpoint(tmp_path / "b.pt")["split"]["val"] == []
    wrong = CliRunner().invoke(main, [*common, "--out", str(tmp_path / "c.onnx"),
                                      "--init", str(tmp_path / "a.pt"), "--arch", "unet"])
    assert wrong.exit_code != 0 and "'unet-paper' model, not --arch 'unet'" in wrong.output


@pytest.mark.parametrize("where", ["file-in-the-way", "proc"])
def test_an_unwritable_out_is_refused_before_training(tmp_path, where):
    # before: found at the first checkpoint, after an epoch, as a traceback
    if where == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    data = make_folder(tmp_path / "data", n=2, size=32)
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "m.onnx" if where == "file-in-the-way" else Path("/proc/m.onnx")
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(out), "--epochs", "1",
                                       *FAST])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert "Invalid value for '--out'" in result.output and str(out) in result.output
    assert "epoch" not in result.output


def test_help_names_the_synth_layout_it_reads(tmp_path):
    # DATA/<stem>.tif beside DATA/labels/ (nwwatch synth insitu) trains as DATA/images/ does;
    # before, --help named only DATA/images/
    result = CliRunner().invoke(main, ["train", "--help"])
    assert result.exit_code == 0
    assert "nwwatch synth insitu" in " ".join(result.output.split())
    data = tmp_path / "synth"
    assert CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "2",
                                     "--size", "32"]).exit_code == 0
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "m.onnx"),
                                       "--epochs", "1", *FAST])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").is_file()


@pytest.mark.parametrize(("option", "value"), [
    ("--val-fraction", "nan"), ("--temperature", "nan"), ("--boundary-weight", "nan"),
    # before: plain floats, nan and inf reached the optimiser and the losses
    ("--lr", "nan"), ("--lr", "inf"), ("--momentum", "nan"), ("--weight-decay", "inf"),
    ("--dice-weight", "nan"), ("--unsupervised-weight", "inf"), ("--rampup-epochs", "nan")])
def test_a_float_option_that_is_not_finite_is_a_usage_error(tmp_path, option, value):
    # before: nan passed click's FloatRange (every comparison with it is false)
    data = make_folder(tmp_path / "data", n=2, size=32)
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "x.onnx"),
                                       option, value, *FAST])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert "is not a finite number" in result.output
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize(("option", "value"), [
    ("--lr", "0"), ("--lr", "-0.01"), ("--momentum", "-0.1"), ("--momentum", "1"),
    ("--weight-decay", "-1e-4"), ("--dice-weight", "-1"), ("--unsupervised-weight", "-1"),
    ("--rampup-epochs", "-1")])
def test_a_training_float_out_of_its_range_is_a_usage_error(tmp_path, option, value):
    data = make_folder(tmp_path / "data", n=2, size=32)
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "x.onnx"),
                                       option, value, *FAST])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and "not in the range" in (
        result.output)
    assert not (tmp_path / "x.pt").exists()


def test_a_label_image_that_looks_like_a_binary_mask_is_warned_about(tmp_path):
    # 255 means unlabeled: a 0/255 mask trains its foreground as "unlabeled", silently before
    data = make_folder(tmp_path / "data", n=2, size=32)
    mask = data / "labels" / "img01.png"
    label = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(mask), np.where(label > 0, 255, 0).astype(np.uint8))
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "m.onnx"),
                                       "--epochs", "1", *FAST])
    assert result.exit_code == 0, result.output
    assert f"warning: {mask}: only 0 and 255 (unlabeled); a 0/255 mask?" in result.output
    assert "label images hold class ids (0 background, 1 nanowire, 2 droplet)" in result.output
    assert "img00.png" not in result.output  # the other label image has class ids


def test_a_binary_mask_in_a_tomogram_data_folder_is_warned_about_with_its_classes(tmp_path):
    # The warning named the in-situ classes (0 background, 1 nanowire, 2 droplet) in a
    # tomogram folder, whose labels are 0 pore, 1 solid.
    from nwwatch.synth.tomogram import generate_tomogram

    generate_tomogram(tmp_path / "syn", size=32, seed=1)
    root = tmp_path / "syn" / "train"
    (label_path,) = (root / "labels").glob("*.png")
    truth = tifffile.imread(tmp_path / "syn" / "truth.tif")
    cv2.imwrite(str(label_path), np.where(truth[int(label_path.stem[-3:])] > 0, 255, 0)
                .astype(np.uint8))
    result = CliRunner().invoke(main, ["train", str(root), "--out", str(tmp_path / "m.onnx"),
                                       "--epochs", "1", *FAST])
    assert f"warning: {label_path}: only 0 and 255 (unlabeled); a 0/255 mask? Its 255 " \
           f"pixels are left out; label images hold class ids (0 pore, 1 solid)" in \
           result.output
    assert "nanowire" not in result.output


def test_a_crop_that_is_not_a_multiple_of_the_models_size_multiple_is_a_clear_error(tmp_path):
    # TINY's UNet has 3 levels: size multiple 4. Before: a torch RuntimeError traceback on
    # mismatched skip shapes in the first step.
    data = make_folder(tmp_path / "data", n=2, size=32)
    args = ["train", str(data), "--out", str(tmp_path / "m.onnx"), "--epochs", "1", *FAST]
    result = CliRunner().invoke(main, [*args, "--crop", "30"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert "--crop 30 is not a multiple of 4, the size multiple of this unet: try 32" \
        in result.output
    assert not (tmp_path / "m.pt").exists()
    result = CliRunner().invoke(main, [*args, "--crop", "28"])
    assert result.exit_code == 0, result.output


def test_progress_bar_shows_no_validation_mIoU_before_the_first_validation(tmp_path, capsys):
    """The bar showed `val_mIoU=0.000` through the whole first epoch (the best score so far,
    before there was one), which reads as a collapsed model; after an epoch it shows the
    epoch's score."""
    data = make_folder(tmp_path / "data", n=5, size=32)
    config = TrainConfig(out=str(tmp_path / "p.onnx"), data=str(data), epochs=2,
                         steps_per_epoch=2, batch_size=2, crop=32, export=False,
                         model_options=json.loads(TINY))
    train(config, progress=True)
    err = capsys.readouterr().err
    assert "val_mIoU=0.000" not in err and "val_mIoU=" in err, err[-2000:]


def test_a_folder_given_as_volume_says_to_join_its_slices(tmp_path):
    # A folder of one TIFF per slice (an image sequence) got click's "File '…' is a
    # directory.", which did not say what --volume wants.
    (tmp_path / "slices").mkdir()
    cv2.imwrite(str(tmp_path / "l.png"), np.full((8, 8), 255, np.uint8))
    result = CliRunner().invoke(main, ["train", "--volume", str(tmp_path / "slices"), "--slice",
                                       "0", "--labels", str(tmp_path / "l.png"), "--out",
                                       str(tmp_path / "m.onnx")])
    assert result.exit_code == 2, result.output
    assert "is a folder" in result.output and "multi-page TIFF" in result.output
    assert "Image Sequence" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_a_volume_given_as_data_says_to_give_it_as_volume(tmp_path):
    # A tomogram given as DATA (`nwwatch train volume.tif --out m.onnx`) got click's
    # "Directory '…' is a file.", which did not say what a volume is given as.
    from nwwatch.io import write_volume_tiff

    volume = write_volume_tiff(tmp_path / "volume.tif", np.zeros((3, 8, 8), np.float32))
    result = CliRunner().invoke(main, ["train", str(volume), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2, result.output
    assert (f"{volume} is a file: DATA is a folder (images/ and labels/); a tomogram? give "
            f"--volume {volume} --slice Z --labels L.png") in " ".join(result.output.split())
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("name", ["mine.onnx", "mine.pt"])
def test_a_model_given_as_data_says_what_data_is(tmp_path, name):
    # `nwwatch train mine.onnx --init insitu-default --out m.onnx` (the model in DATA's place)
    # was told "a tomogram? give --volume mine.onnx --slice Z --labels L.png"
    model = tmp_path / name
    model.write_bytes(b"\0")
    result = CliRunner().invoke(main, ["train", str(model), "--init", "insitu-default",
                                       "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"{model} is a model, not a DATA folder: DATA is the folder of labeled frames" in text
    assert "--volume" not in text
    assert not (tmp_path / "m.onnx").exists()


def test_a_volume_that_is_a_socket_is_a_clear_error(tmp_path, monkeypatch):
    # A socket passes click's exists check; nwwatch.io refuses it before open() (which would
    # fail with ENXIO) as not a regular file. Works as root, unlike a chmod 000 file; another
    # OSError from the header read: the test below.
    import socket

    monkeypatch.chdir(tmp_path)  # a short name: a socket's path is limited to ~107 bytes
    server = socket.socket(socket.AF_UNIX)
    server.bind("vol.tif")
    cv2.imwrite("l.png", np.full((8, 8), 255, np.uint8))
    try:
        result = CliRunner().invoke(main, ["train", "--volume", "vol.tif", "--slice", "0",
                                           "--labels", "l.png", "--out", "m.onnx"])
    finally:
        server.close()
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    assert (f"Error: {(tmp_path / 'vol.tif').resolve()}: not a regular file: a socket; only "
            "regular files are read") in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_check_volume_memory_names_a_path_that_cannot_be_opened(tmp_path):
    from training.data import DatasetLayoutError, check_volume_memory

    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match=r"file/v\.tif: cannot be read \(Not a dir"):
        check_volume_memory(tmp_path / "file" / "v.tif")  # NotADirectoryError, as root too


def test_the_model_records_the_crop_it_trained_on_not_only_the_option(tmp_path):
    # before: extra.crop was --crop (64) although every frame was 32 px and so every crop
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "m.onnx"
    fast = [a if a != "32" else "64" for a in FAST]  # --crop 64
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(out), "--epochs", "1",
                                       *fast])
    assert result.exit_code == 0, result.output
    assert "crop 32 px: every training image is smaller than --crop 64" in result.output
    extra = Segmenter(out, providers=("cpu",)).metadata.extra
    assert (extra["crop"], extra["crop_option"]) == (32, 64)


def test_export_only_without_resume_is_a_usage_error_that_says_so(tmp_path):
    # before: taken as --resume --export-only without a word
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["train", "--export-only", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "--export-only exports the checkpoint of an earlier run: give it with --resume" \
        in result.output
    assert not out.exists() and not (tmp_path / "m.pt").exists()


def test_teacher_takes_the_shipped_weights_by_name_as_init_does(tmp_path):
    # before: "Path 'insitu-default' does not exist", though --init insitu-default is read
    from nwwatch.filehash import file_sha256
    from training.weights import shipped_weights

    data = make_folder(tmp_path / "data", n=3, size=32, unlabeled=2)
    args = ["train", str(data), "--out", str(tmp_path / "s.onnx"), "--paradigm",
            "pseudo-label", "--confidence", "0.5", "--epochs", "1", *FAST]
    typo = CliRunner().invoke(main, [*args, "--teacher", "insitu-defualt"])
    assert typo.exit_code == 2, typo.output
    assert ("--teacher insitu-defualt: no such checkpoint file, and not shipped weights; "
            "shipped: ['insitu-default']") in typo.output
    result = CliRunner().invoke(main, [*args, "--teacher", "insitu-default"])
    assert result.exit_code == 0, result.output
    weights = shipped_weights()["insitu-default"]
    provenance = Segmenter(tmp_path / "s.onnx", providers=("cpu",)).metadata.extra["provenance"]
    assert provenance["teacher"] == str(weights)
    assert provenance["teacher_sha256"] == file_sha256(weights)


def test_a_validation_split_the_data_cannot_give_is_said(tmp_path):
    """One labeled image with --val-fraction 0.5 trained on it and reported its train_*
    metrics without a word that nothing was held out."""
    data = make_folder(tmp_path / "data", n=1, size=40)
    quiet_off = [a for a in FAST if a != "--quiet"]
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "m.onnx"),
                                       "--epochs", "1", "--val-fraction", "0.5", *quiet_off])
    assert result.exit_code == 0, result.output
    assert ("note: no image held out for validation (1 labeled image, fewer than the 2 a "
            "split needs): the metrics are on the training images") in result.output
    data = make_folder(tmp_path / "data2", n=3, size=40)
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "n.onnx"),
                                       "--epochs", "1", "--val-fraction", "0.5", *quiet_off])
    assert result.exit_code == 0 and "no image held out" not in result.output, result.output


def test_resume_keeps_the_runs_quiet_unless_progress_is_given(tmp_path):
    # `nwwatch train --resume --out M.onnx` (what a Ctrl-C says to run) of a --quiet run
    # keeps it quiet: no progress bar in, e.g., a batch job's log.
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(out), *FAST,
                                       "--epochs", "1"])  # FAST holds --quiet
    assert result.exit_code == 0, result.output
    assert "it/s" not in result.stderr
    result = CliRunner().invoke(main, ["train", "--resume", "--out", str(out), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.stdout and "it/s" not in result.stderr, result.stderr
    result = CliRunner().invoke(main, ["train", "--resume", "--out", str(out), "--epochs", "3",
                                       "--progress"])
    assert result.exit_code == 0, result.output
    assert "it/s" in result.stderr
    assert load_checkpoint(out.with_suffix(".pt"))["config"]["quiet"] is False
    result = CliRunner().invoke(main, ["train", "--resume", "--out", str(out), "--epochs", "4"])
    assert result.exit_code == 0, result.output
    assert "it/s" in result.stderr  # the resumed run's own now


@pytest.mark.parametrize("init", ["nosuch", "mine2.onnx", "missing.pt"])
def test_an_init_that_names_no_weights_is_a_usage_error_before_the_data_are_read(tmp_path,
                                                                                 init):
    # --teacher nosuch was a usage error (exit 2); --init nosuch ended with exit 1 once the
    # data had been read
    data = make_folder(tmp_path / "data", n=2, size=32)
    result = CliRunner().invoke(main, ["train", str(data), "--out", str(tmp_path / "x.onnx"),
                                       "--epochs", "1", "--quiet", "--init",
                                       str(tmp_path / init) if "." in init else init])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "--init" in result.output and "insitu-default" in result.output
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("axes", ["TYX", "ZYX"])
def test_a_volume_that_declares_time_frames_is_warned_about(tmp_path, axes):
    # replay and the service note an in-situ series (ImageJ frames) in a tomogram folder;
    # train --volume trained on one without a word
    volume = tmp_path / "v.tif"
    grey = np.random.default_rng(0).normal(50.0, 8.0, (4, 16, 16)).astype(np.float32)
    tifffile.imwrite(volume, grey, imagej=True, metadata={"axes": axes})
    cv2.imwrite(str(tmp_path / "l.png"), np.full((8, 8), 255, np.uint8))  # wrong shape: stops
    result = CliRunner().invoke(main, ["train", "--volume", str(volume), "--slice", "1",
                                       "--labels", str(tmp_path / "l.png"),
                                       "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and "labels have shape (8, 8)" in result.output
    warned = f"warning: {volume} declares its 4 pages as time frames" in result.output
    assert warned == (axes == "TYX"), result.output


def test_labels_drawn_on_a_section_across_the_slices_are_named_so(tmp_path):
    # before: only "labels have shape (4, 16), slices of v.tif have (16, 16)"
    volume = tmp_path / "v.tif"
    grey = np.random.default_rng(0).normal(50.0, 8.0, (4, 16, 16)).astype(np.float32)
    tifffile.imwrite(volume, grey, photometric="minisblack")
    cv2.imwrite(str(tmp_path / "l.png"), np.full((4, 16), 255, np.uint8))
    result = CliRunner().invoke(main, ["train", "--volume", str(volume), "--slice", "1",
                                       "--labels", str(tmp_path / "l.png"),
                                       "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 1
    assert ("labels have shape (4, 16), slices of v.tif have (16, 16) (the shape of a section "
            "across the slices: label a slice of the volume, the Z index --slice gives)"
            in " ".join(result.output.split())), result.output


@pytest.mark.parametrize("arch, options, crop, advice", [
    ("pspnet", {"layers": [1, 1, 1, 1], "base_width": 16}, "32",
     "give --batch-size 2 or more"),
    ("unet", {"widths": [4, 8, 16, 32], "encoder_convs": [1, 1, 1, 1],
              "decoder_convs": [1, 1, 1]}, "8",
     "give --batch-size 2 or more, or --crop 16 or more"),
], ids=["pspnet-pyramid-bin", "unet-crop-at-its-multiple"])
def test_a_batch_of_one_value_per_channel_is_an_error_naming_the_options(tmp_path, arch,
                                                                          options, crop, advice):
    # A batch normalisation fed one value per channel (PSPNet's 1 x 1 pyramid bin at
    # --batch-size 1; a UNet crop as small as its size multiple) cannot train: the error says
    # which options to change, on its own line after the closed progress bar.
    data = make_folder(tmp_path / "data", n=2, size=32)
    out = tmp_path / "runs" / "m.onnx"
    done = subprocess.run(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "train", str(data),
         "--out", str(out), "--arch", arch, "--model-options", json.dumps(options),
         "--batch-size", "1", "--crop", crop, "--epochs", "1", "--steps-per-epoch", "1",
         "--threads", "1"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith(f"Error: --batch-size 1 with --crop {crop}: a batch-normalisation "
                           f"layer of this {arch} gets one value per channel"), done.stderr
    assert last.endswith(advice), last
    assert not out.parent.exists()
