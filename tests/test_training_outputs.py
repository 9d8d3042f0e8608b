"""`nwwatch train`'s outputs: an earlier run's files are never overwritten without --resume,
and --resume refuses settings it would ignore."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from training_helpers import make_folder

from nwwatch.cli import main
from training.checkpoint import load_checkpoint

torch.set_num_threads(1)
TINY = json.dumps({"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]})
FAST = ["--threads", "1", "--batch-size", "2", "--crop", "32", "--steps-per-epoch", "1",
        "--exporter", "legacy", "--quiet"]


def _train(*args: str):
    return CliRunner().invoke(main, ["train", *args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished one-epoch run: (DATA, its --out)."""
    root = tmp_path_factory.mktemp("run")
    data = make_folder(root / "data", n=3, size=32)
    out = root / "m.onnx"
    result = _train(str(data), "--out", str(out), "--epochs", "1", "--model-options", TINY,
                    *FAST)
    assert result.exit_code == 0, result.output
    return data, out


def test_out_must_be_an_onnx_file(tmp_path):
    # before: --out m.pt trained, then the export replaced the checkpoint m.pt by the model
    data = make_folder(tmp_path / "data", n=2, size=32)
    for name in ("m.pt", "m"):
        result = _train(str(data), "--out", str(tmp_path / name), "--epochs", "1", *FAST)
        assert result.exit_code == 2, result.output
        assert "'--out'" in result.output and ".onnx" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_new_run_never_overwrites_an_earlier_runs_files(run, tmp_path):
    # before: the new run replaced the earlier checkpoint at its first epoch, then the model
    data, out = run
    before = {p: p.read_bytes() for p in (out, out.with_suffix(".pt"))}
    result = _train(str(data), "--out", str(out), "--epochs", "1", *FAST)
    assert result.exit_code == 2, result.output
    assert str(out.with_suffix(".pt")) in result.output and "--resume" in result.output
    assert "epoch" not in result.output
    assert all(p.read_bytes() == content for p, content in before.items())
    # An ONNX file alone (a model copied there, the threshold of --volume) is kept too.
    lone = tmp_path / "lone.onnx"
    shutil.copy(out, lone)
    result = _train(str(data), "--out", str(lone), "--epochs", "1", *FAST)
    assert result.exit_code == 2 and str(lone) in result.output, result.output
    assert lone.read_bytes() == before[out]
    # Without a checkpoint there is nothing to resume: before, the message advised --resume,
    # which then stopped with "lone.pt: checkpoint not found".
    assert "--resume" not in result.output
    assert "no checkpoint" in result.output and "another --out" in result.output


@pytest.mark.parametrize(("given", "named"), [
    (["--lr", "0.5"], "--lr 0.5"),
    (["--paradigm", "cct"], "--paradigm cct"),
    (["--crop", "64"], "--crop 64"),
    (["--no-augment"], "--no-augment"),
    (["--model-options", '{"widths": [4, 8, 32]}'], "--model-options"),
])
def test_resume_refuses_a_setting_it_would_ignore(run, given, named):
    # before: --resume took every setting from the checkpoint and dropped these without a word
    data, out = run
    checkpoint = out.with_suffix(".pt")
    before = checkpoint.read_bytes()
    result = _train("--resume", "--out", str(out), "--epochs", "2", *given, "--quiet")
    assert result.exit_code == 2, result.output
    assert named in result.output and str(checkpoint) in result.output
    assert "epoch 2" not in result.output and checkpoint.read_bytes() == before


@pytest.mark.parametrize(("given", "saved"), [
    (["--init", "insitu-default"], "was trained with no --init,"),
    (["--seed", "3"], "was trained with --seed 0,"),
])
def test_resume_names_the_checkpoints_setting_as_an_option(run, given, saved):
    # before: "was trained with --init None"
    data, out = run
    result = _train("--resume", "--out", str(out), *given, "--quiet")
    assert result.exit_code == 2 and saved in result.output, result.output


