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
    assert "the angles of geometry/<stem>.json are the reference on 2 of 3 images (f0, g1)" in text
    assert "truth.parquet gives no angle" not in text
    assert report.as_dict()["truth_table_differs"] == ["f0", "g1"]


def test_a_geometry_angle_edited_by_hand_is_named_and_the_shapes_angle_scored(tmp_path):
    # before: the number edited into the file was scored as the human angle (RMSE 28 deg
    # against shapes that give 121.8 deg, as the page shows them), the file not named, and
    # the next save wrote that number into truth.parquet
    from nwwatch.label.store import load_saved_frame, write_truth

    data = tmp_path / "DATA"
    angles = _session(data, 21, ["f0", "f1"])
    path = data / "geometry" / "f1.json"
    doc = json.loads(path.read_text())
    doc["contact_angle_deg"] = angles["f1"] + 10.0
    path.write_text(json.dumps(doc))
    saved = load_saved_frame(data, "f1")
    assert saved.contact_angle_deg == pytest.approx(angles["f1"], abs=1e-9)
    assert saved.angle_note.startswith(f"{path}: contact_angle_deg {angles['f1'] + 10.0!r} is "
                                       f"not the angle its shapes give ({angles['f1']:.2f} deg")
    report = evaluate_folder(build_threshold_model(tmp_path / "m.onnx"), data)
    assert report.truth_table_differs == []
    assert report.geometry_angle_differs == {"f1": saved.angle_note}
    assert report.as_dict()["geometry_angle_differs"] == {"f1": saved.angle_note}
    truth = report.angles_on_truth_labels
    assert truth.valid == 2 and truth.max_abs_deg < 1.0  # exact labels, their shapes' angles
    lines = format_report(report).splitlines()
    assert ("  note: 1 of 2 geometry files hold a contact_angle_deg that is not the angle of "
            "their shapes: the shapes' angle (the one nwwatch label shows) is the reference:"
            in lines)
    assert f"    {saved.angle_note}" in lines
    write_truth(data)
    rows = {row["file"]: row["theta_apparent_deg"]
            for row in pq.read_table(data / "truth.parquet").to_pylist()}
    assert rows["images/f1.tif"] == pytest.approx(angles["f1"], abs=1e-9)
    # a number rounded by hand is that angle, not another
    doc["contact_angle_deg"] = round(angles["f1"], 2)
    path.write_text(json.dumps(doc))
    assert load_saved_frame(data, "f1").angle_note == ""


def test_a_stored_angle_where_the_shapes_give_none_is_not_taken(tmp_path):
    # the shapes lost their circle by hand, the number stayed: no angle, and the file named
    from nwwatch.label.store import load_saved_frame, write_truth

    data = tmp_path / "DATA"
    _session(data, 21, ["f0", "f1"])
    _edit_geometry(data, "f1", droplet=None)
    saved = load_saved_frame(data, "f1")
    assert saved.contact_angle_deg is None and saved.contact_angle_reason == "no droplet circle"
    assert "but its shapes give no angle (no droplet circle" in saved.angle_note
    write_truth(data)
    files = [row["file"] for row in pq.read_table(data / "truth.parquet").to_pylist()]
    assert files == ["images/f0.tif"]


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


def _edit_geometry(data, stem: str, **changes) -> None:
    """``geometry/<stem>.json`` edited by hand."""
    path = data / "geometry" / f"{stem}.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_a_table_angle_for_shapes_that_give_none_is_not_counted_as_a_scored_geometry_angle(
        tmp_path):
    # before: f1 (no angle in its geometry file, one in the stale truth.parquet) was named
    # both as having no saved angle and as "the angles of geometry/<stem>.json are scored on
    # 1 of 2 images (f1)", though no angle of f1 was scored
    data = tmp_path / "DATA"
    _session(data, 21, ["f0", "f1"])
    _edit_geometry(data, "f1", droplet=None, contact_angle_deg=None,
                   contact_angle_reason="no droplet circle")
    report = evaluate_folder(build_threshold_model(tmp_path / "m.onnx"), data)
    assert report.no_saved_angle == ["f1"] and report.truth_table_differs == ["f1"]
    assert report.angles.frames == 1
    lines = format_report(report).splitlines()
    assert not any("the angles of geometry/<stem>.json are" in line for line in lines), lines
    assert ("  note: truth.parquet gives an angle for 1 of 2 images whose geometry/<stem>.json "
            "gives none (a table not rebuilt since their last save?): not scored, the geometry "
            "file decides (f1)") in lines


