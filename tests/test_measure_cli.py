"""`nwwatch measure` writes frame rows in the daemon's schema, and overlays show the fit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tifffile
from click.testing import CliRunner
from grey_png import grey_png
from ideal_caps import render_ideal_cap

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.cli import main
from nwwatch.io.write import write_frame_tiff
from nwwatch.measure import MEASUREMENT_FIELDS, draw_overlay, measure_contact_angle
from nwwatch.measure.overlay import overlay_zoom

SHAPE = (200, 200)


@pytest.fixture()
def label_files(tmp_path):
    good = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    other = render_ideal_cap(SHAPE, 128.0, 20.0, -100.0, (80.6, 120.1))
    cv2.imwrite(str(tmp_path / "good.png"), good.labels)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([other.labels, np.zeros(SHAPE, np.uint8)]))
    cv2.imwrite(str(tmp_path / "bad.png"), np.full(SHAPE, 7, np.uint8))
    images = tmp_path / "images"
    images.mkdir()
    grey = np.where(good.labels == 0, 3000, 1000).astype(np.uint16)
    tifffile.imwrite(images / "good.tif", grey)
    return tmp_path, good, other


def test_cli_writes_rows_in_the_frame_schema(label_files):
    folder, good, other = label_files
    out = folder / "results.parquet"
    overlays = folder / "overlays"
    result = CliRunner().invoke(main, [
        "measure", str(folder / "good.png"), str(folder / "stack.tif"), str(folder / "bad.png"),
        "--out", str(out), "--pixel-size-nm", "0.5", "--overlays", str(overlays),
        "--images", str(folder / "images"),
    ])
    # the unreadable file is named, skipped and turns the exit status non-zero
    assert result.exit_code == 1
    assert "bad.png" in result.output and "label values [7] out of range" in result.output
    table = pq.read_table(out)
    names = set(table.column_names)
    assert {"source", "frame", "measurement_version"} <= names
    assert {f.name for f in MEASUREMENT_FIELDS} <= names
    rows = table.to_pylist()
    assert [(r["source"].rsplit("/", 1)[-1], r["frame"]) for r in rows] == [
        ("good.png", 0), ("stack.tif", 0), ("stack.tif", 1)]
    assert rows[0]["status"] == "ok"
    assert rows[0]["contact_angle_deg"] == pytest.approx(112.0, abs=1.6)
    assert rows[0]["base_half_width_nm"] == pytest.approx(12.5, abs=0.4)
    assert rows[1]["contact_angle_deg"] == pytest.approx(128.0, abs=2.0)
    assert rows[2]["status"] == "no_wire" and rows[2]["angle_valid"] is False
    assert rows[2]["contact_angle_deg"] is None
    written = sorted(p.name for p in overlays.iterdir())
    assert written == ["good_overlay.png", "stack_0000_overlay.png", "stack_0001_overlay.png"]
    picture = cv2.imread(str(overlays / "good_overlay.png"))
    z = overlay_zoom(SHAPE)  # a 200 px frame is drawn 3 times larger
    assert z == 3 and picture.shape[1:] == (SHAPE[1] * z, 3)
    assert picture.shape[0] > SHAPE[0] * z  # the frame, then the caption band


def test_overlay_draws_the_fit_on_the_frame():
    c = render_ideal_cap(SHAPE, 120.0, 30.0, 60.0, (120.2, 80.7))
    r = measure_contact_angle(c.labels)
    image = np.random.default_rng(0).normal(1000, 50, SHAPE).astype(np.float32)
    picture = draw_overlay(image, c.labels, r)
    z = overlay_zoom(SHAPE)
    assert picture.dtype == np.uint8 and picture.shape[1:] == (SHAPE[1] * z, 3)
    # the facet line is drawn in blue at the facet centre, the triple points in green
    # (frame pixel (row, col) is the z x z block at (z row, z col))
    fr, fc = int(round(r.facet_row * z + 1)), int(round(r.facet_col * z + 1))
    patch = picture[fr - 1 : fr + 2, fc - 1 : fc + 2].reshape(-1, 3).astype(int)
    assert (patch[:, 0] - patch[:, 2] > 100).any()
    tr, tc = int(round(r.triple_left_row * z + 1)), int(round(r.triple_left_col * z + 1))
    assert picture[tr, tc, 1] > 150 and picture[tr, tc, 2] < 100
    # a failed measurement writes its status in red, in the caption band below the frame:
    # none of it over the frame (there, a long reason hid the top of the picture)
    failed = measure_contact_angle(np.zeros(SHAPE, np.uint8))
    text = draw_overlay(None, np.zeros(SHAPE, np.uint8), failed)
    red = text[..., 2].astype(int) - text[..., 1] > 100
    assert red[SHAPE[0] * z:].any() and not red[:SHAPE[0] * z].any()
    assert (text[:SHAPE[0] * z] == 200).all()  # the grey rendering of an empty label map
    with pytest.raises(ValueError, match="shape"):
        draw_overlay(np.zeros((5, 5)), c.labels, r)


def test_raw_frames_are_segmented_with_the_model_then_measured(tmp_path):
    from onnx_models import build_threshold_model
    from servicekit import paint_insitu

    from nwwatch.normalize import normalize_image
    from nwwatch.segment.session import Segmenter

    onnx = build_threshold_model(tmp_path / "model.onnx")
    noise = np.random.default_rng(3).integers(-3, 4, (128, 128))
    frame = (paint_insitu(117.0, size=128, half_width=16) + noise).astype(np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", frame)  # many grey levels: a frame, not labels
    labels = np.zeros((128, 128), np.uint8)
    labels[60:, 50:70] = 1
    cv2.imwrite(str(tmp_path / "labels.png"), labels)  # a wire only: no_droplet
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, [
        "measure", str(tmp_path / "raw.tif"), str(tmp_path / "labels.png"), "--out", str(out),
        "--model", str(onnx), "--overlays", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "raw.tif[0] (frame): ok [ok]" in result.output
    assert "labels.png[0] (labels): no_droplet [no_droplet]" in result.output
    raw, lab = pq.read_table(out).to_pylist()
    seg = Segmenter(onnx, providers=("cpu",))
    expected = seg.segment(normalize_image(frame))
    # The raw frame places the facet line on its intensity step, as the service does.
    truth = measure_contact_angle(expected.labels[0], expected.probabilities[0, 2],
                                  image=frame)
    assert raw["contact_angle_deg"] == pytest.approx(truth.contact_angle_deg, abs=1e-9)
    assert raw["facet_edge"] == truth.facet_edge and raw["facet_edge"] not in (None, "labels")
    assert raw["contact_angle_deg"] == pytest.approx(117.0, abs=3.0)
    assert raw["model_sha256"] == seg.model_sha256 and 0 <= raw["confidence"] <= 1
    assert lab["model_sha256"] is None and lab["status"] == "no_droplet"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["labels_overlay.png",
                                                                  "raw_overlay.png"]
    # --read-as labels refuses the frame with the reason, naming the file
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "raw.tif"), "--out", str(out),
                                       "--read-as", "labels"])
    assert result.exit_code == 1
    assert "raw.tif" in result.output and "out of range: expected 0..2 or 255" in result.output


def test_tiffs_are_read_as_the_service_reads_them(tmp_path):
    # One reader for frames (nwwatch.io.read_frames): the files the service quarantines are
    # skipped with its reasons, and a TIFF's pixel size, time and hash reach the row.
    from datetime import UTC, datetime

    from nwwatch.filehash import file_sha256
    from nwwatch.io import InputError, read_frames, write_frame_tiff, write_volume_tiff

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    when = datetime(2026, 1, 1, 0, 0, 9, 500000, tzinfo=UTC)
    good = write_frame_tiff(tmp_path / "good.tif", cap.labels, pixel_size_nm=0.4,
                            acquired_at=when)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.repeat(cap.labels[..., None], 3, axis=2), photometric="rgb")
    f64 = tmp_path / "f64.tif"
    tifffile.imwrite(f64, cap.labels.astype(np.float64))
    aniso = write_volume_tiff(tmp_path / "aniso.tif", cap.labels[None],
                              voxel_size_nm=(5.0, 6.0, 5.0))
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(good), str(rgb), str(f64), str(aniso),
                                       "--out", str(out)])
    assert result.exit_code == 1 and "3 file(s) skipped, unreadable or refused" in result.output
    assert "rgb.tif: 3 channels per pixel" in result.output
    assert "f64.tif: pixel type float64 is not supported" in result.output
    assert "aniso.tif: pixel size x 5 nm differs from y 6 nm" in result.output
    # a colour picture of a label mask's three colours is told what a label mask needs
    assert "holding 3 colours, (0, 0, 0), (1, 1, 1), (2, 2, 2): a colour label mask" \
        in result.output
    for bad in (f64, aniso):  # the reasons are the service's own
        with pytest.raises(InputError) as refused:
            read_frames(bad)
        assert f"{bad}: {refused.value.reason}" in result.output
    (row,) = pq.read_table(out).to_pylist()
    assert row["source"] == str(good) and row["status"] == "ok"
    assert row["pixel_size_nm"] == pytest.approx(0.4)
    assert row["droplet_radius_nm"] == pytest.approx(0.4 * row["droplet_radius_px"])
    assert row["acquired_at"] == when and row["acquired_at_source"] == "metadata"
    assert row["source_sha256"] == file_sha256(good)
    # --pixel-size-nm stands in for the file's calibration.
    result = CliRunner().invoke(main, ["measure", str(good), "--out", str(out),
                                       "--pixel-size-nm", "0.5"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).to_pylist()[0]["pixel_size_nm"] == pytest.approx(0.5)


def test_a_tiff_written_one_page_per_call_gives_one_row_per_page(tmp_path):
    # Acquisition software that appends frames calls TiffWriter.write once per page; tifffile
    # reads each page as its own series. Every page is a row, with its own pixel size.
    caps = [render_ideal_cap((96, 96), angle, 16.0, 35.0, (55.3, 45.8))
            for angle in (100.0, 120.0, 135.0)]
    grown = tmp_path / "grown.tif"
    sizes_nm = [0.5, 0.5, 0.8]
    with tifffile.TiffWriter(grown) as tif:
        for cap, size_nm in zip(caps, sizes_nm, strict=True):
            tif.write(cap.labels, resolution=(1e7 / size_nm, 1e7 / size_nm),
                      resolutionunit="CENTIMETER")
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(grown), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert [(r["source"], r["frame"]) for r in rows] == [(str(grown), i) for i in range(3)]
    assert [r["pixel_size_nm"] for r in rows] == pytest.approx(sizes_nm)
    for row, angle in zip(rows, (100.0, 120.0, 135.0), strict=True):
        assert row["status"] == "ok"
        assert row["contact_angle_deg"] == pytest.approx(angle, abs=3.0)


def test_a_recording_too_long_to_read_whole_is_sent_to_replay(tmp_path, monkeypatch):
    # measure reads a file whole; past nwwatch.io.MAX_FILE_BYTES (8 GiB) a TIFF or MRC
    # recording is skipped with the command that reads it a chunk of pages at a time
    import nwwatch.io.limits as limits

    caps = [render_ideal_cap((96, 96), angle, 16.0, 35.0, (55.3, 45.8)).labels
            for angle in (100.0, 110.0, 120.0, 135.0)]
    stack = tmp_path / "long.tif"
    tifffile.imwrite(stack, np.stack(caps), photometric="minisblack")
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 2 * 96 * 96)
    result = CliRunner().invoke(main, ["measure", str(stack), "--out", str(tmp_path / "r.pq")])
    assert result.exit_code == 1, result.output
    assert (f"skipped {stack}: declares {4 * 96 * 96} bytes of pixels once read "
            "(shape (4, 96, 96)), more than the limit of 18432 (1.71661e-05 GiB) for a file "
            "read whole; `nwwatch "
            f"replay {stack} --out RESULTS` processes it a chunk of pages at a time where its "
            "layout allows (docs/io.md)"
            ) in " ".join(result.output.split())


def test_rows_are_written_only_by_the_atomic_writer(tmp_path, monkeypatch):
    # One way to write: no fallback that writes with plain pyarrow (not atomic, no schema)
    # when the results package cannot be imported.
    import sys

    from nwwatch.measure.cli import _write

    monkeypatch.setitem(sys.modules, "nwwatch.results.parquet", None)  # import fails
    out = tmp_path / "rows.parquet"
    with pytest.raises(ImportError):
        _write([{"source": "a.png", "frame": 0}], out)
    assert not out.exists()


@pytest.mark.parametrize("where", ["file-in-the-way", "proc-out", "proc-overlays"])
def test_an_unwritable_output_is_refused_before_anything_is_measured(tmp_path, where):
    # /proc exists but takes no new file or folder (Linux): before, found after the work
    if where.startswith("proc") and not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    cv2.imwrite(str(tmp_path / "good.png"), cap.labels)
    (tmp_path / "afile").write_text("")
    out, option = {"file-in-the-way": (tmp_path / "afile" / "rows.parquet", "--out"),
                   "proc-out": (Path("/proc") / "rows.parquet", "--out"),
                   "proc-overlays": (Path("/proc") / "qa", "--overlays")}[where]
    args = ["measure", str(tmp_path / "good.png"), "--out",
            str(out if option == "--out" else tmp_path / "rows.parquet")]
    if option == "--overlays":
        args += ["--overlays", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a usage error, no traceback
    assert f"Invalid value for '{option}'" in result.output and str(out) in result.output
    assert "(labels)" not in result.output  # refused before the first measurement
    assert not (tmp_path / "rows.parquet").exists()


@pytest.mark.parametrize("inside", ["res/frames/qa", "res/frames", "res"])
def test_overlays_in_a_results_folder_are_refused(tmp_path, inside):
    # PNGs in RESULTS/frames broke every reader of the dataset (pandas.read_parquet:
    # "Parquet magic bytes not found"); the results folder itself mixes them with its files
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    cv2.imwrite(str(tmp_path / "good.png"), cap.labels)
    (tmp_path / "res" / "frames").mkdir(parents=True)
    (tmp_path / "res" / "ledger.sqlite").write_bytes(b"")  # what marks a results folder
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "good.png"), "--out",
                                       str(tmp_path / "rows.parquet"),
                                       "--overlays", str(tmp_path / inside)])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--overlays'" in result.output, result.output
    assert not (tmp_path / "rows.parquet").exists()
    assert sorted(p.name for p in (tmp_path / "res").rglob("*")) == ["frames", "ledger.sqlite"]


def test_a_frame_and_its_label_image_keep_both_overlays_and_rows_link_them(tmp_path):
    from onnx_models import build_threshold_model
    from servicekit import paint_insitu

    onnx = build_threshold_model(tmp_path / "model.onnx")
    noise = np.random.default_rng(3).integers(-3, 4, (128, 128))
    frame = (paint_insitu(117.0, size=128, half_width=16) + noise).astype(np.uint8)
    tifffile.imwrite(tmp_path / "f001.tif", frame)
    (tmp_path / "labels").mkdir()
    cap = render_ideal_cap((128, 128), 112.0, 25.0, 35.0, (70.3, 60.8))
    cv2.imwrite(str(tmp_path / "labels" / "f001.png"), cap.labels)  # the same stem
    out = tmp_path / "res" / "rows.parquet"
    result = CliRunner().invoke(main, [
        "measure", str(tmp_path / "f001.tif"), str(tmp_path / "labels" / "f001.png"),
        "--model", str(onnx), "--out", str(out), "--overlays", str(tmp_path / "res" / "qa")])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    paths = [row["overlay_path"] for row in rows]
    # relative to the Parquet file's folder, like the service's (relative to RESULTS)
    assert paths == ["qa/f001_overlay.png", "qa/f001_overlay-2.png"]
    frame_picture = cv2.imread(str(out.parent / paths[0]))
    labels_picture = cv2.imread(str(out.parent / paths[1]))
    # 128 px, zoom 4; caption bands of their own results' lengths below
    assert frame_picture.shape[1:] == labels_picture.shape[1:] == (512, 3)
    assert not np.array_equal(frame_picture[:512], labels_picture[:512])
    # an overlay folder outside the Parquet file's folder is linked by its absolute path
    elsewhere = tmp_path / "qa-elsewhere"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "labels" / "f001.png"),
                                       "--out", str(out), "--overlays", str(elsewhere)])
    assert result.exit_code == 0, result.output
    (row,) = pq.read_table(out).to_pylist()
    assert row["overlay_path"] == (elsewhere / "f001_overlay.png").resolve().as_posix()
    # without --overlays there is no overlay and no path
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "labels" / "f001.png"),
                                       "--out", str(out)])
    assert pq.read_table(out).to_pylist()[0]["overlay_path"] is None


@pytest.mark.parametrize("kind", ["tomogram", "not-onnx"])
def test_a_wrong_model_is_refused_before_the_label_images_are_measured(tmp_path, kind):
    from onnx_models import build_threshold_model

    model = tmp_path / "model.onnx"
    if kind == "tomogram":
        build_threshold_model(model, kind="tomogram")
    else:
        model.write_bytes(b"not a model")
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    cv2.imwrite(str(tmp_path / "a.png"), cap.labels)
    tifffile.imwrite(tmp_path / "raw.tif", np.random.default_rng(0).integers(
        0, 4000, SHAPE).astype(np.uint16))
    out = tmp_path / "new" / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "a.png"),
                                       str(tmp_path / "raw.tif"), "--model", str(model),
                                       "--out", str(out), "--overlays", str(tmp_path / "qa")])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Invalid value for '--model'" in result.output and str(model) in result.output
    assert "a.png[0]" not in result.output
    assert not out.parent.exists() and not (tmp_path / "qa").exists()  # nothing made


def test_a_blank_frame_read_as_labels_says_how_to_measure_it_as_a_frame(tmp_path):
    # --read-as auto takes a frame with few grey levels (here one: the beam blanked) for labels
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.full(SHAPE, 500, np.uint16))
    result = CliRunner().invoke(main, ["measure", str(blank), "--out",
                                       str(tmp_path / "rows.parquet")])
    assert result.exit_code == 1
    assert f"{blank}: label values [500] out of range" in result.output
    assert "--read-as frames" in result.output
    # --read-as labels asked for labels: no hint about frames
    result = CliRunner().invoke(main, ["measure", str(blank), "--out",
                                       str(tmp_path / "rows.parquet"), "--read-as", "labels"])
    assert result.exit_code == 1 and "--read-as frames" not in result.output


def test_a_32_bit_label_image_is_told_to_be_saved_as_8_bit(tmp_path, label_files):
    # napari saves its Labels layer as it holds it (int32, int64). The refusal used to say
    # "save it as float32" first: a float label image is then measured as a raw frame.
    _, good, _ = label_files
    path = tmp_path / "napari_labels.tif"
    tifffile.imwrite(path, good.labels.astype(np.int32))
    result = CliRunner().invoke(main, ["measure", str(path), "--out",
                                       str(tmp_path / "rows.parquet")])
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if x.startswith("skipped"))
    assert str(path) in line and "int32" in line and "label image: uint8" in line
    assert "save it with 16 bits (int16) if the values fit, else as float32" in line


def test_a_float_label_image_is_measured_as_labels(tmp_path, label_files):
    # Fiji's image arithmetic gives 32-bit results: a label image of 0.0, 1.0 and 2.0 was
    # taken for a raw frame by --read-as auto and segmented by the model.
    _, good, _ = label_files
    as_uint8, as_float = tmp_path / "labels.tif", tmp_path / "labels_float.tif"
    tifffile.imwrite(as_uint8, good.labels)
    tifffile.imwrite(as_float, good.labels.astype(np.float32))
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(as_uint8), str(as_float), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{as_float}[0] (labels)" in result.output
    rows = pq.read_table(out).to_pylist()
    assert rows[1]["contact_angle_deg"] == rows[0]["contact_angle_deg"]
    # a float image with other values is no label image: named, with what to save
    fractional = tmp_path / "fractional.tif"
    tifffile.imwrite(fractional, good.labels.astype(np.float32) / 2)
    result = CliRunner().invoke(main, ["measure", str(fractional), "--out", str(out),
                                       "--read-as", "labels"])
    assert result.exit_code == 1
    assert f"{fractional}: labels must be" in result.output and "uint8" in result.output


def test_an_unreadable_overlay_background_is_a_warning_not_the_end_of_the_run(tmp_path):
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    cv2.imwrite(str(tmp_path / "good.png"), cap.labels)
    images = tmp_path / "images"
    images.mkdir()
    (images / "good.tif").write_bytes(b"II*\0 truncated")
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "good.png"), "--out", str(out),
                                       "--overlays", str(tmp_path / "qa"),
                                       "--images", str(images)])
    assert result.exit_code == 0, result.output
    assert f"warning: {tmp_path / 'good.png'}[0]: its frame cannot be read ({images / 'good.tif'}" \
        in result.output
    assert (tmp_path / "qa" / "good_overlay.png").is_file()
    assert pq.read_table(out).num_rows == 1


def test_a_label_stack_overlay_is_drawn_on_its_own_page_of_the_grey_image(tmp_path):
    # a label stack with a one-page grey image drew every page's labels on that one frame
    caps = [render_ideal_cap(SHAPE, theta, 25.0, 35.0, (110.3, 90.8)) for theta in (100, 130)]
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([c.labels for c in caps]))
    greys = [np.where(c.labels == 0, 3000, 1000 + 500 * k).astype(np.uint16)
             for k, c in enumerate(caps)]
    images, single = tmp_path / "images", tmp_path / "single"
    images.mkdir()
    single.mkdir()
    tifffile.imwrite(images / "stack.tif", np.stack(greys))
    tifffile.imwrite(single / "stack.tif", greys[0])
    out, qa = tmp_path / "rows.parquet", tmp_path / "qa"
    args = ["measure", str(tmp_path / "stack.tif"), "--out", str(out), "--overlays", str(qa)]

    def pictures() -> list[np.ndarray]:  # the rows' own (a picture of another run is kept)
        return [cv2.imread(str(tmp_path / p))
                for p in pq.read_table(out).column("overlay_path").to_pylist()]

    result = CliRunner().invoke(main, [*args, "--images", str(images)])
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    on_frames = pictures()
    result = CliRunner().invoke(main, args)
    on_labels = pictures()
    assert not any(np.array_equal(a, b) for a, b in zip(on_frames, on_labels, strict=True))
    result = CliRunner().invoke(main, [*args, "--images", str(single)])
    assert result.exit_code == 0, result.output
    assert result.output.count(f"warning: {tmp_path / 'stack.tif'}[0..1]: its frame "
                               f"{single / 'stack.tif'} has 1 page(s), the labels 2; measured "
                               "without its frame: its overlay is drawn on the labels") == 1
    for picture, expected in zip(pictures(), on_labels, strict=True):
        assert np.array_equal(picture, expected)


def test_a_float_label_image_with_unlabeled_pixels_is_read_as_labels(tmp_path):
    # a 32-bit label image with 255 (unlabeled) was taken for a raw frame and segmented
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    partial = cap.labels.astype(np.float32)
    partial[:20, :20] = 255
    path = tmp_path / "partial.tif"
    tifffile.imwrite(path, partial)
    for read_as in ("auto", "labels"):
        result = CliRunner().invoke(main, ["measure", str(path), "--out",
                                           str(tmp_path / "rows.parquet"), "--read-as", read_as])
        assert result.exit_code == 0, result.output
        assert f"{path}[0] (labels): ok" in result.output
        assert "400 unlabeled (255) px of partial.tif[0] were given the class" in result.output


def test_an_out_that_is_not_a_parquet_file_is_never_replaced(tmp_path):
    # 'nwwatch measure --out frames/*.tif': the shell hands the first frame to --out; before,
    # it was overwritten with the Parquet rows of the others
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    frames = []
    for k in range(2):
        frames.append(tmp_path / f"f{k}.png")
        cv2.imwrite(str(frames[-1]), cap.labels)
    original = frames[0].read_bytes()
    for args in (["--out", str(frames[0]), str(frames[1])], [str(frames[0]), "--out",
                                                             str(frames[0])]):
        result = CliRunner().invoke(main, ["measure", *args])
        assert result.exit_code == 2, result.output
        assert f"{frames[0]} exists and is not an earlier output of nwwatch measure" in \
            " ".join(result.output.split())
        assert frames[0].read_bytes() == original
    # Another table is not replaced either: 'measure DATA/labels/*.png --out DATA/truth.parquet'
    # replaced the truth that evaluate scores against.
    truth = tmp_path / "truth.parquet"
    pq.write_table(pa.table({"file": ["f0.png"], "theta_apparent_deg": [112.0]}), truth)
    table_before = truth.read_bytes()
    result = CliRunner().invoke(main, ["measure", str(frames[1]), "--out", str(truth)])
    assert result.exit_code == 2, result.output
    assert f"{truth} exists and is not an earlier output of nwwatch measure; it is not " \
           "replaced" in " ".join(result.output.split())
    assert truth.read_bytes() == table_before
    # an earlier run's Parquet file (or an empty file) is replaced as before
    out = tmp_path / "rows.parquet"
    for _ in range(2):
        result = CliRunner().invoke(main, ["measure", str(frames[1]), "--out", str(out)])
        assert result.exit_code == 0, result.output
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    result = CliRunner().invoke(main, ["measure", str(frames[1]), "--out", str(empty)])
    assert result.exit_code == 0 and pq.read_table(empty).num_rows == 1
    # a copy of the service's (or replay's) rows: they carry a batch_id; it was replaced
    service_rows = tmp_path / "service_rows.parquet"
    pq.write_table(pq.read_table(out).set_column(
        pq.read_table(out).schema.get_field_index("batch_id"), "batch_id",
        pa.array(["b-1"], pa.string())), service_rows)
    kept = service_rows.read_bytes()
    result = CliRunner().invoke(main, ["measure", str(frames[1]), "--out", str(service_rows)])
    assert result.exit_code == 2 and "is not an earlier output" in result.output
    assert service_rows.read_bytes() == kept
    # a name of another format: Parquet bytes under .csv, exit 0, before
    result = CliRunner().invoke(main, ["measure", str(frames[1]), "--out",
                                       str(tmp_path / "rows.csv")])
    assert result.exit_code == 2 and "name the file .parquet" in result.output
    assert not (tmp_path / "rows.csv").exists()


def _cap_with_unsure_band():
    """An ideal cap's labels, and the same with each class's pixels within 2 px of another
    class left unlabeled (255)."""
    from scipy.ndimage import distance_transform_edt

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    banded = cap.labels.copy()
    for cls in (0, 1, 2):
        inside = cap.labels == cls
        banded[inside & (distance_transform_edt(inside) <= 2)] = 255
    return cap, banded


def test_an_unsure_band_takes_the_nearest_class_and_a_wide_region_is_refused(tmp_path):
    # A DATA folder's label image (nwwatch label paints 255 = unlabeled), or a hand-drawn
    # mask with an unsure band along every boundary: each class's pixels within 2 px of
    # another class left unlabeled: measured with the band given to the nearest class, as
    # evaluate measures such labels.
    cap, banded = _cap_with_unsure_band()
    exact = measure_contact_angle(cap.labels)
    corner = cap.labels.copy()
    corner[:40, :40] = 255  # left out of the background only: its class is not in doubt
    wide = cap.labels.copy()
    rows, cols = np.nonzero(cap.labels == 2)
    # the droplet and 10 px about it left out: which class lies where is not in the labels
    wide[rows.min() - 10:rows.max() + 10, cols.min() - 10:cols.max() + 10] = 255
    names = {"banded.png": banded, "corner.png": corner, "wide.png": wide,
             "mask.png": np.where(cap.labels > 0, 255, 0).astype(np.uint8)}
    for name, labels in names.items():
        cv2.imwrite(str(tmp_path / name), labels)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", *(str(tmp_path / n) for n in names),
                                       "--out", str(out)])
    assert result.exit_code == 1
    rows_out = {Path(r["source"]).name: r for r in pq.read_table(out).to_pylist()}
    assert set(rows_out) == {"banded.png", "corner.png"}
    for name in rows_out:
        assert rows_out[name]["status"] == "ok"
        assert rows_out[name]["contact_angle_deg"] == pytest.approx(exact.contact_angle_deg,
                                                                    abs=0.5)
        count = int(np.count_nonzero(names[name] == 255))
        assert f"{count} unlabeled (255) px of {name}[0] were given the class" in result.output
    refused = " ".join(result.output.split())
    assert (f"{tmp_path / 'wide.png'}: labels must be 0 background, 1 nanowire, 2 droplet; "
            "an unlabeled (255) region of") in refused
    assert ("px from any labeled pixel there (an unsure band between classes is given the "
            "nearest class up to 16 px; beyond, a region is only extended from where its "
            "classes meet, as a strip along the frame's border is)") in refused
    assert (f"{tmp_path / 'mask.png'}: labels must be 0 background, 1 nanowire, 2 droplet; "
            "found 255 and no nanowire (1) or droplet (2) pixel: a 0/255 mask") in refused
    assert "--read-as frames" not in result.output


def test_the_pixel_size_option_has_the_bounds_of_the_files_own(tmp_path):
    # 1e300 nm passed click's bounds, and its cube (the nm³ volume) raised OverflowError
    # after the measurement; a file's pixel size below 1 pm is ignored as no calibration
    # (metres read as micrometres), and the option took 1e-6 nm into the *_nm columns
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    cv2.imwrite(str(tmp_path / "good.png"), cap.labels)
    out = tmp_path / "rows.parquet"
    for value in ("1e300", "20000", "0.0009", "5e-10"):
        result = CliRunner().invoke(main, ["measure", str(tmp_path / "good.png"), "--out",
                                           str(out), "--pixel-size-nm", value])
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--pixel-size-nm'" in result.output
        assert "0.001<=x<=10000.0" in result.output
        assert not out.exists()
    for value in (10000.0, 0.001):  # the bounds themselves are taken
        result = CliRunner().invoke(main, ["measure", str(tmp_path / "good.png"), "--out",
                                           str(out), "--pixel-size-nm", str(value)])
        assert result.exit_code == 0, result.output
        assert pq.read_table(out).to_pylist()[0]["pixel_size_nm"] == value
    row = measure_contact_angle(cap.labels, pixel_size_nm=1e300).as_row()
    assert row["droplet_volume_nm3"] == float("inf")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_pixel_size_that_is_not_finite_is_a_usage_error(tmp_path, value):
    # click's FloatRange lets nan (every comparison false) and inf through; before, the
    # measurement raised ValueError with a traceback
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    cv2.imwrite(str(tmp_path / "good.png"), cap.labels)
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "good.png"), "--out",
                                       str(tmp_path / "rows.parquet"), "--pixel-size-nm", value])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Invalid value for '--pixel-size-nm'" in result.output
    assert "is not a finite number" in result.output


def test_a_file_of_another_format_is_told_which_formats_are_read(tmp_path):
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    jpeg = tmp_path / "labels.jpg"
    cv2.imwrite(str(jpeg), cap.labels * 100)
    result = CliRunner().invoke(main, ["measure", str(jpeg), "--out",
                                       str(tmp_path / "rows.parquet")])
    assert result.exit_code == 1
    # before: only "not a TIFF file (no TIFF or BigTIFF header)"
    assert f"{jpeg}: not a TIFF file" in result.output
    assert ("measure reads TIFF (.tif, .tiff), PNG (.png), MRC (.mrc, .rec, .mrcs, .map), "
            "DigitalMicrograph (.dm3, .dm4), Velox EMD (.emd) and TIA series (.ser) files"
            in " ".join(result.output.split()))
    assert "save the mask losslessly, as PNG" in " ".join(result.output.split())


@pytest.mark.parametrize("name", ["frames.mrcs", "frame.dm4", "series.emd", "series_1.ser"])
def test_a_refused_file_of_a_format_measure_reads_is_not_told_its_format_is_unread(tmp_path,
                                                                                name):
    # a file cut short while the microscope still writes it: the reason alone says so
    path = tmp_path / name
    path.write_bytes(b"\x00\x01" * 10)
    result = CliRunner().invoke(main, ["measure", str(path), "--out",
                                       str(tmp_path / "rows.parquet")])
    assert result.exit_code == 1
    assert f"skipped {path}: " in result.output
    assert "measure reads" not in result.output


def test_when_no_file_is_read_it_says_the_out_file_was_not_written(tmp_path):
    out = tmp_path / "rows.parquet"
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    cv2.imwrite(str(tmp_path / "good.png"), cap.labels)
    assert CliRunner().invoke(main, ["measure", str(tmp_path / "good.png"), "--out",
                                     str(out)]).exit_code == 0
    earlier = out.read_bytes()
    cv2.imwrite(str(tmp_path / "bad.png"), np.full(SHAPE, 7, np.uint8))
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "bad.png"), "--out", str(out)])
    assert result.exit_code == 1
    # the earlier run's file stays, and the user is told it is not this run's
    assert ("1 file(s) skipped, unreadable or refused (see above); "
            f"nothing written to {out}") in result.output
    assert out.read_bytes() == earlier


def test_a_pattern_that_matched_nothing_is_named_as_such(tmp_path):
    # the shell passes an unmatched pattern as it is; before, only "does not exist"
    pattern = str(tmp_path / "frames" / "*.tif")
    result = CliRunner().invoke(main, ["measure", pattern, "--out", str(tmp_path / "r.parquet")])
    assert result.exit_code == 2
    assert f"File '{pattern}' does not exist (a shell pattern that matched no file?)." \
        in result.output
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "f.tif"), "--out",
                                       str(tmp_path / "r.parquet")])
    assert result.exit_code == 2 and "shell pattern" not in result.output


@pytest.mark.parametrize(("table", "says"), [
    ((1.0, 2.0, 3.0), "values 1, 2, 3"),
    ((0.0, 127.0, 255.0), "values 0, 127, 255"),
    ((np.nan, 1.0, 2.0), "values 1, 2, NaN"),
])
def test_a_float_mask_in_another_numbering_is_refused_naming_its_values(tmp_path, table, says):
    # before: such a mask (Fiji's 32-bit conversion, a NaN background) was segmented by the
    # model as a picture of labels and its rows written, exit status 0
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, np.asarray(table, np.float32)[cap.labels])
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(path), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert (f"skipped {path}: labels must be class ids 0 background, 1 nanowire, 2 droplet "
            f"(255 unlabeled), got a float32 image of the {says}") in result.output
    assert not out.exists()


def test_a_dangling_link_among_the_inputs_is_skipped_and_the_others_measured(tmp_path):
    # a shell glob names a symbolic link whose target is gone; before, the whole command
    # stopped with a usage error and measured nothing
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    cv2.imwrite(str(tmp_path / "a.png"), cap.labels)
    (tmp_path / "b.png").symlink_to(tmp_path / "gone.png")
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "a.png"),
                                       str(tmp_path / "b.png"), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert (f"skipped {tmp_path / 'b.png'}: a symbolic link to "
            f"{str(tmp_path / 'gone.png')!r}, which does not exist") in result.output
    assert pq.read_table(out).column("source").to_pylist() == [str(tmp_path / "a.png")]


def test_a_label_png_of_2_or_4_bits_is_read_as_its_class_ids(tmp_path):
    # a PNG optimiser (optipng, oxipng) stores 0/1/2 in 2 bits, which OpenCV decodes as
    # 0/85/170; before, measure refused it with the advice to renumber the mask
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    exact = measure_contact_angle(cap.labels)
    for bits in (2, 4):
        path = tmp_path / f"labels_{bits}bit.png"
        grey_png(path, cap.labels, bits)
        out = tmp_path / f"rows_{bits}.parquet"
        result = CliRunner().invoke(main, ["measure", str(path), "--out", str(out)])
        assert result.exit_code == 0, result.output
        row = pq.read_table(out).to_pylist()[0]
        assert row["status"] == exact.status
        assert row["contact_angle_deg"] == pytest.approx(exact.contact_angle_deg)
    # a 1-bit image holds two classes at most: still refused as a 0/255 mask
    grey_png(tmp_path / "binary.png", (cap.labels == 2).astype(np.uint8), 1)
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "binary.png"), "--out",
                                       str(tmp_path / "b.parquet")])
    assert result.exit_code == 1 and "a 0/255 mask" in result.output


def test_a_palette_or_inverted_tiff_label_mask_is_told_to_keep_its_ids(tmp_path):
    # before: only "save it as greyscale", which in an image editor converts the colours
    # to grey levels instead of keeping the class ids
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    colormap = np.zeros((3, 256), np.uint16)
    colormap[0, 1] = colormap[1, 2] = 65535
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, cap.labels, photometric="palette", colormap=colormap)
    result = CliRunner().invoke(main, ["measure", str(path), "--out",
                                       str(tmp_path / "r.parquet")])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert f"{path}: palette (indexed colour) image" in output
    assert "save the indices as 8-bit grey, not its colours converted to grey" in output
    # Fiji saves an image with an inverting LUT as MinIsWhite: the fix keeps the ids
    path = tmp_path / "inverted.tif"
    tifffile.imwrite(path, cap.labels, photometric="miniswhite")
    result = CliRunner().invoke(main, ["measure", str(path), "--out",
                                       str(tmp_path / "r.parquet")])
    assert result.exit_code == 1
    assert "Invert LUT keeps its class ids" in " ".join(result.output.split())
    # the indexed PNG the error offers is read as its indices
    from PIL import Image

    png = Image.fromarray(cap.labels, mode="P")
    png.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0, 0, 0] * 253)
    png.save(tmp_path / "mask.png")
    out = tmp_path / "p.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "mask.png"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).to_pylist()[0]["contact_angle_deg"] == pytest.approx(
        measure_contact_angle(cap.labels).contact_angle_deg)


def test_a_folder_given_as_input_is_told_to_give_its_files(tmp_path):
    # before: only click's "File '...' is a directory."
    masks = tmp_path / "masks"
    masks.mkdir()
    for given in (str(masks), f"{masks}/"):
        result = CliRunner().invoke(main, ["measure", given, "--out",
                                           str(tmp_path / "r.parquet")])
        assert result.exit_code == 2
        assert (f"is a directory: give the files in it, e.g. {masks}/*.png or {masks}/*.tif."
                in " ".join(result.output.split()))


@pytest.mark.parametrize("axis_deg", [0.0, 30.0, 150.0])
def test_overlay_labels_stay_inside_the_picture(axis_deg):
    # before: the facet's label was placed at the line's lower end; a facet near the frame's
    # bottom edge put it below the picture, so the facet source (interface, ...) was not shown.

    c = render_ideal_cap((160, 160), 120.0, 30.0, axis_deg, (130.0, 80.0))
    r = measure_contact_angle(c.labels)
    assert r.facet_source == "interface"
    with_label = draw_overlay(None, c.labels, r)
    without = draw_overlay(None, c.labels, dataclasses.replace(r, facet_source=None))
    assert np.count_nonzero((with_label != without).any(axis=2)) > 100


def test_overlay_facet_label_is_not_covered_by_a_triple_point_label():
    # before: on the real fig1-88deg crop's labels (facet square to the picture, the right
    # triple point near the facet line's drawn end) "R 98.9" was drawn over the start of
    # "facet: interface"; so on the dashboard's docs picture.

    from nwwatch.measure.cli import read_labels

    path = Path(__file__).resolve().parents[1] / "bench/data/real/labels/fig1-88deg.png"
    labels = read_labels(path)[0][0]  # its unsure band given to the nearest class, as measure
    r = measure_contact_angle(labels)
    assert r.triple_right_row is not None and r.facet_source == "interface"
    picture = draw_overlay(None, labels, r)
    bare = draw_overlay(None, labels, dataclasses.replace(r, facet_source=None))
    # the label's dark box differs from the grey label rendering at every pixel: the
    # difference fills its bounding box unless something drawn later covers part of it
    rows, cols = np.nonzero((picture != bare).any(axis=2))
    assert len(rows) > 100
    assert len(rows) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)


def test_overlay_shows_the_rejected_points():
    # before: the points were drawn first and the fitted lines over them: on this frame
    # (the docs' figure) none of the 25 rejected interface points was left magenta.
    from nwwatch.synth.insitu import frame_params, render_insitu_frame

    image, labels, truth = render_insitu_frame(frame_params(7, 0), np.random.default_rng(0))
    r = measure_contact_angle(labels, pixel_size_nm=truth["pixel_size_nm"])
    rejected = np.rint(r.points.facet_rejected).astype(int)
    assert len(rejected) >= 10
    picture = draw_overlay(image, labels, r)
    # the triple points' green discs (radius 4 px at this size) are drawn over everything
    triples = np.array([[r.triple_left_row, r.triple_left_col],
                        [r.triple_right_row, r.triple_right_col]])
    clear = np.linalg.norm(rejected[:, None] - triples[None], axis=2).min(axis=1) > 6
    assert clear.sum() >= 10
    shown = rejected[clear]
    magenta = np.all(picture[shown[:, 0], shown[:, 1]] == (255, 0, 255), axis=1)
    assert magenta.mean() > 0.8


def test_overlay_used_points_stand_out_from_their_fitted_lines():
    # before: the points used for the circle were drawn in the circle's orange and those for
    # the facet line in its blue, on top of those lines: the points on a line could not be
    # told from the line itself.
    from nwwatch.measure.overlay import _BLUE, _ORANGE, _PALE_BLUE, _PALE_ORANGE
    from nwwatch.synth.insitu import frame_params, render_insitu_frame

    image, labels, truth = render_insitu_frame(frame_params(7, 0), np.random.default_rng(0))
    r = measure_contact_angle(labels, pixel_size_nm=truth["pixel_size_nm"])
    picture = draw_overlay(image, labels, r)
    for pts, line_colour, own in ((r.points.circle, _ORANGE, _PALE_ORANGE),
                                  (r.points.facet, _BLUE, _PALE_BLUE)):
        idx = np.rint(pts).astype(int)
        drawn = picture[idx[:, 0], idx[:, 1]]
        # (the triple points, labels and rejected points are drawn over a few of them)
        assert np.all(drawn == line_colour, axis=1).mean() < 0.05
        assert np.all(drawn == own, axis=1).mean() > 0.7


def test_the_caption_of_a_tall_narrow_frame_keeps_its_words_whole():
    # before: a 2000 x 64 frame's overlay was 64 px wide, its status read "no" and its
    # reason "no / nar / reg / of / at / lea / 12 / px"
    from nwwatch.measure.overlay import CAPTION_MIN_WIDTH_PX, _caption

    labels = np.zeros((2000, 64), np.uint8)
    r = measure_contact_angle(labels)
    assert not r.angle_valid and len(r.reason.split()) > 5
    picture = draw_overlay(None, labels, r)
    scale = 2000 / 512
    assert picture.shape[1] == int(CAPTION_MIN_WIDTH_PX * scale) > 64
    assert (picture[:2000, 64:] == 0).all()  # the margin right of the frame is black
    lines = [text for text, _, _ in _caption(r, picture.shape[1], scale)]
    assert r.contact_angle_deg is None and lines[0] == r.status
    assert " ".join(lines[1:]) == r.reason
    assert all(len(line.split()) >= 3 for line in lines[1:-1])
    # a frame as wide as the least width is drawn as before
    wide = np.zeros((512, 300), np.uint8)
    assert draw_overlay(None, wide, measure_contact_angle(wide)).shape[1] == 300


def test_draw_overlay_refuses_empty_labels_and_a_missing_result_naming_them():
    # an empty label image, which measure_contact_angle accepts (no_wire), failed inside
    # OpenCV; result None with an AttributeError
    empty = np.zeros((0, 0), np.uint8)
    with pytest.raises(ValueError, match=r"labels must be \(H, W\) with pixels"):
        draw_overlay(None, empty, measure_contact_angle(empty))
    labels = np.zeros((16, 16), np.uint8)
    with pytest.raises(TypeError, match="result must be measure_contact_angle's"):
        draw_overlay(None, labels, None)


def test_overlay_of_a_small_frame_is_enlarged_so_its_text_is_legible():
    # before: a 120 px crop kept its size, and the status and reason text at its smallest
    # legible size covered half the picture; the fit could not be seen under it.
    from nwwatch.measure.overlay import MIN_OVERLAY_SIDE_PX

    assert overlay_zoom((512, 512)) == overlay_zoom((4096, 300)) == 1
    assert overlay_zoom((256, 200)) == 2 and overlay_zoom((119, 127)) == 5
    assert overlay_zoom((20, 20)) == 16  # capped
    c = render_ideal_cap((120, 127), 120.0, 15.0, 60.0, (80.2, 60.7))
    r = measure_contact_angle(c.labels)
    assert r.angle_valid
    picture = draw_overlay(None, c.labels, r)
    z = overlay_zoom(c.labels.shape)
    assert picture.shape[1:] == (127 * z, 3) and picture.shape[0] > 120 * z
    assert max(picture.shape) >= MIN_OVERLAY_SIDE_PX
    # each frame pixel is a z x z block: the grey rendering of a wire pixel far from any
    # drawing fills its whole block
    wire = np.pad(c.labels == 1, 1).astype(np.uint8)  # the frame's edge bounds it too
    inner = cv2.erode(wire, np.ones((7, 7), np.uint8))[1:-1, 1:-1]
    rows, cols = np.nonzero(inner)
    far = np.argmax(np.hypot(rows - r.circle_center_row, cols - r.circle_center_col))
    block = picture[rows[far] * z:(rows[far] + 1) * z, cols[far] * z:(cols[far] + 1) * z]
    assert (block == 120).all()
    # the fitted circle passes through the zoomed droplet outline: its centre maps to the
    # centre of the frame pixel's block
    from nwwatch.measure.overlay import _ONE, _pt

    x, y = _pt(r.circle_center_row, r.circle_center_col, z)
    assert x / _ONE == pytest.approx((r.circle_center_col + 0.5) * z - 0.5, abs=1 / _ONE)
    assert y / _ONE == pytest.approx((r.circle_center_row + 0.5) * z - 0.5, abs=1 / _ONE)
    # the rejected and used points fill their blocks
    used = np.rint(r.points.circle).astype(int)[:20]
    for row, col in used:
        assert (picture[row * z:(row + 1) * z, col * z:(col + 1) * z] != 120).any()


def test_overlay_of_a_large_frame_is_reduced_with_its_drawing_in_place():
    # before: a 4096² camera frame's picture was drawn at full size, a 21 MB PNG whose
    # encoding took most of a second of the measuring thread per frame
    from nwwatch.measure.overlay import _ONE, MAX_OVERLAY_SIDE_PX, _pt, overlay_reduction

    assert overlay_reduction((2048, 2048)) == overlay_reduction((512, 300)) == 1
    assert overlay_reduction((4096, 4096)) == 2 and overlay_reduction((2049, 100)) == 2
    assert overlay_reduction((5000, 6145)) == 4
    shape = (4100, 2500)  # reduced by 3, neither side a multiple of it
    # a cap rendered at a third of the size, each pixel made 3 x 3 (the full-size rendering
    # took 11 s of the suite)
    small = render_ideal_cap((1367, 834), 120.0, 100.0, 60.0, (800.07, 433.57)).labels
    labels = np.repeat(np.repeat(small, 3, axis=0), 3, axis=1)[:shape[0], :shape[1]]
    r = measure_contact_angle(labels)
    assert r.angle_valid
    image = np.where(labels == 2, 800.0, np.where(labels == 1, 1500.0, 3000.0))
    picture = draw_overlay(image.astype(np.float32), labels, r)
    k = overlay_reduction(shape)
    assert k == 3 and picture.shape[1:] == (834, 3) and picture.shape[0] > 1367
    assert max(picture.shape[:2]) < MAX_OVERLAY_SIDE_PX
    # each canvas pixel is the mean of its 3 x 3 block of frame pixels: inside the wire, away
    # from any drawing, the wire's grey (1500 between 800 and 3000: 81 of 255)
    grey = cv2.cvtColor(picture[:1367], cv2.COLOR_BGR2GRAY)
    wire = cv2.erode((labels[1::3, 1::3] == 1).astype(np.uint8), np.ones((9, 9), np.uint8))
    grey = grey[:wire.shape[0], :wire.shape[1]]  # the padded last blocks left out
    assert wire.sum() > 1000 and np.median(grey[wire > 0]) == pytest.approx(81, abs=3)
    # the circle's centre and a triple point are drawn where their frame pixels went
    x, y = _pt(r.circle_center_row, r.circle_center_col, 1 / k)
    assert x / _ONE == pytest.approx((r.circle_center_col + 0.5) / k - 0.5, abs=1 / _ONE)
    row, col = (round((v + 0.5) / k - 0.5) for v in (r.triple_left_row, r.triple_left_col))
    patch = picture[row - 1:row + 2, col - 1:col + 2].reshape(-1, 3).astype(int)
    assert np.any(np.all(np.abs(patch - (0, 200, 0)) < 60, axis=1))  # green triple point
    # the points the circle used are pale orange dots on the reduced outline
    used = np.rint((r.points.circle + 0.5) / k - 0.5).astype(int)
    colours = picture[used[:, 0], used[:, 1]].astype(int)
    assert np.all(colours == (150, 215, 255), axis=1).mean() > 0.7


@pytest.mark.parametrize("command", ["measure", "replay", "label"])
def test_model_option_takes_a_shipped_name_and_names_a_checkpoint(tmp_path, command):
    # After `nwwatch train --out mine.onnx`, `--model mine.pt` was ONNX Runtime's "Protobuf
    # parsing failed" (measure, replay, label), and `--model insitu-default`, which `evaluate`
    # reads, was "File 'insitu-default' does not exist".
    frame = tmp_path / "acq" / "f.tif"
    frame.parent.mkdir()
    tifffile.imwrite(frame, np.random.default_rng(0).integers(0, 4000, (64, 64), np.uint16))
    checkpoint = tmp_path / "mine.pt"
    checkpoint.write_bytes(b"PK\x03\x04")  # a torch file's start
    out = {"measure": ["--out", str(tmp_path / "a.parquet")],
           "replay": ["--out", str(tmp_path / "res")],
           "label": ["--out", str(tmp_path / "DATA"), "--no-browser", "--port", "0"]}[command]
    target = str(frame if command != "replay" else frame.parent)
    result = CliRunner().invoke(main, [command, target, "--model", str(checkpoint), *out])
    assert result.exit_code == 2, result.output
    assert (f"{checkpoint} is a training checkpoint, not an ONNX model: give the model "
            f"`nwwatch train` exported with it, {tmp_path / 'mine.onnx'}") in result.output
    assert not (tmp_path / "res").exists() and not (tmp_path / "DATA").exists()
    if command == "label":  # a command that is not refused serves until stopped
        return
    result = CliRunner().invoke(main, [command, target, "--model", "insitu-default", *out])
    assert result.exit_code == 0, result.output


def test_a_linearly_resized_mask_is_refused_naming_the_interpolation(tmp_path):
    # linear interpolation turns the 0-to-2 step around the droplet into a rim of 1 (wire)
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    linear, nearest = tmp_path / "linear.png", tmp_path / "nearest.png"
    cv2.imwrite(str(linear), cv2.resize(cap.labels, (400, 400), interpolation=cv2.INTER_LINEAR))
    cv2.imwrite(str(nearest), cv2.resize(cap.labels, (400, 400),
                                         interpolation=cv2.INTER_NEAREST))
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(linear), str(nearest), "--out", str(out)])
    assert result.exit_code == 1
    assert f"skipped {linear}: " in result.output and "nearest-neighbour" in result.output
    rows = pq.read_table(out).to_pylist()
    assert [r["source"] for r in rows] == [str(nearest)]
    assert rows[0]["status"] == "ok"
    assert abs(rows[0]["contact_angle_deg"] - cap.contact_angle_deg) < 1.0


def test_a_grey_mask_is_told_to_be_renumbered_not_read_as_a_frame(tmp_path):
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.array([0, 127, 255], np.uint8)[cap.labels])
    result = CliRunner().invoke(main, ["measure", str(grey), "--out",
                                       str(tmp_path / "rows.parquet")])
    assert result.exit_code == 1
    assert f"{grey}: label values [127] out of range: expected 0..2 or 255" in result.output
    assert "renumber them to 0..2 with a table: docs/measurement.md, 'Masks from other tools'" \
        in " ".join(result.output.split())


def test_a_label_without_a_grey_image_of_its_stem_is_warned_about(tmp_path):
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    mask = tmp_path / "good_mask.png"
    cv2.imwrite(str(mask), cap.labels)
    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "good.tif", np.where(cap.labels == 0, 3000, 1000).astype(np.uint16))
    result = CliRunner().invoke(main, ["measure", str(mask), "--out", str(tmp_path / "r.parquet"),
                                       "--overlays", str(tmp_path / "qa"),
                                       "--images", str(images)])
    assert result.exit_code == 0, result.output
    assert (f"warning: {mask}[0]: no good_mask.tif, .tiff or .png (or good_mask in another "
            "format measure "
            f"reads) in {images}") in " ".join(result.output.split())
    assert "good.tif there" in result.output


def _masks_recipe() -> str:
    """The Python recipe of docs/measurement.md's "Masks from other tools", as printed."""
    text = (Path(__file__).parents[1] / "docs" / "measurement.md").read_text()
    section = text.split("### Masks from other tools", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_recipe_for_masks_from_other_tools_runs(tmp_path, monkeypatch):
    recipe = _masks_recipe()
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    for folder in ("masks", "frames", "labels"):
        (tmp_path / folder).mkdir()
    # another tool's export: 0/127/255 grey, half the frame's size, an unsure band of 128
    half = cv2.resize(cap.labels, (100, 100), interpolation=cv2.INTER_NEAREST)
    grey = np.array([0, 127, 255], np.uint8)[half]
    edge = cv2.dilate(half, np.ones((3, 3), np.uint8)) != cv2.erode(half, np.ones((3, 3),
                                                                            np.uint8))
    grey[edge] = 128
    cv2.imwrite(str(tmp_path / "masks" / "frame_0001_mask.png"), grey)
    tifffile.imwrite(tmp_path / "frames" / "frame_0001.tif",
                     np.where(cap.labels == 0, 3000, 1000).astype(np.uint16))
    monkeypatch.chdir(tmp_path)
    exec(compile(recipe, "docs/measurement.md", "exec"), {})
    labels = cv2.imread(str(tmp_path / "labels" / "frame_0001.png"), cv2.IMREAD_UNCHANGED)
    # the unsure band stays unlabeled: a DATA folder leaves it out, measure fills it
    assert labels.shape == SHAPE and set(np.unique(labels)) == {0, 1, 2, 255}
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", "labels/frame_0001.png", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "unlabeled (255) px of frame_0001.png[0] were given the class" in result.output
    row = pq.read_table(out).to_pylist()[0]
    assert row["status"] == "ok"
    assert abs(row["contact_angle_deg"] - cap.contact_angle_deg) < 3.0


def test_the_recipe_for_masks_from_other_tools_reads_an_rgba_colour_mask(tmp_path, monkeypatch):
    # GIMP, napari and Label Studio save colour masks with an alpha channel; before, the
    # recipe's (B, G, R) keys failed to broadcast against OpenCV's four channels
    recipe = _masks_recipe()
    grey_table = "table = {0: 0, 127: 1, 255: 2}"
    assert grey_table in recipe
    recipe = recipe.replace(grey_table, "table = {(0, 0, 0): 0, (255, 0, 0): 1, (0, 255, 0): 2}")
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    for folder in ("masks", "frames", "labels"):
        (tmp_path / folder).mkdir()
    bgra = np.array([[0, 0, 0, 255], [255, 0, 0, 255], [0, 255, 0, 255]], np.uint8)[cap.labels]
    cv2.imwrite(str(tmp_path / "masks" / "frame_0001_mask.png"), bgra)
    tifffile.imwrite(tmp_path / "frames" / "frame_0001.tif",
                     np.where(cap.labels == 0, 3000, 1000).astype(np.uint16))
    monkeypatch.chdir(tmp_path)
    exec(compile(recipe, "docs/measurement.md", "exec"), {})
    labels = cv2.imread(str(tmp_path / "labels" / "frame_0001.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(labels, cap.labels)


def test_a_label_image_takes_its_frame_in_another_format_the_service_reads(tmp_path):
    # before: --images looked for .tif, .tiff and .png only, so the mask of an MRC (or DM,
    # EMD, TIA) frame got no pixel size and a warning that its frame was not there
    import mrcfile

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    images = tmp_path / "frames"
    images.mkdir()
    with mrcfile.new(images / "frame_0001.mrc") as mrc:
        mrc.set_data(np.where(cap.labels == 0, 3000, 1000).astype(np.int16))
        mrc.voxel_size = (2.5, 2.5, 2.5)  # Å
    cv2.imwrite(str(tmp_path / "frame_0001.png"), cap.labels)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "frame_0001.png"), "--out",
                                       str(out), "--images", str(images)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert pq.read_table(out).to_pylist()[0]["pixel_size_nm"] == pytest.approx(0.25)


def test_label_images_take_the_pixel_size_of_their_frame_of_the_same_shape(tmp_path):
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    masks, images = tmp_path / "masks", tmp_path / "images"
    masks.mkdir()
    images.mkdir()
    cv2.imwrite(str(masks / "same.png"), cap.labels)
    cv2.imwrite(str(masks / "half.png"), cv2.resize(cap.labels, (100, 100),
                                                    interpolation=cv2.INTER_NEAREST))
    grey = np.where(cap.labels == 0, 3000, 1000).astype(np.uint16)
    for stem in ("same", "half"):
        write_frame_tiff(images / f"{stem}.tif", grey, pixel_size_nm=0.5)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(masks / "same.png"), str(masks / "half.png"),
                                       "--out", str(out), "--images", str(images)])
    assert result.exit_code == 0, result.output
    assert f"its frame {images / 'half.tif'} has shape (200, 200), labels (100, 100)" \
        in result.output and "its row has no pixel size" in " ".join(result.output.split())
    same, half = pq.read_table(out).to_pylist()
    assert same["pixel_size_nm"] == pytest.approx(0.5)
    assert same["base_half_width_nm"] == pytest.approx(0.5 * same["base_half_width_px"])
    assert half["pixel_size_nm"] is None and half["base_half_width_nm"] is None
    # --pixel-size-nm, the size of the mask's own pixels, comes first
    result = CliRunner().invoke(main, ["measure", str(masks / "half.png"), "--out", str(out),
                                       "--images", str(images), "--pixel-size-nm", "1.0"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).to_pylist()[0]["pixel_size_nm"] == pytest.approx(1.0)


def test_a_grey_mask_read_as_labels_is_told_to_be_renumbered(tmp_path):
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.array([0, 127, 255], np.uint8)[cap.labels])
    result = CliRunner().invoke(main, ["measure", str(grey), "--read-as", "labels", "--out",
                                       str(tmp_path / "rows.parquet")])
    assert result.exit_code == 1
    assert "renumber them to 0..2 with a table" in " ".join(result.output.split())
    assert "--read-as frames" not in result.output