def test_resume_refuses_fewer_epochs_than_the_run_has(tmp_path):
    # before: `--resume --epochs 1` of a 3-epoch run dropped the 1 without a word and trained
    # on to epoch 3 (the user meant to stop early)
    data = make_folder(tmp_path / "data", n=3, size=32)
    out = tmp_path / "m.onnx"
    result = _train(str(data), "--out", str(out), "--epochs", "3", "--model-options", TINY,
                    *FAST)
    assert result.exit_code == 0, result.output
    checkpoint = out.with_suffix(".pt")
    before = checkpoint.read_bytes()
    for extra in ([], ["--export-only"]):
        result = _train("--resume", *extra, "--out", str(out), "--epochs", "1", "--quiet")
        assert result.exit_code == 2, result.output
        assert "--epochs 1" in result.output and "3 epochs" in result.output
        assert str(checkpoint) in result.output and "--export-only" in result.output
        assert "epoch 1/" not in result.output and checkpoint.read_bytes() == before


def test_resume_accepts_the_run_s_own_settings_and_a_moved_data_folder(run, tmp_path):
    data, out = run
    work = tmp_path / "work"
    shutil.copytree(out.parent, work)  # the run and its data, moved elsewhere
    moved, resumed = work / "data", work / "m.onnx"
    # The documented way: the first command again, with --resume and more epochs.
    result = _train(str(moved), "--out", str(resumed), "--epochs", "2", "--model-options", TINY,
                    "--resume", *FAST)
    assert result.exit_code == 0, result.output
    saved = load_checkpoint(resumed.with_suffix(".pt"))
    assert saved["epoch"] == 2 and saved["config"]["data"] == str(moved)
    # Other data under the run's own settings: refused by the data hash, naming the folder.
    other = make_folder(tmp_path / "other", n=3, size=32, seed=5)
    result = _train(str(other), "--out", str(resumed), "--epochs", "3", "--resume", "--quiet")
    assert result.exit_code == 1 and str(other) in result.output, result.output
    assert "changed" in result.output
    # ... and says how to go on from these weights: a new run with --init.
    assert f"--init {resumed.with_suffix('.pt')}" in result.output


def test_resume_after_the_data_folder_moved_says_to_give_its_new_place(tmp_path):
    # before: "DATA: data folder not found", naming a folder the user had not given
    data = make_folder(tmp_path / "data", n=2, size=32)
    out = tmp_path / "m.onnx"
    result = _train(str(data), "--out", str(out), "--epochs", "1", "--model-options", TINY,
                    *FAST)
    assert result.exit_code == 0, result.output
    data.rename(tmp_path / "moved")
    result = _train("--resume", "--out", str(out), "--epochs", "2", "--quiet")
    assert result.exit_code == 2, result.output
    assert f"{data}: the DATA folder {out.with_suffix('.pt')} was trained on is not there" \
        in result.output
    assert "give its new place as DATA with --resume" in result.output
    result = _train(str(tmp_path / "moved"), "--resume", "--out", str(out), "--epochs", "2",
                    "--quiet")
    assert result.exit_code == 0, result.output


def test_a_resume_started_in_another_folder_finds_relative_inputs(tmp_path, monkeypatch):
    # before: the checkpoint kept DATA and --teacher as typed ("data", "t.onnx"), so a resume
    # from another folder looked for them there ("data: data folder not found")
    import os

    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "data", n=3, size=32, unlabeled=1)
    result = _train("data", "--out", "t.onnx", "--epochs", "1", "--model-options", TINY, *FAST)
    assert result.exit_code == 0, result.output
    result = _train("data", "--out", "runs/s.onnx", "--paradigm", "pseudo-label", "--teacher",
                    "t.onnx", "--epochs", "1", "--model-options", TINY, *FAST)
    assert result.exit_code == 0, result.output
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    out = tmp_path / "runs" / "s.onnx"
    result = _train("--resume", "--out", str(out), "--epochs", "2", "--quiet")
    assert result.exit_code == 0, result.output
    config = load_checkpoint(out.with_suffix(".pt"))["config"]
    assert os.path.realpath(config["data"]) == os.path.realpath(tmp_path / "data")
    assert os.path.realpath(config["teacher"]) == os.path.realpath(tmp_path / "t.onnx")


