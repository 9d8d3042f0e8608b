"""`nwwatch evaluate` on DATA folders of the labelling tool: the geometry files decide the
human angle, a stale or missing truth.parquet is said, a broken geometry file is named; and
what `nwwatch model` and the model card say of a fine-tune and its evaluations."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from label_helpers import plain_params, render, truth_geometry
from onnx_models import build_threshold_model

from nwwatch.cli import main
from nwwatch.evaluate import evaluate_folder, format_report
from nwwatch.label.store import save_labeled_frame


def _session(data, seed: int, stems: list[str]) -> dict[str, float]:
    """Frames saved as `nwwatch label` saves them; their human angles by stem."""
    angles = {}
    for index, stem in enumerate(stems):
        params = plain_params(seed, index)
        image, _, _ = render(params)
        angles[stem] = save_labeled_frame(data, stem, image,
                                          truth_geometry(params))["contact_angle_deg"]
    return angles


def _copy_frame(source, data, stem: str) -> None:
    """A frame's files copied by hand from another session's DATA (truth.parquet left)."""
    for folder, suffix in (("images", "tif"), ("labels", "png"), ("geometry", "json")):
        shutil.copy(source / folder / f"{stem}.{suffix}", data / folder / f"{stem}.{suffix}")


def test_two_sessions_merged_by_copying_files_are_scored_on_the_geometry_angles(tmp_path):
    # before: the stale truth.parquet of the first session gave f0 its old angle (the true
    # labels, exact, read several degrees "off"), and g1 was named as having no angle
    data, other = tmp_path / "DATA", tmp_path / "B"
    first = _session(data, 21, ["f0", "f1"])
    second = _session(other, 22, ["f0", "g1"])
    assert abs(first["f0"] - second["f0"]) > 5  # the situation met: another frame, same stem
    for stem in ("f0", "g1"):
        _copy_frame(other, data, stem)
    model = build_threshold_model(tmp_path / "m.onnx")
    report = evaluate_folder(model, data)
    assert report.no_reference_angle == []
    assert report.truth_table_differs == ["f0", "g1"]
    assert report.angle_reference == "geometry"
    truth = report.angles_on_truth_labels
    assert truth.frames == 3 and truth.valid == 3
    assert truth.max_abs_deg < 1.0  # exact labels against their own shapes' angles
    text = format_report(report)
    assert ("note: truth.parquet lacks or contradicts the angle of their geometry/<stem>.json"
            in text)
    assert "the angles of geometry/<stem>.json are scored on 2 of 3 images (f0, g1)" in text
    assert "truth.parquet gives no angle" not in text
    assert report.as_dict()["truth_table_differs"] == ["f0", "g1"]


def test_a_geometry_angle_edited_by_hand_is_scored_and_said(tmp_path):
    # before: the edited angle was ignored without a word (truth.parquet's was scored)
    data = tmp_path / "DATA"
    angles = _session(data, 21, ["f0", "f1"])
    path = data / "geometry" / "f1.json"
    doc = json.loads(path.read_text())
    doc["contact_angle_deg"] = angles["f1"] + 10.0
    path.write_text(json.dumps(doc))
    report = evaluate_folder(build_threshold_model(tmp_path / "m.onnx"), data)
    assert report.truth_table_differs == ["f1"]
    truth = report.angles_on_truth_labels
    assert truth.valid == 2 and truth.max_abs_deg == pytest.approx(10.0, abs=1.0)


def test_geometry_without_truth_table_or_with_a_table_of_other_frames_is_scored(tmp_path):
    # before: no truth.parquet meant no angle scored; a table naming none of the frames (all
    # renamed since) stopped the run although every frame's geometry gives its angle
    data = tmp_path / "DATA"
    _session(data, 21, ["f0", "f1"])
    model = build_threshold_model(tmp_path / "m.onnx")
    pq.write_table(pa.Table.from_pylist([{"file": "images/zz.tif", "theta_apparent_deg": 90.0}]),
                   data / "truth.parquet")
    report = evaluate_folder(model, data)
    assert report.angles.frames == 2 and report.truth_table_differs == ["f0", "f1"]
    (data / "truth.parquet").unlink()
    report = evaluate_folder(model, data)
    assert report.angles.frames == 2 and report.truth_table_differs == ["f0", "f1"]
    assert "note: DATA has no truth.parquet" in format_report(report)


@pytest.mark.parametrize("broken", ["not json", "other shape"])
def test_a_broken_geometry_file_is_named_and_its_angle_left_out(tmp_path, broken):
    # before: accepted without a word, truth.parquet's angle scored (with invalid JSON the
    # check of the label image against the saved one was skipped as well)
    data = tmp_path / "DATA"
    _session(data, 21, ["f0", "f1"])
    path = data / "geometry" / "f1.json"
    if broken == "not json":
        path.write_text("{not json")
    else:
        doc = json.loads(path.read_text())
        doc["shape"] = [300, 300]
        path.write_text(json.dumps(doc))
    report = evaluate_folder(build_threshold_model(tmp_path / "m.onnx"), data)
    assert list(report.geometry_not_used) == ["f1"]
    assert str(path) in report.geometry_not_used["f1"]
    if broken == "other shape":
        assert ("300 x 300 px frame, the label image of f1 is 256 x 256 px"
                in report.geometry_not_used["f1"])
    assert report.angles.frames == 1 and report.angles_on_truth_labels.frames == 1
    assert report.no_reference_angle == [] and report.truth_table_differs == []
    text = format_report(report)
    assert "angles not scored on 1 of 2 images: their geometry file cannot be read" in text
    assert f"    {report.geometry_not_used['f1']}" in text.splitlines()
    assert report.as_dict()["geometry_not_used"] == report.geometry_not_used

    from training.data import load_folder
    from training.engine import saved_shapes_warnings

    (warning,) = saved_shapes_warnings(data, load_folder(data))
    assert warning.startswith(report.geometry_not_used["f1"])
    assert "nwwatch evaluate scores no human angle for the frame" in warning


def test_model_and_card_show_the_starting_weights_and_what_an_evaluation_was(tmp_path):
    # before: extra.start_metrics was in --json alone, and an evaluation on human-labelled
    # frames was listed as a "fresh-synthetic" one
    from training.model_card import build_card

    data = tmp_path / "HELDOUT"
    _session(data, 23, ["h0"])
    model = build_threshold_model(tmp_path / "m.onnx", metadata={
        "validation_metrics": {"val_mean_iou": 0.777},
        "extra": {"epochs": 6, "exported_epoch": 3, "validation_images": ["f9"],
                  "start_metrics": {"val_mean_iou": 0.805}}})
    card = build_card(model, [(data, "frames of my microscope")], "mine", "test")
    assert card["start_metrics"] == {"val_mean_iou": 0.805}
    (evaluation,) = card["fresh_synthetic_evaluations"]
    assert evaluation["angle_reference"] == "geometry"
    model.with_suffix(".json").write_text(json.dumps(card))
    result = CliRunner().invoke(main, ["model", str(model)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    exported = lines.index("exported weights: epoch 3 of 6 (held out: f9; keep these out of "
                           "an evaluation)")
    assert lines[exported + 1] == ("starting weights (--init, before training, on the same "
                                   "images): val_mean_iou 0.8050")
    assert "fresh-synthetic" not in result.output
    assert f"evaluations on held-out folders ({model.with_suffix('.json')}):" in lines
    assert "against human angles (nwwatch label's geometry/)" in result.output
