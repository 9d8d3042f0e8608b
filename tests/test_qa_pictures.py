"""QA pictures: replay --overlays and the [output] overlays setting write the measurement
overlay of each selected frame under RESULTS, rows link it in ``overlay_path``; nothing goes
into the acquisition folder."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from onnx_models import INSITU_GREY, expected_labels
from servicekit import model, paint_insitu, write_config

from nwwatch.io import write_frame_tiff, write_stack_tiff
from nwwatch.measure import draw_overlay, measure_contact_angle
from nwwatch.results.pictures import picture_stem, write_frame_pictures
from nwwatch.service import replay
from nwwatch.service.cli import replay as replay_cmd
from nwwatch.service.config import ConfigError


def _ok_frame(angle: float = 120.0) -> np.ndarray:
    return paint_insitu(angle, size=128, half_width=16)


def _wire_only_frame() -> np.ndarray:
    image = _ok_frame()
    image[image == INSITU_GREY[2]] = INSITU_GREY[0]
    return image


@pytest.fixture()
def acquisition(tmp_path):
    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "good.tif", _ok_frame(110.0))
    write_stack_tiff(acq / "stack.tif", np.stack([_ok_frame(130.0), _wire_only_frame()]))
    return acq, model(tmp_path)


def _rows(results):
    return pd.read_parquet(results / "frames").set_index(["source", "frame"]).sort_index()


def test_replay_overlays_all_frames_under_results(tmp_path, acquisition):
    acq, onnx = acquisition
    out = tmp_path / "out"
    before = sorted(os.listdir(acq))
    replay(acq, out, kind="insitu", model=onnx, overlays="qa", save_labels=True)
    rows = _rows(out)
    assert rows.overlay_path.notna().all()
    for (source, frame), row in rows.iterrows():
        picture = out / row.overlay_path
        assert picture.parent == out / "qa" and picture.suffix == ".png"
        assert row.overlay_path == f"qa/{picture.name}"  # relative to RESULTS
        drawn = cv2.imread(str(picture), cv2.IMREAD_COLOR)
        # a 128 px frame drawn 4 times larger, its caption band below
        assert drawn.shape[1:] == (512, 3) and drawn.shape[0] > 512
        labels = cv2.imread(str(picture.with_name(picture.stem + "-labels.png")),
                            cv2.IMREAD_UNCHANGED)
        # the saved labels are the model's, and the overlay is the one drawn from them
        image = {("good.tif", 0): _ok_frame(110.0), ("stack.tif", 0): _ok_frame(130.0),
                 ("stack.tif", 1): _wire_only_frame()}[(os.path.basename(source), frame)]
        np.testing.assert_array_equal(labels, expected_labels(image))
        result = measure_contact_angle(labels)
        assert result.status == row.status
    assert sorted(os.listdir(acq)) == before  # the acquisition folder got nothing
    assert not list(out.rglob("*.part"))


def test_replay_overlays_only_flagged_frames(tmp_path, acquisition):
    acq, onnx = acquisition
    out = tmp_path / "out"
    r = CliRunner().invoke(replay_cmd, [str(acq), "--out", str(out), "--model", str(onnx),
                                        "--overlays", str(out / "flagged"),
                                        "--overlay-frames", "flagged"])
    assert r.exit_code == 0, r.output
    rows = _rows(out)
    assert set(rows.status) == {"ok", "no_droplet"}
    assert rows.overlay_path.isna().tolist() == (rows.status == "ok").tolist()
    (flagged,) = rows.overlay_path.dropna()
    assert flagged.startswith("flagged/") and (out / flagged).is_file()
    assert len(list((out / "flagged").iterdir())) == 1


def test_overlays_typed_from_here_into_the_results_folder_go_there(tmp_path, acquisition,
                                                                   monkeypatch):
    acq, onnx = acquisition
    monkeypatch.chdir(tmp_path)
    for overlays, folder in (("out/qa", "qa"), ("flagged", "flagged")):
        r = CliRunner().invoke(replay_cmd, [str(acq), "--out", "out", "--model", str(onnx),
                                            "--overlays", overlays, "--force"])
        assert r.exit_code == 0, r.output
        # a path that names a folder of --out from here is that folder; another is under --out
        paths = _rows(tmp_path / "out").overlay_path.dropna()
        assert len(paths) and all(p.startswith(f"{folder}/") for p in paths), list(paths)
        assert all((tmp_path / "out" / p).is_file() for p in paths)
    assert not (tmp_path / "out" / "out").exists() and not (tmp_path / "flagged").exists()


def test_overlays_outside_results_are_refused(tmp_path, acquisition):
    acq, onnx = acquisition
    with pytest.raises(ConfigError, match="not inside the results folder"):
        replay(acq, tmp_path / "out", kind="insitu", model=onnx, overlays=tmp_path / "else")
    with pytest.raises(ConfigError, match="not inside the results folder"):
        replay(acq, tmp_path / "out", kind="insitu", model=onnx, overlays="../acq")
    with pytest.raises(ConfigError, match="needs --overlays"):
        replay(acq, tmp_path / "out", kind="insitu", model=onnx, save_labels=True)
    assert sorted(os.listdir(acq)) == ["good.tif", "stack.tif"]


@pytest.mark.parametrize("overlays", ["frames", "frames/qa", "volumes"])
def test_overlays_in_a_results_dataset_are_refused(tmp_path, acquisition, overlays):
    # PNGs in frames/ broke every reader of the dataset (pandas.read_parquet: "Parquet magic
    # bytes not found"), and the replay wrote them there
    acq, onnx = acquisition
    with pytest.raises(ConfigError, match="where every file is read as results"):
        replay(acq, tmp_path / "out", kind="insitu", model=onnx, overlays=overlays)
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_service_setting_writes_overlays_of_flagged_frames(tmp_path, acquisition):
    acq, onnx = acquisition
    res = tmp_path / "res"
    cfg = write_config(tmp_path / "c.toml", acq, res, onnx)
    cfg.write_text(cfg.read_text().replace("[output]", '[output]\noverlays = "flagged"'))
    replay(acq, res, kind="insitu", model=onnx, config=cfg)  # the service's engine settings
    rows = _rows(res)
    assert rows.overlay_path.notna().sum() == 1
    assert rows.overlay_path.dropna().iloc[0].startswith("overlays/")
    # without the setting no pictures, and the column is null
    replay(acq, tmp_path / "plain", kind="insitu", model=onnx)
    assert _rows(tmp_path / "plain").overlay_path.isna().all()
    assert not (tmp_path / "plain" / "overlays").exists()


def test_picture_names_are_stable_and_safe(tmp_path):
    stem = picture_stem("/data/acq/run 1:ü.tif", "ab" * 32, "cd" * 32, 7, "2.2.19")
    assert stem == "run_1__-abababababab-cdcdcdcd-m2.2.19-p0007"
    # the rows an update measures again keep their own pictures
    assert picture_stem("/data/acq/run 1:ü.tif", "ab" * 32, "cd" * 32, 7, "2.2.18") != stem
    labels = expected_labels(_ok_frame())
    result = measure_contact_angle(labels)
    overlay = draw_overlay(None, labels, result)
    rel = write_frame_pictures(tmp_path, "o", stem, overlay)
    again = write_frame_pictures(tmp_path, "o", stem, overlay)  # a retry
    assert rel == again == f"o/{stem}.png" and os.listdir(tmp_path / "o") == [f"{stem}.png"]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / rel), cv2.IMREAD_COLOR),
                                  overlay)
    with pytest.raises(ValueError, match="inside the results folder"):
        write_frame_pictures(tmp_path / "r", "../x", stem, overlay)


def test_overlay_options_without_overlays_are_command_line_errors(tmp_path, acquisition):
    """--overlay-frames alone was ignored silently (no picture, exit 0); it and --save-labels
    without --overlays, and --overlays outside --out, are wrong command lines: exit 2, as
    `nwwatch replay --help` says, and nothing written."""
    acq, onnx = acquisition
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="--overlay-frames: needs --overlays"):
        replay(acq, out, kind="insitu", model=onnx, overlay_frames="flagged")
    for extra in (["--overlay-frames", "flagged"], ["--save-labels"],
                  ["--overlays", str(tmp_path / "else")]):
        r = CliRunner().invoke(replay_cmd, [str(acq), "--out", str(out), "--model", str(onnx),
                                            *extra])
        assert r.exit_code == 2 and extra[0] in r.output, (extra, r.output)
        assert not out.exists()
    # with a configuration that asks for pictures, --overlay-frames chooses which
    cfg = write_config(tmp_path / "c.toml", acq, out, onnx)
    cfg.write_text(cfg.read_text().replace("[output]", '[output]\noverlays = "all"'))
    replay(acq, out, kind="insitu", model=onnx, config=cfg, overlay_frames="flagged")
    assert _rows(out).overlay_path.notna().sum() == 1


def test_copies_of_one_content_are_not_called_files_already_done(tmp_path, acquisition):
    """Copies of a frame under other names in a fresh results folder: the note said they were
    "already done" and that --force would draw their pictures, and said so again after
    --force. A copy's rows (and picture) carry the first name, so no note is due."""
    import shutil

    acq, onnx = acquisition
    for f in sorted(acq.glob("*.tif")):
        shutil.copy(f, acq / f"copy_{f.name}")
    out = tmp_path / "out"
    args = [str(acq), "--out", str(out), "--model", str(onnx), "--overlays", "qa"]
    for extra in ([], ["--force"]):
        r = CliRunner().invoke(replay_cmd, [*args, *extra])
        assert r.exit_code == 0, r.output
        assert "no QA picture" not in r.output, r.output
        assert f"results in {out}, QA pictures in {out / 'qa'}" in r.output, r.output
    assert len(list((out / "qa").glob("*.png"))) == 3
    # a plain replay again: the files themselves are done (their pictures drawn), the copies
    # are not counted (they counted, through the hash cache, as "already done")
    r = CliRunner().invoke(replay_cmd, args)
    assert r.exit_code == 0, r.output
    assert ("note: 2 files already done were not processed again, so no QA picture was drawn "
            "for them") in r.output, r.output


