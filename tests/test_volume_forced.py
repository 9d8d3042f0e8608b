"""A tomogram method the labels did not choose (``--paradigm``, ``--init``, ``--candidates``
without the threshold) is still scored against the label-free threshold on the same held-out
labeled pixels; clearly worse, the model records it, training warns, and the rows are
``suspect`` with ``labels_favour_threshold`` (training.volume_forced)."""

from __future__ import annotations

import math
import random

import cv2
import numpy as np
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from nwwatch.segment.session import Segmenter
from nwwatch.volume import REASON_CODES, assess_mask, segment_volume
from nwwatch.volume.verdict import MIN_PATCHES_TO_CHECK

torch = pytest.importorskip("torch")
from training.config import TrainConfig  # noqa: E402  (after the skip guard)
from training.volume_forced import (  # noqa: E402
    THRESHOLD_MARGIN,
    check_forced,
    threshold_check,
)
from training.volume_select import (  # noqa: E402
    CANDIDATES,
    FOREST_MARGIN,
    choose,
    select_and_train,
)

SHAPE = (12, 48, 48)
Z = 6
CORNERS = [(r, c) for r in (3, 21, 39) for c in (3, 21, 39)]


def _blobs(seed: int) -> np.ndarray:
    from scipy import ndimage as ndi

    field = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(SHAPE), 3.0)
    return field > np.quantile(field, 0.6)


def _write(tmp_path, volume: np.ndarray, truth: np.ndarray, corners=CORNERS):
    from nwwatch.io import write_volume_tiff

    labels = np.full(truth.shape[1:], 255, np.uint8)
    for r, c in corners:
        labels[r:r + 6, c:c + 6] = truth[Z, r:r + 6, c:c + 6]
    volume_path = write_volume_tiff(tmp_path / "volume.tif", volume.astype(np.float32))
    labels_path = tmp_path / "labels.png"
    cv2.imwrite(str(labels_path), labels)
    return volume_path, labels_path


def _noisy_blobs(tmp_path, corners=CORNERS):
    """Solid brighter than pore under noise: a blurred threshold separates them."""
    truth = _blobs(0)
    volume = truth * 1.0 + np.random.default_rng(1).normal(0, 0.6, SHAPE)
    return _write(tmp_path, volume, truth, corners)


def _config(tmp_path, volume_path, labels_path, **kw) -> TrainConfig:
    settings = dict(
        out=str(tmp_path / "model.onnx"), paradigm="supervised", arch="unet-paper",
        model_options={"widths": [8, 16], "dropout": 0.0}, volume=str(volume_path),
        slice_index=Z, labels=str(labels_path), epochs=4, steps_per_epoch=10, batch_size=4,
        crop=32, val_fraction=0.0, dice_weight=0.0, device="cpu", threads=1, lr=0.05,
        classifier_steps=5, exporter="legacy")
    return TrainConfig(**{**settings, **kw})


def test_the_check_fires_beyond_the_margin_only_and_names_the_way_out():
    scores = {"threshold": 0.90, "unet": 0.90 - THRESHOLD_MARGIN + 0.001}
    assert threshold_check("unet", scores, {}, "--paradigm supervised") == ""
    scores["unet"] = 0.90 - THRESHOLD_MARGIN - 0.001
    check = threshold_check("unet", scores, {}, "--paradigm supervised")
    assert check.startswith("the labels favour the threshold")
    assert "0.900" in check and "drop --paradigm to let the labels choose" in check
    assert "drop --paradigm and --init" in threshold_check(
        "unet", scores, {}, "--paradigm supervised --init a.pt")
    assert "add threshold to --candidates" in threshold_check(
        "unet", scores, {}, "--candidates unet")
    # A forced network whose folds stopped early: its bound is what is compared.
    stopped = threshold_check("unet", {"threshold": 0.9, "unet": math.nan}, {"unet": 0.7},
                              "--paradigm supervised")
    assert "at most 0.700" in stopped
    # Nothing to compare: no flag.
    assert threshold_check("unet", {"unet": 0.5}, {}, "--paradigm supervised") == ""
    assert threshold_check("threshold", {"threshold": 0.9}, {}, "") == ""


def test_the_default_workflow_never_keeps_a_method_the_check_flags():
    # The margin is the largest the choice ever grants: whatever the scores, a method the
    # labels chose among candidates that include the threshold is never flagged.
    assert THRESHOLD_MARGIN >= FOREST_MARGIN
    rng = random.Random(0)
    for _ in range(2000):
        names = ["threshold", *rng.sample(CANDIDATES[1:], rng.randint(1, 3))]
        scores = {n: rng.uniform(0.4, 1.0) for n in names}
        for patches in (2, 9):
            kept, _ = choose(scores, patches=patches)
            assert threshold_check(kept, scores, {}, "") == ""


def test_the_row_carries_the_training_warning_word_for_word():
    assert REASON_CODES[-1] == "labels_favour_threshold"
    sentence = ("the labels favour the threshold: ... drop --paradigm to let the labels "
                "choose")
    selection = {"method": "unet", "grouping": "patches", "folds": 3,
                 "threshold_check": sentence}
    verdict = assess_mask(0.15, 0.02, 0.85, 0.16, 0.14, selection=selection)
    assert verdict.status == "suspect"
    assert verdict.reason_codes == ("labels_favour_threshold",) and verdict.why == (sentence,)
    selection["threshold_check"] = ""
    assert assess_mask(0.15, 0.02, 0.85, 0.16, 0.14, selection=selection).status == "ok"


