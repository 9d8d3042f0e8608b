"""Segmentation metrics on hand-made arrays and `nwwatch evaluate` through the runtime."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from nwwatch.cli import main
from nwwatch.measure import REASON_CODES
from nwwatch.segment.metrics import (
    InterfaceOffsets,
    confusion_matrix,
    interface_offsets_px,
    metrics_from_confusion,
    segmentation_metrics,
)


def test_metrics_on_a_hand_made_case():
    truth = np.array([[0, 0, 1, 1],
                      [0, 0, 1, 1],
                      [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 0],
                     [2, 0, 2, 1]])
    cm = confusion_matrix(truth, pred, 3)
    np.testing.assert_array_equal(cm, [[3, 1, 0], [1, 3, 0], [1, 0, 1]])
    m = metrics_from_confusion(cm)
    # class 0: TP 3, FP 2, FN 1 -> 3/6; class 1: TP 3, FP 1, FN 1 -> 3/5; class 2: 1/2
    assert m.iou == pytest.approx((0.5, 0.6, 0.5))
    assert m.dice == pytest.approx((6 / 9, 6 / 8, 2 / 3))
    assert m.mean_iou == pytest.approx((0.5 + 0.6 + 0.5) / 3)
    assert m.pixel_accuracy == pytest.approx(7 / 10)
    assert m.pixels == 10


def test_unlabeled_pixels_never_count_and_absent_classes_are_nan():
    truth = np.full((4, 4), 255)
    truth[:2] = 0
    pred = np.zeros((4, 4), int)
    pred[2:] = 1                       # wrong only under 255
    m = segmentation_metrics(truth, pred, 3)
    assert m.iou[0] == 1.0 and math.isnan(m.iou[1])  # class 1 predicted only under 255
    assert m.pixel_accuracy == 1.0 and m.pixels == 8
    assert math.isnan(m.iou[2]) and m.mean_iou == 1.0
    assert "iou_2" not in m.as_dict()


def test_the_json_report_names_every_class_null_when_absent(tmp_path):
    # before: a class absent from truth and prediction had no key at all in --json's
    # metrics (KeyError for metrics["iou_droplet"]); the docs say null
    import cv2
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    from nwwatch.evaluate import evaluate_folder, strict_json

    data = make_folder(tmp_path / "d", n=1, size=32)
    for label in (data / "labels").glob("*.png"):
        cv2.imwrite(str(label), np.zeros((32, 32), np.uint8))
    for image in (data / "images").iterdir():
        tifffile.imwrite(image, np.zeros((32, 32), np.uint16))  # all predicted one class
    model = build_threshold_model(tmp_path / "m.onnx")
    metrics = strict_json(evaluate_folder(model, data).as_dict())["metrics"]
    for name in ("background", "nanowire", "droplet"):
        assert f"iou_{name}" in metrics and f"dice_{name}" in metrics
    assert metrics["iou_background"] is not None
    assert [metrics[f"iou_{n}"] for n in ("nanowire", "droplet")].count(None) >= 1


def test_dataset_level_is_pixel_weighted():
    big_t, big_p = np.zeros((10, 10), int), np.zeros((10, 10), int)
    small_t, small_p = np.ones((1, 2), int), np.array([[1, 0]])
    total = confusion_matrix(big_t, big_p, 2) + confusion_matrix(small_t, small_p, 2)
    assert metrics_from_confusion(total).pixel_accuracy == pytest.approx(101 / 102)


def test_bad_values_are_errors():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="truth has class ids"):
        confusion_matrix(np.full((2, 2), 5), np.zeros((2, 2), int), 3)


def _export_untrained(path, **metadata):
    # An untrained tiny network is enough to exercise the runtime path and the bookkeeping.
    # ``metadata``: further ModelMetadata fields (what a trained model records)
    torch = pytest.importorskip("torch")
    from nwwatch.segment.contract import ModelMetadata
    from training.export import export_onnx
    from training.models import build_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model("unet", num_classes=3, widths=[4, 8, 16], encoder_convs=[1, 1, 1],
                        decoder_convs=[1, 1])
    metadata = ModelMetadata(kind="insitu", class_names=("background", "nanowire", "droplet"),
                             arch="unet", paradigm="supervised", size_multiple=4,
                             **metadata)
    export_onnx(model, path, metadata, exporter="legacy")


def _wire_under_droplet(facet_row: float, size: int = 96) -> np.ndarray:
    """A vertical wire (class 1) below row ``facet_row`` and a droplet disc (class 2) above,
    on background; the facet is the tilted line row = facet_row + 0.2 (col - 48)."""
    rows, cols = np.mgrid[:size, :size].astype(float)
    labels = np.zeros((size, size), np.uint8)
    facet = facet_row + 0.2 * (cols - 48)
    labels[(np.abs(cols - 48) <= 20) & (rows >= facet)] = 1
    labels[((rows - facet_row + 10) ** 2 + (cols - 48) ** 2 <= 26**2) & (rows < facet)] = 2
    return labels


@pytest.mark.parametrize("shift_px", [-4, -1, 0, 2, 5])
def test_interface_offset_recovers_a_known_shift(shift_px):
    truth = _wire_under_droplet(50.0)
    # The predicted droplet reaches shift_px further into the wire (+) or stops short (-).
    predicted = truth.copy()
    moved = _wire_under_droplet(50.0 + shift_px)
    interface = (truth > 0) & (moved > 0)
    predicted[interface] = moved[interface]
    offsets = interface_offsets_px(truth, predicted)
    assert offsets.size > 20
    # Distances are perpendicular to a facet inclined by atan(0.2): shift * cos(11.3 deg).
    assert np.median(offsets) == pytest.approx(shift_px * math.cos(math.atan(0.2)), abs=0.6)
    summary = InterfaceOffsets.from_frames([offsets, np.zeros(0)])
    assert summary.frames == 1
    assert summary.bias_px == pytest.approx(offsets.mean())


def test_interface_offset_leaves_out_unlabeled_and_far_interfaces():
    truth = _wire_under_droplet(50.0)
    predicted = truth.copy()
    predicted[5:9, 5:9], predicted[5:9, 9:12] = 2, 1  # a spurious interface far away
    offsets = interface_offsets_px(truth, predicted)
    assert offsets.size > 20 and np.all(offsets == 0)
    # Beyond UNSURE_BAND_MAX_REACH_PX of any labeled pixel the truth is unknown: left out.
    far = np.full_like(truth, 255)
    far[:, :2] = truth[:, :2]
    assert interface_offsets_px(far, truth).size == 0
    assert InterfaceOffsets.from_frames([]).frames == 0


@pytest.mark.parametrize("shift_px", [0, 1, 3])
@pytest.mark.parametrize("half_band_px", [2, 4])
def test_interface_offset_through_an_unsure_band_is_the_shift(shift_px, half_band_px):
    # A human mask's band of 255 along the interface: its boundary is midway, as nwwatch
    # measure fills it. Before: every offset grew by the band's half-width (3 px read as 5)
    # and a prediction equal to the truth had no offset at all.
    truth = _wire_under_droplet(50.0)
    moved = _wire_under_droplet(50.0 + shift_px)
    predicted = truth.copy()
    interface = (truth > 0) & (moved > 0)
    predicted[interface] = moved[interface]
    sharp = interface_offsets_px(truth, predicted)
    rows = np.arange(96)[:, None] - 50.0 - 0.2 * (np.arange(96)[None, :] - 48)
    band = (truth > 0) & (np.abs(rows) <= half_band_px)
    offsets = interface_offsets_px(np.where(band, 255, truth), predicted)
    assert offsets.size >= 0.8 * sharp.size
    assert np.median(offsets) == pytest.approx(np.median(sharp), abs=0.6)


def test_evaluate_end_to_end_with_synthetic_truth(tmp_path):
    runner = CliRunner()
    data = tmp_path / "synth"
    result = runner.invoke(main, ["synth", "insitu", str(data), "--frames", "3", "--size", "96",
                                  "--seed", "5"])
    assert result.exit_code == 0, result.output
    model = tmp_path / "m.onnx"
    _export_untrained(model)
    report_path = tmp_path / "report.json"
    result = runner.invoke(main, ["evaluate", str(model), str(data), "--json", str(report_path),
                                  "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output and "contact angle (predicted labels)" in result.output
    # the provider obtained is named: `--provider cuda` on a machine without a GPU ran on the
    # CPU without a word, its ms/image read as the GPU's
    assert "ms/image on CPUExecutionProvider" in result.output.splitlines()[0], result.output
    report = json.loads(report_path.read_text())
    assert report["images"] == 3 and report["provider"] == "CPUExecutionProvider"
    assert 0.0 <= report["metrics"]["mean_iou"] <= 1.0
    for key in ("contact_angle", "contact_angle_on_truth_labels"):
        angles = report[key]
        # every frame is either measured or counted as a failure with its reason code
        assert angles["valid"] + sum(angles["failures"].values()) == angles["frames"] == 3
        assert set(angles["failures"]) <= set(REASON_CODES) - {"ok"} | {"another_droplet"}
    # In-situ models always report the interface offset (frames 0 without an interface).
    assert set(report["interface_offset"]) == {"frames", "bias_px", "rms_px", "mean_abs_px"}


def test_an_angle_of_another_droplet_is_not_scored_against_the_truth(tmp_path):
    # Was: a frame with a distractor droplet on a second wire was measured on it
    # (several_droplets, the largest) and its angle scored against the true droplet's: 26 deg
    # of "error" on exact labels, in the shipped model's card.
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "synth"
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "1", "--size",
                                       "128", "--seed", "5"])
    assert result.exit_code == 0, result.output
    truth = pq.read_table(data / "truth.parquet")
    report = tmp_path / "r.json"
    args = ["evaluate", "insitu-default", str(data), "--threads", "1", "--json", str(report)]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = json.loads(report.read_text())["contact_angle_on_truth_labels"]
    assert before["valid"] == 1 and "another_droplet" not in before["failures"]
    def truth_with(row_shift: float, distractors: int) -> None:
        table = truth.set_column(truth.schema.get_field_index("center_row"), "center_row",
                                 pa.array([truth["center_row"][0].as_py() + row_shift]))
        table = table.set_column(table.schema.get_field_index("n_distractors"),
                                 "n_distractors", pa.array([distractors], pa.int64()))
        pq.write_table(table, data / "truth.parquet")

    radius = truth["R_px"][0].as_py()
    truth_with(radius + 5.0, 1)  # the true droplet is elsewhere, beside another one
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    after = json.loads(report.read_text())["contact_angle_on_truth_labels"]
    assert after["valid"] == 0 and after["failures"] == {"another_droplet": 1}
    # within the true circle (a badly fitted or cut droplet), or no other droplet in the
    # frame: the angle is scored
    for shift, distractors in ((0.8 * radius, 1), (radius + 5.0, 0)):
        truth_with(shift, distractors)
        assert CliRunner().invoke(main, args).exit_code == 0
        assert json.loads(report.read_text())["contact_angle_on_truth_labels"]["valid"] == 1


def test_a_folder_without_truth_says_the_angles_are_not_scored(tmp_path):
    # labels drawn in another tool come without truth.parquet: masks are scored, angles not
    data = tmp_path / "synth"
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "2", "--size",
                                       "64", "--seed", "9"])
    assert result.exit_code == 0, result.output
    (data / "truth.parquet").unlink()
    result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(data), "--threads",
                                       "1"])
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output and "contact angle (predicted labels)" not in result.output
    assert result.output.splitlines()[-1] == (
        f"  contact angle: not scored: {data} has no truth.parquet (the reference angles "
        f"nwwatch label and nwwatch synth insitu write beside labels/); nwwatch measure "
        f"{data / 'labels'}/* gives your labels' angles")
    result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(data), "--threads",
                                       "1", "--no-angles"])
    assert result.exit_code == 0 and "not scored" not in result.output, result.output


def test_true_labels_in_another_tool_s_class_order_are_named(tmp_path):
    # before: the true labels' angles were all refused for geometric reasons, with no hint
    # that the folder numbers 1 droplet, 2 nanowire
    data = tmp_path / "synth"
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "4", "--size",
                                       "256", "--seed", "1"])
    assert result.exit_code == 0, result.output
    for label in (data / "labels").glob("*.png"):
        values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(label), np.array([0, 2, 1], np.uint8)[values])
    model = tmp_path / "m.onnx"
    _export_untrained(model)
    report_path = tmp_path / "report.json"
    # then without the truth.parquet, as masks of another tool come: the labels are checked
    # as nwwatch train checks them (there was no note at all)
    for with_truth in (True, False):
        if not with_truth:
            (data / "truth.parquet").unlink()
        result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--threads",
                                           "1", "--json", str(report_path)])
        assert result.exit_code == 0, result.output
        assert ("  note: 3 true label image(s) refused as drawn give an angle with 1 and 2 "
                "exchanged (1 droplet, 2 nanowire)") in result.output, result.output
        assert json.loads(report_path.read_text())["truth_labels_exchanged"] == [
            "labels/frame_00000.png", "labels/frame_00001.png", "labels/frame_00003.png"]


def test_images_without_a_reference_angle_are_named(tmp_path):
    # a frame labelled in another tool beside the truth.parquet's frames: the angle lines
    # count the others only ("1/2 measured" of 3 images), and the report names it
    data = tmp_path / "synth"
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "2", "--size",
                                       "64", "--seed", "9"])
    assert result.exit_code == 0, result.output
    (data / "hand0.tif").write_bytes((data / "frame_00000.tif").read_bytes())
    (data / "labels" / "hand0.png").write_bytes((data / "labels" / "frame_00000.png")
                                                .read_bytes())
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(data), "--threads",
                                       "1", "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    assert ("  angles not scored on 1 of 3 images: truth.parquet gives no angle for them "
            "(hand0)") in result.output.splitlines(), result.output
    report = json.loads(report_path.read_text())
    assert report["no_reference_angle"] == ["hand0"]
    assert report["contact_angle"]["frames"] == 2


def test_evaluate_names_the_file_without_label(tmp_path):
    (tmp_path / "d" / "labels").mkdir(parents=True)
    (tmp_path / "d" / "images").mkdir()
    (tmp_path / "d" / "images" / "a.png").write_bytes(b"")
    (tmp_path / "m.onnx").write_bytes(b"x")
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "m.onnx"), str(tmp_path / "d")])
    assert result.exit_code != 0 and "a.png: no label for this image" in result.output


def _two_frames_and_an_untrained_model(tmp_path, **metadata):
    """Two synthetic 64 px frames (a DATA folder) and an untrained network exported to ONNX
    (``metadata``: further ModelMetadata fields, given the DATA folder's path)."""
    data = tmp_path / "synth"
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "2",
                                       "--size", "64", "--seed", "9"])
    assert result.exit_code == 0, result.output
    model = tmp_path / "m.onnx"
    _export_untrained(model, **{key: value(data) if callable(value) else value
                                for key, value in metadata.items()})
    return data, model