def test_frames_without_an_angle_and_no_truth_table_are_not_said_to_lack_a_table_row(tmp_path):
    # before: "truth.parquet gives no angle for them (x9)" with no truth.parquet in DATA
    data = tmp_path / "DATA"
    _session(data, 21, ["f0"])
    for folder, suffix in (("images", "tif"), ("labels", "png")):  # labelled in another tool
        shutil.copy(data / folder / f"f0.{suffix}", data / folder / f"x9.{suffix}")
    (data / "truth.parquet").unlink()
    report = evaluate_folder(build_threshold_model(tmp_path / "m.onnx"), data)
    assert report.no_reference_angle == ["x9"] and not report.truth_table_found
    assert report.as_dict()["truth_table_found"] is False
    text = format_report(report)
    assert "truth.parquet gives no angle" not in text
    assert ("  angles not scored on 1 of 2 images: they have no geometry/<stem>.json of nwwatch "
            "label and DATA has no truth.parquet (labelled in another tool?) (x9)"
            in text.splitlines())


def test_the_angle_reference_is_that_of_the_angles_scored(tmp_path):
    # before: decided before the frame-size check: 'geometry' with no geometry angle scored,
    # and a model card then said "against human angles (nwwatch label's geometry/)"
    data = tmp_path / "DATA"
    _session(data, 21, ["f0", "f1"])
    for stem in ("f0", "f1"):
        _edit_geometry(data, stem, shape=[300, 300])
    model = build_threshold_model(tmp_path / "m.onnx")
    report = evaluate_folder(model, data)
    assert report.angles.frames == 0 and list(report.geometry_not_used) == ["f0", "f1"]
    assert report.angle_reference == ""
    # a frame of the table alone beside them: its angle is the one scored
    for folder, suffix in (("images", "tif"), ("labels", "png")):
        shutil.copy(data / folder / f"f0.{suffix}", data / folder / f"t2.{suffix}")
    pq.write_table(pa.Table.from_pylist([{"file": "images/t2.tif",
                                          "theta_apparent_deg": 120.0}]),
                   data / "truth.parquet")
    report = evaluate_folder(model, data)
    assert report.angles.frames == 1 and report.angle_reference == "truth.parquet"


def test_a_stale_table_does_not_stop_frames_whose_geometry_decides(tmp_path):
    # before: two rows of f0 (tables of two sessions put together by hand), or a bad pixel
    # size in f0's row, stopped the run (DatasetLayoutError), though f0's geometry file gives
    # its angle and the table is not read for it
    data = tmp_path / "DATA"
    angles = _session(data, 21, ["f0", "f1"])
    model = build_threshold_model(tmp_path / "m.onnx")
    for rows in ([{"file": "images/f0.tif", "theta_apparent_deg": 100.0, "pixel_size_nm": 1.0},
                  {"file": "other/f0.tif", "theta_apparent_deg": 120.0, "pixel_size_nm": 1.0},
                  {"file": "images/f1.tif", "theta_apparent_deg": angles["f1"],
                   "pixel_size_nm": 1.0}],
                 [{"file": "images/f0.tif", "theta_apparent_deg": angles["f0"],
                   "pixel_size_nm": -1.0},
                  {"file": "images/f1.tif", "theta_apparent_deg": angles["f1"],
                   "pixel_size_nm": 1.0}]):
        pq.write_table(pa.Table.from_pylist(rows), data / "truth.parquet")
        report = evaluate_folder(model, data)
        assert report.angles.frames == 2 and report.angle_reference == "geometry"
        assert report.truth_table_differs == (["f0"] if len(rows) == 3 else [])
    # a frame that needs the table is still refused over two rows of different angles
    for folder, suffix in (("images", "tif"), ("labels", "png")):
        shutil.copy(data / folder / f"f0.{suffix}", data / folder / f"t2.{suffix}")
    pq.write_table(pa.Table.from_pylist([{"file": "images/t2.tif", "theta_apparent_deg": 100.0},
                                         {"file": "other/t2.tif", "theta_apparent_deg": 120.0}]),
                   data / "truth.parquet")
    from nwwatch.io.dataset import DatasetLayoutError

    with pytest.raises(DatasetLayoutError, match="two rows for the frame 't2'"):
        evaluate_folder(model, data)


@pytest.mark.parametrize("change", [{"contact_angle_deg": "120"}, {"contact_angle_deg": 500},
                                    {"contact_angle_deg": -5}, {"contact_angle_deg": 0},
                                    {"contact_angle_deg": True}, {"labels_sha256": 5},
                                    {"contact_angle_deg": 10**400}])