def test_a_ragged_hand_drawn_interface_is_not_taken_for_an_interpolated_rim(tmp_path):
    """Background pixels between a ragged wire edge and the droplet make wire pixels that
    touch both, along the interface; they are the wire's own edge, not a rim that resizing
    left around the droplet, and the mask is measured. Was: refused as 'resized with linear
    interpolation' (37 of 220 such benchmark labels)."""
    from nwwatch.classes import interpolated_rim_problem

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    labels = cap.labels.copy()
    rng = np.random.default_rng(3)
    k3 = np.ones((3, 3), np.uint8)
    for cls in (1, 2):  # a quarter of each object's boundary pixels flipped in or out
        inside = (labels == cls).astype(np.uint8)
        inner = inside.astype(bool) & ~cv2.erode(inside, k3).astype(bool)
        outer = cv2.dilate(inside, k3).astype(bool) & ~inside.astype(bool) & (labels == 0)
        flip = rng.random(labels.shape) < 0.25
        labels[inner & flip] = 0
        labels[outer & flip] = cls
    assert interpolated_rim_problem(labels) is None
    linear = cv2.resize(cap.labels, (400, 400), interpolation=cv2.INTER_LINEAR)
    assert interpolated_rim_problem(linear) is not None
    ragged = tmp_path / "ragged.png"
    cv2.imwrite(str(ragged), labels)
    result = CliRunner().invoke(main, ["measure", str(ragged), "--out",
                                       str(tmp_path / "rows.parquet")])
    assert result.exit_code == 0, result.output