def test_model_card_holds_the_file_hash_and_each_evaluation(tmp_path):
    from training.model_card import main as card_main

    data, model = _two_frames_and_an_untrained_model(tmp_path)
    out = tmp_path / "card.json"
    card_main([str(model), "--eval", str(data), "two frames", "--training-data", "none",
               "--status", "untrained", "--out", str(out)])
    text = out.read_text()
    assert "NaN" not in text  # strict JSON: an untrained model's missing angles are null
    card = json.loads(text)
    from nwwatch.filehash import file_sha256

    assert card["sha256"] == file_sha256(model) and card["status"] == "untrained"
    (evaluation,) = card["fresh_synthetic_evaluations"]
    # before: "data" held the description, and which folder was scored was lost
    assert evaluation["images"] == 2 and evaluation["seen_by_model"] == []
    assert evaluation["data"] == str(data) and evaluation["description"] == "two frames"


def test_model_shows_a_card_evaluation_with_its_folder_and_an_unfresh_one_as_such(tmp_path):
    from training.model_card import main as card_main

    data, model = _two_frames_and_an_untrained_model(tmp_path)
    card = model.with_suffix(".json")  # where `nwwatch model` reads it
    assert card_main([str(model), "--eval", str(data), "two frames", "--training-data",
                      "none", "--status", "untrained", "--out", str(card)]) == 0
    shown = CliRunner().invoke(main, ["model", str(model)])
    assert shown.exit_code == 0, shown.output
    assert f": two frames ({data})" in shown.output and "NOT held out" not in shown.output
    # a card written by hand (or an older tool) with the model's own images is not fresh
    written = json.loads(card.read_text())
    written["fresh_synthetic_evaluations"][0]["seen_by_model"] = ["frame_00000"]
    card.write_text(json.dumps(written))
    shown = CliRunner().invoke(main, ["model", str(model)])
    assert "NOT held out: 1 of these images are the model's own" in shown.output


