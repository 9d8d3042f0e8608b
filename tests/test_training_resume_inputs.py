"""`nwwatch train --resume` goes on from the inputs the run started with: the unlabeled
images of the semi-supervised paradigms, the pseudo-labeling teacher, and the record of the
`--init` weights it started from."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile
import torch
from training_helpers import make_folder

from nwwatch.filehash import file_sha256
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.engine import TrainingError, train

torch.set_num_threads(1)
TINY = {"widths": [4, 8, 16], "encoder_convs": [1, 1, 1], "decoder_convs": [1, 1]}


def _config(tmp_path, name, data, **kwargs) -> TrainConfig:
    settings = dict(epochs=1, steps_per_epoch=1, batch_size=2, crop=32, export=False, seed=1,
                    val_fraction=0.0, model_options=dict(TINY), exporter="legacy")
    return TrainConfig(out=str(tmp_path / f"{name}.onnx"), data=str(data),
                       **{**settings, **kwargs})


def test_a_cct_resume_refuses_changed_unlabeled_images(tmp_path):
    data = make_folder(tmp_path / "data", n=2, size=32, unlabeled=3)
    config = _config(tmp_path, "cct", data, paradigm="cct")
    train(config, progress=False)
    config.epochs = 2
    train(config, resume=True, progress=False)  # the same images: goes on
    # before: the run went on with the new images, under the same training-data hash
    stack = tifffile.imread(data / "unlabeled" / "stack.tif")
    tifffile.imwrite(data / "unlabeled" / "stack.tif", stack[:2], photometric="minisblack")
    config.epochs = 3
    with pytest.raises(TrainingError, match="unlabeled images .*unlabeled. changed"):
        train(config, resume=True, progress=False)
    assert load_checkpoint(tmp_path / "cct.pt")["epoch"] == 2


def test_exporting_a_cct_checkpoint_needs_not_its_unlabeled_images(tmp_path):
    # before: --resume --export-only refused ("the unlabeled images changed ... start a new
    # run") though it trains nothing: the weights of an interrupted run could not be exported
    data = make_folder(tmp_path / "data", n=2, size=32, unlabeled=3)
    config = _config(tmp_path, "cct", data, paradigm="cct", export=True)
    train(config, progress=False)
    (tmp_path / "cct.onnx").unlink()
    stack = tifffile.imread(data / "unlabeled" / "stack.tif")
    tifffile.imwrite(data / "unlabeled" / "stack.tif", stack[:2], photometric="minisblack")
    train(config, resume=True, export_only=True, progress=False)
    assert (tmp_path / "cct.onnx").is_file()


def test_a_resume_refuses_a_dataset_toml_that_changed(tmp_path):
    # before: the data hash covers the pixels only: a resume trained on with other class
    # names (or another normalisation scope, or kind) and exported a model labelled so
    data = make_folder(tmp_path / "data", n=2, size=32)
    config = _config(tmp_path, "sup", data)
    train(config, progress=False)
    (data / "dataset.toml").write_text('classes = ["bg", "wire", "drop"]\n')
    config.epochs = 2
    with pytest.raises(TrainingError, match=r"class_names is \['bg', 'wire', 'drop'\] now "
                                            r"\(dataset.toml\)"):
        train(config, resume=True, progress=False)
    assert load_checkpoint(tmp_path / "sup.pt")["epoch"] == 1


def test_a_supervised_resume_ignores_the_unlabeled_images_it_does_not_use(tmp_path):
    data = make_folder(tmp_path / "data", n=2, size=32, unlabeled=2)
    config = _config(tmp_path, "sup", data)
    train(config, progress=False)
    shutil.rmtree(data / "unlabeled")
    config.epochs = 2
    assert train(config, resume=True, progress=False).history[-1]["epoch"] == 2


def test_a_pseudo_label_resume_refuses_a_changed_teacher(tmp_path):
    data = make_folder(tmp_path / "data", n=2, size=32, unlabeled=2)
    train(_config(tmp_path, "teacher", data), progress=False)
    teacher = tmp_path / "teacher-copy.pt"
    shutil.copy(tmp_path / "teacher.pt", teacher)
    config = _config(tmp_path, "student", data, paradigm="pseudo-label", teacher=str(teacher),
                     confidence=0.0)
    train(config, progress=False)
    saved = load_checkpoint(tmp_path / "student.pt")["provenance"]
    assert saved["teacher_sha256"] == file_sha256(teacher)
    # The teacher retrained in place: its pseudo-labels would change under the run.
    retrain = _config(tmp_path, "teacher2", data, seed=7)
    train(retrain, progress=False)
    shutil.copy(tmp_path / "teacher2.pt", teacher)
    config.epochs = 2
    with pytest.raises(TrainingError, match="teacher .*teacher-copy.pt changed"):
        train(config, resume=True, progress=False)


def test_a_resumed_fine_tune_keeps_the_record_of_its_init_weights(tmp_path):
    data = make_folder(tmp_path / "data", n=2, size=32)
    train(_config(tmp_path, "base", data), progress=False)
    config = _config(tmp_path, "tuned", data, init=str(tmp_path / "base.pt"), model_options={},
                     export=True)
    train(config, progress=False)
    first = load_checkpoint(tmp_path / "tuned.pt")["provenance"]["init"]
    assert first["sha256"] == file_sha256(tmp_path / "base.pt")
    config.epochs = 2
    # before: the resumed run's checkpoint and model had no "init" record at all
    train(config, resume=True, progress=False)
    assert load_checkpoint(tmp_path / "tuned.pt")["provenance"]["init"] == first
    # ... nor the model exported from it, --resume --export-only
    train(config, resume=True, export_only=True, progress=False)
    import onnx

    model = onnx.load(str(tmp_path / "tuned.onnx"), load_external_data=False)
    meta = json.loads({p.key: p.value for p in model.metadata_props}["nwwatch"])
    assert meta["extra"]["provenance"]["init"] == first
    assert np.isfinite(meta["validation_metrics"]["train_mean_iou"])


@pytest.mark.parametrize("paradigm", ["cct", "contrastive"])
def test_an_interrupted_semi_supervised_run_resumes_to_the_same_weights(tmp_path, paradigm):
    # before: the paradigm's own generator (CCT's perturbations, the contrastive copies and
    # pixel draws) started again from its seed, so the resumed run trained on other draws
    data = make_folder(tmp_path / "data", n=3, size=32, unlabeled=2)
    extra = {"classifier_steps": 2} if paradigm == "contrastive" else {}
    config = _config(tmp_path, "whole", data, paradigm=paradigm, epochs=3, **extra)
    whole = load_checkpoint(train(config, progress=False).checkpoint)

    def interrupt_after_epoch_1(line):  # echoed once epoch 1's checkpoint is written
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt

    config.out = str(tmp_path / "cut.onnx")
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False, echo=interrupt_after_epoch_1)
    # the epoch the line reported is kept (it was written after the line, and lost to a
    # Ctrl-C right after it)
    assert load_checkpoint(tmp_path / "cut.pt")["epoch"] == 1
    resumed = load_checkpoint(train(config, resume=True, progress=False).checkpoint)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    assert all(torch.equal(whole["state"][k], resumed["state"][k]) for k in whole["state"])


def test_a_resume_whose_frozen_encoder_is_gone_needs_it_no_more(tmp_path):
    # Was: the resume read the encoder's file again ("--frozen-encoder: … not found"), also
    # to export (--export-only), though the checkpoint holds every weight, the frozen ones
    # too; the record of what was frozen is the checkpoint's.
    data = make_folder(tmp_path / "data", n=2, size=32, unlabeled=1)
    train(_config(tmp_path, "base", data), progress=False)
    config = _config(tmp_path, "frozen", data, paradigm="cct", export=True,
                     frozen_encoder=str(tmp_path / "base.pt"))
    train(config, progress=False)
    recorded = load_checkpoint(tmp_path / "frozen.pt")["provenance"]
    frozen_before = {k: v for k, v in load_checkpoint(tmp_path / "frozen.pt")["state"].items()
                     if ".encoder." in k or k.startswith("model.encoder")}
    (tmp_path / "base.pt").unlink()
    config.epochs = 2
    train(config, resume=True, progress=False)
    after = load_checkpoint(tmp_path / "frozen.pt")
    assert after["epoch"] == 2 and after["provenance"]["frozen_encoder_sha256"] == \
        recorded["frozen_encoder_sha256"]
    # the encoder stayed frozen: its weights are those it started the resume with
    assert frozen_before and all(torch.equal(after["state"][k], v)
                                 for k, v in frozen_before.items())
    (tmp_path / "frozen.onnx").unlink()
    result = train(config, resume=True, progress=False, export_only=True)
    assert result.out is not None and result.out.is_file()
    provenance = _metadata(result.out)["extra"]["provenance"]
    assert provenance["frozen_encoder_sha256"] == recorded["frozen_encoder_sha256"]


def _metadata(path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return json.loads({p.key: p.value for p in model.metadata_props}["nwwatch"])


def test_export_only_of_a_pseudo_label_run_does_not_need_its_teacher(tmp_path):
    # before: the teacher labeled every unlabeled image again, and a teacher moved away
    # stopped the export ("teacher model not found")
    data = make_folder(tmp_path / "data", n=2, size=32, unlabeled=2)
    train(_config(tmp_path, "teacher", data), progress=False)
    config = _config(tmp_path, "student", data, paradigm="pseudo-label", export=True,
                     teacher=str(tmp_path / "teacher.pt"), confidence=0.0)
    train(config, progress=False)
    first = _metadata(tmp_path / "student.onnx")
    (tmp_path / "teacher.pt").unlink()
    (tmp_path / "student.onnx").unlink()
    lines: list[str] = []
    train(config, resume=True, export_only=True, progress=False, echo=lines.append)
    again = _metadata(tmp_path / "student.onnx")
    assert again["extra"]["provenance"] == first["extra"]["provenance"]
    assert again["extra"]["crop"] == first["extra"]["crop"]
    assert not any("pseudo-labels" in line for line in lines)


def test_quantize_none_on_resume_turns_the_int8_copy_off(tmp_path):
    """A run made with --quantize int8 quantized on every re-export: --resume took
    `--quantize` from the command line only when it named int8. `--quantize none` now turns
    it off; left out, the run's own setting stays."""
    from click.testing import CliRunner

    from nwwatch.cli import main
    from training.config import TrainConfig
    from training.resume import resumed_config

    saved = TrainConfig(data=str(tmp_path), out=str(tmp_path / "m.onnx"), quantize="int8")
    given_none = TrainConfig(data=None, out=str(tmp_path / "m.onnx"), quantize=None)
    ckpt = tmp_path / "m.pt"
    kept = resumed_config(given_none, TrainConfig(**vars(saved)), ckpt, given=("out",))
    assert kept.quantize == "int8"
    off = resumed_config(given_none, TrainConfig(**vars(saved)), ckpt,
                         given=("out", "quantize"))
    assert off.quantize is None
    # the command line: "none" is a choice, and it is not taken for an INT8 request
    result = CliRunner().invoke(main, ["train", "--help"])
    assert "[int8|none]" in result.output