def test_a_mask_with_droplet_and_wire_ids_exchanged_is_named(tmp_path):
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    exchanged = np.choose(cap.labels, [0, 2, 1]).astype(np.uint8)  # 1 droplet, 2 nanowire
    cv2.imwrite(str(tmp_path / "exchanged.png"), exchanged)
    cv2.imwrite(str(tmp_path / "right.png"), cap.labels)
    no_wire = np.where(cap.labels == 2, 2, 0).astype(np.uint8)  # refused in either order
    cv2.imwrite(str(tmp_path / "no_wire.png"), no_wire)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", *(str(tmp_path / f"{n}.png") for n in
                                                    ("exchanged", "right", "no_wire")),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["source"]).stem: r for r in pq.read_table(out).to_pylist()}
    # the row keeps the refusal of the mask as given; the note says what the order would give
    assert not rows["exchanged"]["angle_valid"]
    assert rows["right"]["status"] == "ok" and not rows["no_wire"]["angle_valid"]
    right = rows["right"]["contact_angle_deg"]
    notes = [line for line in result.output.splitlines() if "exchanged (1 droplet" in line]
    assert notes == [f"  note: with 1 and 2 exchanged (1 droplet, 2 nanowire) it gives "
                     f"{right:.2f} deg; if your tool numbers them so, renumber the mask "
                     "(docs/measurement.md, 'Masks from other tools')"]
    lines = result.output.splitlines()
    assert lines[lines.index(notes[0]) - 1].startswith(f"{tmp_path / 'exchanged.png'}[0]")
    assert (f"1 refused label page(s) give an angle with the nanowire and droplet ids "
            f"exchanged: check the masks' class order (first: {tmp_path / 'exchanged.png'}[0])"
            in result.output)