def test_one_rule_for_a_saved_geometry_file_in_the_tool_training_evaluation_and_table(
        tmp_path, change):
    # before: "120" was refused by evaluate but trained on without a warning and written into
    # truth.parquet as 120.0; 500 and -5 were scored as human angles; a labels_sha256 of 5
    # was taken as no digest, the label image left unchecked; an integer too large for a
    # float raised OverflowError from every reader, and so broke every later Save's table
    from nwwatch.io import write_frame_tiff
    from nwwatch.label.frames import frame_refs
    from nwwatch.label.geometry import GeometryError
    from nwwatch.label.server import LabelSession
    from nwwatch.label.store import load_geometry, write_truth
    from training.data import load_folder
    from training.engine import saved_shapes_warnings

    data = tmp_path / "DATA"
    params = plain_params(21, 1)
    image, _, _ = render(params)
    write_frame_tiff(tmp_path / "acq" / "f1.tif", image)
    _session(data, 21, ["f0"])
    save_labeled_frame(data, "f1", image, truth_geometry(params),
                       {"path": str(tmp_path / "acq" / "f1.tif"), "page": 0})
    _edit_geometry(data, "f1", **change)
    path = data / "geometry" / "f1.json"
    (key,) = change
    report = evaluate_folder(build_threshold_model(tmp_path / "m.onnx"), data)
    assert list(report.geometry_not_used) == ["f1"]
    problem = report.geometry_not_used["f1"]
    assert problem.startswith(f"{path}: {key}: expected")
    assert report.angles.frames == 1 and report.angle_reference == "geometry"
    (warning,) = saved_shapes_warnings(data, load_folder(data))
    assert warning.startswith(problem)
    with pytest.raises(GeometryError) as opened:
        load_geometry(data, "f1")
    assert str(opened.value) == problem
    session = LabelSession(frame_refs([tmp_path / "acq" / "f1.tif"], data_dir=data), data)
    with pytest.raises(GeometryError, match=f"{key}: expected"):
        session.geometry(0)  # the page names the file (422), as for any broken geometry
    write_truth(data)
    rows = pq.read_table(data / "truth.parquet").to_pylist()
    assert [row["file"] for row in rows] == ["images/f0.tif"]


def test_saved_shapes_of_another_size_are_named_alike_by_the_tool_and_evaluate(tmp_path):
    # before: the labelling page said it its own way ("the labels saved as f are for a ...")
    from nwwatch.io import write_frame_tiff
    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import LabelSession

    data = tmp_path / "DATA"
    params = plain_params(21, 0)
    image, _, _ = render(params)
    source = tmp_path / "acq" / "f.tif"
    save_labeled_frame(data, "f", image, truth_geometry(params), {"path": str(source),
                                                                  "page": 0})
    (data / "images" / "f.tif").unlink()  # its image gone from DATA; the file re-acquired
    write_frame_tiff(source, image[:200, :180])
    session = LabelSession(frame_refs([source], data_dir=data), data)
    _, origin, note = session.geometry(0)
    assert origin == "model"
    assert note == (f"{data / 'geometry' / 'f.json'}: its shapes are for a 256 x 256 px frame, "
                    f"this frame (f) is 180 x 200 px (the shapes of another frame): showing the "
                    f"model's proposal; Save replaces the old labels")


def test_a_stored_angle_is_checked_against_the_shapes_label_image_not_only_their_circle(
        tmp_path):
    # the circle and facet give an angle, the label image drawn from the shapes does not
    # (the droplet painted over as unlabeled by hand, the number kept): no angle is taken
    from nwwatch.classes import UNLABELED
    from nwwatch.label import store
    from nwwatch.label.store import load_saved_frame

    data = tmp_path / "DATA"
    _session(data, 21, ["f0"])
    doc = json.loads((data / "geometry" / "f0.json").read_text())
    assert doc["contact_angle_deg"] is not None
    (cy, cx), r = doc["droplet"]["center"], doc["droplet"]["radius_px"]
    box = [[cy - r - 2, cx - r - 2], [cy - r - 2, cx + r + 2], [cy + r + 2, cx + r + 2],
           [cy + r + 2, cx - r - 2]]
    _edit_geometry(data, "f0", strokes=[{"class": UNLABELED, "points": box}])
    store._RASTERISED_ANGLES.clear()
    saved = load_saved_frame(data, "f0")
    assert saved.contact_angle_deg is None
    assert "but its shapes give no angle" in saved.angle_note


def test_shapes_of_a_frame_larger_than_any_are_a_named_geometry_problem(tmp_path):
    # before: a bare ValueError (array is too big) from drawing them, which broke every Save
    from nwwatch.label.geometry import GeometryError
    from nwwatch.label.store import load_saved_frame, saved_file_problem, write_truth

    data = tmp_path / "DATA"
    _session(data, 21, ["f0", "f1"])
    _edit_geometry(data, "f1", shape=[10**9, 10**9], contact_angle_deg=150.0)
    path = data / "geometry" / "f1.json"
    assert saved_file_problem(data, "f1").startswith(f"{path}: shape: ")
    with pytest.raises(GeometryError, match="larger than any frame"):
        load_saved_frame(data, "f1")
    write_truth(data)
    files = [row["file"] for row in pq.read_table(data / "truth.parquet").to_pylist()]
    assert files == ["images/f0.tif"]