def test_model_card_refuses_the_folder_the_model_was_trained_on(tmp_path, capsys):
    # before: an evaluation of the model's own training images was filed under
    # "fresh_synthetic_evaluations" (its seen_by_model listing every stem) without a word
    from training.model_card import main as card_main

    data, model = _two_frames_and_an_untrained_model(
        tmp_path, extra=lambda data: {"training_source": str(data)})
    out = tmp_path / "card.json"
    code = card_main([str(model), "--eval", str(data), "fresh frames", "--training-data",
                      "x", "--status", "y", "--out", str(out)])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert err.startswith(f"error: {data}: 2 of its 2 labeled images are the model's own")
    assert "not a fresh evaluation" in err


def test_model_card_refuses_a_copy_of_the_training_data(tmp_path, capsys):
    import shutil

    from training.data import load_folder
    from training.model_card import folder_data_sha256
    from training.model_card import main as card_main

    data, model = _two_frames_and_an_untrained_model(
        tmp_path, training_data_sha256=lambda data: load_folder(data).sha256())
    assert folder_data_sha256(data) == load_folder(data).sha256()  # the one hash, twice
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    out = tmp_path / "card.json"
    code = card_main([str(model), "--eval", str(copy), "fresh frames", "--training-data",
                      "x", "--status", "y", "--out", str(out)])
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err.startswith(
        f"error: {copy}: its labeled images are the model's training data")


def test_model_card_names_a_bad_evaluation_folder_and_writes_nothing(tmp_path, capsys):
    # before: a traceback (DatasetLayoutError) for an --eval folder with an image unlabelled
    from training.model_card import main as card_main

    data, model = _two_frames_and_an_untrained_model(tmp_path)
    missing = sorted((data / "labels").iterdir())[0]
    missing.unlink()
    out = tmp_path / "card.json"
    code = card_main([str(model), "--eval", str(data), "two frames", "--training-data",
                      "none", "--status", "untrained", "--out", str(out)])
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err.startswith(f"error: {data}")


