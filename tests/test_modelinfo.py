"""`nwwatch model`: what a model file is, and whether the service would load it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from onnx_models import build_threshold_model

from nwwatch.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "nwwatch" / "models" / "insitu-default.onnx"


def run(*args: str):
    return CliRunner().invoke(main, ["model", *args])


def test_the_shipped_model_by_name_without_torch():
    # A fresh interpreter in which torch (and the train extra's onnx) cannot be imported, as
    # on a runtime-only install: the command works there.
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'onnx', 'onnxscript'):\n"
            "            raise ImportError(name + ' blocked by the test')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from nwwatch.cli import main\n"
            "main(['model', 'insitu-default', '--json'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    sha = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert info["file"] == str(SHIPPED) and info["sha256"] == sha
    assert info["kind"] == "insitu"
    assert info["class_names"] == ["background", "nanowire", "droplet"]
    assert info["arch"] == "unet" and info["architecture"]["widths"][-1] == 160
    assert info["size_multiple"] == 64 and info["working_scale"]["frame_px"] == 512
    assert info["normalization"].startswith("percentile")
    assert info["training_command"].startswith("python -m training.interpolate")
    assert [t["name"] for t in info["onnx"]["inputs"]] == ["image"]
    assert [t["name"] for t in info["onnx"]["outputs"]] == ["labels", "probabilities"]
    assert info["onnx"]["outputs"][1]["shape"][1] == 3
    # the card beside it is of this very file: its fresh-synthetic evaluations are shown
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert card["sha256"] == sha
    assert info["fresh_synthetic_evaluations"] == card["fresh_synthetic_evaluations"]
    assert info["training_data"]["description"] == card["training_data"]
    assert info["service"] == {"loads": True, "as": "insitu", "problem": None}


def test_text_of_a_trained_like_model_matches_the_rows_hash(tmp_path):
    path = build_threshold_model(tmp_path / "m.onnx", size_multiple=8, metadata={
        "training_command": "nwwatch train DATA --out m.onnx", "training_data_sha256": "ab" * 32,
        "validation_metrics": {"val_mean_iou": 0.91},
        "extra": {"training_source": "/data/mine", "labeled_images": 10,
                  "unlabeled_images": 0, "epochs": 6, "exported_epoch": 2,
                  "validation_images": ["frame_00005"]}})
    result = run(str(path))
    assert result.exit_code == 0, result.output
    from nwwatch.segment.session import Segmenter

    rows_hash = Segmenter(path, providers=("cpu",)).model_sha256  # what rows carry
    lines = result.output.splitlines()
    assert f"sha256: {rows_hash} " in result.output
    assert "kind: insitu" in lines and "classes: 0 background, 1 nanowire, 2 droplet" in lines
    assert "size multiple: 8 (frames padded to it)" in lines
    assert "training command: nwwatch train DATA --out m.onnx" in lines
    assert "training data: /data/mine (10 labeled, 0 unlabeled images)" in lines
    assert f"training data sha256: {'ab' * 32}" in lines
    assert "validation metrics: val_mean_iou 0.9100" in lines
    assert ("exported weights: epoch 2 of 6 (held out: frame_00005; keep these out of an "
            "evaluation)") in lines
    # nothing held out: the run's metrics are its training images', and named so
    trained = build_threshold_model(tmp_path / "t.onnx", size_multiple=8, metadata={
        "validation_metrics": {"train_mean_iou": 0.97}})
    result = run(str(trained))
    assert "training metrics: train_mean_iou 0.9700" in result.output.splitlines()
    assert "ONNX input: image tensor(float) [N, 1, H, W]" in lines
    assert "ONNX output: probabilities tensor(float) [N, 3, H, W]" in lines
    assert lines[-1] == ("service: loads it as an in-situ model (frames: segmentation and "
                         "contact angles)")
    assert "evaluations on held-out folders: none recorded" in result.output


def test_a_card_of_another_file_is_not_shown(tmp_path):
    path = build_threshold_model(tmp_path / "m.onnx")
    card = {"sha256": "0" * 64, "fresh_synthetic_evaluations": [{"images": 60}]}
    path.with_suffix(".json").write_text(json.dumps(card))
    result = run(str(path), "--json")
    info = json.loads(result.output)
    assert result.exit_code == 0 and info["fresh_synthetic_evaluations"] == []
    assert "the card of another file" in info["card_note"]


def test_a_tomogram_model_loads_as_one(tmp_path):
    result = run(str(build_threshold_model(tmp_path / "t.onnx", kind="tomogram")), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["service"] == {"loads": True, "as": "tomogram", "problem": None}
    assert info["normalization_scope"] == "volume" and info["class_names"] == ["pore", "solid"]


def test_a_model_the_service_refuses_exits_1_with_the_services_reason(tmp_path):
    path = build_threshold_model(tmp_path / "two.onnx", kind="tomogram", metadata={
        "kind": "insitu", "class_names": ("background", "nanowire"),
        "normalization_scope": "image"})
    result = run(str(path))
    assert result.exit_code == 1
    assert "service: refuses it: cannot measure frames" in result.output
    reason = result.output.strip().splitlines()[-1].removeprefix("Error: ")
    assert reason.startswith(f"{path}: the service would not load it: cannot measure frames: ")
    # the reason is the service's own: `nwwatch replay` with the model stops with it
    frames = tmp_path / "acq"
    frames.mkdir()
    replay = CliRunner().invoke(main, ["replay", str(frames), "--out", str(tmp_path / "r"),
                                       "--model", str(path)])
    assert replay.exit_code != 0
    assert reason.removeprefix(f"{path}: the service would not load it: ") in " ".join(
        replay.output.split())


def test_a_tomogram_model_with_a_bad_extra_value_is_refused(tmp_path):
    path = build_threshold_model(tmp_path / "t.onnx", kind="tomogram",
                                 metadata={"extra": {"z_sigma_px": -1}})
    result = run(str(path), "--json")
    assert result.exit_code == 1
    info = json.loads(result.output[:result.output.rindex("}") + 1])
    assert info["service"]["loads"] is False
    assert "cannot segment tomograms" in info["service"]["problem"]
    assert "z_sigma_px" in info["service"]["problem"]


@pytest.mark.parametrize(("name", "content", "status", "words"), [
    ("missing.onnx", None, 2, "no such file"),
    ("m.pt", b"PK\x03\x04", 2, "is a training checkpoint, not an ONNX model"),
    ("notes.onnx", b"not a model\n", 1, "ONNX Runtime cannot load it"),
    ("frame.tif", b"II*\x00" + bytes(64), 1, "ONNX Runtime cannot load it"),
])
def test_bad_input_is_one_error_line_naming_the_file(tmp_path, name, content, status, words):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = run(str(path))
    assert result.exit_code == status
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(path) in errors[0] and words in errors[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content", [b"hello\n", b""], ids=["text", "empty"])
def test_a_pt_file_that_is_no_torch_file_is_not_called_a_checkpoint(tmp_path, content):
    # was: "is a training checkpoint, not an ONNX model: give the model `nwwatch train`
    # exported with it", for a text file named .pt; now as `nwwatch train --init` says it
    path = tmp_path / "notmodel.pt"
    path.write_bytes(content)
    result = run(str(path))
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert said.endswith(f"Error: Invalid value for 'MODEL': {path}: not a readable checkpoint "
                         "(not a file torch.save writes): not the MODEL.pt that nwwatch train "
                         "wrote; give an ONNX model, or the name of a shipped one "
                         "(insitu-default)")
    assert "training checkpoint" not in result.output


def test_train_and_model_say_a_text_file_is_no_checkpoint_alike(tmp_path):
    pytest.importorskip("torch")
    from training.checkpoint import CheckpointError, load_checkpoint

    path = tmp_path / "notmodel.pt"
    path.write_text("hello\n")
    with pytest.raises(CheckpointError) as train_says:
        load_checkpoint(path)
    said = " ".join(run(str(path)).output.split())
    # the same words: before, train passed on torch's own ("Memo value not found at ...")
    assert str(train_says.value).startswith(f"{path}: not a readable checkpoint (not a file "
                                            "torch.save writes)")
    assert f"{path}: not a readable checkpoint (not a file torch.save writes)" in said
    assert "give the MODEL.pt that nwwatch train wrote" in str(train_says.value)


def test_the_shipped_weights_point_to_the_shipped_model_by_name():
    # training/pretrained/insitu-default.pt has no insitu-default.onnx beside it: the error
    # names the shipped model's name, not a file that does not exist.
    weights = ROOT / "training" / "pretrained" / "insitu-default.pt"
    result = run(str(weights))
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is a training checkpoint, not an ONNX model" in errors[0]
    assert "give the shipped model by its name, insitu-default" in errors[0]
    assert str(weights.with_suffix(".onnx")) not in errors[0]


def test_a_model_without_nwwatch_metadata_is_named(tmp_path):
    path = build_threshold_model(tmp_path / "plain.onnx", with_metadata=False)
    result = run(str(path))
    assert result.exit_code == 1
    assert result.output.strip().startswith(
        f"Error: {path}: no 'nwwatch' metadata in the model (it has no metadata); a model "
        "trained elsewhere gets it as docs/models.md")


def test_a_checkpoint_without_its_onnx_beside_it_says_that_file_is_not_there(tmp_path):
    # The error named MODEL.onnx as the model to give even when no such file existed.
    checkpoint = tmp_path / "m.pt"
    checkpoint.write_bytes(b"PK\x03\x04")
    result = run(str(checkpoint))
    assert result.exit_code == 2
    said = " ".join(result.output.split())
    assert (f"give the model `nwwatch train` exported with it, {tmp_path / 'm.onnx'} (not "
            "there: find the .onnx file the run wrote beside its m.pt)") in said
    build_threshold_model(tmp_path / "m.onnx")  # there: named alone
    result = run(str(checkpoint))
    assert result.exit_code == 2 and "not there" not in result.output
    assert f"exported with it, {tmp_path / 'm.onnx'}" in " ".join(result.output.split())


def test_the_models_card_given_as_the_model_names_the_model(tmp_path):
    # `nwwatch model mine.json` (the card train writes beside mine.onnx) was ONNX Runtime's
    # "protobuf parsing failed"
    (tmp_path / "mine.onnx").write_bytes(b"an exported model")
    card = tmp_path / "mine.json"
    card.write_text('{"evaluations": []}')
    result = run(str(card))
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is the model's card, not the model" in errors[0]
    assert str(tmp_path / "mine.onnx") in errors[0]


def test_a_tomogram_model_shows_how_its_method_was_chosen(tmp_path):
    # The held-out scores, the kept method, its reason and the codes every mask of the model
    # gets were in the --json output's extra only: the text said nothing of them.
    import numpy as np
    import tifffile

    from nwwatch.io.png import write_image_file
    from nwwatch.synth.tomogram import generate_tomogram

    summary = generate_tomogram(tmp_path / "syn", size=32, seed=0)
    # one labeled patch holding both classes: no patch can be held out
    k = summary["labeled_slice"]
    truth = tifffile.imread(tmp_path / "syn" / "truth.tif")[k]
    one_patch = np.full(truth.shape, 255, dtype=np.uint8)
    one_patch[8:24, 8:24] = truth[8:24, 8:24]
    assert set(np.unique(one_patch)) == {0, 1, 255}
    labels = tmp_path / "one_patch.png"
    write_image_file(labels, one_patch)
    out = tmp_path / "t.onnx"
    trained = CliRunner().invoke(main, [
        "train", "--volume", str(tmp_path / "syn" / "volume.tif"), "--slice", str(k),
        "--labels", str(labels), "--out", str(out), "--candidates", "threshold"])
    assert trained.exit_code == 0, trained.output
    lines = run(str(out)).output.splitlines()
    assert ("method selection: threshold kept (too few labeled patches to hold any out "
            "(cross-validation needs two patches of each class): the smoothed threshold is "
            "kept)") in lines
    assert "  held-out balanced accuracy: none (no labeled patch could be held out)" in lines
    assert any(line.startswith("  warning: the labels cannot choose the method") for line in lines)
    assert any(line.startswith("labeled pixels: pore ") for line in lines)
    assert any(line.startswith("every mask of this model is suspect (method_unvalidated): the "
                               "labels held no patch out") for line in lines)


def test_a_null_training_voxel_size_says_whether_a_volume_or_a_data_folder_gave_it(tmp_path):
    # A null voxel_size_nm was always shown as "the training volume declared none", also for
    # a model trained on a DATA folder, which records none whatever its volumes declare.
    def line(extra):
        path = build_threshold_model(tmp_path / "t.onnx", kind="tomogram",
                                     metadata={"extra": {"voxel_size_nm": None, **extra}})
        (shown,) = [x for x in run(str(path)).output.splitlines()
                    if x.startswith("training voxel size")]
        return shown

    volume = "training voxel size: unknown (the training volume declared none; volumes"
    folder = ("training voxel size: unknown (trained on a DATA folder, whose labeled slices "
              "are 2-D images; volumes")
    assert line({"voxel_size_source": "volume"}).startswith(volume)
    assert line({"voxel_size_source": "data_folder"}).startswith(folder)
    # models recorded without the key: their training source says which
    assert line({"training_source": "/data/vol.tif#z=32"}).startswith(volume)
    assert line({"training_source": "/data/train"}).startswith(folder)
    assert "or the model was trained on a DATA folder" in line({})


def test_a_tomogram_models_held_out_scores_are_listed_best_first(tmp_path):
    selection = {"method": "features", "grouping": "patches", "folds": 3,
                 "reason": "features (0.944) is within 0.05 of the best, contrastive (0.946), "
                           "and sees context",
                 "scores": {"threshold": 0.9392, "features": 0.9438, "unet": None,
                            "contrastive": 0.9464},
                 "stopped": {"unet": 0.8802}, "warnings": []}
    path = build_threshold_model(tmp_path / "t.onnx", kind="tomogram", metadata={"extra": {
        "selection": selection, "class_pixel_counts": {"pore": 694, "solid": 458}}})
    result = run(str(path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert (f"method selection: features kept ({selection['reason']})") in lines
    assert ("  held-out balanced accuracy (3 folds): contrastive 0.9464, features 0.9438, "
            "threshold 0.9392, unet stopped at most 0.8802") in lines
    assert "labeled pixels: pore 694, solid 458" in lines
    assert not any("is suspect" in line for line in lines)  # enough labels, checked method


def test_card_angles_name_the_measurement_they_were_scored_under():
    # The card's angle figures were an older measurement's, printed as if current.
    from nwwatch.modelinfo import _evaluation_line

    report = {"images": 60, "metrics": {"mean_iou": 0.887},
              "contact_angle": {"valid": 20, "frames": 60, "rmse_deg": 2.24, "bias_deg": 0.78,
                                "max_abs_deg": 6.48},
              "measurement_version": "2.2.17", "data": "seed 302"}
    assert "(measurement 2.2.17): seed 302" in _evaluation_line(report)
    del report["measurement_version"]
    assert "(measurement not recorded): seed 302" in _evaluation_line(report)
    # the shipped card records it
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    for entry in card["fresh_synthetic_evaluations"]:
        assert ("contact_angle" in entry) == ("measurement_version" in entry), entry["data"]


def test_the_start_of_a_fine_tune_is_named_whatever_its_record_holds():
    from nwwatch.modelinfo import _started_from

    assert _started_from({"provenance": "teacher.onnx"}) == []  # another writer's record
    assert _started_from({"provenance": {"init": {"weights": "/w/a.pt", "sha256": None}}}) == [
        "started from: /w/a.pt"]
    assert _started_from({"provenance": {"init": {
        "weights": "/w/a.pt", "sha256": "5b" * 32, "model_sha256": "c2" * 32}}}) == [
        f"started from: /w/a.pt (sha256 {'5b' * 6})"]  # no model named: no model line
    assert _started_from({"provenance": {"init": {
        "weights": "/w/a.pt", "sha256": "5b" * 32, "model": "/m/a.onnx",
        "model_sha256": "c2" * 32}}}) == [
        f"started from: /w/a.pt (sha256 {'5b' * 6}), the weights of a.onnx (model_sha256 "
        f"{'c2' * 6}, as in its rows)"]


def test_cross_validated_scores_are_not_called_training_metrics(tmp_path):
    path = build_threshold_model(tmp_path / "cv.onnx", size_multiple=8, metadata={
        "validation_metrics": {"cv_balanced_accuracy": 0.93}})
    assert "validation metrics: cv_balanced_accuracy 0.9300" in run(str(path)).output


def test_the_json_output_saved_beside_the_model_is_not_taken_for_its_card(tmp_path):
    # `nwwatch model m.onnx --json > m.json`: the shell creates m.json empty first (noted as
    # "not a model card (Expecting value ...)"), and later runs took the saved output, which
    # names the model's sha256, for the model's card.
    path = build_threshold_model(tmp_path / "m.onnx")
    dump = path.with_suffix(".json")
    dump.write_text("")
    first = run(str(path), "--json")
    assert first.exit_code == 0, first.output
    info = json.loads(first.output)
    assert info["card"] is None
    assert info["card_note"].startswith(f"{dump}: empty, not a model card")
    assert "under another name than m.json" in info["card_note"]
    dump.write_text(first.output)
    again = run(str(path), "--json")
    assert again.exit_code == 0, again.output
    info = json.loads(again.output)
    assert info["card"] is None and info["fresh_synthetic_evaluations"] == []
    assert info["card_note"].startswith(f"{dump}: the output of `nwwatch model --json`, "
                                        "not a model card")
    text = run(str(path))
    assert f"note: {info['card_note']}" in text.output.splitlines()
    # a real card beside it is still read
    card = {"sha256": info["sha256"], "fresh_synthetic_evaluations": [{"images": 60}]}
    dump.write_text(json.dumps(card))
    info = json.loads(run(str(path), "--json").output)
    assert info["card"] == str(dump) and info["card_note"] is None
    assert info["fresh_synthetic_evaluations"] == [{"images": 60}]