def test_a_run_refused_on_its_data_leaves_no_new_folder(tmp_path):
    # before: the folders of --out were created (to try a file there) and left behind
    data = make_folder(tmp_path / "data", n=2, size=32)
    (data / "labels" / "img01.png").unlink()
    out = tmp_path / "runs" / "new" / "m.onnx"
    result = _train(str(data), "--out", str(out), "--epochs", "1", *FAST)
    assert result.exit_code == 1 and "img01" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_an_int8_model_not_kept_is_one_plain_line(tmp_path, monkeypatch):
    # before: "int8 model not kept: QuantizeReport(kept=False, agreement=0.9796..., ...)", and
    # "int8 model not kept: not kept: <error>" when the quantisation failed
    import training.quantize
    from training.quantize import QuantizeReport

    data = make_folder(tmp_path / "data", n=2, size=32)
    report = QuantizeReport(kept=False, agreement=0.9796, min_agreement=0.999,
                            per_image_agreement=(0.9796,), calibration_images=2,
                            validation_images=1, fp32_size_bytes=1, path=None, sha256=None,
                            int8_size_bytes=None)
    monkeypatch.setattr(training.quantize, "quantize_int8", lambda *a, **k: report)
    args = ["--epochs", "1", "--model-options", TINY, "--quantize", "int8", *FAST]
    result = _train(str(data), "--out", str(tmp_path / "a.onnx"), *args)
    assert result.exit_code == 0, result.output
    assert ("int8 model not kept: label agreement with the float model 97.96 % on 1 held-out "
            "image(s), below 99.90 %\n") in result.output
    assert "QuantizeReport" not in result.output

    def fail(*_, **__):
        raise RuntimeError("no QLinearConv here")

    monkeypatch.setattr(training.quantize, "quantize_int8", fail)
    result = _train(str(data), "--out", str(tmp_path / "b.onnx"), *args)
    assert result.exit_code == 0, result.output
    assert "int8 model not kept: no QLinearConv here\n" in result.output


def test_the_export_verification_and_a_kept_int8_models_agreement_are_printed(tmp_path):
    # before: "model: m.onnx" alone; the comparison of ONNX Runtime with torch ran unseen, and
    # a kept INT8 model was named without the agreement that kept it
    import re

    from training.exporting import int8_line
    from training.quantize import QuantizeReport

    data = make_folder(tmp_path / "data", n=2, size=32)
    out = tmp_path / "m.onnx"
    runs = [_train(str(data), "--out", str(out), "--epochs", "1", "--model-options", TINY,
                   *FAST),
            _train("--resume", "--export-only", "--out", str(out), "--quiet")]
    for result in runs:
        assert result.exit_code == 0, result.output
        line = re.search(r"^export verified: ONNX Runtime against torch \(legacy exporter\) on 3 "
                         r"input shapes \(N x H x W: 1x64x160, 3x160x96, 2x224x224\): max "
                         r"\|probability difference\| (\S+), labels agree on at least "
                         r"(\S+) % of the pixels of each$", result.output, re.M)
        assert line, result.output
        assert float(line.group(1)) <= 1e-4 and float(line.group(2)) > 99
    report = QuantizeReport(kept=True, agreement=0.99934, min_agreement=0.999,
                            per_image_agreement=(0.99934,), calibration_images=2,
                            validation_images=2, fp32_size_bytes=1, path=tmp_path / "m-int8.onnx",
                            sha256="0" * 64, int8_size_bytes=1)
    assert int8_line(tmp_path / "m-int8.onnx", report) == (
        f"int8 model: {tmp_path / 'm-int8.onnx'} (label agreement with the float model 99.93 % "
        f"on 2 held-out image(s))")