def test_a_resume_keeps_the_runs_threads_and_exporter_unless_given(tmp_path):
    """`nwwatch train --resume --out M.onnx`, the command a Ctrl-C prints, went on with
    torch's own thread count and the dynamo exporter whatever the run had been given
    (--threads 1 on a shared machine: up to 100x slower; an exporter chosen because the
    other failed: an export failure after the whole training)."""
    from click.testing import CliRunner

    from nwwatch.cli import main

    data = make_folder(tmp_path / "data", n=2, size=32)
    out = tmp_path / "m.onnx"
    first = CliRunner().invoke(main, [
        "train", str(data), "--out", str(out), "--epochs", "1", "--threads", "1",
        "--exporter", "legacy", "--workers", "1", "--batch-size", "2", "--crop", "32",
        "--val-fraction", "0", "--quiet", "--model-options", json.dumps(TINY)])
    assert first.exit_code == 0, first.output
    resumed = CliRunner().invoke(main, ["train", "--resume", "--epochs", "2", "--out", str(out),
                                        "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    config = load_checkpoint(tmp_path / "m.pt")["config"]
    assert config["epochs"] == 2
    assert (config["threads"], config["exporter"], config["workers"]) == (1, "legacy", 1)
    given = CliRunner().invoke(main, ["train", "--resume", "--epochs", "3", "--out", str(out),
                                      "--threads", "2", "--workers", "0", "--quiet"])
    assert given.exit_code == 0, given.output
    config = load_checkpoint(tmp_path / "m.pt")["config"]
    assert (config["threads"], config["exporter"], config["workers"]) == (2, "legacy", 0)
    torch.set_num_threads(1)


def test_a_resume_with_nothing_to_train_leaves_the_export_and_checkpoint_alone(tmp_path):
    # before: every such resume exported the model again (a new sha256: runs that name it as
    # their teacher or frozen encoder could no longer be resumed) and rewrote the checkpoint
    data = make_folder(tmp_path / "data", n=2, size=32)
    config = _config(tmp_path, "m", data, export=True)
    train(config, progress=False)
    model, ckpt = tmp_path / "m.onnx", tmp_path / "m.pt"
    before = (file_sha256(model), file_sha256(ckpt))
    lines = []
    again = train(config, resume=True, progress=False, echo=lines.append)
    assert again.out is None
    assert f"{model} is its export already and is left as it is (--export-only writes it " \
           "again, and its INT8 model with --quantize int8)" in lines
    assert (file_sha256(model), file_sha256(ckpt)) == before
    # a run whose export was cut short (the checkpoint newer than the model): exported now
    import os

    stamp = ckpt.stat().st_mtime_ns
    os.utime(model, ns=(stamp - 10**9, stamp - 10**9))
    assert train(config, resume=True, progress=False).out == model


def test_a_finished_resume_given_quantize_exports_again(tmp_path):
    # --quantize int8 given to a finished run asks for its INT8 model: an export, not "left
    # as it is"
    data = make_folder(tmp_path / "data", n=2, size=32)
    config = _config(tmp_path, "q", data, export=True)
    train(config, progress=False)
    config.quantize = "int8"
    again = train(config, resume=True, progress=False, given=("quantize",))
    assert again.out == tmp_path / "q.onnx" and "int8" in again.reports


def test_a_contrastive_resume_with_nothing_to_train_keeps_its_refit_classifier(tmp_path):
    # before: each resume refit the refit classifier once more (the labels of the volume
    # drifted by 9 % over three resumes of a finished run)
    data = make_folder(tmp_path / "data", n=4, size=40)
    config = _config(tmp_path, "c", data, paradigm="contrastive", classifier_steps=2,
                     batch_size=2, crop=32)
    train(config, progress=False)
    first = load_checkpoint(tmp_path / "c.pt")
    assert first["refit_done"] is True
    train(config, resume=True, progress=False)
    again = load_checkpoint(tmp_path / "c.pt")
    for name, value in first["inference_state"].items():
        assert torch.equal(value, again["inference_state"][name]), name
    # two more epochs train the classifier again, and refit it once after them
    config.epochs = 3
    train(config, resume=True, progress=False)
    assert load_checkpoint(tmp_path / "c.pt")["refit_done"] is True


@pytest.mark.parametrize("option", ["teacher", "frozen_encoder"])
def test_a_moved_teacher_or_frozen_encoder_is_given_anew_on_resume(tmp_path, option):
    # before: the moved file was "not found", and giving its new place was refused as another
    # setting: the run could not be resumed at all
    data = make_folder(tmp_path / "data", n=2, size=32, unlabeled=2)
    train(_config(tmp_path, "first", data), progress=False)
    source = tmp_path / "source.pt"
    shutil.copy(tmp_path / "first.pt", source)
    extra = ({"paradigm": "pseudo-label", "teacher": str(source), "confidence": 0.0}
             if option == "teacher" else {"paradigm": "cct", "frozen_encoder": str(source)})
    config = _config(tmp_path, "run", data, **extra)
    train(config, progress=False)
    moved = tmp_path / "moved.pt"
    source.rename(moved)
    resumed = _config(tmp_path, "run", data, epochs=2, **{**extra, option: str(moved)})
    assert train(resumed, resume=True, progress=False, given=(option, "epochs")).epochs == 2
    # another file under the new name is refused by the sha256 the run recorded: a
    # teacher's pseudo-labels would change; a frozen encoder's weights come from the
    # checkpoint, but the model's command would name a file its provenance does not
    train(_config(tmp_path, "other", data, seed=9), progress=False)
    shutil.copy(tmp_path / "other.pt", moved)
    resumed.epochs = 3
    match = ("teacher .* changed since" if option == "teacher"
             else "--frozen-encoder .*moved.pt is not the checkpoint this run froze")
    with pytest.raises(TrainingError, match=match):
        train(resumed, resume=True, progress=False, given=(option, "epochs"))


def test_a_teacher_or_frozen_encoder_given_to_a_run_without_one_is_refused(tmp_path):
    # moved files are given anew; a run that had none does not get one (a frozen encoder
    # changed the trainable parameters under the optimizer: torch's own error)
    from training.resume import ResumeSettingError

    data = make_folder(tmp_path / "data", n=2, size=32, unlabeled=2)
    train(_config(tmp_path, "sup", data), progress=False)
    config = _config(tmp_path, "cct", data, paradigm="cct")
    train(config, progress=False)
    again = _config(tmp_path, "cct", data, paradigm="cct", epochs=2,
                    frozen_encoder=str(tmp_path / "sup.pt"))
    with pytest.raises(ResumeSettingError, match="--frozen-encoder .*was trained with no "
                                                 "--frozen-encoder"):
        train(again, resume=True, progress=False, given=("frozen_encoder", "epochs"))


def test_a_supervised_run_reads_no_unlabeled_images_and_the_model_names_its_epoch(
        tmp_path, monkeypatch):
    # before: DATA/unlabeled/ was read and scaled for nothing and counted in the model
    # ("6 labeled, 10 unlabeled images"); and which epoch's weights were exported, and which
    # images chose it, was in the checkpoint only
    import dataclasses

    from nwwatch.segment.session import Segmenter
    from training import engine
    from training.cli import exported_line

    real_validate, scores = engine.validate, iter([0.9, 0.5, 0.5])

    def falling(*args, **kwargs):  # epoch 1 the best of 2, then the export's own score
        return dataclasses.replace(real_validate(*args, **kwargs), mean_iou=next(scores))

    monkeypatch.setattr(engine, "validate", falling)
    data = make_folder(tmp_path / "data", n=4, size=32, unlabeled=2)
    said: list[str] = []
    config = _config(tmp_path, "sup", data, export=True, epochs=2, val_fraction=0.25,
                     val_min_images=1)
    result = train(config, progress=False, echo=said.append)
    assert any(f"{data / 'unlabeled'} is not read: the supervised paradigm" in line
               for line in said), said
    best = load_checkpoint(tmp_path / "sup.pt")["best"]["epoch"]
    assert best == 1 and result.exported_epoch == 1 and len(result.validation_images) == 1
    extra = Segmenter(tmp_path / "sup.onnx").metadata.extra
    assert extra["unlabeled_images"] == 0
    assert extra["exported_epoch"] == best
    assert extra["validation_images"] == result.validation_images
    # the folder's images it saw (trained on, or chose its epoch), for evaluate to name
    assert extra["labeled_stems"] == sorted(p.stem for p in (data / "images").iterdir())
    line = exported_line(result.exported_epoch, result.epochs, result.validation_images)
    assert line.startswith(f"exported: the weights of epoch {best} of 2; metrics below on "
                           f"the 1 held-out image(s) ({result.validation_images[0]})")


def test_a_contrastive_export_only_resume_names_the_refit_epoch(tmp_path):
    # the checkpoint's weights are the refit after the last epoch; a resume that only
    # exported recorded the best validation epoch for them
    data = make_folder(tmp_path / "data", n=4, size=32, unlabeled=2)
    config = _config(tmp_path, "c", data, paradigm="contrastive", export=True, epochs=3,
                     val_fraction=0.25, val_min_images=1, model_options=dict(TINY), seed=3)
    first = train(config, progress=False)
    assert first.exported_epoch == 3
    again = train(config, resume=True, export_only=True, progress=False)
    assert again.exported_epoch == 3


def test_a_finished_runs_checkpoint_keeps_its_last_epochs_training_weights(tmp_path,
                                                                         monkeypatch):
    # before: after the last epoch the best epoch's weights were loaded into the training
    # modules and saved as "state" beside the last epoch's optimizer and epoch count: a
    # --resume --epochs MORE (or a resume after --export-only) went on from the best epoch
    import copy
    import dataclasses

    import training.engine as engine

    saved = []
    real_save = engine.save_checkpoint
    monkeypatch.setattr(engine, "save_checkpoint", lambda path, doc: (
        saved.append((doc["epoch"], copy.deepcopy(doc["state"]))), real_save(path, doc)))
    real_validate, calls = engine.validate, []

    def first_epoch_best(*args, **kwargs):  # the scores fall after epoch 1
        scores = real_validate(*args, **kwargs)
        calls.append(1)
        return dataclasses.replace(scores, mean_iou=1.0 / len(calls))

    monkeypatch.setattr(engine, "validate", first_epoch_best)
    data = make_folder(tmp_path / "data", n=4, size=32)
    train(_config(tmp_path, "run", data, epochs=3, val_fraction=0.25), progress=False)
    payload = load_checkpoint(tmp_path / "run.pt")
    assert payload["epoch"] == 3 and payload["best"]["epoch"] == 1
    after_last = [state for epoch, state in saved if epoch == 3][0]  # the loop's own save
    assert all(torch.equal(payload["state"][k], after_last[k]) for k in after_last)
    first = [state for epoch, state in saved if epoch == 1][0]
    assert not all(torch.equal(payload["state"][k], first[k]) for k in first)


def test_unlabeled_images_equal_to_held_out_ones_are_not_trained_on(tmp_path, monkeypatch):
    # before: a DATA/unlabeled/ stack holding the labeled frames (a tomogram's volume holds
    # every labeled slice) fed the held-out ones to training as unlabeled crops (CCT,
    # contrastive) or pseudo-labels, while they chose the exported epoch and gave val_*
    import training.engine as engine

    data = make_folder(tmp_path / "data", n=4, size=32)
    frames = [tifffile.imread(p) for p in sorted((data / "images").glob("*.tif"))]
    (data / "unlabeled").mkdir()
    tifffile.imwrite(data / "unlabeled" / "stack.tif", np.stack(frames), photometric="minisblack")
    seen = {}
    real = engine.BatchSampler

    class Spy(real):
        def __init__(self, items, unlabeled, *args, **kwargs):
            seen["unlabeled"] = list(unlabeled)
            super().__init__(items, unlabeled, *args, **kwargs)

    monkeypatch.setattr(engine, "BatchSampler", Spy)
    lines: list[str] = []
    result = train(_config(tmp_path, "cct", data, paradigm="cct", val_fraction=0.25),
                   progress=False, echo=lines.append)
    [held] = result.validation_images
    assert len(seen["unlabeled"]) == 3
    assert any("1 unlabeled image equal to held-out validation image left out" in line
               for line in lines)


def test_a_resume_refuses_a_volume_that_normalises_its_slices_otherwise(tmp_path):
    # before: the volume in DATA/unlabeled/ sets a tomogram's slices' intensity range but is
    # in no hash a supervised run kept: cropped, the resume went on with other inputs
    import cv2

    rng = np.random.default_rng(2)
    volume = rng.integers(0, 1000, (8, 32, 32)).astype(np.uint16)
    volume[:, 8:24, 8:24] += 2000
    volume[0] = 60000  # a bright slice that only the whole volume's range sees
    data = tmp_path / "tdata"
    for sub in ("images", "labels", "unlabeled"):
        (data / sub).mkdir(parents=True)
    (data / "dataset.toml").write_text('kind = "tomogram"\nclasses = ["pore", "solid"]\n')
    tifffile.imwrite(data / "unlabeled" / "volume.tif", volume, photometric="minisblack")
    for z in (2, 4, 6):
        tifffile.imwrite(data / "images" / f"slice_{z}.tif", volume[z])
        cv2.imwrite(str(data / "labels" / f"slice_{z}.png"),
                    (volume[z] > 1500).astype(np.uint8))
    config = _config(tmp_path, "vol", data)
    train(config, progress=False)
    tifffile.imwrite(data / "unlabeled" / "volume.tif", volume[1:], photometric="minisblack")
    config.epochs = 2
    with pytest.raises(TrainingError, match="normalised otherwise than when this checkpoint"):
        train(config, resume=True, progress=False)


#: A supervised run that holds out one image of four (with _config's seed).
_ONE_HELD_OUT = dict(val_fraction=0.25, val_min_images=1)


def _held_out_of(stems: list[str]) -> tuple[str, ...]:
    """The stems such a run holds out of ``stems``."""
    from training.data import make_split

    return make_split(stems, _ONE_HELD_OUT["val_fraction"], 1,
                      _ONE_HELD_OUT["val_min_images"]).val


def _said_by_a_run_holding_one_out(tmp_path, data) -> list[str]:
    said: list[str] = []
    train(_config(tmp_path, "sup", data, **_ONE_HELD_OUT), progress=False, echo=said.append)
    return said


def test_a_class_labelled_in_the_held_out_image_alone_is_said(tmp_path):
    """"no droplet pixel is labeled in DATA" was checked over every image before the split:
    with the droplet labelled only in the image held out for validation, the model trained
    on no droplet, without a word."""
    import cv2

    data = make_folder(tmp_path / "data", n=4, size=32)
    stems = sorted(p.stem for p in (data / "labels").iterdir())
    [held_out] = _held_out_of(stems)
    for stem in stems:
        label = cv2.imread(str(data / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert (label == 2).any()
        if stem != held_out:
            label[label == 2] = 255
            cv2.imwrite(str(data / "labels" / f"{stem}.png"), label)
    said = _said_by_a_run_holding_one_out(tmp_path, data)
    assert (f"warning: no droplet pixel is labeled in the training images, only in the "
            f"held-out {held_out}: the model gets no example of droplet; label it in another "
            "frame too") in said, said
    assert not any("is labeled in " + str(data) in line for line in said)


def test_a_copy_of_the_held_out_image_among_the_training_images_is_said(tmp_path):
    """An exact copy of the held-out image under another name trained with no note: the
    validation score that chose the exported epoch was on a training image."""
    import shutil

    data = make_folder(tmp_path / "data", n=4, size=32)
    stems = sorted(p.stem for p in (data / "labels").iterdir())
    [held_out] = _held_out_of(stems + ["aa_copy"])
    assert held_out != "aa_copy"  # the seed's split of these five names
    shutil.copy(data / "images" / f"{held_out}.tif", data / "images" / "aa_copy.tif")
    shutil.copy(data / "labels" / f"{held_out}.png", data / "labels" / "aa_copy.png")
    said = _said_by_a_run_holding_one_out(tmp_path, data)
    assert (f"note: 1 training image is a held-out image under another name (aa_copy "
            f"({held_out})): the validation scores, which choose the exported epoch, are then "
            "on an image it trains on; remove the copy") in said, said


def test_images_the_starting_weights_trained_on_are_not_held_out(tmp_path):
    """A fine-tune of more labels from the user's own weights (the docs' loop: label more,
    --init mine.pt) held out images the weights were trained on, and reported their scores
    as held-out ones; so did a frozen encoder's run."""
    data = make_folder(tmp_path / "data", n=4, size=32)
    train(_config(tmp_path, "base", data), progress=False)  # trains on all four
    base = load_checkpoint(tmp_path / "base.pt")
    hashes = {file_sha256(p) for p in (data / "images").iterdir()}
    assert set(base["seen_images_sha256"]) == hashes
    more = make_folder(tmp_path / "more", n=8, size=32, unlabeled=1, seed=1)  # other frames
    for path in (data / "images").iterdir():
        shutil.copy(path, more / "images" / f"old_{path.name}")
        shutil.copy(data / "labels" / f"{path.stem}.png", more / "labels" / f"old_{path.stem}.png")
    said: list[str] = []
    tuned = _config(tmp_path, "tuned", more, init=str(tmp_path / "base.pt"), model_options={},
                    val_fraction=0.25, val_min_images=1)
    train(tuned, progress=False, echo=said.append)
    split = load_checkpoint(tmp_path / "tuned.pt")["split"]
    # a quarter of the eight new images, none of the four the weights trained on
    assert len(split["val"]) == 2 and not any(s.startswith("old_") for s in split["val"])
    (note,) = [line for line in said if "trained on by the starting weights" in line]
    assert note.startswith("note: 4 of the 12 labeled images (old_")
    # what the tuned weights have seen is carried on: the base's and its own training images
    seen = set(load_checkpoint(tmp_path / "tuned.pt")["seen_images_sha256"])
    assert hashes <= seen and len(seen) == 10
    # a frozen encoder's images as well
    frozen = _config(tmp_path, "frozen", more, paradigm="cct",
                     frozen_encoder=str(tmp_path / "base.pt"), val_fraction=0.25,
                     val_min_images=1)
    train(frozen, progress=False)
    assert not any(s.startswith("old_")
                   for s in load_checkpoint(tmp_path / "frozen.pt")["split"]["val"])
    # ... named by its model file, as --frozen-encoder takes it too
    (tmp_path / "base.onnx").write_bytes(b"")  # the run reads base.pt beside it
    frozen.frozen_encoder = str(tmp_path / "base.onnx")
    frozen.out = str(tmp_path / "frozen2.onnx")
    train(frozen, progress=False)
    assert not any(s.startswith("old_")
                   for s in load_checkpoint(tmp_path / "frozen2.pt")["split"]["val"])
    # every image seen: none held out, and one note says why
    said.clear()
    again = _config(tmp_path, "again", data, init=str(tmp_path / "base.pt"), model_options={},
                    val_fraction=0.25, val_min_images=1)
    train(again, progress=False, echo=said.append)
    assert load_checkpoint(tmp_path / "again.pt")["split"]["val"] == []
    notes = [line for line in said if line.startswith("note:")]
    assert len(notes) == 1 and "none of the others is left to hold out" in notes[0]


def test_a_fine_tune_of_few_new_images_trains_on_some_of_them():
    """Validation took as many images as the fraction of all asked, from the new ones only:
    two new labels beside sixteen seen ones both went to validation, none to training."""
    from training.data import make_split

    seen = [f"old{k:02d}" for k in range(16)]
    split = make_split([*seen, "new0", "new1"], 0.1, 0, 6, keep_training=seen)
    assert len(split.val) == 1 and {"new0", "new1"} & set(split.train)
    alone = make_split([*seen, "new0"], 0.1, 0, 6, keep_training=seen)
    assert alone.val == () and "new0" in alone.train


def test_the_slices_of_one_volume_are_seen_one_by_one(tmp_path):
    """Every labeled slice carried the volume file's sha256: one slice trained on made every
    slice of the volume 'seen'."""
    import cv2

    from training.data import load_volume_slices

    volume = np.random.default_rng(0).normal(0, 1, (10, 32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "v.tif", volume)
    labels = []
    for z in (2, 5):
        path = tmp_path / f"z{z}.png"
        cv2.imwrite(str(path), (volume[z] > 0).astype(np.uint8))
        labels.append((z, path))
    data = load_volume_slices(tmp_path / "v.tif", labels)
    keys = {item.stem: item.content_key for item in data.labeled}
    assert len(set(keys.values())) == 2
    assert all(key.startswith(file_sha256(tmp_path / "v.tif")) for key in keys.values())


def test_init_and_frozen_encoder_are_the_same_weights_when_their_files_are_copies(tmp_path):
    """They were compared by path: a byte-identical copy was "different weights"."""
    import click

    from training.runfiles import check_init_and_frozen_encoder

    data = make_folder(tmp_path / "data", n=2, size=32)
    train(_config(tmp_path, "base", data), progress=False)
    copy = tmp_path / "copy" / "base.pt"
    copy.parent.mkdir()
    shutil.copy(tmp_path / "base.pt", copy)
    check_init_and_frozen_encoder(str(copy), tmp_path / "base.pt")  # no error
    train(_config(tmp_path, "other", data, seed=2), progress=False)
    with pytest.raises(click.UsageError, match="are different weights"):
        check_init_and_frozen_encoder(str(tmp_path / "other.pt"), tmp_path / "base.pt")


def test_slim_and_interpolated_weights_keep_what_their_weights_have_seen(tmp_path):
    from training.interpolate import interpolate_checkpoints
    from training.weights import load_initial_weights, write_slim_weights

    data = make_folder(tmp_path / "data", n=2, size=32)
    train(_config(tmp_path, "a", data), progress=False)
    other = make_folder(tmp_path / "other", n=2, size=32, seed=3)
    train(_config(tmp_path, "b", other), progress=False)
    seen_a = set(load_checkpoint(tmp_path / "a.pt")["seen_images_sha256"])
    seen_b = set(load_checkpoint(tmp_path / "b.pt")["seen_images_sha256"])
    slim = write_slim_weights(tmp_path / "a.pt", tmp_path / "slim.pt", "test")
    assert load_initial_weights(str(slim)).seen_images_sha256 == seen_a
    mixed = interpolate_checkpoints(tmp_path / "a.pt", tmp_path / "b.pt", 0.5,
                                   tmp_path / "mixed.pt")
    assert load_initial_weights(str(mixed)).seen_images_sha256 == seen_a | seen_b


def test_a_resume_refused_for_changed_data_names_the_images(tmp_path):
    # before: "the training data changed since this checkpoint was written (DATA)", with no
    # word of which of its images
    import cv2

    data = make_folder(tmp_path / "data", n=4, size=32)
    config = _config(tmp_path, "r", data)
    train(config, progress=False)
    cv2.imwrite(str(data / "labels" / "img01.png"), np.zeros((32, 32), np.uint8))
    image = tifffile.imread(data / "images" / "img02.tif")
    tifffile.imwrite(data / "images" / "img02.tif", image[::-1].copy())
    (data / "images" / "img03.tif").unlink()
    (data / "labels" / "img03.png").unlink()
    shutil.copy(data / "images" / "img00.tif", data / "images" / "new.tif")
    shutil.copy(data / "labels" / "img00.png", data / "labels" / "new.png")
    config.epochs = 2
    with pytest.raises(TrainingError) as refused:
        train(config, resume=True, progress=False)
    assert ("the training data changed since this checkpoint was written "
            f"({data}: changed img01 (label), img02 (image); added new; removed img03)"
            in str(refused.value))
    # a checkpoint without the per-image record (an older nwwatch): the images added or
    # removed, from its split, and the training images whose pixels changed
    payload = load_checkpoint(tmp_path / "r.pt")
    del payload["labeled_sha256"]
    from training.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "r.pt", payload)
    with pytest.raises(TrainingError, match=r": changed img02 \(image\); added new; "
                                            r"removed img03\)"):
        train(config, resume=True, progress=False)