def test_json_folder_is_made_before_the_run_and_a_bad_one_refused(tmp_path):
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)
    model = build_threshold_model(tmp_path / "m.onnx")
    out = tmp_path / "new" / "sub" / "report.json"
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--json", str(out),
                                       "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["images"] == 2
    (tmp_path / "afile").write_text("")
    bad = tmp_path / "afile" / "report.json"
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--json", str(bad),
                                       "--threads", "1"])
    assert result.exit_code == 2 and "--json" in result.output and str(bad) in result.output
    assert "mIoU" not in result.output  # refused before the evaluation ran


def test_a_model_of_another_kind_is_named_before_any_label_is_read(tmp_path):
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)  # in-situ: no dataset.toml
    model = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data)])
    assert result.exit_code == 1
    assert f"{model}: the model's kind is 'tomogram'" in result.output
    assert "holds 'insitu' data" in result.output and "label values" not in result.output
    (data / "dataset.toml").write_text('kind = "tomogram"\n')  # the other way round
    insitu = build_threshold_model(tmp_path / "insitu.onnx")
    result = CliRunner().invoke(main, ["evaluate", str(insitu), str(data)])
    assert result.exit_code == 1 and "the model's kind is 'insitu'" in result.output
    assert "holds 'tomogram' data" in result.output and "its dataset.toml" in result.output


def test_a_model_whose_classes_name_wire_and_droplet_the_other_way_is_refused(tmp_path):
    """Replay and measure refuse it; evaluate scored its class 1 against the data's nanowire
    under the name 'droplet', 34.7 % mIoU with no word of the swap."""
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)
    model = build_threshold_model(tmp_path / "swap.onnx",
                                  class_names=("background", "droplet", "nanowire"))
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data)])
    assert result.exit_code == 1, result.output
    assert f"{model}: classes ['background', 'droplet', 'nanowire']" in result.output
    assert "mIoU" not in result.output


def test_a_model_with_other_classes_than_the_data_is_named_as_such(tmp_path):
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)
    (data / "dataset.toml").write_text('kind = "insitu"\nclasses = ["background", "wire"]\n')
    model = build_threshold_model(tmp_path / "insitu.onnx")
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data)])
    assert result.exit_code == 1
    # Not "evaluate it with a model of kind 'insitu'" about an 'insitu' model.
    assert "with a model of kind" not in result.output
    assert ("3 classes ['background', 'nanowire', 'droplet']" in result.output
            and "2 classes ['background', 'wire']" in result.output
            and "dataset.toml" in result.output)


@pytest.mark.parametrize("blank", [1, 2])
def test_a_label_without_a_labeled_pixel_is_refused_as_train_refuses_it(tmp_path, blank):
    # before: with every label 255 "mIoU nan %" and exit 0; with one of two, that image was
    # counted and its predicted angle scored, while nwwatch train refuses the folder
    import cv2
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)
    labels = sorted((data / "labels").glob("*.png"))
    for label in labels[:blank]:
        cv2.imwrite(str(label), np.full((32, 32), 255, np.uint8))
    model = build_threshold_model(tmp_path / "m.onnx")
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data)])
    assert result.exit_code == 1, result.output
    assert f"{labels[0]}: no labeled pixel (every pixel 255" in result.output
    assert "nan" not in result.output


def test_a_json_path_that_takes_no_file_is_refused_before_the_run(tmp_path):
    # /proc exists, so its folder needs no making, but no file can be created in it (Linux)
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)
    model = build_threshold_model(tmp_path / "m.onnx")
    bad = Path("/proc") / "report.json"
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--json", str(bad),
                                       "--threads", "1"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert "Invalid value for '--json'" in result.output and str(bad) in result.output
    assert "mIoU" not in result.output  # refused before the evaluation ran


def test_no_angle_measured_reads_as_such_and_the_json_stays_strict(tmp_path):
    # an untrained network measures no angle: before, "RMSE nan deg" and NaN in the JSON
    data, model = _two_frames_and_an_untrained_model(tmp_path)
    report = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--json", str(report),
                                       "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "contact angle (predicted labels): 0/2 measured; failures: " in result.output
    assert re.search(r"\bnan\b", result.output, re.IGNORECASE) is None

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON report")

    doc = json.loads(report.read_text(), parse_constant=refuse)
    assert doc["contact_angle"]["valid"] == 0 and doc["contact_angle"]["rmse_deg"] is None


def test_a_flip_averaged_report_says_so(tmp_path):
    # before: the line and the --json report of --flip-average read as those of a plain run
    data, model = _two_frames_and_an_untrained_model(tmp_path)
    for flags, said in (([], False), (["--flip-average"], True)):
        report = tmp_path / f"r{len(flags)}.json"
        result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--no-angles",
                                           "--threads", "1", "--json", str(report), *flags])
        assert result.exit_code == 0, result.output
        first = result.output.splitlines()[0]
        assert first.endswith(", flip-averaged (the frame and its mirror images)") is said
        assert json.loads(report.read_text())["flip_average"] is said


def test_an_unknown_provider_is_a_usage_error(tmp_path):
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)
    model = build_threshold_model(tmp_path / "m.onnx")
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--provider", "gpu"])
    # before: KeyError from the session, with a traceback
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Invalid value for '--provider': unknown provider(s) gpu; choose from " \
           "tensorrt, cuda, cpu" in result.output


def test_a_label_image_that_looks_like_a_binary_mask_is_warned_about(tmp_path):
    # 255 means unlabeled: a 0/255 mask's foreground was left out of the scores silently
    import cv2
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)
    mask = data / "labels" / "img01.png"
    label = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(mask), np.where(label > 0, 255, 0).astype(np.uint8))
    model = build_threshold_model(tmp_path / "m.onnx")
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert f"warning: {mask}: only 0 and 255 (unlabeled); a 0/255 mask?" in result.output
    assert "img00.png" not in result.output


def test_tomogram_slices_are_scored_with_their_volume_range(tmp_path):
    # A "volume" model sees a slice normalised with its volume's range at run time
    # (nwwatch.volume.segment); evaluate must feed it the same, from DATA/unlabeled/.
    from onnx_models import build_threshold_model

    from nwwatch.evaluate import evaluate_folder
    from nwwatch.io.dataset import DatasetLayoutError
    from nwwatch.synth.tomogram import generate_tomogram

    generate_tomogram(tmp_path / "syn", size=32, seed=1)
    root = tmp_path / "syn" / "train"
    model = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    assert evaluate_folder(model, root).images == 1
    (root / "unlabeled" / "volume.tif").unlink()
    with pytest.raises(DatasetLayoutError, match="no file in .*unlabeled holds this image"):
        evaluate_folder(model, root)