def test_overlays_of_noisy_frames_are_written_as_compactly_as_the_services(tmp_path):
    """`measure --overlays` wrote PNGs at OpenCV's default settings: 42 MB for a 4096² raw
    frame's overlay where the service's QA picture of the same frame is 22.5 MB (zlib level
    1). A noisy 1024² frame behind its label image shows the same ratio."""
    from nwwatch.io.png import PICTURE_PNG_PARAMS

    shape = (1024, 1024)
    cap = render_ideal_cap(shape, 112.0, 125.0, 35.0, (550.3, 450.8))
    cv2.imwrite(str(tmp_path / "f.png"), cap.labels)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    grey = np.where(cap.labels == 0, 3000, 1000) + rng.normal(0, 300, shape)
    tifffile.imwrite(images / "f.tif", grey.astype(np.uint16))
    result = CliRunner().invoke(main, [
        "measure", str(tmp_path / "f.png"), "--out", str(tmp_path / "a.parquet"),
        "--overlays", str(tmp_path / "ov"), "--images", str(images)])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "ov" / "f_overlay.png").read_bytes()
    picture = cv2.imdecode(np.frombuffer(written, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[1] == 1024
    assert len(written) <= 1.05 * len(cv2.imencode(".png", picture, PICTURE_PNG_PARAMS)[1])


def test_an_out_inside_a_results_folders_frames_is_refused(tmp_path):
    # before: '--out RESULTS/frames/acquisition=.../frames-....parquet' replaced the service's
    # results file with these rows (the ledger still counted the lost ones done), and a new
    # name there added rows that status, the dashboard and pandas took for results
    from dashkit import write_frames
    from servicekit import model

    from nwwatch.service import replay

    acq = tmp_path / "acq"
    acq.mkdir()
    write_frames(acq, [105.0, 110.0])
    res = tmp_path / "res"
    replay(acq, res, model=model(tmp_path))
    (batch,) = (res / "frames").rglob("*.parquet")
    before = batch.read_bytes()
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    labels = tmp_path / "f.png"
    cv2.imwrite(str(labels), cap.labels)
    for out in (batch, batch.parent / "mine.parquet", res / "frames" / "mine.parquet"):
        result = CliRunner().invoke(main, ["measure", str(labels), "--out", str(out)])
        assert result.exit_code == 2, result.output
        said = " ".join(result.output.split())
        assert f"{out} is inside {res / 'frames'}" in said
        assert f"--out {res / out.name}" in said
    assert batch.read_bytes() == before
    assert list((res / "frames").rglob("*.parquet")) == [batch]
    result = CliRunner().invoke(main, ["measure", str(labels), "--out", str(res / "mine.parquet")])
    assert result.exit_code == 0, result.output  # beside frames/: not a results file


def test_an_out_inside_the_frames_of_results_whose_ledger_is_kept_elsewhere_is_refused(
        tmp_path):
    # a [state] ledger outside the results folder leaves no RESULTS/ledger.sqlite, only
    # ledger.sqlite.elsewhere and the lock: '--out RESULTS/frames/...' was written there
    from dashkit import write_frames
    from servicekit import model

    from nwwatch.service import replay

    acq = tmp_path / "acq"
    acq.mkdir()
    write_frames(acq, [105.0, 110.0])
    res = tmp_path / "res"
    config = tmp_path / "c.toml"
    config.write_text(f'[[watch]]\npath = "{acq}"\nkind = "insitu"\nmodel = '
                      f'"{model(tmp_path)}"\n[output]\nresults = "{res}"\n[state]\n'
                      f'ledger = "{tmp_path / "state" / "ledger.sqlite"}"\n')
    replay(acq, res, config=config)
    assert not (res / "ledger.sqlite").exists() and (tmp_path / "state" / "ledger.sqlite").exists()
    (batch,) = (res / "frames").rglob("*.parquet")
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    labels = tmp_path / "f.png"
    cv2.imwrite(str(labels), cap.labels)
    out = batch.parent / "mine.parquet"
    result = CliRunner().invoke(main, ["measure", str(labels), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"{out} is inside {res / 'frames'}" in " ".join(result.output.split())
    assert list((res / "frames").rglob("*.parquet")) == [batch]


def test_a_mask_damaged_by_jpeg_or_resizing_is_refused_not_segmented(tmp_path):
    # such masks hold more than 4 grey values: segmented as frames, a picture of labels
    # would give rows as if of a frame
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    damaged = []
    for name, grey, quality in (("grey.jpg.png", np.array([0, 127, 255], np.uint8), 95),
                                ("ids.jpg.png", np.array([0, 1, 2], np.uint8), 50)):
        ok, data = cv2.imencode(".jpg", grey[cap.labels], [cv2.IMWRITE_JPEG_QUALITY, quality])
        cv2.imwrite(str(tmp_path / name), cv2.imdecode(data, cv2.IMREAD_GRAYSCALE))
        damaged.append(tmp_path / name)
    resized = tmp_path / "resized.tif"
    tifffile.imwrite(resized, cv2.resize(cap.labels.astype(np.float32), (300, 300),
                                         interpolation=cv2.INTER_CUBIC))
    damaged.append(resized)
    # a real frame (a crop of a published in-situ frame) is still a frame
    real = Path(__file__).parents[1] / "bench" / "data" / "real" / "images" / "fig6.png"
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", *map(str, damaged), str(real), "--out",
                                       str(out)])
    assert result.exit_code == 1
    for path in damaged:
        line = next(x for x in result.output.splitlines() if x.startswith(f"skipped {path}:"))
        assert "reads as a damaged mask, not a frame" in line and "--read-as frames" in line
    assert f"{real}[0] (frame)" in result.output
    assert [r["source"] for r in pq.read_table(out).to_pylist()] == [str(real)]
    # asked for, they are segmented as frames
    result = CliRunner().invoke(main, ["measure", str(damaged[0]), "--read-as", "frames",
                                       "--out", str(tmp_path / "frames.parquet")])
    assert result.exit_code == 0, result.output
    assert f"{damaged[0]}[0] (frame)" in result.output


def test_labels_painted_with_values_that_are_not_class_ids_are_named_as_such(tmp_path):
    # a brush left at 3 or 7: was refused as "a damaged mask (JPEG compression or resizing)",
    # or, with 3 alone, in other words than the DATA readers'; now, as they say it, which
    # values are not class ids
    from nwwatch.io.dataset import DatasetLayoutError, read_label_image

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    painted = cap.labels.copy()
    painted[20:30, 20:40] = 3
    painted[150:160, 150:170] = 7
    three = cap.labels.copy()
    three[20:30, 20:40] = 3
    unlabeled = painted.copy()
    unlabeled[:, :8] = 255
    names = {"painted.png": painted, "three.png": three, "unlabeled.png": unlabeled}
    for name, labels in names.items():
        cv2.imwrite(str(tmp_path / name), labels)
    out = tmp_path / "rows.parquet"
    for read_as in ("auto", "labels"):
        result = CliRunner().invoke(main, ["measure", *(str(tmp_path / n) for n in names),
                                           "--read-as", read_as, "--out", str(out)])
        assert result.exit_code == 1, result.output
        said = " ".join(result.output.split())
        for name in names:
            path = tmp_path / name
            with pytest.raises(DatasetLayoutError) as train_says:  # nwwatch train's reader
                read_label_image(path)
            reason = train_says.value.reason
            assert reason.startswith(f"label values {[3] if name == 'three.png' else [3, 7]} "
                                     "out of range: expected 0..2 or 255 (unlabeled)")
            assert f"skipped {path}: {reason}" in said
        assert "damaged mask" not in said and "--read-as frames" not in said
        assert not out.exists()


def test_a_jpeg_file_named_png_is_refused_as_a_jpeg(tmp_path):
    # JPEG bytes under a .png name decode by content: their edge ids (3s) look like "a mask
    # with other class ids"; the file is named as the JPEG it is
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    ok, data = cv2.imencode(".jpg", cap.labels, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    path = tmp_path / "labels.png"
    path.write_bytes(data.tobytes())
    result = CliRunner().invoke(main, ["measure", str(path), "--out",
                                       str(tmp_path / "rows.parquet")])
    assert result.exit_code == 1, result.output
    assert f"skipped {path}: a JPEG file named .png (a lossy save)" in result.output
    assert "other class ids" not in result.output


def test_an_unsure_band_on_one_page_or_in_a_float_image_and_an_all_unlabeled_page(tmp_path):
    cap, banded = _cap_with_unsure_band()
    exact = measure_contact_angle(cap.labels)
    count = int(np.count_nonzero(banded == 255))
    # a stack whose second page alone has the band, and the band saved as 32-bit float
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([cap.labels, banded]))
    tifffile.imwrite(tmp_path / "float.tif", banded.astype(np.float32))
    cv2.imwrite(str(tmp_path / "blank.png"), np.full(SHAPE, 255, np.uint8))
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", *(str(tmp_path / n) for n in
                                                    ("stack.tif", "float.tif", "blank.png")),
                                       "--out", str(out)])
    assert result.exit_code == 1
    rows = pq.read_table(out).to_pylist()
    assert [(Path(r["source"]).name, r["frame"]) for r in rows] == [
        ("stack.tif", 0), ("stack.tif", 1), ("float.tif", 0)]
    for row in rows:
        assert row["status"] == "ok"
        assert row["contact_angle_deg"] == pytest.approx(exact.contact_angle_deg, abs=0.5)
    assert f"{count} unlabeled (255) px of stack.tif[1] were given the class" in result.output
    assert "px of stack.tif[0]" not in result.output  # the page without 255
    assert f"{count} unlabeled (255) px of float.tif[0] were given the class" in result.output
    # nothing labeled is said so, not read as a 0/255 mask of one object
    refused = " ".join(result.output.split())
    assert (f"{tmp_path / 'blank.png'}: labels must be 0 background, 1 nanowire, 2 droplet; "
            "every pixel is 255 (unlabeled): nothing to measure") in refused
    assert "0/255 mask" not in refused