def test_an_earlier_int8_model_is_never_replaced_nor_left_as_this_models(tmp_path, monkeypatch):
    # before: a new run with --quantize int8 replaced an earlier run's m-int8.onnx when its own
    # was kept, and left it beside the new m.onnx (as if its INT8 copy) when it was not
    import training.quantize
    from training.quantize import QuantizeReport

    data = make_folder(tmp_path / "data", n=2, size=32)
    out = tmp_path / "m.onnx"
    earlier = tmp_path / "m-int8.onnx"
    earlier.write_bytes(b"an earlier run's INT8 model")
    args = ["--epochs", "1", "--model-options", TINY, *FAST]
    result = _train(str(data), "--out", str(out), "--quantize", "int8", *args)
    assert result.exit_code == 2 and str(earlier) in result.output, result.output
    assert "epoch" not in result.output and not out.exists()
    assert earlier.read_bytes() == b"an earlier run's INT8 model"
    # Without --quantize the file is not the run's business: it trains.
    result = _train(str(data), "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    assert earlier.read_bytes() == b"an earlier run's INT8 model"
    # A resume that exports again, its INT8 model not kept this time, names the stale one.
    report = QuantizeReport(kept=False, agreement=0.98, min_agreement=0.999,
                            per_image_agreement=(0.98,), calibration_images=2,
                            validation_images=1, fp32_size_bytes=1, path=None, sha256=None,
                            int8_size_bytes=None)
    monkeypatch.setattr(training.quantize, "quantize_int8", lambda *a, **k: report)
    result = _train("--resume", "--export-only", "--quantize", "int8", "--out", str(out),
                    "--quiet")
    assert result.exit_code == 0, result.output
    assert (f"warning: {earlier} is the INT8 model of the weights exported before, not of "
            f"{out}") in result.output


def test_a_resume_without_int8_names_the_earlier_int8_model_left_beside_it(tmp_path):
    # before: `--resume --quantize none` (or a resume of a run without INT8) exported new
    # weights beside an earlier m-int8.onnx without a word
    data = make_folder(tmp_path / "data", n=2, size=32)
    out = tmp_path / "m.onnx"
    result = _train(str(data), "--out", str(out), "--epochs", "1", "--model-options", TINY,
                    *FAST)
    assert result.exit_code == 0, result.output
    earlier = tmp_path / "m-int8.onnx"
    earlier.write_bytes(b"an earlier export's INT8 model")
    for quantize in (["--quantize", "none"], []):
        result = _train("--resume", "--export-only", *quantize, "--out", str(out), "--quiet")
        assert result.exit_code == 0, result.output
        assert (f"warning: {earlier} is the INT8 model of the weights exported before, not of "
                f"{out}") in result.output
    assert earlier.read_bytes() == b"an earlier export's INT8 model"


def test_resume_from_slim_weights_says_what_they_are(tmp_path):
    # before: KeyError: 'config' (a traceback) for the weights of --init under MODEL.pt
    from training.weights import shipped_weights

    shutil.copy(shipped_weights()["insitu-default"], tmp_path / "m.pt")
    for extra in ([], ["--export-only"]):
        result = _train("--resume", *extra, "--out", str(tmp_path / "m.onnx"), "--quiet")
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert f"{tmp_path / 'm.pt'}: weights without a training run" in result.output
        assert f"--init {tmp_path / 'm.pt'}" in result.output
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(("args", "named"), [
    (["--teacher", "T"], "--teacher belongs to --paradigm pseudo-label"),
    (["--paradigm", "cct", "--teacher", "T"], "--teacher belongs to --paradigm pseudo-label"),
    (["--frozen-encoder", "T"], "--frozen-encoder belongs to --paradigm cct"),
    (["--paradigm", "pseudo-label", "--temperature", "0.5"],
     "--temperature belongs to --paradigm contrastive"),
    (["--paradigm", "cct", "--boundary-weight", "3"],
     "--boundary-weight belongs to --paradigm supervised or pseudo-label"),
    (["--paradigm", "contrastive", "--dice-weight", "2"],
     "--dice-weight belongs to --paradigm supervised or pseudo-label or cct"),
    (["--optimizer", "adamw", "--momentum", "0.5"], "--momentum belongs to --optimizer sgd"),
    (["--init", "insitu-default", "--momentum", "0.5"], "--momentum belongs to --optimizer sgd"),
])
def test_an_option_of_another_paradigm_is_a_usage_error(tmp_path, args, named):
    # before: `nwwatch train DATA --teacher D.pt` trained plain supervised, the teacher unused
    data = make_folder(tmp_path / "data", n=2, size=32)
    (tmp_path / "T").write_bytes(b"")
    args = [a if a != "T" else str(tmp_path / "T") for a in args]
    result = _train(str(data), "--out", str(tmp_path / "m.onnx"), *args, *FAST)
    assert result.exit_code == 2, result.output
    assert named in result.output and "epoch" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["T", "data"]


@pytest.mark.parametrize(("args", "named"), [
    (["--epochs", "3"], "--epochs"),
    (["--no-augment"], "--no-augment"),
    (["--arch", "pspnet"], "--arch"),
    (["--crop", "32"], "--crop"),
])
def test_a_network_option_without_a_network_candidate_is_a_usage_error(tmp_path, args, named):
    # before: `nwwatch train --volume V --candidates threshold,features --epochs 3` trained
    # the threshold and the forest, --epochs unused without a word
    import cv2
    import numpy as np

    from nwwatch.io import write_volume_tiff

    rng = np.random.default_rng(0)
    volume = write_volume_tiff(tmp_path / "v.tif", rng.random((4, 24, 24)).astype(np.float32))
    labels = np.full((24, 24), 255, np.uint8)
    labels[2:6, 2:6], labels[10:14, 10:14] = 0, 1
    cv2.imwrite(str(tmp_path / "l.png"), labels)
    volume_args = ["--volume", str(volume), "--slice", "1", "--labels", str(tmp_path / "l.png"),
                   "--out", str(tmp_path / "m.onnx"), "--threads", "1"]
    result = _train(*volume_args, "--candidates", "threshold,features", *args)
    assert result.exit_code == 2, result.output
    assert (f"{named} sets the training of a network; the --volume candidates "
            "threshold,features hold none and would not use it: add unet or contrastive to "
            "--candidates, or train one network with --paradigm") in " ".join(
        result.output.split())
    assert not (tmp_path / "m.onnx").exists()
    # an option the threshold reads (its folds' seed) is no error
    result = _train(*volume_args, "--candidates", "threshold", "--seed", "3")
    assert result.exit_code == 0, result.output


def test_a_class_labeled_nowhere_is_warned_about(tmp_path):
    # before: a DATA folder without one droplet pixel trained (and fine-tuned the shipped
    # weights away from droplets) without a word
    import cv2
    import numpy as np

    data = make_folder(tmp_path / "data", n=2, size=32)
    for label in (data / "labels").glob("*.png"):
        values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(label), np.where(values == 2, 255, values).astype(np.uint8))
    result = _train(str(data), "--out", str(tmp_path / "m.onnx"), "--epochs", "1",
                    "--model-options", TINY, *FAST)
    assert result.exit_code == 0, result.output
    assert (f"warning: no droplet pixel is labeled in {data}: the model gets no example of "
            f"droplet\n") in result.output
    assert "nanowire pixel" not in result.output