def test_a_tomogram_model_is_scored_on_the_masks_the_runtime_makes(tmp_path):
    """`nwwatch evaluate` of a `train --volume` model fed the labeled slice alone: no blur
    along Z (`z_sigma_px`), no mirror margin, no widening to `min_input_px`. The feature
    forest (a 48 px reflect pad) then stopped on 32 px slices with ONNX Runtime's "Pad
    reflect" traceback, and on 64 px slices scored 89.7 % where the service's masks of the
    same slice score 100 %. The labeled slice is now scored on `segment_volume`'s mask of
    its volume, with the service's defaults."""
    import cv2
    import tifffile
    from onnx_models import build_threshold_model

    from nwwatch.evaluate import evaluate_folder
    from nwwatch.segment.session import Segmenter
    from nwwatch.synth.tomogram import generate_tomogram
    from nwwatch.volume import segment_volume

    generate_tomogram(tmp_path / "syn", size=32, seed=1)
    root = tmp_path / "syn" / "train"
    extra = {"centres": [-0.5, 0.5], "sharpness": 8.0, "smooth": True, "z_sigma_px": 1.0,
             "min_input_px": 81}
    model = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram", smooth=True,
                                  reflect_pad_px=40, metadata={"extra": extra})
    report = evaluate_folder(model, root)
    (label_path,) = (root / "labels").glob("*.png")
    z = int(label_path.stem.split("_")[1])
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    volume = tifffile.imread(tmp_path / "syn" / "volume.tif")
    mask = segment_volume(Segmenter(model, providers=("cpu",)), volume).mask[z]
    expected = metrics_from_confusion(confusion_matrix(label, mask, 2))
    assert report.images == 1
    np.testing.assert_allclose(report.metrics.iou, expected.iou)
    # one labeled slice is "1 image", not "1 images"
    from nwwatch.evaluate import format_report

    assert format_report(report).startswith(f"model {model}: 1 image, ")


def test_true_labels_with_an_unsure_band_are_measured_with_the_nearest_class():
    """A human mask's 255 band around every boundary takes the nearest drawn class for the
    true-label angle: as background it shrank the droplet by the band and moved the angle."""
    from ideal_caps import render_ideal_cap

    from nwwatch.classes import nearest_labeled
    from nwwatch.measure import measure_contact_angle

    cap = render_ideal_cap((160, 160), 120.0, 35.0, 90.0, (100.0, 80.0))
    labels = cap.labels
    edges = np.zeros(labels.shape, bool)
    edges[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edges[1:, :] |= labels[1:, :] != labels[:-1, :]
    band = edges.copy()
    for _ in range(2):  # a 2 px unsure band either side of every boundary
        grown = band.copy()
        grown[1:, :] |= band[:-1, :]
        grown[:-1, :] |= band[1:, :]
        grown[:, 1:] |= band[:, :-1]
        grown[:, :-1] |= band[:, 1:]
        band = grown
    unsure = np.where(band, 255, labels).astype(np.uint8)
    exact = measure_contact_angle(labels)
    filled = measure_contact_angle(nearest_labeled(unsure))
    as_background = measure_contact_angle(np.where(unsure == 255, 0, unsure).astype(np.uint8))
    assert exact.angle_valid and filled.angle_valid
    assert abs(filled.contact_angle_deg - exact.contact_angle_deg) < 1.0
    # what 255 -> background did: wire and droplet 5 px apart, the droplet "not on the wire"
    assert not as_background.angle_valid
    untouched = nearest_labeled(labels)
    assert np.array_equal(untouched, labels)
    assert not nearest_labeled(np.full((4, 4), 255, np.uint8)).any()


def test_evaluate_takes_the_shipped_model_by_name_and_names_a_checkpoint(tmp_path):
    # before: the shipped model could not be named (docs/training.md asks to compare it with
    # the fine-tuned one: "File 'insitu-default' does not exist"), and `evaluate mine.pt DATA`
    # was ONNX Runtime's "INVALID_PROTOBUF ... Protobuf parsing failed"
    from nwwatch import DEFAULT_INSITU_MODEL

    data = tmp_path / "synth"
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "1",
                                       "--size", "64", "--seed", "9"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(data), "--threads", "1",
                                       "--no-angles"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"model {DEFAULT_INSITU_MODEL}: 1 image, ")
    (tmp_path / "mine.pt").write_bytes(b"PK\x03\x04")  # a torch file's start
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "mine.pt"), str(data)])
    assert result.exit_code == 2, result.output
    assert (f"{tmp_path / 'mine.pt'} is a training checkpoint, not an ONNX model: give the "
            f"model `nwwatch train` exported with it, {tmp_path / 'mine.onnx'}") in result.output
    result = CliRunner().invoke(main, ["evaluate", "insitu-defualt", str(data)])
    assert result.exit_code == 2, result.output
    assert "insitu-defualt: no such file" in result.output and "(insitu-default)" in result.output


def test_a_json_report_the_disk_cannot_hold_is_one_line_naming_it(tmp_path, monkeypatch):
    # before: a traceback (OSError from the atomic writer) after the whole evaluation ran; the
    # folder check before the run cannot see a disk that fills up during it
    import errno

    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    import nwwatch.evaluate

    def full_disk(path, doc, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    data = make_folder(tmp_path / "d", n=2, size=32)
    model = build_threshold_model(tmp_path / "m.onnx")
    out = tmp_path / "report.json"
    monkeypatch.setattr(nwwatch.evaluate, "atomic_write_json", full_disk)
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--json", str(out),
                                       "--threads", "1"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "mIoU" in result.output  # the report itself was shown
    assert result.output.splitlines()[-1] == (
        f"Error: {out}: cannot write the JSON report (No space left on device); the report "
        f"above is complete")
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize("case", ["other_files", "not_parquet", "no_file_column"])
def test_a_truth_table_that_describes_no_frame_is_an_error_naming_it(tmp_path, case):
    # Before, a truth.parquet of other frames (or without a `file` column) was scored as
    # "0/0 measured; failures: none", and an unreadable one was a pyarrow traceback.
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, model = _two_frames_and_an_untrained_model(tmp_path)
    truth = data / "truth.parquet"
    table = pq.read_table(truth)
    if case == "other_files":
        other = [name.replace("frame_", "other_") for name in table.column("file").to_pylist()]
        table = table.set_column(table.column_names.index("file"), "file", pa.array(other))
        pq.write_table(table, truth)
    elif case == "not_parquet":
        truth.write_text("file,theta_apparent_deg\n")
    else:
        pq.write_table(table.drop(["file"]), truth)
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--threads", "1"])
    assert result.exit_code == 1, result.output
    assert f"Error: {truth}: " in result.output
    if case != "no_file_column":
        assert "--no-angles" in result.output
    assert "Traceback" not in result.output and "mIoU" not in result.output
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--threads", "1",
                                       "--no-angles"])
    assert result.exit_code == 0 and "mIoU" in result.output, result.output