def test_a_series_with_one_dark_page_is_frames_and_a_stack_of_damaged_masks_is_refused(
        tmp_path):
    # a beam-blanked page (a few counts a pixel) holds nearly all its pixels on 4 values, as
    # a damaged mask does; the series' other pages are frames, so the file is measured
    rng = np.random.default_rng(0)
    series = rng.poisson(3000, (3, 128, 128)).astype(np.uint16)
    series[1] = rng.poisson(0.5, (128, 128))
    tifffile.imwrite(tmp_path / "series.tif", series, photometric="minisblack")
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    resized = cv2.resize(cap.labels.astype(np.float32), (300, 300),
                         interpolation=cv2.INTER_CUBIC)
    tifffile.imwrite(tmp_path / "masks.tif", np.stack([resized, resized]),
                     photometric="minisblack")
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "series.tif"),
                                       str(tmp_path / "masks.tif"), "--out", str(out)])
    assert result.exit_code == 1
    assert [(Path(r["source"]).name, r["frame"]) for r in pq.read_table(out).to_pylist()] == [
        ("series.tif", 0), ("series.tif", 1), ("series.tif", 2)]
    line = next(x for x in result.output.splitlines()
                if x.startswith(f"skipped {tmp_path / 'masks.tif'}:"))
    assert "reads as a damaged mask, not a frame" in line


def _vertical_cap() -> np.ndarray:
    """A droplet (120 deg) on a vertical wire, cols 78-178, that runs to the bottom of a
    256 x 256 frame; the facet on row 150."""
    return render_ideal_cap((256, 256), 120.0, 50.0, 90.0, (150.0, 128.0)).labels


def test_a_strip_along_the_border_takes_its_classes_and_a_wide_band_between_them_not():
    from scipy.ndimage import distance_transform_edt

    from nwwatch.classes import UnsureBandError, fill_unsure_band, unsure_band_problem

    exact = _vertical_cap()
    rows, cols = np.indices(exact.shape)

    def band(labels, depth_px):  # each class's pixels within depth_px of another unlabeled
        out = labels.copy()
        for cls in (0, 1, 2):
            inside = labels == cls
            out[inside & (distance_transform_edt(inside) <= depth_px)] = 255
        return out

    ragged = exact.copy()
    ragged[-40:] = 255
    ragged[-60:-40][np.random.default_rng(0).random((20, 256)) < 0.5] = 255
    extended = {  # the classes on the region's one side: each runs straight on to the border
        "bottom 20 rows": np.where(rows >= 236, 255, exact),
        "bottom 60 rows and a 2 px band round every class": np.where(rows >= 196, 255,
                                                                     band(exact, 2)),
        "bottom 40 rows, ragged": ragged,
        "bottom and left 30 px": np.where((rows >= 226) | (cols < 30), 255, exact),
    }
    for name, labels in extended.items():
        assert unsure_band_problem(labels.astype(np.uint8)) is None, name
        filled = fill_unsure_band(labels.astype(np.uint8))
        assert np.count_nonzero(filled != exact) <= 200, name  # the ragged strip's corners
    wide = {  # where the boundary lies in these is the annotator's to say
        "a 40 px band across the frame between droplet and wire":
            (np.where(np.abs(rows - 150) <= 20, 255, exact), ""),
        "a 40 px band on the wire's edge to the border":
            (np.where((np.abs(cols - 78) <= 20) & (rows > 170), 255, exact),
             "background and nanowire"),
        "a 40 px band between wire and droplet":
            (np.where((np.abs(rows - 150) <= 20) & (exact > 0), 255, exact), ""),
        "a bottom strip ending beside the wire: background along one side, wire the next":
            (np.where((rows >= 216) & (cols < 216), 255, exact), "background and nanowire"),
    }
    for name, (labels, between) in wide.items():
        problem = unsure_band_problem(labels.astype(np.uint8))
        assert problem is not None and "px from any labeled pixel there" in problem, name
        assert f"lies between {between}" in problem, name
        with pytest.raises(UnsureBandError, match="give it its classes"):
            fill_unsure_band(labels.astype(np.uint8))
    # a 28 px band between wire and droplet is an unsure band: its boundary midway
    assert unsure_band_problem(
        np.where((np.abs(rows - 150) <= 14) & (exact > 0), 255, exact).astype(np.uint8)) is None


def test_measure_extends_a_border_strip_and_notes_the_filled_pixels_per_page(tmp_path):
    exact = _vertical_cap()
    strip = exact.copy()
    strip[-20:] = 255  # the bottom rows left out, across wire and background
    wide = exact.copy()
    wide[130:171] = 255  # a 40 px band across the frame between droplet and wire
    tifffile.imwrite(tmp_path / "pages.tif", np.stack([strip, exact, strip[::-1, ::-1]]),
                     photometric="minisblack")
    tifffile.imwrite(tmp_path / "refused.tif", np.stack([exact, wide]),
                     photometric="minisblack")
    cv2.imwrite(str(tmp_path / "strip.png"), strip)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", *(str(tmp_path / n) for n in
                                                    ("pages.tif", "refused.tif", "strip.png")),
                                       "--out", str(out)])
    assert result.exit_code == 1, result.output
    expected = measure_contact_angle(exact).contact_angle_deg
    rows = pq.read_table(out).to_pylist()
    assert [(Path(r["source"]).name, r["frame"]) for r in rows] == [
        ("pages.tif", 0), ("pages.tif", 1), ("pages.tif", 2), ("strip.png", 0)]
    for row in rows:
        assert row["status"] == "ok"
        assert row["contact_angle_deg"] == pytest.approx(expected, abs=0.01)
    lines = result.output.splitlines()
    note = ("  note: 5120 unlabeled (255) px of {} were given the class of the nearest labeled "
            "pixel (a boundary midway across an unsure band, or run on to the frame's border)")
    # each under its page's line; the page without 255 has none
    for source, page in (("pages.tif", 0), ("pages.tif", 2), ("strip.png", 0)):
        k = next(i for i, line in enumerate(lines) if line.startswith(
            f"{tmp_path / source}[{page}] (labels): ok"))
        assert lines[k + 1] == note.format(f"{source}[{page}]")
    k = next(i for i, line in enumerate(lines) if line.startswith(f"{tmp_path}/pages.tif[1]"))
    assert not lines[k + 1].startswith("  note:")
    assert sum("unlabeled (255) px of" in line for line in lines) == 3
    refused = " ".join(result.output.split())
    assert (f"skipped {tmp_path / 'refused.tif'}: labels must be 0 background, 1 nanowire, "
            "2 droplet; page 1: an unlabeled (255) region of") in refused


def test_a_label_stack_refused_for_one_page_names_that_page(tmp_path):
    # before: "label values [3] out of range ..." with no page: which page to fix?
    exact = _vertical_cap()
    stroke = exact.copy()
    stroke[10:20, 10:20] = 3
    tifffile.imwrite(tmp_path / "values.tif", np.stack([exact, exact, stroke]),
                     photometric="minisblack")
    tifffile.imwrite(tmp_path / "single.tif", stroke, photometric="minisblack")
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "values.tif"),
                                       str(tmp_path / "single.tif"),
                                       "--out", str(tmp_path / "rows.parquet")])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert f"skipped {tmp_path / 'values.tif'}: page 2: label values [3] out of range" in said
    # one page: no page to name
    assert f"skipped {tmp_path / 'single.tif'}: label values [3] out of range" in said


def test_a_model_that_fails_on_a_frame_skips_that_file_naming_the_model(tmp_path,
                                                                        monkeypatch):
    # before: a model that loads (`nwwatch model`: "service: loads it") but that ONNX Runtime
    # cannot run on a frame (an error type of its own, derived from Exception) ended measure
    # in a traceback, losing the rows measured before it; replay fails such a file cleanly
    from onnx_models import build_threshold_model
    from servicekit import paint_insitu

    from nwwatch.segment.session import Segmenter

    onnx = build_threshold_model(tmp_path / "model.onnx")
    frame = (paint_insitu(117.0, size=128, half_width=16)
             + np.random.default_rng(3).integers(-3, 4, (128, 128))).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", frame)
    tifffile.imwrite(tmp_path / "b.tif", np.stack([frame, frame[:, ::-1], frame]),
                     photometric="minisblack")
    real = Segmenter.segment
    calls = []

    class OrtFail(Exception):  # as onnxruntime's Fail: not a RuntimeError
        pass

    def segment(self, images, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # b.tif's second page
            raise OrtFail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned "
                          "while running Concat node.\nmore lines")
        return real(self, images, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "segment", segment)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "a.tif"),
                                       str(tmp_path / "b.tif"), "--model", str(onnx),
                                       "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    said = " ".join(result.output.split())
    assert (f"skipped {tmp_path / 'b.tif'} from page 1 on (its first 1 page(s) are in the "
            f"rows): the model {onnx} failed on it (OrtFail: [ONNXRuntimeError] : 1 : FAIL : "
            "Non-zero status code returned while running Concat node.)") in said, said
    rows = pq.read_table(out).to_pylist()
    assert [(Path(r["source"]).name, r["frame"]) for r in rows] == [("a.tif", 0), ("b.tif", 0)]


def test_a_file_named_twice_gives_its_rows_once_under_its_absolute_path(tmp_path,
                                                                        monkeypatch):
    # before: a row per spelling (overlapping globs, relative and absolute), and source as
    # typed ("labels/a.png"), which matched no service row and no other working directory
    folder = tmp_path / "labels"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name),
                    render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8)).labels)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "m.parquet"
    result = CliRunner().invoke(main, ["measure", "labels/a.png", "labels/b.png",
                                      "labels/a.png", str(folder / "a.png"),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert [(r["source"], r["frame"]) for r in rows] == [(str(folder / "a.png"), 0),
                                                         (str(folder / "b.png"), 0)]


def test_measure_whose_output_pipe_closes_still_writes_its_rows(tmp_path):
    # `nwwatch measure labels/*.png --out m.parquet | head -1`: before, the second line's
    # EPIPE ended the command with exit 1, no message, and no rows written
    import os
    import subprocess
    import sys

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"),
                    render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8)).labels)
    out = tmp_path / "m.parquet"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "measure",
         *(str(tmp_path / f"f{i}.png") for i in range(3)), "--out", str(out)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
             "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # nobody reads the lines
    err = proc.stderr.read()
    proc.wait(timeout=120)
    proc.stderr.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert len(pq.read_table(out)) == 3


@pytest.mark.parametrize("stem", ["b" * 245, "a" + "液滴" * 40], ids=["ascii", "cut-in-a-char"])
def test_a_label_image_with_a_long_name_gets_its_overlay(tmp_path, stem):
    # before: a 245-byte stem (a legal name) was measured, but its overlay was "File name too
    # long" and its row had no overlay_path; cut at 200 bytes inside a character (the second
    # stem has 241), the overlay's name was not UTF-8 and its row said '\xe6'
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    name = tmp_path / (stem + ".png")
    cv2.imwrite(str(tmp_path / "short.png"), cap.labels)
    (tmp_path / "short.png").rename(name)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(name), "--out", str(out),
                                       "--overlays", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "could not be written" not in result.output
    [row] = pq.read_table(out).to_pylist()
    assert row["overlay_path"] and "\\x" not in row["overlay_path"]
    assert (tmp_path / row["overlay_path"]).is_file()


