"""`nwwatch demo`: the main video looks like the real crops where the measurement reads them,
the stress video is the scene its help describes, and a run with no valid angle says so
instead of printing NaN figures."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from bench.demo_look import demo_frames, real_crops
from nwwatch.demo import MAIN_VIDEO, angle_errors, angle_vs_time, demo, summary_line

nan = float("nan")


def test_a_summary_without_a_valid_angle_says_so():
    nan = float("nan")
    line = summary_line(angle_errors(np.array([100.0, 110.0]), np.array([nan, nan])))
    assert line == "0/2 frames measured: no valid angle"
    assert "nan" not in line.lower()


def test_the_main_video_shows_wire_and_droplet_apart_as_the_real_crops_do():
    # bench/results/demo_look_rule.txt: (droplet - wire) / (background - droplet) next to the
    # interface within the real crops' magnitudes, the droplet darker (the seed's own sign),
    # and no dark band centred on the interface (the old scene had one on every frame).
    real = [abs(r["ratio"]) for r in real_crops().values()]
    frame = demo_frames(dict(MAIN_VIDEO), (0,))["frames"][0]
    assert frame["ratio"] < 0 and min(real) <= -frame["ratio"] <= max(real)
    assert not frame["centred_band"]


def test_the_stress_video_is_a_small_droplet_at_a_very_low_dose(tmp_path):
    out = tmp_path / "stress"
    r = CliRunner().invoke(demo, [str(out), "--stress", "--frames", "4", "--size", "128"])
    assert r.exit_code == 0, r.output
    assert "nan" not in r.output.lower()
    truth = pq.read_table(out / "video" / "truth.parquet").to_pydict()
    assert set(truth["dose_e_per_px"]) == {35.0}
    # 35 px at 512 px, scaled to the frame size.
    assert all(math.isclose(radius, 35.0 * 128 / 512, rel_tol=0.1) for radius in truth["R_px"])


def test_the_summary_counts_refused_frames_by_reason_code():
    stats = angle_errors(np.array([100.0, 110.0, 120.0]), np.array([101.0, nan, nan]))
    line = summary_line(stats, {"angle_uncertain": 1, "no_droplet": 1})
    assert line == ("1/3 frames measured, RMSE 1.00 deg, median |error| 1.00 deg; "
                    "2 refused (angle_uncertain 1, no_droplet 1)")


def test_the_angle_series_joins_rows_to_the_truth_by_file_name_in_time_order():
    frames = pa.table({
        "source": ["/acq/frame_00001.tif", "/acq/frame_00000.tif"],
        "frame": [0, 0],
        "contact_angle_deg": [112.0, 104.0],
        "contact_angle_uncertainty_deg": [2.5, 0.4],
        "angle_valid": [False, True],
        "reason_code": ["angle_uncertain", "ok"],
    })
    truth = pa.table({"file": ["frame_00002.tif", "frame_00001.tif", "frame_00000.tif"],
                      "time_s": [1.0, 0.5, 0.0], "theta_apparent_deg": [115.0, 110.0, 105.0]})
    series = angle_vs_time(frames, truth, "/acq")
    assert series.time_s.tolist() == [0.0, 0.5, 1.0]
    assert series.true_deg.tolist() == [105.0, 110.0, 115.0]
    assert series.angle_deg[:2].tolist() == [104.0, 112.0] and math.isnan(series.angle_deg[2])
    assert series.valid.tolist() == [True, False, False]
    assert series.valid_deg[0] == 104.0 and np.isnan(series.valid_deg[1:]).all()
    # A frame without a row is refused as such, not silently dropped.
    assert series.refused_counts() == {"angle_uncertain": 1, "no_row": 1}


def _rows_of(truth: pa.Table, sources: list[str], frames: list[int], offset_deg: float,
             version: str = "2.2.20") -> pa.Table:
    """Frame rows as a replay writes them, angles ``offset_deg`` above the truth's."""
    n = truth.num_rows
    return pa.table({
        "source": sources, "frame": pa.array(frames, pa.int32()),
        "contact_angle_deg": [a + offset_deg for a in truth["theta_apparent_deg"].to_pylist()],
        "contact_angle_uncertainty_deg": [0.3] * n, "angle_valid": [True] * n,
        "reason_code": ["ok"] * n, "model_sha256": ["c2bf5c2c" * 8] * n,
        "measurement_version": [version] * n})