@pytest.mark.parametrize("case", ["angle_text", "file_numbers", "pixel_size_text",
                                  "pixel_size_negative", "other_folders_row"])
def test_a_truth_table_of_wrong_types_or_rows_is_an_error_naming_it(tmp_path, case):
    # Unchecked, angles or pixel sizes written as text, or file numbers, end in a ValueError /
    # TypeError traceback, a negative pixel size in one from the measurement, and a row of
    # another folder's frame of the same stem silently replaces the frame's angle (the angle
    # error is then that of another frame).
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, model = _two_frames_and_an_untrained_model(tmp_path)
    truth = data / "truth.parquet"
    table = pq.read_table(truth)

    def replaced(name, values):
        return table.set_column(table.column_names.index(name), name, pa.array(values))

    n = table.num_rows
    if case == "angle_text":
        table, named = replaced("theta_apparent_deg", ["n/a"] * n), "column theta_apparent_deg"
    elif case == "file_numbers":
        table, named = replaced("file", list(range(n))), "column file holds int64, not text"
    elif case == "pixel_size_text":
        table, named = replaced("pixel_size_nm", ["0.5 nm"] * n), "column pixel_size_nm"
    elif case == "pixel_size_negative":
        table, named = replaced("pixel_size_nm", [-1.0] * n), "pixel_size_nm -1.0 for frame_"
    else:
        other = replaced("file", [f"other/{f}" for f in table.column("file").to_pylist()])
        other = other.set_column(other.column_names.index("theta_apparent_deg"),
                                 "theta_apparent_deg", pa.array([10.0] * n))
        table = pa.concat_tables([table, other])
        named = "two rows for the frame 'frame_00000'"
    pq.write_table(table, truth)
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--threads", "1"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.output  # no traceback
    assert f"Error: {truth}: " in result.output and named in result.output, result.output
    assert "mIoU" not in result.output


def test_a_truth_row_of_a_frame_not_in_data_or_without_an_angle_is_passed_over(tmp_path):
    # Rows for frames DATA does not hold (a table of a whole acquisition) are not checked,
    # and a NaN angle is no angle, as a null one is.
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, model = _two_frames_and_an_untrained_model(tmp_path)
    truth = data / "truth.parquet"
    table = pq.read_table(truth)
    angles = table.column("theta_apparent_deg").to_pylist()
    table = table.set_column(table.column_names.index("theta_apparent_deg"),
                             "theta_apparent_deg", pa.array([angles[0], float("nan")]))
    extra = table.slice(0, 1)
    extra = extra.set_column(extra.column_names.index("file"), "file",
                             pa.array(["elsewhere/frame_09999.tif"]))
    extra = extra.set_column(extra.column_names.index("pixel_size_nm"), "pixel_size_nm",
                             pa.array([-1.0]))
    pq.write_table(pa.concat_tables([table, extra, extra]), truth)
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "contact angle (true labels): 1/1 measured" in result.output


def test_a_truth_table_with_rows_for_every_frame_but_no_angle_scores_the_masks(tmp_path):
    # Every row names a labeled image but every angle is null (or NaN): those frames are scored
    # on their masks alone, as an empty table's are. Before, the rows without an angle were
    # passed over before the "names a labeled image" check, which then stopped the run with
    # "a table of other frames".
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, model = _two_frames_and_an_untrained_model(tmp_path)
    truth = data / "truth.parquet"
    table = pq.read_table(truth)
    n = table.num_rows
    field = table.schema.field("theta_apparent_deg")
    for angles in ([None] * n, [None] + [float("nan")] * (n - 1)):
        pq.write_table(table.set_column(table.column_names.index("theta_apparent_deg"), field,
                                        pa.array(angles, type=field.type)), truth)
        out = tmp_path / "report.json"
        result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--threads", "1",
                                           "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert "mIoU" in result.output and "a table of other frames" not in result.output
        assert "contact angle (true labels): 0/0 measured" in result.output
        assert f"angles not scored on {n} of {n} images: truth.parquet gives no angle" \
            in result.output
        report = json.loads(out.read_text())
        assert sorted(report["no_reference_angle"]) == sorted(
            Path(name).stem for name in table.column("file").to_pylist())


def test_a_truth_table_of_some_frames_only_scores_those(tmp_path):
    # The labelling tool writes rows only for frames with a human angle: not an error.
    import pyarrow.parquet as pq

    data, model = _two_frames_and_an_untrained_model(tmp_path)
    truth = data / "truth.parquet"
    pq.write_table(pq.read_table(truth).slice(0, 1), truth)
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "contact angle (true labels): 1/1 measured" in result.output


def test_an_existing_json_that_is_not_a_report_is_not_replaced(tmp_path):
    # '--json mine.onnx' (or a frame) was replaced by the report: the model was lost.
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)
    model = build_threshold_model(tmp_path / "m.onnx")
    before = model.read_bytes()
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--json", str(model),
                                       "--threads", "1"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--json'" in result.output and "not replaced" in result.output
    assert "mIoU" not in result.output and model.read_bytes() == before
    # The model's card (MODEL.json, what `nwwatch model` shows the evaluations of) is JSON
    # too, and was replaced by the report as any JSON object was.
    card = model.with_suffix(".json")
    card.write_text(json.dumps({"file": "m.onnx", "sha256": "0" * 64,
                                "fresh_synthetic_evaluations": []}))
    card_before = card.read_bytes()
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--json", str(card),
                                       "--threads", "1"])
    assert result.exit_code == 2, result.output
    assert f"{card} exists and is not a JSON report" in " ".join(result.output.split())
    assert card.read_bytes() == card_before
    report = tmp_path / "r.json"  # an earlier report is replaced by the new one
    for _ in range(2):
        result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--json",
                                           str(report), "--threads", "1"])
        assert result.exit_code == 0, result.output
        assert json.loads(report.read_text())["images"] == 2