def test_an_earlier_runs_overlay_of_another_frame_is_not_replaced(tmp_path):
    # before: a second run on another folder's f.png wrote qa/f_overlay.png over the first
    # run's, whose row then named a picture of another frame
    for folder, theta in (("a", 112.0), ("b", 128.0)):
        (tmp_path / folder).mkdir()
        cap = render_ideal_cap(SHAPE, theta, 25.0, 35.0, (110.3, 90.8))
        cv2.imwrite(str(tmp_path / folder / "f.png"), cap.labels)
    qa = tmp_path / "qa"

    def run(folder: str) -> str:
        out = tmp_path / f"{folder}.parquet"
        result = CliRunner().invoke(main, ["measure", str(tmp_path / folder / "f.png"),
                                           "--out", str(out), "--overlays", str(qa)])
        assert result.exit_code == 0, result.output
        return pq.read_table(out).column("overlay_path").to_pylist()[0]

    first = run("a")
    kept = (tmp_path / first).read_bytes()
    second = run("b")
    assert (first, second) == ("qa/f_overlay.png", "qa/f_overlay-2.png")
    assert (tmp_path / first).read_bytes() == kept
    assert run("a") == first  # the same picture again keeps its name
    assert sorted(p.name for p in qa.iterdir()) == ["f_overlay-2.png", "f_overlay.png"]


@pytest.mark.parametrize("noise", [1.0, 0.6])
def test_a_noise_like_label_image_gets_its_labels_noisy_row(tmp_path, noise):
    # before: skipped as "a label image resized with linear or area interpolation", no row
    rng = np.random.default_rng(0)
    labels = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8)).labels.copy()
    hit = rng.random(SHAPE) < noise
    labels[hit] = rng.integers(0, 3, int(hit.sum()))
    cv2.imwrite(str(tmp_path / "noise.png"), labels)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "noise.png"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "interpolation" not in result.output
    [row] = pq.read_table(out).to_pylist()
    assert row["reason_code"] == "labels_noisy"


def test_a_refusal_about_the_facet_line_draws_the_line():
    # before: "does not reach the facet line" with no line drawn: facet_row/col were null on
    # rows refused before the angle, although the line had been fitted
    rows, cols = np.mgrid[0:256, 0:256]
    labels = np.zeros((256, 256), np.uint8)
    labels[100:160, :120] = 1
    labels[120:141, 120:160] = 2
    labels[(rows - 130) ** 2 + (cols - 195) ** 2 <= 35 ** 2] = 2
    result = measure_contact_angle(labels)
    assert result.reason_code == "circle_misses_facet"
    assert result.facet_row is not None and result.facet_angle_deg is not None
    # the point lies on the fitted line: the foot of the circle centre
    assert result.facet_row == pytest.approx(130.0, abs=3) and result.facet_col == pytest.approx(
        120.0, abs=3)
    drawn = draw_overlay(None, labels, result)
    without = draw_overlay(None, labels, result.replace(facet_row=None, facet_col=None))
    assert not np.array_equal(drawn, without)


def test_a_tall_frames_marks_are_sized_by_its_area_and_drawn_whole():
    # before: a 2000 x 64 frame's marks and labels were sized by its long side (16 px discs
    # over a 15 px droplet) and the labels near the right edge were cut at the frame's edge,
    # the margin added after them
    labels = np.zeros((2000, 64), np.uint8)
    labels[1000:, 20:44] = 1
    rows, cols = np.mgrid[0:2000, 0:64]
    labels[((rows - 995) ** 2 + (cols - 32) ** 2 <= 15 ** 2) & (rows < 1000)] = 2
    r = measure_contact_angle(labels)
    picture = draw_overlay(None, labels, r)
    blue, green, red = (picture[:2000, :, k].astype(int) for k in range(3))
    green = (green > 120) & (green > red + 60) & (green > blue + 60)  # antialiased too
    assert green[:, 64:].any()  # the triple points' labels run on into the margin
    # the discs (4 px) and labels (small font) stay near the droplet: none 60 px below it
    assert not green[1060:].any() and not green[:930].any()


def test_a_changed_picture_never_redraws_one_another_output_names(tmp_path):
    # before: r3.parquet's row of a/f.png shared qa/f_overlay.png with r.parquet's (the same
    # bytes); a/f.png changed and measured again into r.parquet redrew it, and r3's row then
    # named a picture of 106.32 deg beside its own 110.41 deg
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    qa = tmp_path / "qa"

    def draw(where: str, theta: float) -> None:
        cv2.imwrite(str(tmp_path / where),
                    render_ideal_cap(SHAPE, theta, 25.0, 35.0, (110.3, 90.8)).labels)

    def run(out: str, *inputs: str):
        result = CliRunner().invoke(main, ["measure", *(str(tmp_path / i) for i in inputs),
                                           "--out", str(tmp_path / out), "--overlays", str(qa)])
        assert result.exit_code == 0, result.output
        return result, pq.read_table(tmp_path / out).column("overlay_path").to_pylist()

    draw("a/f.png", 110.0)
    draw("b/f.png", 130.0)
    assert run("r.parquet", "a/f.png")[1] == ["qa/f_overlay.png"]
    assert run("r3.parquet", "a/f.png", "b/f.png")[1] == ["qa/f_overlay.png",
                                                          "qa/f_overlay-2.png"]
    shared = (qa / "f_overlay.png").read_bytes()
    draw("a/f.png", 120.0)  # its labels corrected
    result, paths = run("r.parquet", "a/f.png")
    assert paths == ["qa/f_overlay-3.png"]
    assert (qa / "f_overlay.png").read_bytes() == shared  # r3's row's picture, as it was
    # the picture left is said, with why
    said = " ".join(result.output.split())
    assert (f"note: 1 picture(s) that the earlier rows of {tmp_path / 'r.parquet'} named and its "
            "rows no longer name are left as they were, since another output may name them"
            in said and str((qa / "f_overlay.png").resolve()) in said)
    # the same picture again keeps its name, and nothing is said
    result, paths = run("r.parquet", "a/f.png")
    assert paths == ["qa/f_overlay-3.png"] and "note" not in result.output


def test_a_file_grown_to_more_pages_names_its_earlier_picture_left(tmp_path):
    # before: grow.tif of 1 page, then 3, measured into the same output left
    # grow_overlay.png beside the per-page pictures, named by no row, unsaid
    caps = [render_ideal_cap(SHAPE, theta, 25.0, 35.0, (110.3, 90.8)).labels
            for theta in (110.0, 115.0, 120.0)]
    out, qa = tmp_path / "o.parquet", tmp_path / "qa"
    for pages in (1, 3):
        tifffile.imwrite(tmp_path / "grow.tif", np.stack(caps[:pages]), photometric="minisblack")
        result = CliRunner().invoke(main, ["measure", str(tmp_path / "grow.tif"), "--out",
                                           str(out), "--overlays", str(qa)])
        assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("overlay_path").to_pylist() == [
        f"qa/grow_{k:04d}_overlay.png" for k in range(3)]
    said = " ".join(result.output.split())
    assert "note: 1 picture(s)" in said and str((qa / "grow_overlay.png").resolve()) in said


def test_pictures_of_an_earlier_run_among_the_inputs_are_passed_over(tmp_path):
    # `measure same/*.png --overlays same` run twice: the second run read the first one's
    # pictures as colour label masks, refused each, and exited 1.
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    same = tmp_path / "same"
    same.mkdir()
    cv2.imwrite(str(same / "f0.png"), cap.labels)
    for _ in range(2):
        inputs = sorted(str(p) for p in same.glob("*.png"))
        result = CliRunner().invoke(main, ["measure", *inputs, "--out",
                                           str(tmp_path / "rows.parquet"), "--overlays",
                                           str(same)])
        assert result.exit_code == 0, result.output
        assert "colour" not in result.output
        assert pq.read_table(tmp_path / "rows.parquet").num_rows == 1
    assert len(inputs) == 2  # the second run was given the picture


def test_labels_measured_with_their_frames_take_the_frames_acquisition_times(tmp_path):
    """With --images, each label PNG's row took the PNG's file time (`mtime`), though its
    frame, read for its pixel size, holds the acquisition's: a series measured from hand
    labels lost its time axis."""
    from datetime import UTC, datetime, timedelta

    images = tmp_path / "images"
    images.mkdir()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for k in range(2):
        cap = render_ideal_cap(SHAPE, 100.0 + 10 * k, 25.0, 35.0, (110.3, 90.8))
        cv2.imwrite(str(tmp_path / f"f{k}.png"), cap.labels)
        write_frame_tiff(images / f"f{k}.tif", np.where(cap.labels == 0, 3000, 1000).astype(
            np.uint16), pixel_size_nm=0.5, acquired_at=start + timedelta(seconds=0.2 * k))
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "f0.png"),
                                       str(tmp_path / "f1.png"), "--out", str(out),
                                       "--images", str(images)])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(out).to_pylist()
    assert [r["acquired_at"] for r in rows] == [start, start + timedelta(seconds=0.2)]
    assert {r["acquired_at_source"] for r in rows} == {"metadata"}
    assert {r["pixel_size_nm"] for r in rows} == {0.5}
    # a label TIFF stamped when it was saved (an image editor's DateTime): the frame's too
    tifffile.imwrite(tmp_path / "f0.tif", cv2.imread(str(tmp_path / "f0.png"),
                                                     cv2.IMREAD_UNCHANGED),
                     datetime="2031:05:05 10:00:00")
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "f0.tif"), "--out", str(out),
                                       "--images", str(images)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).to_pylist()[0]["acquired_at"] == start


def test_a_triple_point_outside_the_frame_is_not_labelled_at_its_edge():
    """The label of a triple point the frame cuts off (its side angle null) was clamped into
    the picture, at the frame's edge: it read as a triple point there."""
    labels = render_ideal_cap((256, 256), 120.0, 40.0, 90.0, (150.3, 128.6)).labels[:, 100:]
    r = measure_contact_angle(labels)
    assert r.angle_valid and r.triple_left_col < -0.5 and r.contact_angle_left_deg is None
    picture = draw_overlay(None, labels, r)
    z = overlay_zoom(labels.shape)
    green = np.all(np.abs(picture.astype(int) - (0, 200, 0)) < 60, axis=2)
    row = int(round(r.triple_left_row * z))
    assert not green[row - 12 * z:row + 12 * z, :10 * z].any()  # nothing at the left edge
    right_row, right_col = (int(round(v * z)) for v in (r.triple_right_row,
                                                         r.triple_right_col))
    assert green[right_row - 2:right_row + 3, right_col - 2:right_col + 3].any()  # the other


def test_a_facet_line_refused_before_the_circle_spans_its_interface():
    """A row refused before the circle met the facet line (no base width) drew a 32 px stub
    of it, whatever the interface's length, often hidden under its own label."""
    rows, cols = np.mgrid[:256, :256]
    labels = np.zeros((256, 256), np.uint8)  # a droplet bulging into the wire: no line
    labels[150:, 70:186] = NANOWIRE
    labels[((rows - 130) ** 2 + (cols - 128) ** 2 < 55**2) & (rows < 150)] = DROPLET
    labels[((rows - 110) ** 2 + (cols - 128) ** 2 < 70**2) & (labels == NANOWIRE)] = DROPLET
    r = measure_contact_angle(labels)
    assert r.reason_code == "interface_not_line" and r.base_half_width_px is None
    picture = draw_overlay(None, labels, r)
    z = overlay_zoom(labels.shape)
    blue = np.all(np.abs(picture.astype(int) - (255, 80, 0)) < 60, axis=2)
    row = int(round((r.facet_row + 0.5) * z - 0.5))
    # the line reaches both ends of the interface's points along it (cols 82-174 or so)
    reach = np.abs(r.points.facet[:, 1] - r.facet_col).max()
    for col in (r.facet_col - reach, r.facet_col + reach):
        c = int(round((col + 0.5) * z - 0.5))
        assert blue[row - 2 * z:row + 2 * z + 1, c - z:c + z + 1].any(), col


def test_an_ignored_calibration_is_one_line_per_file_naming_the_size_used(tmp_path):
    """A label TIFF saved by PIL at 72 dpi declares 352778 nm pixels, which the reader
    ignores: measure printed two raw io.pixel_size_ignored JSON lines per file (one per
    axis) and never said which pixel size the rows have instead."""
    from PIL import Image

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    labels, images = tmp_path / "labels", tmp_path / "images"
    labels.mkdir()
    images.mkdir()
    Image.fromarray(cap.labels).save(labels / "f.tif", dpi=(72, 72))
    grey = np.where(cap.labels == 0, 3000, 1000).astype(np.uint16)
    tifffile.imwrite(images / "f.tif", grey, imagej=True,
                     resolution=(1 / 0.3713, 1 / 0.3713), metadata={"unit": "nm"})
    # and a frame at 72 dpi beside a label PNG (no calibration of its own)
    cv2.imwrite(str(labels / "g.png"), cap.labels)
    Image.fromarray(grey).save(images / "g.tif", dpi=(72, 72))
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", "--out", str(out), "--images", str(images),
                                       str(labels / "f.tif"), str(labels / "g.png")])
    assert result.exit_code == 0, result.output
    assert "io.pixel_size_ignored" not in result.output, result.output
    said = [line for line in result.output.splitlines() if "pixel size is ignored" in line]
    assert said == [
        f"warning: {labels / 'f.tif'}: its pixel size is ignored (TIFF resolution tags, y and "
        f"x: 352778 nm is above 10000 nm); measured with 0.3713 nm from {images / 'f.tif'} "
        "instead",
        f"warning: {images / 'g.tif'} (the frame of {labels / 'g.png'}): its pixel size is "
        "ignored (TIFF resolution tags, y and x: 352778 nm is above 10000 nm); "
        f"{labels / 'g.png'} measured without a pixel size, in pixels (give --pixel-size-nm, "
        "or its frame with --images)"], result.output
    rows = pq.read_table(out).to_pylist()
    assert [r["pixel_size_nm"] for r in rows] == [pytest.approx(0.3713), None]


def test_per_section_mdoc_sizes_are_said_as_the_reader_gives_them(tmp_path):
    """An MRC whose .mdoc gives sections 3-5 twice the header's size: the reader uses each
    section's own size and says so; measure's line called the header's size "ignored" and
    then "used instead", and credited the .mdoc's size to the MRC file."""
    from test_io_mrc import _mdoc, _serialem_stack

    path = tmp_path / "heating.mrc"
    _serialem_stack(path, 6, voxel_size_a=(7.6053, 7.6053, 7.6053))
    mdoc = _mdoc(path, [f"05-Dec-2026  14:22:{31 + z:02d}" for z in range(6)], pixel="7.6053")
    head, *sections = mdoc.read_bytes().decode().split("[ZValue")
    sections[3:] = [s.replace("PixelSpacing = 7.6053", "PixelSpacing = 15.2106")
                    for s in sections[3:]]
    mdoc.write_bytes("[ZValue".join([head, *sections]).encode())
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", "--out", str(out), str(path)])
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(said) == 1, result.output
    assert said[0].startswith(f"warning: {path}: {mdoc} gives sections 3-5 a PixelSpacing "
                              "of 1.52106 nm, the header 0.76053 nm"), said
    assert "ignored" not in said[0] and "instead" not in said[0], said
    sizes = [r["pixel_size_nm"] for r in pq.read_table(out).to_pylist()]
    assert sizes == [pytest.approx(0.76053)] * 3 + [pytest.approx(1.52106)] * 3


def test_labels_saved_by_the_service_pair_with_their_frame_and_page(tmp_path):
    """--save-labels names a label image {stem}-{sha12}-{model8}-m{version}-p{page}-labels.png:
    `measure LABELS --images FRAMES` looked for a frame of that whole stem, warned "name the
    labels after their frame", and gave the row no pixel size and the PNG's mtime; a stack's
    page never matched. The name's stem, content hash and page now find the frame."""
    from datetime import UTC, datetime, timedelta

    from nwwatch.filehash import file_sha256
    from nwwatch.io.write import write_stack_tiff
    from nwwatch.results.pictures import picture_stem, write_frame_pictures

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    grey = np.where(cap.labels == 0, 3000, 1000).astype(np.uint16)
    t0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    for name, size_nm, when in (("acqA", 0.25, t0), ("acqB", 0.5, t0 + timedelta(hours=1))):
        (tmp_path / name).mkdir()  # every synthetic video names its frames alike
        write_frame_tiff(tmp_path / name / "frame_00000.tif", grey + (name == "acqB"),
                         pixel_size_nm=size_nm, acquired_at=when)
    stack = write_stack_tiff(tmp_path / "stackB" / "stackB.tif", np.stack([grey] * 3),
                             pixel_size_nm=0.75,
                             acquired_at=[t0 + timedelta(seconds=k) for k in range(3)])
    results = tmp_path / "res"
    saved = {}
    for key, source, page in (("frame", tmp_path / "acqB" / "frame_00000.tif", 0),
                              ("page", stack, 2)):
        stem = picture_stem(source, file_sha256(source), "c2bf5c2c" * 8, page, "2.2.20")
        write_frame_pictures(results, "qa", stem, np.zeros((*SHAPE, 3), np.uint8), cap.labels)
        saved[key] = results / "qa" / f"{stem}-labels.png"
    out = tmp_path / "rows.parquet"

    def measured(labels: Path, images: Path) -> tuple[dict, str]:
        result = CliRunner().invoke(main, ["measure", str(labels), "--out", str(out),
                                           "--images", str(images)])
        assert result.exit_code == 0, result.output
        return pq.read_table(out).to_pylist()[0], " ".join(result.output.split())

    row, said = measured(saved["frame"], tmp_path / "acqB")
    assert "name the labels after their frame" not in said and "warning" not in said
    assert row["pixel_size_nm"] == pytest.approx(0.5)
    assert (row["acquired_at"], row["acquired_at_source"]) == (t0 + timedelta(hours=1),
                                                               "metadata")
    row, said = measured(saved["page"], tmp_path / "stackB")
    assert row["pixel_size_nm"] == pytest.approx(0.75)
    assert row["acquired_at"] == t0 + timedelta(seconds=2)  # page 2's own time
    # acqA's frame_00000.tif is another frame: not paired by its name, said so
    row, said = measured(saved["frame"], tmp_path / "acqA")
    assert row["pixel_size_nm"] is None and row["acquired_at_source"] == "mtime"
    assert "frame_00000.tif there holds other content" in said