def test_images_put_beside_images_folder_are_warned_about(tmp_path):
    # before: a frame copied into DATA/ itself, next to DATA/images/, was left out silently
    data = make_folder(tmp_path / "data", n=2, size=32)
    shutil.copy(data / "images" / "img00.tif", data / "extra.tif")
    result = _train(str(data), "--out", str(tmp_path / "m.onnx"), "--epochs", "1",
                    "--model-options", TINY, *FAST)
    assert result.exit_code == 0, result.output
    assert (f"warning: 1 image(s) directly in {data} (e.g. extra.tif) are not read: with "
            "DATA/images/ there, frames are read from it") in " ".join(result.output.split())
    # evaluate says it too (it scored the others without a word)
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "m.onnx"), str(data),
                                       "--threads", "1", "--no-angles"])
    assert result.exit_code == 0, result.output
    assert (f"warning: 1 image(s) directly in {data} (e.g. extra.tif) are not read: with "
            "DATA/images/ there, frames are read from it") in " ".join(result.output.split())


def test_images_in_sub_folders_of_images_are_warned_about(tmp_path):
    # before: DATA/images/sub/ and DATA/labels/sub/ were left out by train and evaluate silently
    data = make_folder(tmp_path / "data", n=3, size=32)
    for folder, name in (("images", "img02.tif"), ("labels", "img02.png")):
        (data / folder / "sub").mkdir()
        (data / folder / name).rename(data / folder / "sub" / name)
    said = (f"warning: images in sub-folders of {data} are not read: images/sub (1 image), "
            f"labels/sub (1 image); a DATA folder is flat")
    result = _train(str(data), "--out", str(tmp_path / "m.onnx"), "--epochs", "1",
                    "--model-options", TINY, *FAST)
    assert result.exit_code == 0, result.output
    assert said in " ".join(result.output.split())
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "m.onnx"), str(data),
                                       "--threads", "1", "--no-angles"])
    assert result.exit_code == 0, result.output
    assert said in " ".join(result.output.split())