@pytest.fixture(scope="module")
def two_videos_and_a_stack(tmp_path_factory):
    """Two synthetic videos (every one names its frames frame_00000.tif...) and a stack made
    of the second one's frames, with rows of all three in one results table."""
    import tifffile

    from nwwatch.io.write import write_stack_tiff
    from nwwatch.synth import generate_insitu

    root = tmp_path_factory.mktemp("acquisitions")
    truth_a = generate_insitu(root / "acqA", 3, video=True, seed=1, size=64)
    truth_b = generate_insitu(root / "acqB", 3, video=True, seed=2, size=64)
    pages = np.stack([tifffile.imread(root / "acqB" / f) for f in truth_b["file"].to_pylist()])
    stack = write_stack_tiff(root / "stackB" / "stackB.tif", pages)
    rows = pa.concat_tables([
        _rows_of(truth_a, [str(root / "acqA" / f) for f in truth_a["file"].to_pylist()],
                 [0, 0, 0], 5.0),
        _rows_of(truth_b, [str(root / "acqB" / f) for f in truth_b["file"].to_pylist()],
                 [0, 0, 0], 0.5),
        _rows_of(truth_b, [str(stack)] * 3, [0, 1, 2], 0.25)])
    return root, truth_a, truth_b, stack, rows


def test_each_video_is_joined_to_its_own_rows_in_a_folder_of_several(two_videos_and_a_stack):
    root, truth_a, truth_b, stack, rows = two_videos_and_a_stack
    a = angle_vs_time(rows, truth_a, root / "acqA")
    b = angle_vs_time(rows, truth_b, root / "acqB")
    # each acquisition's own errors, not the rows of another that names its frames alike
    assert a.valid.all() and np.allclose(a.angle_deg - a.true_deg, 5.0)
    assert b.valid.all() and np.allclose(b.angle_deg - b.true_deg, 0.5)
    assert angle_errors(b.true_deg, b.valid_deg)["rmse_deg"] == pytest.approx(0.5)


def test_a_stack_made_of_a_videos_frames_is_joined_page_by_page(two_videos_and_a_stack):
    root, _, truth_b, stack, rows = two_videos_and_a_stack
    s = angle_vs_time(rows, truth_b, root / "acqB", stack=stack)
    assert s.valid.all() and np.allclose(s.angle_deg - s.true_deg, 0.25)
    # a truth table that names the stack's pages itself (frame_index = page)
    named = truth_b.set_column(0, "file", [["stackB.tif"] * 3])
    t = angle_vs_time(rows, named, root / "stackB")
    assert t.valid.all() and np.allclose(t.angle_deg - t.true_deg, 0.25)


def test_a_truth_row_matching_several_rows_is_refused_naming_the_file(two_videos_and_a_stack):
    root, _, truth_b, stack, rows = two_videos_and_a_stack
    older = _rows_of(truth_b, [str(root / "acqB" / f) for f in truth_b["file"].to_pylist()],
                     [0, 0, 0], 1.0, version="2.2.19")
    with pytest.raises(ValueError, match=r"acqB/frame_00000\.tif: 2 rows match one truth "
                                         r"row .*2\.2\.19.*2\.2\.20"):
        angle_vs_time(pa.concat_tables([rows, older]), truth_b, root / "acqB")
    # a truth that names the stack once: which page it describes is not known
    once = truth_b.slice(0, 1).set_column(0, "file", [["stackB.tif"]])
    with pytest.raises(ValueError, match=r"stackB\.tif: the truth names this file once, but 3 "
                                         r"rows of pages 0, 1, 2"):
        angle_vs_time(rows, once, root / "stackB")