def test_the_recipe_for_the_angles_of_masks_drawn_elsewhere_runs(tmp_path, monkeypatch):
    text = (Path(__file__).parents[1] / "docs" / "training.md").read_text()
    recipe = text.split("**Masks drawn in other tools.**", 1)[1]
    recipe = recipe.split("```python\n", 1)[1].split("```", 1)[0]
    data = tmp_path / "DATA"
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "2",
                                       "--size", "256", "--seed", "1"])
    assert result.exit_code == 0, result.output
    (data / "truth.parquet").unlink()
    # labels as other tools save them, both read by evaluate: a palette PNG (CVAT's
    # segmentation mask) and a TIFF; before, the recipe crashed on the first and skipped
    # the second
    from PIL import Image

    first, second = sorted((data / "labels").glob("*.png"))
    palette = Image.fromarray(cv2.imread(str(first), cv2.IMREAD_UNCHANGED), mode="P")
    palette.putpalette([0, 0, 0, 250, 50, 83, 36, 179, 83] + [0, 0, 0] * 253)
    palette.save(first)
    tifffile.imwrite(second.with_suffix(".tif"), cv2.imread(str(second), cv2.IMREAD_UNCHANGED))
    second.unlink()
    monkeypatch.chdir(tmp_path)
    exec(compile(recipe, "docs/training.md", "exec"), {})
    import pyarrow.parquet as pq

    files = pq.read_table(data / "truth.parquet").column("file").to_pylist()
    assert sorted(files) == [first.name, second.with_suffix(".tif").name]  # both valid
    rows = len(files)
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(data), "--threads", "1",
                                       "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    truth_labels = json.loads(report_path.read_text())["contact_angle_on_truth_labels"]
    assert truth_labels["frames"] == truth_labels["valid"] == rows
    assert truth_labels["max_abs_deg"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("command", ["evaluate", "replay", "measure", "label"])
def test_a_model_whose_path_is_not_utf8_is_a_usage_error_saying_to_rename_it(tmp_path, command):
    # before: evaluate ran and wrote the path with a surrogate into its JSON report; replay and
    # measure processed the frames, then stopped with a traceback (UnicodeEncodeError) writing
    # the rows, which name the model by its path as text; label opened its page.
    import os
    import shutil
    import subprocess
    import sys

    from nwwatch import DEFAULT_INSITU_MODEL

    model = tmp_path / os.fsdecode(b"m\xe9.onnx")
    shutil.copy(DEFAULT_INSITU_MODEL, model)
    data = tmp_path / "synth"
    result = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "1",
                                       "--size", "64", "--seed", "9"])
    assert result.exit_code == 0, result.output
    frame = next(data.glob("*.tif"))
    args = {"evaluate": [str(model), str(data)],
            "replay": [str(data), "--model", str(model), "--out", str(tmp_path / "results")],
            "measure": [str(frame), "--model", str(model), "--out", str(tmp_path / "m.parquet")],
            "label": [str(frame), "--model", str(model), "--out", str(tmp_path / "labels"),
                      "--port", "0", "--no-browser"]}[command]
    root = Path(__file__).resolve().parents[1]
    process = subprocess.run([sys.executable, "-c", "from nwwatch.cli import main; main()",
                              command, *args], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(root)})
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    assert (f"{tmp_path}/m\\xe9.onnx: the model's path is not UTF-8 text (byte 0xe9)"
            in process.stderr), process.stderr
    assert "rename the file" in process.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "m.parquet").exists()