def test_frames_of_very_different_sizes_are_warned_about(tmp_path):
    # before: a 2048 px frame among 128 px ones trained at its own size under a working
    # scale of 128 px, whose droplet radii mixed both (13-520 px), without a word
    data = make_folder(tmp_path / "data", n=3, size=32)
    make_folder(tmp_path / "big", n=1, size=160)
    shutil.copy(tmp_path / "big" / "images" / "img00.tif", data / "images" / "big.tif")
    shutil.copy(tmp_path / "big" / "labels" / "img00.png", data / "labels" / "big.png")
    result = _train(str(data), "--out", str(tmp_path / "m.onnx"), "--epochs", "1",
                    "--model-options", TINY, *FAST)
    assert result.exit_code == 0, result.output
    # the scale the export records: the median long side, at least 64 px
    assert ("warning: the labeled frames are 32 to 160 px long: the model's working scale will "
            "be 64 px (their median long side)") in " ".join(result.output.split())
    from nwwatch.segment.session import Segmenter

    assert Segmenter(tmp_path / "m.onnx", providers=("cpu",)).working_scale.frame_px == 64
    same = make_folder(tmp_path / "same", n=3, size=32)
    result = _train(str(same), "--out", str(tmp_path / "s.onnx"), "--epochs", "1",
                    "--model-options", TINY, *FAST)
    assert result.exit_code == 0 and "px long" not in result.output, result.output


def test_labels_in_another_tool_s_class_order_are_warned_about(tmp_path):
    # before: a DATA folder numbered 1 droplet, 2 nanowire (a CVAT palette export in that
    # order) trained without a word, a model whose every frame the measurement refuses
    import cv2
    import numpy as np

    data = tmp_path / "data"
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "4",
                                       "--size", "256", "--seed", "1"])
    assert result.exit_code == 0, result.output
    labels = sorted((data / "labels").glob("*.png"))
    for label in labels:
        values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(label), np.array([0, 2, 1], np.uint8)[values])
    result = _train(str(data), "--out", str(tmp_path / "m.onnx"), "--epochs", "1",
                    "--model-options", TINY, *FAST)
    assert result.exit_code == 0, result.output
    assert (f"warning: 3 of 4 label images measured give a contact angle only with 1 and 2 "
            f"exchanged (1 droplet, 2 nanowire; {labels[0]}, ...)") in result.output
    for label in labels:  # back in order: no warning
        values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(label), np.array([0, 2, 1], np.uint8)[values])
    result = _train(str(data), "--out", str(tmp_path / "m2.onnx"), "--epochs", "1",
                    "--model-options", TINY, *FAST)
    assert result.exit_code == 0 and "exchanged" not in result.output, result.output