def test_a_forced_network_worse_than_the_threshold_warns_and_its_rows_are_suspect(tmp_path):
    from nwwatch.cli import main
    from nwwatch.service import replay

    acq = tmp_path / "acq"
    acq.mkdir()
    volume_path, labels_path = _noisy_blobs(acq)
    model = tmp_path / "model.onnx"
    # One step of training: the network has learnt next to nothing, the threshold a lot.
    result = CliRunner().invoke(main, [
        "train", "--volume", str(volume_path), "--slice", str(Z), "--labels", str(labels_path),
        "--paradigm", "supervised", "--model-options", '{"widths": [8, 16], "dropout": 0.0}',
        "--epochs", "1", "--steps-per-epoch", "1", "--crop", "32", "--out", str(model),
        "--threads", "1", "--exporter", "legacy", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "checking unet (--paradigm supervised) against the label-free threshold" \
        in result.output
    warning = result.output.strip().splitlines()[-1]
    assert warning.startswith("warning: the labels favour the threshold")
    assert warning.endswith("drop --paradigm to let the labels choose")
    meta = Segmenter(model, providers=("cpu",)).metadata
    assert meta.paradigm == "supervised"  # the forced network is what was exported
    selection = meta.extra["selection"]
    assert selection["forced_by"] == "--paradigm supervised" and selection["method"] == "unet"
    assert selection["grouping"] == "patches" and selection["folds"] == 3
    assert selection["threshold_check"] == warning.removeprefix("warning: ")
    unet = selection["scores"]["unet"] if selection["scores"]["unet"] is not None \
        else selection["stopped"]["unet"]
    assert unet < selection["scores"]["threshold"] - THRESHOLD_MARGIN
    labels_path.unlink()  # the service sees the volume only
    assert replay(acq, tmp_path / "out", kind="tomogram", model=model).done == 1
    row = ds.dataset(tmp_path / "out" / "volumes").to_table().to_pandas().iloc[0]
    assert row.status == "suspect"
    assert "labels_favour_threshold" in row.reason_code.split(",")
    assert selection["threshold_check"] in row.reason


@pytest.mark.parametrize("corners", [[(21, 21)], [(3, 3), (21, 21), (39, 39)]])
def test_a_forced_network_on_fewer_than_four_patches_is_unvalidated(tmp_path, corners):
    # One patch: nothing can be held out. Three: folds exist, but a network trained on one
    # or two patches is not the one trained on all three, and such folds flagged networks
    # whose masks were as good as the threshold's (bench/results/tomo_forced_rule.txt).
    volume_path, labels_path = _noisy_blobs(tmp_path, corners=corners)
    lines: list[str] = []
    selection = check_forced(_config(tmp_path, volume_path, labels_path),
                             "--paradigm supervised", echo=lines.append)
    assert (selection.method, selection.grouping, selection.folds) == ("unet", "none", 0)
    assert selection.threshold_check == "" and not selection.seconds  # nothing trained
    assert any(f"{len(corners)} labeled patches are too few to check unet" in line
               for line in lines)
    verdict = assess_mask(0.15, 0.02, 0.85, 0.16, 0.14, selection=selection.as_dict())
    assert verdict.reason_codes == ("method_unvalidated",)
    assert f"{MIN_PATCHES_TO_CHECK} separate patches, two of each class" in verdict.why[0]
    assert "kept by --paradigm supervised" in verdict.why[0]


@pytest.mark.slow
def test_a_forced_network_that_beats_the_threshold_is_not_flagged(tmp_path):
    # Solid a fine checkerboard around the pore's grey: equal means, no threshold separates
    # them, the network sees the texture (as in test_volume_selection).
    truth = _blobs(2)
    checker = np.indices(SHAPE).sum(axis=0) % 2 * 2.0 - 1.0
    volume = np.where(truth, checker, 0.0) + np.random.default_rng(3).normal(0, 0.05, SHAPE)
    volume_path, labels_path = _write(tmp_path, volume, truth)
    selection = check_forced(_config(tmp_path, volume_path, labels_path),
                             "--paradigm supervised")
    assert selection.scores["unet"] > selection.scores["threshold"] + 0.1, selection
    assert selection.threshold_check == ""


def test_candidates_without_the_threshold_score_it_as_a_reference_never_kept(tmp_path):
    truth = _blobs(0)
    volume = truth * 1.0 + np.random.default_rng(1).normal(0, 0.6, SHAPE)
    volume_path, labels_path = _write(tmp_path, volume, truth)
    lines: list[str] = []
    selection, out = select_and_train(_config(tmp_path, volume_path, labels_path),
                                      ("features",), echo=lines.append)
    assert selection.method == "features" and selection.forced_by == "--candidates features"
    assert set(selection.scores) == {"features", "threshold"}
    assert not math.isnan(selection.scores["threshold"])
    assert any("(the reference, not a candidate)" in line for line in lines)
    flagged = selection.scores["features"] < selection.scores["threshold"] - THRESHOLD_MARGIN
    assert bool(selection.threshold_check) == flagged
    meta = Segmenter(out, providers=("cpu",)).metadata
    assert meta.extra["selection"]["forced_by"] == "--candidates features"
    seg = segment_volume(Segmenter(out, providers=("cpu",)), volume)
    assert ("labels_favour_threshold" in seg.verdict.reason_codes) == flagged