def test_a_json_report_inside_a_results_dataset_is_refused_before_the_run(tmp_path):
    # `--json RESULTS/frames/eval.json` was written, and pd.read_parquet(RESULTS/frames), as
    # the README reads the results, then failed on it ("Parquet magic bytes not found")
    from onnx_models import build_threshold_model
    from training_helpers import make_folder

    data = make_folder(tmp_path / "d", n=2, size=32)
    model = build_threshold_model(tmp_path / "m.onnx")
    results = tmp_path / "res"
    (results / "frames").mkdir(parents=True)
    (results / "ledger.sqlite").write_bytes(b"")
    out = results / "frames" / "eval.json"
    result = CliRunner().invoke(main, ["evaluate", str(model), str(data), "--json", str(out),
                                       "--threads", "1"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"{out} is inside {results / 'frames'}" in said
    assert f"--json {results / 'eval.json'}" in said
    assert not out.exists() and "mIoU" not in result.output


def test_true_labels_measure_refuses_have_no_angle_and_are_named_with_why(tmp_path):
    """A DATA label whose 255 region nwwatch measure refuses (a band 40 px wide between wire
    and droplet) gets no true-label angle here either (before: filled without the limit and
    measured); a strip along the frame's border is extended in both. IoU still leaves the 255
    pixels out."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ideal_caps import render_ideal_cap

    cap = render_ideal_cap((256, 256), 120.0, 50.0, 90.0, (150.0, 128.0))
    rows = np.arange(256)[:, None]
    data = tmp_path / "DATA"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    band = np.where((np.abs(rows - 150) <= 20) & (cap.labels > 0), 255, cap.labels)
    strip = np.where(rows >= 236, 255, cap.labels)
    for stem, labels in (("band", band), ("strip", strip)):
        frame = np.choose(cap.labels, [3000, 1200, 600]).astype(np.uint16)
        tifffile.imwrite(data / "images" / f"{stem}.tif", frame)
        cv2.imwrite(str(data / "labels" / f"{stem}.png"), labels.astype(np.uint8))
    pq.write_table(pa.table({"file": ["band.tif", "strip.tif"],
                             "theta_apparent_deg": [cap.contact_angle_deg] * 2}),
                   data / "truth.parquet")
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(data), "--threads", "1",
                                       "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    measured = CliRunner().invoke(main, ["measure", str(data / "labels" / "band.png"),
                                         str(data / "labels" / "strip.png"),
                                         "--out", str(tmp_path / "rows.parquet")])
    assert measured.exit_code == 1, measured.output
    why = measured.output.split("labels must be 0 background, 1 nanowire, 2 droplet; ", 1)[1]
    why = why.split("\n", 1)[0]
    assert f"skipped {data / 'labels' / 'band.png'}: " in measured.output
    assert f"{data / 'labels' / 'strip.png'}[0] (labels): ok" in measured.output
    assert "lies between" in why
    report = json.loads(report_path.read_text())
    assert report["truth_labels_not_measured"] == {"labels/band.png": why}  # the same reason
    truth_labels = report["contact_angle_on_truth_labels"]
    assert truth_labels["frames"] == truth_labels["valid"] == 1  # the strip's
    assert truth_labels["max_abs_deg"] < 1.0
    assert report["contact_angle"]["frames"] == 2  # the model's angle of both frames
    lines = result.output.splitlines()
    k = lines.index("  not measured on the true labels: 1 label image whose unlabeled (255) "
                    "pixels nwwatch measure refuses too (their masks and predicted angles are "
                    "scored):")
    assert lines[k + 1] == f"    labels/band.png: {why}"
    assert "contact angle (true labels): 1/1 measured" in result.output
    # the masks are scored as before: the 255 pixels left out, the same with --no-angles
    again = CliRunner().invoke(main, ["evaluate", "insitu-default", str(data), "--threads", "1",
                                      "--no-angles", "--json", str(report_path)])
    assert again.exit_code == 0, again.output
    assert json.loads(report_path.read_text())["metrics"] == report["metrics"]
    from nwwatch import DEFAULT_INSITU_MODEL
    from nwwatch.normalize import normalize_image
    from nwwatch.segment.session import Segmenter

    segmenter = Segmenter(DEFAULT_INSITU_MODEL, providers=("cpu",), threads=1)
    confusion = np.zeros((3, 3), np.int64)
    for stem, labels in (("band", band), ("strip", strip)):
        raw = tifffile.imread(data / "images" / f"{stem}.tif")
        predicted = segmenter.segment(normalize_image(raw)).labels[0]
        confusion += confusion_matrix(labels, predicted, 3)
    assert confusion.sum() == np.count_nonzero(band != 255) + np.count_nonzero(strip != 255)
    assert report["metrics"]["mean_iou"] == pytest.approx(
        metrics_from_confusion(confusion).mean_iou)


def test_a_file_or_a_results_folder_given_as_data_says_what_data_is(tmp_path):
    # before: "Directory '...' is a file." and "labels folder not found" for a results folder
    frame = tmp_path / "f.tif"
    tifffile.imwrite(frame, np.zeros((8, 8), np.uint16))
    result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(frame)])
    assert result.exit_code == 2
    assert "is a file: DATA is a folder of labeled frames" in " ".join(result.output.split())
    results = tmp_path / "res"
    (results / "frames").mkdir(parents=True)
    result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(results)])
    assert result.exit_code == 1
    assert (f"{results} is a results folder (the service's or replay's rows), not labeled "
            f"frames: `nwwatch label --queue {results} --out DATA`") in result.output
    tomograms = tmp_path / "tomo-res"  # label --queue takes no tomogram results
    (tomograms / "volumes").mkdir(parents=True)
    (tomograms / "ledger.sqlite").touch()
    result = CliRunner().invoke(main, ["evaluate", "insitu-default", str(tomograms)])
    assert result.exit_code == 1
    assert f"{tomograms} is a results folder of tomograms, not labeled slices" in result.output


def test_an_evaluation_whose_output_pipe_closes_still_writes_its_json(tmp_path):
    # `nwwatch evaluate M DATA --json r.json | head -1`: the report's lines met EPIPE and
    # the JSON, written after them, was lost with the run (exit 1, no message)
    import os
    import subprocess
    import sys

    data = tmp_path / "synth"
    made = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "2", "--size",
                                     "64", "--seed", "9"])
    assert made.exit_code == 0, made.output
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "evaluate",
         "insitu-default", str(data), "--threads", "1", "--json", str(report)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
             "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # nobody reads the report's lines
    err = proc.stderr.read()
    proc.wait(timeout=300)
    proc.stderr.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "metrics" in json.loads(report.read_text())


def test_a_report_the_disk_cannot_hold_is_an_error_not_dropped(tmp_path):
    # `nwwatch evaluate M DATA > /dev/full`: the lines a closed pipe may drop are no reason
    # to drop a full disk's error, where the printed report is the only output (was exit 0)
    import os
    import subprocess
    import sys

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    data = tmp_path / "synth"
    made = CliRunner().invoke(main, ["synth", "insitu", str(data), "--frames", "2", "--size",
                                     "64", "--seed", "9"])
    assert made.exit_code == 0, made.output
    report = tmp_path / "r.json"
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-c", "from nwwatch.cli import main; main()", "evaluate",
             "insitu-default", str(data), "--threads", "1", "--json", str(report)],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                 "OMP_NUM_THREADS": "1"},
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    # one line and exit 1, the rest of the work done: the JSON lies on another disk
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "nwwatch: standard output could not be written (No space left on device): the lines "
        "from then on were dropped; the rest of the work was done"), done.stderr
    assert "Traceback" not in done.stderr
    assert "metrics" in json.loads(report.read_text())


def test_the_images_a_model_has_seen_are_named_in_its_report(tmp_path):
    # Was: `nwwatch evaluate MODEL DATA` on the folder the model was trained on (or on its
    # validation images) printed its scores as any others, without a word.
    from nwwatch.evaluate import _seen_by_model

    data = tmp_path / "DATA"
    data.mkdir()
    stems = ["f0", "f1", "f2"]
    assert _seen_by_model({"training_source": str(data)}, data, stems) == (
        stems, f"{data} is the folder it was trained on")
    # a model that recorded its images: one labelled there since is no image of its own
    assert _seen_by_model({"training_source": str(data), "labeled_stems": ["f0", "f2"]},
                          data, stems) == (["f0", "f2"], f"{data} is the folder it was "
                                                         "trained on")
    other = tmp_path / "other"
    other.mkdir()
    # another folder's images of the same names are not taken for the model's own
    extra = {"training_source": str(other), "validation_images": ["f1", "f9"]}
    assert _seen_by_model(extra, data, stems) == ([], "")
    assert _seen_by_model({"training_source": "/gone/elsewhere"}, data, stems) == ([], "")
    assert _seen_by_model({"training_source": f"{data}#z=3"}, data, stems) == ([], "")