def test_init_and_a_frozen_encoder_from_other_weights_are_refused(run, tmp_path):
    # before: --init loaded its whole model after the frozen encoder was loaded, so the
    # "frozen" encoder held the --init weights while provenance named the other file
    data, out = run
    other = tmp_path / "other.onnx"
    result = _train(str(data), "--out", str(other), "--epochs", "1", "--model-options", TINY,
                    "--seed", "5", *FAST)
    assert result.exit_code == 0, result.output
    args = ["--paradigm", "cct", "--epochs", "1", *FAST]
    result = _train(str(data), "--out", str(tmp_path / "c.onnx"), "--init",
                    str(out.with_suffix(".pt")), "--frozen-encoder",
                    str(other.with_suffix(".pt")), *args)
    assert result.exit_code == 2, result.output
    assert "--frozen-encoder" in result.output and str(out.with_suffix(".pt")) in result.output
    assert not (tmp_path / "c.pt").exists()
    # The same weights for both: the --init model with its encoder frozen.
    result = _train(str(data), "--out", str(tmp_path / "d.onnx"), "--init",
                    str(out.with_suffix(".pt")), "--frozen-encoder", str(out), *args)
    assert result.exit_code == 0, result.output


def test_quantize_with_the_volume_method_selection_is_a_usage_error(tmp_path):
    # before: `nwwatch train --volume V --slice Z --labels L --quantize int8` wrote no INT8
    # model and said nothing
    (tmp_path / "v.tif").write_bytes(b"")
    (tmp_path / "l.png").write_bytes(b"")
    result = _train("--volume", str(tmp_path / "v.tif"), "--slice", "3", "--labels",
                    str(tmp_path / "l.png"), "--quantize", "int8", "--out",
                    str(tmp_path / "m.onnx"))
    assert result.exit_code == 2, result.output
    assert "--quantize belongs to a network trained with --paradigm" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.png", "v.tif"]


def test_a_resume_takes_a_moved_volume_and_labels_and_names_them_when_not_given(tmp_path):
    # before: a --volume run whose volume (or labeled slice) had moved could be neither
    # resumed nor exported: "file not found", and the new place given was refused as
    # another setting
    from training.config import TrainConfig
    from training.resume import ResumeSettingError, resumed_config

    old = tmp_path / "old"
    saved = TrainConfig(out=str(tmp_path / "m.onnx"), volume=str(old / "v.tif"),
                        slice_index=[16], labels=[str(old / "l.png")], epochs=3)
    new = tmp_path / "new"
    new.mkdir()
    for name in ("v.tif", "l.png"):
        (new / name).write_bytes(b"")
    checkpoint = tmp_path / "m.pt"
    given = TrainConfig(out=str(tmp_path / "m.onnx"), volume=str(new / "v.tif"),
                        slice_index=[16], labels=[str(new / "l.png")], epochs=3)
    moved = resumed_config(given, TrainConfig(**saved.to_dict()), checkpoint,
                           given=("volume", "slice_index", "labels", "out"))
    assert moved.volume == str(new / "v.tif") and moved.labels == [str(new / "l.png")]
    with pytest.raises(ResumeSettingError, match=(
            rf"{old / 'v.tif'}: the volume {checkpoint} was trained on is not there; moved\? "
            r"give its new place with --resume \(--volume NEW --slice 16 --labels NEW; "
            r"the data hash checks")):
        resumed_config(TrainConfig(out=str(tmp_path / "m.onnx")),
                       TrainConfig(**saved.to_dict()), checkpoint, given=("out",))
    # A moved labeled slice: the advice is the whole input, as the CLI takes it (--labels
    # alone is refused as belonging to --volume).
    here = TrainConfig(**{**saved.to_dict(), "volume": str(new / "v.tif"),
                          "slice_index": [16, 20],
                          "labels": [str(new / "l.png"), str(old / "l.png")]})
    with pytest.raises(ResumeSettingError, match=(
            rf"{old / 'l.png'}: the labeled slice {checkpoint} was trained on is not there; "
            rf"moved\? give their new place with --resume \(--volume {new / 'v.tif'} --slice 16 "
            rf"--slice 20 --labels {new / 'l.png'} --labels NEW; the data hash checks")):
        resumed_config(TrainConfig(out=str(tmp_path / "m.onnx")), here, checkpoint,
                       given=("out",))