def _saved_labels(results: Path, source: Path, page: int, labels: np.ndarray) -> Path:
    """The label image the service saves (--save-labels) for page ``page`` of ``source``."""
    from nwwatch.filehash import file_sha256
    from nwwatch.results.pictures import picture_stem, write_frame_pictures

    stem = picture_stem(source, file_sha256(source), "c2bf5c2c" * 8, page, "2.2.20")
    write_frame_pictures(results, "qa", stem, np.zeros((*labels.shape, 3), np.uint8), labels)
    return results / "qa" / f"{stem}-labels.png"


def test_saved_labels_of_a_gatan_in_situ_recording_pair_with_a_frame_in_its_time_tree(tmp_path):
    """A Gatan In-Situ recording keeps its frames in REC/Hour_00/Minute_00/Second_00/: the
    documented `measure RESULTS/qa/*-labels.png --images ACQUISITION` listed REC's top level
    only, warned "no frame named ...", and gave the row no pixel size and the PNG's mtime."""
    from datetime import UTC, datetime

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    grey = np.where(cap.labels == 0, 3000, 1000).astype(np.uint16)
    second = tmp_path / "REC" / "Hour_00" / "Minute_00" / "Second_01"
    second.mkdir(parents=True)
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    frame = second / "REC_Hour_00_Minute_00_Second_01_Frame_0003.tif"
    write_frame_tiff(frame, grey, pixel_size_nm=0.5, acquired_at=when)
    labels = _saved_labels(tmp_path / "res", frame, 0, cap.labels)
    out = tmp_path / "rows.parquet"
    for images in (tmp_path / "REC", tmp_path / "REC" / "Hour_00", second):
        result = CliRunner().invoke(main, ["measure", str(labels), "--out", str(out),
                                           "--images", str(images)])
        assert result.exit_code == 0, result.output
        assert "warning" not in result.output, (images, result.output)
        row = pq.read_table(out).to_pylist()[0]
        assert row["pixel_size_nm"] == pytest.approx(0.5), images
        assert (row["acquired_at"], row["acquired_at_source"]) == (when, "metadata")
    # sub-folders that are no time tree of ACQ's hold other acquisitions: not searched
    import shutil

    for sub in ("other", "Hour_00"):  # an Hour_00 without Minute/Second levels: no tree
        (tmp_path / "ACQ" / sub).mkdir(parents=True)
        shutil.copy(frame, tmp_path / "ACQ" / sub / frame.name)
    result = CliRunner().invoke(main, ["measure", str(labels), "--out", str(out),
                                       "--images", str(tmp_path / "ACQ")])
    assert result.exit_code == 0, result.output
    assert "-labels.png[0]: no frame named REC_Hour_00_Minute_00_Second_01_Frame_0003" in \
        " ".join(result.output.split())
    assert pq.read_table(out).to_pylist()[0]["pixel_size_nm"] is None


def test_saved_labels_of_every_page_of_a_stack_hash_it_once_and_read_their_page_alone(
        tmp_path, monkeypatch):
    """Each saved label of a stack's page hashed the whole stack again and decoded all its
    pages (30 labels of a 30-page stack: 30 hashes, 900 pages), and a recording over the
    whole-read limit gave every label no frame, so no pixel size or time."""
    from datetime import UTC, datetime, timedelta

    import nwwatch.filehash
    import nwwatch.io.limits
    from nwwatch.io.write import write_stack_tiff

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    grey = np.where(cap.labels == 0, 3000, 1000).astype(np.uint16)
    t0 = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    n = 4
    stack = write_stack_tiff(tmp_path / "S" / "stack.tif", np.stack([grey + k for k in range(n)]),
                             pixel_size_nm=0.75,
                             acquired_at=[t0 + timedelta(seconds=k) for k in range(n)])
    labels = [_saved_labels(tmp_path / "res", stack, page, cap.labels) for page in range(n)]
    hashed: list[str] = []
    file_sha256 = nwwatch.filehash.file_sha256

    def counted(path, *args, **kwargs):
        hashed.append(Path(path).name)
        return file_sha256(path, *args, **kwargs)

    monkeypatch.setattr(nwwatch.filehash, "file_sha256", counted)
    # the stack is over the limit for a file read whole; a page at a time it is read
    monkeypatch.setattr(nwwatch.io.limits, "MAX_FILE_BYTES", grey.nbytes * 2)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", *map(str, labels), "--out", str(out),
                                       "--images", str(tmp_path / "S")])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output, result.output
    assert hashed.count("stack.tif") == 1
    rows = sorted(pq.read_table(out).to_pylist(), key=lambda r: r["acquired_at"])
    assert [r["pixel_size_nm"] for r in rows] == [pytest.approx(0.75)] * n
    assert [r["acquired_at"] for r in rows] == [t0 + timedelta(seconds=k) for k in range(n)]


def _indexed_png(path: Path, indices: np.ndarray, palette: list[tuple[int, int, int]]) -> None:
    """An indexed-colour PNG, as an image editor's "convert to indexed" saves a mask."""
    from PIL import Image

    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    flat = [c for rgb in palette for c in rgb]
    image.putpalette(flat + [0] * (768 - len(flat)))
    image.save(path)


def test_a_mask_whose_background_is_not_0_is_named_with_its_palette(tmp_path):
    # An image editor's indexed colours put the background's black at index 1 (0 red wire,
    # 2 green droplet): the indices were read as class ids and the row refused for a
    # geometric reason (interface_not_line), nothing saying the file's background is 1.
    # Of the five wrong orders, only 1 <-> 2 exchanged got a note.
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    red, black, green = (255, 0, 0), (0, 0, 0), (0, 255, 0)
    _indexed_png(tmp_path / "gimp.png", np.array([1, 0, 2], np.uint8)[cap.labels],
                 [red, black, green])
    _indexed_png(tmp_path / "right.png", cap.labels, [black, red, green])
    orders = {"bg1_wire2_drop0": (1, 2, 0), "bg2_wire0_drop1": (2, 0, 1),
              "bg2_wire1_drop0": (2, 1, 0)}  # class id -> the id it is drawn with
    for name, order in orders.items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.array(order, np.uint8)[cap.labels])
    out = tmp_path / "rows.parquet"
    names = ["gimp", "right", *orders]
    result = CliRunner().invoke(main, ["measure", *(str(tmp_path / f"{n}.png") for n in names),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["source"]).stem: r for r in pq.read_table(out).to_pylist()}
    right = rows["right"]["contact_angle_deg"]
    assert rows["right"]["status"] == "ok"
    lines = result.output.splitlines()
    notes = {line.split("[0]")[0].split()[-1]: line for line in lines
             if "reads as a mask whose background is" in line}
    assert set(notes) == {f"{n}.png" for n in ("gimp", *orders)}, result.output
    for name, background in (("gimp", 1), *((n, o[0]) for n, o in orders.items())):
        # the row keeps the refusal; the note under its line names the file and the cause
        assert not rows[name]["angle_valid"]
        note = notes[f"{name}.png"]
        assert lines[lines.index(note) - 1].startswith(f"{tmp_path / name}.png[0] (labels)")
        assert note.startswith(f"  note: {name}.png[0] reads as a mask whose background is "
                               f"{background}, not 0 ({background} holds ")
        assert f"it gives {right:.2f} deg; nwwatch reads 0 background, 1 nanowire, 2 " \
               "droplet: renumber the mask (docs/measurement.md, 'Masks from other tools')" \
               in note
    assert ("its palette (index: RGB) 0: (255, 0, 0), 1: (0, 0, 0), 2: (0, 255, 0), 1 the "
            "darkest: an indexed-colour PNG is read as its palette indices, not its colours"
            in notes["gimp.png"])
    assert "renumbered 1 -> 0, 0 -> 1, 2 -> 2, it gives" in notes["gimp.png"]
    assert (f"4 refused label page(s) read as masks whose background is not 0: check the "
            f"masks' class ids (first: {tmp_path / 'gimp.png'}[0]" in result.output)


def test_a_right_mask_whose_wire_or_droplet_fills_the_border_gets_no_background_note(
        tmp_path):
    # the evidence must not fire on correct masks refused as drawn: a thick wire filling a
    # corner of the frame (more of the border than the background) under a droplet the
    # frame cuts; a frame that wire and droplet fill; a high-angle droplet that the frame's
    # top cuts (border 0: 22 %, 1: 20 %, 2: 57 %), which was noted "background is 2, not 0
    # ... renumber the mask" with no renumbering giving an angle; and tight crops of a
    # large droplet, as a user crops a frame to the droplet
    from nwwatch.measure.exchanged import background_not_zero

    corner = render_ideal_cap((80, 80), 112.0, 20.0, 135.0, (15.0, 15.0),
                              wire_radius_px=40.0).labels
    full = render_ideal_cap((100, 100), 130.0, 60.0, 90.0, (40.0, 50.0)).labels
    cut = render_ideal_cap((100, 100), 150.0, 40.0, 90.0, (70.0, 50.0)).labels
    large = {theta: render_ideal_cap((400, 300), theta, 50.0, 90.0, (300.0, 150.0)).labels
             for theta in (135.0, 150.0)}
    crops = {"crop135": large[135.0][240:340, 115:215], "crop150": large[150.0][210:310, 70:170]}
    border = np.concatenate([corner[0], corner[-1], corner[1:-1, 0], corner[1:-1, -1]])
    assert np.mean(border == NANOWIRE) > max(0.5, np.mean(border == 0))
    assert not (full == 0).any()
    masks = {"corner": corner, "full": full, "cut": cut, **crops}
    for name, labels in masks.items():
        border = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
        if name in ("cut", *crops):  # the droplet holds more of the border than 0
            assert np.mean(border == DROPLET) > 2 * np.mean(border == 0) > 0, name
        result = measure_contact_angle(labels)
        assert not result.angle_valid, name
        assert background_not_zero(labels, result) is None, name
        cv2.imwrite(str(tmp_path / f"{name}.png"), labels)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", *(str(tmp_path / f"{n}.png") for n in masks),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "note" not in result.output and "background is" not in result.output
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(masks) and not any(r["angle_valid"] for r in rows)


def test_a_mask_whose_background_is_not_0_and_both_orders_give_an_angle_says_so(tmp_path):
    # two caps mirrored about their base: each reads as a droplet on the other. Drawn with
    # the background 1, both orders of 0 and 2 give an angle; the note said "with 1 as
    # background neither order of the two other ids gives an angle"
    from nwwatch.measure.exchanged import background_not_zero

    top = render_ideal_cap(SHAPE, 90.0, 25.0, 90.0, (100.0, 90.8)).labels == DROPLET
    lens = np.zeros(SHAPE, np.uint8)
    lens[top] = DROPLET
    lens[np.flipud(top)] = NANOWIRE
    first = measure_contact_angle(lens)
    second = measure_contact_angle(np.array([0, 2, 1], np.uint8)[lens])
    assert first.angle_valid and second.angle_valid
    drawn = np.array([1, 0, 2], np.uint8)[lens]  # class id -> the id it is drawn with
    cv2.imwrite(str(tmp_path / "lens.png"), drawn)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "lens.png"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "neither order" not in result.output
    assert (f"with 1 as background both orders of the two other ids give an angle: renumbered "
            f"1 -> 0, 0 -> 1, 2 -> 2, it gives {first.contact_angle_deg:.2f} deg; renumbered "
            f"1 -> 0, 0 -> 2, 2 -> 1, it gives {second.contact_angle_deg:.2f} deg; which of the "
            "two is the nanowire is yours to say; nwwatch reads 0 background") in result.output
    assert not pq.read_table(out).to_pylist()[0]["angle_valid"]  # said, not corrected
    refused = measure_contact_angle(drawn)
    other = background_not_zero(drawn, refused)
    assert other is not None and other.background_id == 1
    assert (other.renumbering, other.other_renumbering) == ({1: 0, 0: 1, 2: 2},
                                                            {1: 0, 0: 2, 2: 1})
    assert other.angle_deg == pytest.approx(first.contact_angle_deg)
    assert other.other_angle_deg == pytest.approx(second.contact_angle_deg)


def test_a_mask_with_a_white_background_is_refused_naming_255(tmp_path):
    # 255 is the unlabeled value: a mask saved with a white background had 82 % of its frame
    # given the nearest class and was refused as free_surface_too_small; one whose wire is
    # 255 read as no_wire, neither saying that 255 is no class
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    thin = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8), wire_radius_px=6.0)
    cv2.imwrite(str(tmp_path / "white.png"), np.array([255, 1, 2], np.uint8)[cap.labels])
    cv2.imwrite(str(tmp_path / "wire255.png"), np.array([0, 255, 2], np.uint8)[thin.labels])
    cv2.imwrite(str(tmp_path / "droplet255.png"), np.array([0, 1, 255], np.uint8)[cap.labels])
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", *(str(tmp_path / f"{n}.png") for n in
                                                    ("white", "wire255", "droplet255")),
                                       "--out", str(out)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    share = round(100 * np.mean(cap.labels == 0))
    assert (f"skipped {tmp_path / 'white.png'}: labels must be 0 background, 1 nanowire, "
            f"2 droplet; 255 covers {share} % of the frame (92 % of its border) and no pixel is "
            "0: is 255 your background? Renumber it to 0 (255 means unlabeled") in output
    # filled (a band the fill gives classes) and measured as no_wire: the note says why
    rows = pq.read_table(out).to_pylist()
    assert [(Path(r["source"]).name, r["status"]) for r in rows] == [("wire255.png", "no_wire")]
    assert ("note: no nanowire (1) pixel in wire255.png[0]: if its 255 px mark the nanowire, "
            "renumber them to 1 (255 means unlabeled)") in output
    # refused as a band too wide to fill: the reason says which class is missing
    assert f"skipped {tmp_path / 'droplet255.png'}: labels must be" in output
    assert ("give it its classes; no droplet (2) pixel: if 255 marks the droplet, renumber it "
            "to 2 (255 means unlabeled)") in output


def test_a_right_mask_with_an_unsure_band_and_no_background_border_is_filled(tmp_path):
    # the white-background refusal needs 255 over much of the frame or its border: a mask
    # without 0 whose 255 is a thin band is filled and measured as before
    from nwwatch.classes import fill_unsure_band

    labels = np.ones((40, 40), np.uint8)
    labels[:, 20:] = DROPLET
    labels[:, 19:21] = 255
    filled = fill_unsure_band(labels)
    assert not (filled == 255).any()


def test_a_wide_unsure_band_without_background_is_filled_and_its_stack_measured(tmp_path):
    # a close-up (droplet above, wire below, no background) with a 21 px unsure band between
    # them: 10 % of the frame, 5 % of its border. It was refused as a white background, and
    # with it the stack's valid page 0: no row, exit 1
    from nwwatch.classes import border_pixels, fill_unsure_band

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    close = np.full(SHAPE, NANOWIRE, np.uint8)
    close[:90] = DROPLET
    close[90:111] = 255
    assert np.mean(close == 255) >= 0.1 and np.mean(border_pixels(close) == 255) < 0.1
    filled = fill_unsure_band(close)
    assert (filled[:100] == DROPLET).all() and (filled[101:] == NANOWIRE).all()
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([cap.labels, close]))
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "stack.tif"), "--read-as",
                                       "labels", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "your background" not in result.output
    assert (f"note: {21 * SHAPE[1]} unlabeled (255) px of stack.tif[1] were given the class of "
            "the nearest labeled pixel") in result.output
    rows = sorted(pq.read_table(out).to_pylist(), key=lambda r: r["frame"])
    assert [r["frame"] for r in rows] == [0, 1]
    assert rows[0]["angle_valid"]
    assert abs(rows[0]["contact_angle_deg"] - cap.contact_angle_deg) < 1.0
    assert not rows[1]["angle_valid"]  # no background: no free surface to fit