def test_rows_of_a_moved_video_folder_are_an_error_naming_both_paths(two_videos_and_a_stack):
    # before: the video folder moved after its replay read as every frame no_row,
    # "0/3 frames measured", with no hint that no row's source named a truth file
    import shutil

    root, _, truth_b, stack, rows = two_videos_and_a_stack
    moved = root / "acqB_moved"
    shutil.copytree(root / "acqB", moved)
    own = rows.slice(3, 1)  # acqB's first frame
    assert own["source"][0].as_py() == str(root / "acqB" / "frame_00000.tif")
    with pytest.raises(ValueError, match=r"truth folder .*acqB_moved \(a row's source: "
                                         r".*acqB/frame_00000\.tif\): give as truth_dir"):
        angle_vs_time(own, truth_b, moved)
    # the path the rows name joins them, though the truth is read from the new folder
    truth = pq.read_table(moved / "truth.parquet")
    assert angle_vs_time(own, truth, root / "acqB").valid.sum() == 1
    # a stack the rows do not name either
    with pytest.raises(ValueError, match=r"the stack .*other\.tif"):
        angle_vs_time(own, truth_b, moved, stack=root / "other.tif")
    # some frames without a row is no error: they are no_row
    assert angle_vs_time(own, truth_b, root / "acqB").refused_counts() == {"no_row": 2}


def test_a_demo_run_again_into_its_folder_replaces_its_own_files_and_no_one_elses(tmp_path):
    # before: a second run kept the first run's frames beyond its own count and replayed
    # them with its own (6 frames from 6 files after --frames 4), a folder of the user's
    # had its files replaced by the demo's under the same names, and an unwritable folder
    # or a seed out of range was a traceback
    out = tmp_path / "d"
    args = ["--frames", "6", "--size", "64"]
    first = CliRunner().invoke(demo, [str(out), *args])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(demo, [str(out), "--frames", "4", "--size", "64", "--seed", "1"])
    assert again.exit_code == 0, again.output
    assert "4 frames from 4 files" in again.output
    assert len(list((out / "video").glob("frame_*.tif"))) == 4
    mine = tmp_path / "mine"
    (mine / "video").mkdir(parents=True)
    (mine / "video" / "frame_00000.tif").write_bytes(b"the user's")
    refused = CliRunner().invoke(demo, [str(mine), *args])
    assert refused.exit_code == 1
    assert "already holds files that no earlier nwwatch demo wrote (video)" in refused.output
    assert (mine / "video" / "frame_00000.tif").read_bytes() == b"the user's"
    (tmp_path / "file").write_text("")
    below = CliRunner().invoke(demo, [str(tmp_path / "file" / "d"), *args])
    assert below.exit_code == 2 and "Invalid value for 'OUT'" in below.output
    seed = CliRunner().invoke(demo, [str(tmp_path / "s"), *args, "--seed", "-1"])
    assert seed.exit_code == 2 and "Invalid value for '--seed'" in seed.output
    assert not (tmp_path / "s").exists()


def test_a_model_the_demo_cannot_use_is_named_before_anything_is_written(tmp_path):
    # before: steps 1-2 wrote the video and tomogram, then a ConfigError or ModelLoadError
    # traceback (exit 1); and the shipped model's name was "does not exist"
    from onnx_models import build_threshold_model

    tomogram_model = build_threshold_model(tmp_path / "tomo.onnx", kind="tomogram")
    garbage = tmp_path / "g.onnx"
    garbage.write_text("garbage")
    for model, said in [(tomogram_model, "a 'tomogram' model; the demo's growth video needs "
                                         "an in-situ model"),
                        (garbage, "ONNX Runtime cannot load it")]:
        out = tmp_path / f"out_{model.stem}"
        result = CliRunner().invoke(demo, [str(out), "--frames", "4", "--size", "64",
                                           "--model", str(model)])
        assert result.exit_code == 2, result.output
        assert said in result.output and "Traceback" not in result.output
        assert not out.exists()
    wrong_name = CliRunner().invoke(demo, [str(tmp_path / "o"), "--model", "insitu-nope"])
    assert wrong_name.exit_code == 2 and "insitu-default" in wrong_name.output