def test_a_replay_asked_for_pictures_of_files_already_done_says_it_drew_none(tmp_path,
                                                                            acquisition):
    """--overlays on a folder replayed before drew nothing (its files are done) and said
    nothing: "replay complete", exit 0, no picture. The summary now says so and names
    --force, which draws them."""
    acq, onnx = acquisition
    out = tmp_path / "out"
    replay(acq, out, kind="insitu", model=onnx)
    args = [str(acq), "--out", str(out), "--model", str(onnx), "--overlays", "qa"]
    r = CliRunner().invoke(replay_cmd, args)
    assert r.exit_code == 0, r.output
    assert not (out / "qa").exists()
    assert ("note: 2 files already done were not processed again, so no QA picture was drawn "
            "for them; replay with --force") in r.output, r.output
    r = CliRunner().invoke(replay_cmd, [*args, "--force"])
    assert r.exit_code == 0 and "no QA picture" not in r.output, r.output
    assert len(list((out / "qa").glob("*.png"))) == 3  # one frame and a stack of two
    # without pictures asked for, a replay of done files says nothing of them
    r = CliRunner().invoke(replay_cmd, args[:5])
    assert r.exit_code == 0 and "QA picture" not in r.output, r.output


def test_a_pictures_folder_that_cannot_be_written_stops_the_start(tmp_path, acquisition):
    # before: one overlay_write_failed line per frame, "QA pictures in R/qa", exit 0, and the
    # files recorded done, so a rerun after the folder was mended drew nothing
    from servicekit import DaemonProcess

    acq, onnx = acquisition
    out = tmp_path / "out"
    out.mkdir()
    (out / "qa").write_text("a file in the way")
    with pytest.raises(ConfigError, match=r"--overlays.*QA pictures cannot be written to "
                                          r".*out/qa"):
        replay(acq, out, kind="insitu", model=onnx, overlays="qa")
    assert not (out / "frames").exists()
    # the service: [output] overlays, refused at the start (exit 78) naming the setting
    results = tmp_path / "res"
    results.mkdir()
    (results / "overlays").write_text("in the way")
    cfg = write_config(tmp_path / "c.toml", acq, results, onnx)
    cfg.write_text(cfg.read_text().replace("[output]\n", '[output]\noverlays = "all"\n'))
    # a replay whose pictures the configuration asked for names that setting, not --overlays
    with pytest.raises(ConfigError, match=r"c\.toml: output\.overlays: QA pictures cannot be "
                                          r"written"):
        replay(acq, results, kind="insitu", model=onnx, config=cfg)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    assert daemon.wait_exit(timeout=60) == 78
    [error] = [e for e in daemon.events() if e.get("event") == "startup_failed"]
    assert "output.overlays" in error["error"] and "QA pictures cannot be written" in (
        error["error"])