def test_a_tight_crop_of_a_droplet_on_a_white_background_is_named_as_such(tmp_path):
    # no 0 pixel, 255 (the background) on 22 % of the frame and 44 % of its border: below
    # half the border it was filled with the nearest class and refused as
    # free_surface_too_small, under a note about an unsure band
    from nwwatch.classes import border_pixels

    height = width = 200
    crop = np.full((height, width), 255, np.uint8)
    crop[140:] = NANOWIRE
    rows, cols = np.mgrid[:height, :width]
    crop[((rows - 160) ** 2 + (cols - 100) ** 2 < 130 ** 2) & (rows < 140)] = DROPLET
    assert 0.2 < np.mean(crop == 255) < 0.25
    assert 0.4 < np.mean(border_pixels(crop) == 255) < 0.5
    cv2.imwrite(str(tmp_path / "crop.png"), crop)
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "crop.png"), "--out",
                                       str(tmp_path / "r.parquet")])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "255 covers 22 % of the frame (44 % of its border) and no pixel is 0: is 255 your " \
        "background? Renumber it to 0" in output
    assert "were given the class of the nearest labeled pixel" not in output


def test_a_colour_tiff_label_mask_is_told_to_renumber_its_colours(tmp_path):
    # a colour TIFF mask got the frame's advice (a picture saved as displayed: give the
    # acquisition software's own file) where the same mask as PNG was told to renumber its
    # colours to class ids
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    tifffile.imwrite(tmp_path / "mask.tif", colours[cap.labels], photometric="rgb")
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # a screenshot's colours
    tifffile.imwrite(tmp_path / "picture.tif", picture, photometric="rgb")
    for read_as in ("auto", "labels"):
        result = CliRunner().invoke(main, ["measure", str(tmp_path / "mask.tif"), "--read-as",
                                           read_as, "--out", str(tmp_path / "r.parquet")])
        assert result.exit_code == 1
        output = " ".join(result.output.split())
        assert (f"skipped {tmp_path / 'mask.tif'}: 3 channels per pixel (shape (200, 200, 3)) "
                "holding 3 colours, (0, 0, 0), (0, 255, 0), (255, 0, 0): a colour label mask; "
                "nwwatch reads class ids from single-channel grey images: renumber its colours "
                "to class ids (docs/measurement.md, 'Masks from other tools')") in output
        assert "acquisition software" not in output
    # a picture of many colours: a frame saved as displayed, unless read as labels
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "picture.tif"), "--out",
                                       str(tmp_path / "r.parquet")])
    assert "acquisition software's own file" in " ".join(result.output.split())
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "picture.tif"), "--read-as",
                                       "labels", "--out", str(tmp_path / "r.parquet")])
    output = " ".join(result.output.split())
    assert "3 channels per pixel (shape (64, 64, 3)) holding " in output
    assert " colours: a colour label mask" in output
    assert "acquisition software" not in output


def test_a_resized_mask_with_pixel_size_nm_is_told_the_size_applies_to_its_pixels(tmp_path):
    # the warning said "its pixel size not used", as if the row had no pixel size, while
    # --pixel-size-nm was applied to the mask's pixels, half the frame's
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    masks, images = tmp_path / "masks", tmp_path / "images"
    masks.mkdir()
    images.mkdir()
    cv2.imwrite(str(masks / "f.png"), cv2.resize(cap.labels, (400, 400),
                                                 interpolation=cv2.INTER_NEAREST))
    write_frame_tiff(images / "f.tif", np.where(cap.labels == 0, 3000, 1000).astype(np.uint16))
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(masks / "f.png"), "--images", str(images),
                                       "--pixel-size-nm", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert (f"warning: {masks / 'f.png'}[0]: its frame {images / 'f.tif'} has shape (200, "
            "200), labels (400, 400); measured without its frame: its acquired_at is the label "
            "file's modification time, not the frame's acquisition time; --pixel-size-nm 0.5 "
            "applied to the labels' pixels, which "
            "are 0.5x the frame's (the labels are 2x its size): if 0.5 nm is the frame's "
            "pixel size, give --pixel-size-nm 0.25 for these labels") in output
    assert "not used" not in output
    assert pq.read_table(out).to_pylist()[0]["pixel_size_nm"] == pytest.approx(0.5)


def test_warnings_of_images_name_the_label_page_and_what_its_row_gets_instead(tmp_path):
    # before: "warning: no frame named stack whose sha256 starts ... in vid; overlay drawn on
    # the labels": no label file or page named, an overlay not asked for, and the row's
    # missing pixel size and the PNG's mtime as its time left unsaid
    from nwwatch.results.pictures import picture_stem, write_frame_pictures

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    images, results = tmp_path / "images", tmp_path / "res"
    images.mkdir()
    stem = picture_stem("stack.tif", "e931795f18fd" + "0" * 52, "c2bf5c2c" * 8, 1, "2.2.20")
    write_frame_pictures(results, "qa", stem, np.zeros((*SHAPE, 3), np.uint8), cap.labels)
    labels = results / "qa" / f"{stem}-labels.png"
    cv2.imwrite(str(tmp_path / "mask.png"), cap.labels)
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(labels), str(tmp_path / "mask.png"),
                                       "--out", str(out), "--images", str(images)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    for named in (f"{labels}[0]: no frame named stack whose sha256 starts e931795f18fd",
                  f"{tmp_path / 'mask.png'}[0]: no mask.tif"):
        assert (f"warning: {named}" in said), said
    assert said.count("measured without its frame: its row has no pixel size (the *_nm "
                      "columns are null; --pixel-size-nm gives one); its acquired_at is the "
                      "label file's modification time, not the frame's acquisition time") == 2
    assert "overlay" not in said  # none was asked for
    rows = pq.read_table(out).to_pylist()
    assert [(r["pixel_size_nm"], r["acquired_at_source"]) for r in rows] == [(None, "mtime")] * 2
    # with --overlays the overlay is said too
    result = CliRunner().invoke(main, ["measure", str(tmp_path / "mask.png"), "--out", str(out),
                                       "--images", str(images), "--overlays",
                                       str(tmp_path / "qa")])
    assert "measured without its frame: its overlay is drawn on the labels; its row has no " \
           "pixel size" in " ".join(result.output.split())


def test_the_same_content_under_two_names_is_said(tmp_path):
    # before: `measure in/plain.png in/link.png` (a link or a copy) gave two rows unsaid;
    # replay processes such copies once
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    cv2.imwrite(str(tmp_path / "plain.png"), cap.labels)
    (tmp_path / "link.png").symlink_to("plain.png")
    (tmp_path / "copy.png").write_bytes((tmp_path / "plain.png").read_bytes())
    out = tmp_path / "rows.parquet"
    names = [str(tmp_path / n) for n in ("plain.png", "link.png", "copy.png")]
    result = CliRunner().invoke(main, ["measure", *names, "--out", str(out)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    for other in names[1:]:
        assert (f"note: {other} has the same content as {names[0]} (a copy or a link): "
                "measured again") in said
    assert len(pq.read_table(out)) == 3  # both rows kept: the user named both


def test_a_qa_picture_of_replay_is_named_as_such_and_passed_over_beside_its_labels(tmp_path):
    # before: `measure res/qa/frame_00001* --images vid` refused the QA picture as a "colour
    # image; ... save it as greyscale", exit 1
    from nwwatch.results.pictures import picture_stem, write_frame_pictures

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    stem = picture_stem("frame_00001.tif", "ab" * 32, "c2bf5c2c" * 8, 0, "2.2.20")
    overlay = draw_overlay(None, cap.labels, measure_contact_angle(cap.labels))
    write_frame_pictures(tmp_path, "qa", stem, overlay, cap.labels)
    picture, labels = tmp_path / "qa" / f"{stem}.png", tmp_path / "qa" / f"{stem}-labels.png"
    out = tmp_path / "rows.parquet"
    result = CliRunner().invoke(main, ["measure", str(picture), str(labels), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("source").to_pylist() == [str(labels)]
    result = CliRunner().invoke(main, ["measure", str(picture), "--out", str(out)])
    assert result.exit_code == 1
    assert (f"skipped {picture}: an nwwatch QA picture (the overlay the service or replay "
            f"--overlays drew), not a frame or a label image; give its {labels}") in \
        " ".join(result.output.split())
    # measure's own overlay outside --overlays
    own = tmp_path / "f_overlay.png"
    cv2.imwrite(str(own), overlay)
    result = CliRunner().invoke(main, ["measure", str(own), "--out", str(out)])
    assert result.exit_code == 1 and "an nwwatch measure overlay picture" in result.output


def test_a_sigma_that_rounds_to_1000_is_written_in_scientific_notation():
    # before: the threshold was tested before rounding, so a term of 999.97 deg printed
    # "+-1000.0" beside its neighbour's "+-1.0e+03"
    from nwwatch.measure.uncertainty import sigma_text, uncertain_reason

    text = uncertain_reason(1200, 1.5, {"outline": 999.97, "outline_envelope": 1000.2,
                                        "facet_line": 5})
    assert "1000.0" not in text, text
    assert text.endswith("other terms: outline +-1.0e+03, facet line +-5.0 deg"), text
    assert sigma_text(999.996) == "1.0e+03" and sigma_text(999.996, 3) == "999.996"
    assert sigma_text(999.94, 1) == "999.9"


def test_an_absurd_sigma_is_written_in_scientific_notation_and_the_angle_line_wrapped():
    # before: the caption's angle line "theta 110.41 +- 1183616.56 deg" ran off a 2000 x 64
    # frame's picture, and the reason said "+-1183616.56 deg"
    from nwwatch.measure.overlay import _caption
    from nwwatch.measure.uncertainty import uncertain_reason

    text = uncertain_reason(1183616.56, 1.5, {"outline": 1183616.5, "facet_line": 2.25})
    assert text.startswith("the angle is uncertain by +-1.2e+06 deg (> 1.5), mostly from")
    assert "+-1.2e+06 deg" in text and "facet line +-2.2 deg" in text
    assert "1183616" not in text
    labels = np.zeros((2000, 64), np.uint8)
    r = measure_contact_angle(labels).replace(contact_angle_deg=110.41,
                                              contact_angle_uncertainty_deg=1183616.56,
                                              reason=text)
    picture = draw_overlay(None, labels, r)
    scale = 2000 / 512
    lines = _caption(r, picture.shape[1], scale)
    room = picture.shape[1] - int(16 * scale)
    for line, _, font in lines:
        width = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, font,
                                max(1, int(round(font * 2))))[0][0]
        assert width <= room, line
    assert " ".join(t for t, _, _ in lines).startswith("theta 110.41 +- 1.2e+06 deg")
    assert r.contact_angle_uncertainty_deg == 1183616.56  # the row's number as it was


def test_a_colour_mask_named_as_a_qa_picture_gets_the_colour_mask_advice(tmp_path):
    # before: a class-coloured label mask saved as mask_overlay.png (or under a QA picture's
    # name) was skipped as "an nwwatch measure overlay picture", with no word of renumbering
    # its colours; named mask.png it got that advice
    from nwwatch.results.pictures import picture_stem

    labels = render_ideal_cap(SHAPE, 110.0, 25.0, 35.0, (110.3, 90.8)).labels
    colour = np.zeros((*labels.shape, 3), np.uint8)
    colour[labels == NANOWIRE] = (0, 0, 255)  # BGR: the wire red, the droplet green
    colour[labels == DROPLET] = (0, 255, 0)
    qa_name = picture_stem("frame_00001.tif", "ab" * 32, "c2bf5c2c" * 8, 0, "2.2.21") + ".png"
    # an anti-aliased colour mask (a vector tool's export): grey wire over a red droplet's
    # smooth edge, class 0 (black) in its bottom 20 rows, read as a caption band before
    smooth = np.zeros((256, 256, 3), np.uint8)
    cv2.circle(smooth, (128, 110), 50, (0, 0, 255), -1, cv2.LINE_AA)
    cv2.rectangle(smooth, (0, 150), (255, 235), (128, 128, 128), -1)
    out = tmp_path / "rows.parquet"
    for name, image in (("mask_overlay.png", colour), ("mask_overlay-2.png", colour),
                        (qa_name, colour), ("smooth/mask_overlay.png", smooth)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name), image)
        result = CliRunner().invoke(main, ["measure", str(tmp_path / name), "--out", str(out)])
        said = " ".join(result.output.split())
        assert result.exit_code == 1, said
        assert (f"skipped {tmp_path / name}: colour image; nwwatch needs single-channel grey "
                "images (a frame: save it as greyscale; a colour label mask: renumber its "
                "colours to class ids") in said, said
        assert "overlay picture cut short of its caption band" in said
        assert "an nwwatch measure overlay picture" not in said
        assert "an nwwatch QA picture" not in said
    # an overlay picture, its caption band cut away, is told both ways too
    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    overlay = draw_overlay(None, cap.labels, measure_contact_angle(cap.labels))
    cut = tmp_path / "f_overlay.png"
    cv2.imwrite(str(cut), overlay[:SHAPE[0] * overlay_zoom(SHAPE)])
    result = CliRunner().invoke(main, ["measure", str(cut), "--out", str(out)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "overlay picture cut short of its caption band" in said


def test_a_qa_picture_without_saved_labels_does_not_name_a_missing_file(tmp_path):
    # before: a QA picture replay wrote without --save-labels was skipped with "give its
    # ...-labels.png", a file that does not exist
    from nwwatch.results.pictures import picture_stem, write_frame_pictures

    cap = render_ideal_cap(SHAPE, 112.0, 25.0, 35.0, (110.3, 90.8))
    stem = picture_stem("frame_00001.tif", "ab" * 32, "c2bf5c2c" * 8, 0, "2.2.21")
    write_frame_pictures(tmp_path, "qa", stem,
                         draw_overlay(None, cap.labels, measure_contact_angle(cap.labels)))
    picture, labels = tmp_path / "qa" / f"{stem}.png", tmp_path / "qa" / f"{stem}-labels.png"
    result = CliRunner().invoke(main, ["measure", str(picture), "--out",
                                       str(tmp_path / "rows.parquet")])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and not labels.exists()
    assert "give its" not in said
    assert (f"skipped {picture}: an nwwatch QA picture (the overlay the service or replay "
            f"--overlays drew), not a frame or a label image; no label image was saved beside "
            f"it ({labels} is written by replay --save-labels): measure the frame it was "
            "drawn on, which the model segments") in said, said


def test_earlier_pictures_are_named_without_overlays_and_when_stopped(tmp_path, monkeypatch):
    # before: the earlier rows' pictures were looked up only with --overlays, and a stopped
    # run wrote its rows without naming them: measured again into the same --out without
    # --overlays, or stopped after the first file, the rows no longer named the pictures
    # and nothing was said
    import signal

    import nwwatch.measure.cli as measure_cli

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    qa, out = tmp_path / "qa", tmp_path / "r.parquet"
    for where, theta in (("a/f.png", 110.0), ("b/f.png", 130.0)):
        cv2.imwrite(str(tmp_path / where),
                    render_ideal_cap(SHAPE, theta, 25.0, 35.0, (110.3, 90.8)).labels)
    inputs = [str(tmp_path / "a/f.png"), str(tmp_path / "b/f.png")]
    overlays = ["--overlays", str(qa)]
    note = (f"note: 2 picture(s) that the earlier rows of {out} named and its rows no longer "
            "name are left as they were")

    def run(*extra: str):
        return CliRunner().invoke(main, ["measure", *inputs, "--out", str(out), *extra])

    assert run(*overlays).exit_code == 0
    result = run()
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("overlay_path").to_pylist() == [None, None]
    assert note in " ".join(result.output.split())
    # stopped after the first file: the second file's picture is no longer named
    assert run(*overlays).exit_code == 0
    measured = measure_cli.measure_contact_angle
    calls = []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return measured(*args, **kwargs)

    monkeypatch.setattr(measure_cli, "measure_contact_angle", stopped_at_the_second)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        result = run(*overlays)
    finally:  # the stop's handling leaves the stop signals ignored: this process's own
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    said = " ".join(result.output.split())
    assert result.exit_code == 130, said
    assert pq.read_table(out).column("overlay_path").to_pylist() == ["qa/f_overlay.png"]
    assert (f"note: 1 picture(s) that the earlier rows of {out} named and its rows no longer "
            "name are left as they were") in said
    assert str((qa / "f_overlay-2.png").resolve()) in said
    assert said.index("note: 1 picture(s)") < said.index("measure interrupted")
