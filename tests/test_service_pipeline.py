"""process()/replay(): rows recover the painted ground truth, bad input is quarantined with its
reason, failures count attempts, results form one dataset, replay resumes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from onnx_models import build_threshold_model, expected_labels
from servicekit import bad_inputs, model, paint_insitu, write_small_tomogram

from nwwatch.io import write_frame_tiff, write_stack_tiff
from nwwatch.measure import measure_contact_angle
from nwwatch.normalize import normalize_image
from nwwatch.results.parquet import dataset_files
from nwwatch.segment.session import Segmenter
from nwwatch.service import replay
from nwwatch.service.ledger import Ledger
from nwwatch.service.pipeline import Engine, ResultsWriteError, process


@pytest.fixture()
def onnx_model(tmp_path):
    return model(tmp_path)


def _frames(results):
    return ds.dataset(results / "frames", format="parquet").to_table().to_pandas()


def test_rows_recover_ground_truth_and_stacks_give_one_row_per_page(tmp_path, onnx_model):
    acq = tmp_path / "acq"
    acq.mkdir()
    angles = [95.0, 110.0, 125.0, 140.0]
    for i, angle in enumerate(angles):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(angle), pixel_size_nm=1.5)
    stack = np.stack([paint_insitu(a, top=40 + k) for k, a in enumerate((100.0, 130.0))])
    write_stack_tiff(acq / "stack.tif", stack)
    summary = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model)
    assert (summary.done, summary.frames, summary.quarantined) == (5, 6, 0)
    rows = _frames(tmp_path / "out").set_index(["source", "frame"]).sort_index()
    assert len(rows) == 6
    seg = Segmenter(onnx_model, providers=("cpu",))
    for i, angle in enumerate(angles):
        row = rows.loc[(os.path.abspath(acq / f"f{i}.tif"), 0)]
        image = paint_insitu(angle)
        out = seg.segment(normalize_image(image))
        # The threshold model returns the painted labels exactly, so the row is the
        # measurement of the ground truth labels, and that is near the painted angle.
        np.testing.assert_array_equal(out.labels[0], expected_labels(image))
        truth = measure_contact_angle(out.labels[0], out.probabilities[0, 2], 1.5,
                                      image=image)
        assert row.contact_angle_deg == pytest.approx(truth.contact_angle_deg, abs=1e-9)
        # Measured with the raw frame (labels alone would read "labels").
        assert row.facet_edge == truth.facet_edge != "labels"
        assert row.contact_angle_deg == pytest.approx(angle, abs=4.0)
        assert row.pixel_size_nm == 1.5
        assert row.model_sha256 == Segmenter(onnx_model, providers=("cpu",)).model_sha256
    for k, angle in enumerate((100.0, 130.0)):
        row = rows.loc[(os.path.abspath(acq / "stack.tif"), k)]
        assert row.contact_angle_deg == pytest.approx(angle, abs=4.0)
    assert set(rows.provider) == {"CPUExecutionProvider"}
    assert rows.processed_at.dt.tz is not None
    # pandas reads the whole folder as one dataset too
    assert len(pd.read_parquet(tmp_path / "out" / "frames")) == 6


def test_replay_resumes_and_skips_done_files(tmp_path, onnx_model):
    acq = tmp_path / "acq"
    acq.mkdir()
    for i in range(3):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(100.0 + 10 * i))
    first = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model)
    write_frame_tiff(acq / "f3.tif", paint_insitu(135.0))
    second = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model)
    assert (first.done, second.done, second.skipped) == (3, 1, 3)
    assert len(_frames(tmp_path / "out")) == 4
    before = _frames(tmp_path / "out")
    forced = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model, force=True)
    assert forced.done == 4
    after = _frames(tmp_path / "out")  # replaced, not duplicated
    assert len(after) == 4 and not after.duplicated(["source", "frame"]).any()
    assert (after.processed_at.min() > before.processed_at.max())
    assert len(dataset_files(tmp_path / "out" / "frames")) == 1


def test_bad_inputs_are_quarantined_with_reasons(tmp_path, onnx_model):
    acq = tmp_path / "acq"
    expected = bad_inputs(acq)
    write_frame_tiff(acq / "good.tif", paint_insitu(120.0, size=64))
    summary = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model)
    assert (summary.done, summary.quarantined) == (1, len(expected))
    q = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pandas()
    got = {os.path.basename(p): (t, r) for p, t, r in zip(q.path, q.error_type, q.reason,
                                                          strict=True)}
    assert {k: v[0] for k, v in got.items()} == expected
    assert all(reason for _, reason in got.values())
    assert "60000" in got["absurd.tif"][1]
    # the acquisition folder is untouched: same names, nothing added
    assert sorted(os.listdir(acq)) == sorted([*expected, "good.tif"])
    # a second replay does not try them again, but still counts them as quarantined
    again = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model)
    assert (again.done, again.skipped) == (0, 1)
    assert again.quarantined == again.still_quarantined == len(expected)
    assert again.exit_status == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_quarantined(tmp_path, onnx_model):
    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "locked.tif", paint_insitu(120.0, size=64))
    os.chmod(acq / "locked.tif", 0)
    try:
        summary = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model)
    finally:
        os.chmod(acq / "locked.tif", 0o644)
    assert summary.quarantined == 1


def test_unreadable_file_is_quarantined_even_as_root(tmp_path, onnx_model, monkeypatch):
    import nwwatch.service.batch as batch

    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "locked.tif", paint_insitu(120.0, size=64))

    def denied(path, progress=None):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(batch, "file_sha256", denied)
    report = process([acq / "locked.tif"], _engine(tmp_path, onnx_model))
    assert [f.state for f in report.files] == ["quarantined"]
    q = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pandas()
    assert list(q.error_type) == ["UnreadableFileError"] and "Permission" in q.reason[0]


def _engine(tmp_path, onnx_model, max_attempts=2):
    ledger = Ledger(tmp_path / "out" / "ledger.sqlite", tmp_path / "out")
    seg = Segmenter(onnx_model, providers=("cpu",), threads=1)
    return Engine("insitu", seg, ledger, tmp_path / "out", batch_size=4,
                  max_attempts=max_attempts)


def test_unexpected_errors_count_attempts_then_quarantine(tmp_path, onnx_model, monkeypatch):
    import nwwatch.service.frames as frames

    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", paint_insitu(120.0, size=64))
    write_frame_tiff(acq / "b.tif", paint_insitu(130.0, size=64))
    engine = _engine(tmp_path, onnx_model, max_attempts=2)
    real = frames.measure_contact_angle

    def flaky(labels, prob=None, px=None, image=None):
        if flaky.fail:
            raise RuntimeError("boom")
        return real(labels, prob, px, image=image)

    flaky.fail = True
    monkeypatch.setattr(frames, "measure_contact_angle", flaky)
    r1 = process([acq / "a.tif"], engine)
    assert [f.state for f in r1.files] == ["failed"]
    assert engine.ledger.queries.counts()["failed"] == 1
    r2 = process([acq / "a.tif"], engine)
    assert [f.state for f in r2.files] == ["quarantined"]
    assert "boom" in r2.files[0].reason
    flaky.fail = False
    r3 = process([acq / "a.tif", acq / "b.tif"], engine)  # keeps serving the others
    assert [f.state for f in r3.files] == ["skipped", "done"]
    q = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pandas()
    assert list(q.error_type) == ["RuntimeError"] and q.attempts[0] == 2


def test_a_batch_failure_is_charged_to_the_culprit_only(tmp_path, onnx_model):
    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "good.tif", paint_insitu(120.0, size=64))
    write_frame_tiff(acq / "poison.tif", paint_insitu(120.0, size=80))
    engine = _engine(tmp_path, onnx_model, max_attempts=3)
    real = engine.segmenter.segment

    def crashing(images, probabilities=True):  # the runtime fails on one input
        if images.shape[-1] == 80:
            raise RuntimeError("ORT crashed")
        return real(images, probabilities)

    engine.segmenter.segment = crashing
    report = process([acq / "good.tif", acq / "poison.tif"], engine)
    states = {f.path.name: f.state for f in report.files}
    assert states == {"good.tif": "done", "poison.tif": "failed"}
    assert report.n_rows == 1 and len(report.parquets) == 1
    assert engine.ledger.queries.counts()["done"] == 1


def test_results_write_failure_counts_no_attempt(tmp_path, onnx_model, monkeypatch):
    import nwwatch.service.flush as flush

    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", paint_insitu(120.0, size=64))
    engine = _engine(tmp_path, onnx_model)

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(flush, "write_table_atomic", disk_full)
    with pytest.raises(ResultsWriteError, match="No space"):
        process([acq / "a.tif"], engine)
    counts = engine.ledger.queries.counts()
    assert counts["failed"] == 0 and counts["pending"] == 0
    monkeypatch.undo()
    assert [f.state for f in process([acq / "a.tif"], engine).files] == ["done"]


def test_tomogram_gives_mask_and_volume_row(tmp_path):
    from onnx_models import TOMOGRAM_GREY

    from nwwatch.io import read_volume, write_volume_tiff

    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    vol = np.full((12, 40, 48), TOMOGRAM_GREY[0], np.uint8)
    vol[2:10, 5:30, 10:40] = TOMOGRAM_GREY[1]  # one solid block: 8*25*30 voxels
    write_volume_tiff(acq / "tomo.tif", vol, voxel_size_nm=(2.0, 1.0, 1.0))
    summary = replay(acq, tmp_path / "out", kind="tomogram", model=tomo_model)
    assert (summary.done, summary.frames) == (1, 1)
    assert "rows/s" in summary.lines()[1] and "frames" not in summary.lines()[1]  # a volume
    rows = ds.dataset(tmp_path / "out" / "volumes", format="parquet").to_table().to_pandas()
    row = rows.iloc[0]
    assert row.status == "ok" and row.source == os.path.abspath(acq / "tomo.tif")
    assert row.solid_fraction == pytest.approx(8 * 25 * 30 / vol.size)
    assert row.uncertain_fraction == 0.0  # every voxel sits on a class centre
    mask = read_volume(tmp_path / "out" / row.mask_path).data
    np.testing.assert_array_equal(mask, (vol == TOMOGRAM_GREY[1]).astype(np.uint8))
    # an in-situ model on a tomogram folder is refused loudly
    from nwwatch.service.config import ConfigError

    with pytest.raises(ConfigError, match="insitu") as error:
        replay(acq, tmp_path / "out2", kind="tomogram", model=model(tmp_path / "m2"))
    assert "nwwatch train --volume" in str(error.value)  # and what a tomogram needs instead
    assert "is an 'insitu' model" in str(error.value)  # was "is a 'insitu' model"
    # a replay names its own options, not a folder's kind it does not have
    assert str(error.value).startswith("--model: model.onnx is an 'insitu' model but --kind "
                                       "is 'tomogram': ")


def test_replay_refuses_options_of_the_other_kind(tmp_path):
    # --overlays with --kind tomogram (and --flips with in-situ frames) did nothing, silently.
    from nwwatch.service.config import ConfigError

    acq = tmp_path / "acq"
    acq.mkdir()
    with pytest.raises(ConfigError, match="a tomogram's picture is its mask"):
        replay(acq, tmp_path / "out", kind="tomogram", model=model(tmp_path, kind="tomogram"),
               overlays="qa")
    with pytest.raises(ConfigError, match="give --kind tomogram"):
        replay(acq, tmp_path / "out", model=model(tmp_path / "m2"), flips=True)


def test_options_of_the_other_kind_are_a_wrong_command_line_exit_2(tmp_path):
    """--triplanar/--flips with in-situ frames exit 2 (wrong command line), as --overlays with
    --kind tomogram does; they exited 1, the status of a replay that could not run."""
    from click.testing import CliRunner

    from nwwatch.cli import main

    acq = tmp_path / "acq"
    acq.mkdir()
    for extra, says in ((["--flips"], "give --kind tomogram"),
                        (["--triplanar"], "give --kind tomogram"),
                        (["--kind", "tomogram", "--model", str(model(tmp_path, kind="tomogram")),
                          "--overlays", "qa"], "a tomogram's picture is its mask")):
        r = CliRunner().invoke(main, ["replay", str(acq), "--out", str(tmp_path / "out"),
                                      *extra])
        assert r.exit_code == 2 and says in r.output, (extra, r.exit_code, r.output)
        assert not (tmp_path / "out").exists()


def test_replay_help_says_a_tomogram_needs_a_model():
    from click.testing import CliRunner

    from nwwatch.cli import main

    text = " ".join(CliRunner().invoke(main, ["replay", "--help"]).output.split())
    assert "tomograms: required, a model of `nwwatch train --volume`" in text
    assert "the shipped model of KIND" not in text  # none ships for tomograms
    assert "Process on a Dask cluster (tomograms: one a task)" in text


def test_a_2d_image_or_a_blank_volume_is_quarantined_not_measured(tmp_path):
    # A single page would be segmented as a one-slice volume (zero surface, zero porosity)
    # and a blank volume as an empty mask with status ok: neither is a result.
    from onnx_models import TOMOGRAM_GREY

    from nwwatch.io import write_frame_tiff, write_volume_tiff

    acq = tmp_path / "acq"
    acq.mkdir()
    vol = np.full((12, 40, 48), TOMOGRAM_GREY[0], np.uint8)
    vol[2:10, 5:30, 10:40] = TOMOGRAM_GREY[1]
    write_volume_tiff(acq / "tomo.tif", vol)
    write_frame_tiff(acq / "slice.tif", vol[5])
    write_volume_tiff(acq / "blank.tif", np.zeros((12, 40, 48), np.float32))
    out = tmp_path / "out"
    summary = replay(acq, out, kind="tomogram", model=model(tmp_path, kind="tomogram"))
    assert (summary.done, summary.quarantined) == (1, 2)
    rows = ds.dataset(out / "volumes", format="parquet").to_table().to_pandas()
    assert list(rows.source) == [os.path.abspath(acq / "tomo.tif")]
    assert sorted(p.name.split("-")[0] for p in (out / "masks").iterdir()) == ["tomo"]
    ledger = Ledger(out / "ledger.sqlite", out)
    reasons = {os.path.basename(q["path"]): (q["error_type"], q["reason"])
               for q in ledger.queries.quarantined()}
    ledger.close()
    assert reasons["slice.tif"][0] == "UnsupportedLayoutError"
    assert "2-D image" in reasons["slice.tif"][1]
    assert reasons["blank.tif"] == ("BlankImageError", "every voxel has the value 0: a blank "
                                                       "volume, nothing to segment")


def _tomogram_acquisition(tmp_path, name: str):
    """A tomogram model and an acquisition folder holding one small volume ``name`` (a block
    of solid in pore, the model's two grey levels): (model path, folder, volume)."""
    from onnx_models import TOMOGRAM_GREY

    from nwwatch.io import write_volume_tiff

    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    vol = np.full((6, 24, 24), TOMOGRAM_GREY[0], np.uint8)
    vol[1:5, 4:16, 6:20] = TOMOGRAM_GREY[1]
    write_volume_tiff(acq / name, vol)
    return tomo_model, acq, vol


def test_replay_force_replaces_a_tomograms_mask_with_its_row(tmp_path):
    # --force replaces the row; the mask the earlier row named went with it, instead of
    # piling up (a 256^3 mask is 16 MB) where no row names it.
    from nwwatch.io import write_volume_tiff

    tomo_model, acq, vol = _tomogram_acquisition(tmp_path, "a.tif")
    write_volume_tiff(acq / "b.tif", np.roll(vol, 3, axis=2))  # other content: not a copy
    out = tmp_path / "out"
    assert replay(acq, out, kind="tomogram", model=tomo_model).done == 2
    first = set((out / "masks").iterdir())
    assert replay(acq / "a.tif", out, kind="tomogram", model=tomo_model, force=True).done == 1
    rows = ds.dataset(out / "volumes", format="parquet").to_table().to_pandas()
    assert len(rows) == 2
    named = {out / p for p in rows.mask_path}
    assert set((out / "masks").iterdir()) == named  # every mask has its row, and no other
    assert len(named & first) == 1  # b's mask stays; a's earlier one was replaced


def test_a_suspect_tomogram_is_recorded_and_warned_about(tmp_path):
    from onnx_models import TOMOGRAM_GREY
    from structlog.testing import capture_logs

    from nwwatch.io import write_volume_tiff

    acq = tmp_path / "acq"
    acq.mkdir()
    vol = np.full((12, 40, 48), TOMOGRAM_GREY[0], np.uint8)
    vol[:, :10] = TOMOGRAM_GREY[1]
    write_volume_tiff(acq / "clear.tif", vol)
    # Halfway between the class greys the threshold model says p(solid) = 0.5: unsure.
    vol[:, 20:35] = (TOMOGRAM_GREY[0] + TOMOGRAM_GREY[1]) // 2
    write_volume_tiff(acq / "unsure.tif", vol)
    with capture_logs() as logs:
        summary = replay(acq, tmp_path / "out", kind="tomogram",
                         model=model(tmp_path, kind="tomogram"))
    assert summary.done == 2  # a warning, not a failure: the mask is still written
    rows = ds.dataset(tmp_path / "out" / "volumes").to_table().to_pandas().set_index("source")
    clear, unsure = rows.loc[os.path.abspath(acq / "clear.tif")], \
        rows.loc[os.path.abspath(acq / "unsure.tif")]
    # The row and the warning agree: status "suspect" with the reason code, the text in both.
    # An ok mask's reason_code is "ok", as a frame row's and as its log line says (the row
    # had "" while the line said "ok").
    assert (clear.status, clear.reason_code) == ("ok", "ok")
    # the service's file_processed line shows the row through row_summary
    from nwwatch.service.batch import row_summary

    logged = row_summary(clear.to_dict())
    assert (logged["status"], logged["reason_code"]) == (clear.status, clear.reason_code)
    assert unsure.status == "suspect" and "uncertain" in unsure.reason_code.split(",")
    assert clear.uncertain_fraction == 0.0
    assert clear.threshold_agreement > 0.9  # the blurred reference is a row wider at most
    assert unsure.uncertain_fraction == pytest.approx(15 / 40)
    warned = [e for e in logs if e["event"] == "volume_suspect"]
    assert len(warned) == 1 and warned[0]["source"] == os.path.abspath(acq / "unsure.tif")
    assert warned[0]["uncertain_fraction"] == pytest.approx(15 / 40, abs=1e-4)
    assert warned[0]["reason_code"] == unsure.reason_code
    assert "uncertain_fraction 0.375 > 0.25" in warned[0]["why"]
    assert unsure.reason == "; ".join(warned[0]["why"])


def test_a_mask_that_disagrees_with_the_threshold_is_warned_about(tmp_path):
    from onnx_models import TOMOGRAM_GREY, build_threshold_model
    from structlog.testing import capture_logs

    from nwwatch.io import write_volume_tiff
    from nwwatch.volume import AGREEMENT_WARN_BELOW

    acq = tmp_path / "acq"
    acq.mkdir()
    vol = np.full((12, 40, 48), TOMOGRAM_GREY[0], np.uint8)
    vol[:, 5:15, 10:20] = TOMOGRAM_GREY[1]
    write_volume_tiff(acq / "tomo.tif", vol)
    # A confidently wrong model: it calls pore-grey solid (the failure the check is for), and
    # its labeled-pixel means say that solid is the bright class.
    wrong = build_threshold_model(tmp_path / "wrong.onnx", kind="tomogram",
                                  centres=(1.0, -1.0),
                                  metadata={"extra": {"class_mean_intensity":
                                                      {"pore": -0.9, "solid": 0.9}}})
    with capture_logs() as logs:
        assert replay(acq, tmp_path / "out", kind="tomogram", model=wrong).done == 1
    row = ds.dataset(tmp_path / "out" / "volumes").to_table().to_pandas().iloc[0]
    assert row.uncertain_fraction == 0.0  # confident: the first sign stays silent
    assert row.threshold_agreement < 0.05  # only the blurred edges overlap
    warned = [e for e in logs if e["event"] == "volume_suspect"]
    assert len(warned) == 1 and row.status == "suspect"
    assert "threshold_disagreement" in row.reason_code.split(",")
    assert f"< {AGREEMENT_WARN_BELOW}" in row.reason


def test_a_tomograms_surface_leaves_out_where_the_solid_meets_no_data(tmp_path):
    # A band of NaN (an aligned reconstruction's padding) through the block of solid: its
    # cut faces are not surface, as the volume's own faces are not.
    from onnx_models import TOMOGRAM_GREY

    from nwwatch.io import read_volume, write_volume_tiff
    from nwwatch.volume import volume_metrics

    tomo_model = model(tmp_path, kind="tomogram")
    acq = tmp_path / "acq"
    acq.mkdir()
    vol = np.full((10, 24, 32), TOMOGRAM_GREY[0], np.float32)
    vol[2:8, 4:20, 4:28] = TOMOGRAM_GREY[1]
    vol[:, :, 14:18] = np.nan
    write_volume_tiff(acq / "padded.tif", vol)
    out = tmp_path / "out"
    assert replay(acq, out, kind="tomogram", model=tomo_model).done == 1
    row = ds.dataset(out / "volumes", format="parquet").to_table().to_pylist()[0]
    mask = read_volume(out / row["mask_path"]).data
    assert not mask[:, :, 14:18].any() and mask[2:8, 4:20, 4:14].all()
    pieces = volume_metrics(mask[:, :, :14]).surface_area_px2 + \
        volume_metrics(mask[:, :, 18:]).surface_area_px2
    assert row["surface_area_px2"] == pytest.approx(pieces)
    assert volume_metrics(mask).surface_area_px2 > pieces + 2 * 5 * 15  # the cut faces


def test_tomogram_settings_are_part_of_the_ledger_key(tmp_path):
    # The same volume segmented with other settings is another result: replay with
    # --triplanar processes it again instead of reporting it done, and each row names its
    # settings in measurement_version.
    from nwwatch.volume import VOLUME_METRICS_VERSION

    tomo_model, acq, _ = _tomogram_acquisition(tmp_path, "tomo.tif")
    out = tmp_path / "out"
    assert replay(acq, out, kind="tomogram", model=tomo_model).done == 1
    assert replay(acq, out, kind="tomogram", model=tomo_model).skipped == 1
    fused = replay(acq, out, kind="tomogram", model=tomo_model, triplanar=True, flips=True)
    assert fused.done == 1
    rows = ds.dataset(out / "volumes", format="parquet").to_table().to_pandas()
    # seg7: no data filled with the nearest data voxel's grey (seg6: contrast_inverted's
    # spread test needs the shares swapped; seg5: a constant fill
    # is no data; seg4: the grey range from a grid over every axis; seg3 held the masks of
    # volumes whose range came from a stride through memory order)
    assert sorted(rows.measurement_version) == [f"{VOLUME_METRICS_VERSION}+seg7",
                                                f"{VOLUME_METRICS_VERSION}+seg7+triplanar+flips"]
    assert rows.solid_fraction.nunique() == 1  # a pointwise model: same mask either way
    from click.testing import CliRunner

    from nwwatch.cli import main

    flipped = CliRunner().invoke(main, ["replay", str(acq), "--kind", "tomogram", "--model",
                                        str(tomo_model), "--out", str(out), "--flips"])
    assert flipped.exit_code == 0 and "1 done" in flipped.output, flipped.output


def test_a_failed_commit_leaves_a_batch_that_settle_adopts_without_an_attempt(tmp_path,
                                                                             onnx_model,
                                                                             monkeypatch):
    from nwwatch.service.ledger import Ledger as LedgerClass
    from nwwatch.service.ledger import LedgerWriteError

    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", paint_insitu(118.0, size=64))
    engine = _engine(tmp_path, onnx_model)

    def full(*args, **kwargs):
        raise LedgerWriteError("cannot write the ledger (database or disk is full)")

    with monkeypatch.context() as m:
        m.setattr(LedgerClass, "commit_held", full)
        with pytest.raises(LedgerWriteError):
            process([acq / "a.tif"], engine)
    (batch_id,) = engine.ledger.unfinished_batches()  # its Parquet file is complete
    assert engine.ledger.settle(batch_id, engine.max_attempts) is True
    assert engine.ledger.unfinished_batches() == []
    assert [f.state for f in process([acq / "a.tif"], engine).files] == ["skipped"]
    rows = pq.read_table(tmp_path / "out" / "frames").to_pandas()
    assert len(rows) == 1 and engine.ledger.queries.counts()["done"] == 1


def test_a_tomogram_beats_the_watchdog_while_it_is_segmented_and_measured(tmp_path,
                                                                          monkeypatch):
    # systemd's WatchdogSec=120 was pinged only between files: a volume whose segmentation
    # and metrics took longer got the service killed (and, after max_attempts kills, the
    # volume quarantined). Now every model call, the cleanup and each stage of the metrics
    # beat.
    from nwwatch.service.batch import Engine

    beats = []
    monkeypatch.setattr(Engine, "beat", lambda self: beats.append(1))
    tomo_model, acq, _ = _tomogram_acquisition(tmp_path, "a.tif")
    assert replay(acq, tmp_path / "out", kind="tomogram", model=tomo_model).done == 1
    # the file's own beat, one model call, the cleanup, two envelope slabs, four stages
    assert len(beats) >= 1 + 1 + 1 + 2 + 4


def test_a_tomograms_pixels_are_let_go_before_its_metrics(tmp_path, monkeypatch):
    # The volume (4 bytes a voxel as float32) was held through volume_metrics, whose
    # distance transform is the peak of a tomogram's memory (docs/tomography.md, Memory).
    import gc
    import weakref

    from nwwatch.io import read_volume
    from nwwatch.service import volumes

    held = []

    def reading(path):
        volume = read_volume(path)
        held.append(weakref.ref(volume.data))
        return volume

    measured = volumes.volume_metrics

    def measuring(mask, voxel_size_nm, **kwargs):
        gc.collect()
        held.append(held[0]() is None)
        return measured(mask, voxel_size_nm, **kwargs)

    monkeypatch.setattr(volumes, "read_volume", reading)
    monkeypatch.setattr(volumes, "volume_metrics", measuring)
    tomo_model, acq, _ = _tomogram_acquisition(tmp_path, "a.tif")
    assert replay(acq, tmp_path / "out", kind="tomogram", model=tomo_model).done == 1
    assert held[1] is True


def test_a_tomogram_that_fails_in_its_metrics_leaves_no_mask_behind(tmp_path, monkeypatch):
    # The mask was written before volume_metrics ran: a tomogram whose metrics failed (a
    # MemoryError in the distance transform) left a mask no row names, one per attempt.
    import pyarrow.dataset as pads

    from nwwatch.io import write_volume_tiff
    from nwwatch.service import volumes

    measured = volumes.volume_metrics

    def measuring(mask, voxel_size_nm, **kwargs):
        if mask.shape[0] == 7:  # the second tomogram's
            raise MemoryError("the distance transform")
        return measured(mask, voxel_size_nm, **kwargs)

    monkeypatch.setattr(volumes, "volume_metrics", measuring)
    tomo_model, acq, vol = _tomogram_acquisition(tmp_path, "a.tif")
    write_volume_tiff(acq / "b.tif", np.concatenate([vol, vol[:1]]))
    out = tmp_path / "out"
    for _ in range(3):  # every attempt until it is quarantined
        replay(acq, out, kind="tomogram", model=tomo_model)
    rows = pads.dataset(out / "volumes", format="parquet").to_table().to_pandas()
    assert [os.path.basename(s) for s in rows.source] == ["a.tif"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        os.path.basename(p) for p in rows.mask_path]


def test_a_file_quarantined_as_unreadable_is_processed_once_it_can_be_read(tmp_path,
                                                                          onnx_model):
    """A file the service user may not read (mode 000, or the service user not yet in the
    share's group) is quarantined as UnreadableFileError. Fixing the permission changes
    neither size nor mtime, and the quarantine is kept per (path, size, mtime), so the file
    stayed quarantined for good: the rescans, a restart and replays skipped it unread (live:
    `chmod 644` on a quarantined frame, 70 s and a 60 s rescan later still quarantined)."""
    from servicekit import (
        DaemonProcess,
        frames_table,
        wait_rows,
        without_file_access_override,
        write_config,
    )

    wrap = without_file_access_override()
    acq, results = tmp_path / "acq", tmp_path / "results"
    acq.mkdir()
    write_frame_tiff(acq / "good.tif", paint_insitu(110.0, size=64))
    write_frame_tiff(acq / "locked.tif", paint_insitu(125.0, size=64))
    os.chmod(acq / "locked.tif", 0)
    config = write_config(tmp_path / "c.toml", acq, results, onnx_model, rescan=1.0)
    daemon = DaemonProcess(config, tmp_path / "log.jsonl", wrap=wrap)
    try:
        event = daemon.wait_event("file_quarantined")
        assert event["error_type"] == "UnreadableFileError"
        assert event["source"].endswith("locked.tif")
        wait_rows(results, 1, proc=daemon)
        os.chmod(acq / "locked.tif", 0o644)
        rows = wait_rows(results, 2, timeout=20, proc=daemon)
        assert sorted(os.path.basename(s) for s in rows.source) == ["good.tif", "locked.tif"]
        # quarantine.parquet agrees with the ledger: rewritten once the file is done
        deadline = time.monotonic() + 10
        while pq.read_table(results / "quarantine.parquet").num_rows and (
                time.monotonic() < deadline):
            time.sleep(0.1)
        assert pq.read_table(results / "quarantine.parquet").num_rows == 0
        assert daemon.terminate()[0] == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    assert len(frames_table(results)) == 2


def test_a_masks_path_that_is_a_file_is_one_error_naming_it(tmp_path):
    """RESULTS/masks a file: the mask cannot be written, and undoing the batch tried to delete
    the mask under it, whose NotADirectoryError escaped as a traceback instead of the replay's
    one results-write error."""
    from click.testing import CliRunner

    from nwwatch.cli import main

    acq = tmp_path / "acq"
    acq.mkdir()
    write_small_tomogram(acq / "t.tif")
    out = tmp_path / "out"
    out.mkdir()
    (out / "masks").write_text("not a folder")
    result = CliRunner().invoke(main, ["replay", str(acq), "--kind", "tomogram", "--model",
                                       str(model(tmp_path, kind="tomogram")), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert f"{out / 'masks'}" in result.output and "cannot write the mask" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_tomogram_whose_name_is_not_utf8_or_long_gets_its_mask_and_row(tmp_path):
    """A mask is named after its tomogram's file. A name that is not UTF-8 put its surrogate
    escapes into the ``mask_path`` column (a UnicodeEncodeError traceback from Parquet, the
    mask left behind), and a long name (a file name may take 255 bytes) made a mask name the
    file system refuses (ENAMETOOLONG: a traceback from undoing the batch). Both stems are
    written as the ``source`` column writes them, cut to fit."""
    acq = tmp_path / "acq"
    acq.mkdir()
    names = [os.fsdecode(b"t\xff1.tif"), "t" * 246 + ".tif"]
    for i, name in enumerate(names):
        write_small_tomogram(acq / f"{i}.tif", width=6 + 4 * i)  # a temporary name beside
        (acq / f"{i}.tif").rename(acq / name)
    out = tmp_path / "out"
    summary = replay(acq, out, kind="tomogram", model=model(tmp_path, kind="tomogram"))
    assert (summary.done, summary.failed, summary.frames) == (2, 0, 2)
    rows = ds.dataset(out / "volumes", format="parquet").to_table().to_pandas()
    assert sorted(rows.source) == sorted(
        os.fsencode(acq / n).decode("utf-8", "backslashreplace") for n in names)
    assert {out / m for m in rows.mask_path} == set((out / "masks").iterdir())
    by_source = dict(zip(rows.source, rows.mask_path, strict=True))
    assert Path(by_source[str(acq / "t\\xff1.tif")]).name.startswith("t\\xff1-")
    long_mask = Path(by_source[str(acq / names[1])]).name
    # room left for the atomic writer's temporary name, ``.{name}.{8 hex}.part``
    assert long_mask.startswith("t" * 100) and len(long_mask.encode()) <= 255 - 15


def test_force_replaces_only_its_own_models_rows_in_a_compacted_file(tmp_path, onnx_model):
    """Two models' rows of the same frames, compacted into one file of the acquisition: a
    --force replay with one model removed the other model's rows too (matched by content
    alone), while the ledger still listed them as done, so no replay made them again."""
    from nwwatch.service.compaction import compact

    acq = tmp_path / "acq"
    acq.mkdir()
    for i in range(3):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(100 + 4 * i, size=64))
    other = model(tmp_path / "other", sharpness=6.0)
    out = tmp_path / "out"
    for onnx in (onnx_model, other):
        assert replay(acq, out, model=onnx).done == 3
    compact(out)
    assert len(dataset_files(out / "frames")) == 1
    assert replay(acq, out, model=other, force=True).done == 3
    rows = ds.dataset(out / "frames", format="parquet").to_table().to_pandas()
    assert sorted(rows.groupby("model_sha256").size()) == [3, 3]
    assert replay(acq, out, model=onnx_model).skipped == 3


def test_a_tomogram_batch_reports_its_stage_times_in_the_file_processed_line(tmp_path):
    """The service's file_processed line of a tomogram had hash_ms and hold_ms only, while
    docs/service.md (Logs) promises the read, segment and measure times of its batch, as a
    frame batch's line has them."""
    from onnx_models import TOMOGRAM_GREY
    from structlog.testing import capture_logs

    from nwwatch.io import write_volume_tiff
    from nwwatch.logsetup import get_logger
    from nwwatch.service.tally import Tally

    acq = tmp_path / "acq"
    acq.mkdir()
    vol = np.full((12, 40, 48), TOMOGRAM_GREY[0], np.uint8)
    vol[2:10, 5:30, 10:40] = TOMOGRAM_GREY[1]
    write_volume_tiff(acq / "tomo.tif", vol)
    ledger = Ledger(tmp_path / "out" / "ledger.sqlite", tmp_path / "out")
    seg = Segmenter(model(tmp_path, kind="tomogram"), providers=("cpu",), threads=1)
    engine = Engine("tomogram", seg, ledger, tmp_path / "out", batch_size=4, max_attempts=2)
    report = process([acq / "tomo.tif"], engine)
    assert [f.state for f in report.files] == ["done"]
    rows = ds.dataset(tmp_path / "out" / "volumes").to_table().to_pylist()
    assert report.timings_ms["read"] == pytest.approx(rows[0]["read_ms"])
    assert report.timings_ms["segment"] == pytest.approx(rows[0]["segment_ms"])
    assert report.timings_ms["measure"] == pytest.approx(rows[0]["measure_ms"])
    with capture_logs() as logs:
        Tally().record(report, get_logger("nwwatch.service"), ledger.queries)
    line = next(e for e in logs if e["event"] == "file_processed")
    assert {"hash_ms", "read_ms", "segment_ms", "measure_ms"} <= set(line), line
    assert line["segment_ms"] > 0 and line["status"] == "ok"


def test_files_quarantined_under_one_model_are_processed_again_under_another(tmp_path,
                                                                            monkeypatch):
    # before: quarantined by (path, size, mtime) whatever the model: files a broken model
    # failed stayed quarantined once it was replaced (status "2 quarantined", replay and the
    # service skipping them), though a new model processes files again; only --force helped
    acq = tmp_path / "acq"
    acq.mkdir()
    for i in range(2):
        write_frame_tiff(acq / f"f{i}.tif", paint_insitu(100 + 10 * i, size=64))
    (acq / "bad.tif").write_bytes(b"not a TIFF at all\n" * 8)  # bad whatever the model
    broken = model(tmp_path / "a")
    fixed = build_threshold_model(tmp_path / "b" / "model.onnx", sharpness=9.0)
    real = Segmenter.segment

    def fails(self, images, *args, **kwargs):
        if self.model_path == broken:
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got: 1 Expected: 3")
        return real(self, images, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "segment", fails)
    for _ in range(3):  # max_attempts
        replay(acq, tmp_path / "res", model=broken)
    first = replay(acq, tmp_path / "res", model=broken)
    assert (first.done, first.quarantined) == (0, 3), first.lines()
    again = replay(acq, tmp_path / "res", model=fixed)
    assert (again.done, again.quarantined) == (2, 1), again.lines()
    quarantine = pq.read_table(tmp_path / "res" / "quarantine.parquet").to_pylist()
    assert [Path(q["path"]).name for q in quarantine] == ["bad.tif"]


def test_hashing_a_large_file_pings_the_watchdog(tmp_path, onnx_model, monkeypatch):
    """A file's sha256 was computed with no watchdog ping: a stack of tens of GB on a share
    took minutes to hash, systemd killed the service at WatchdogSec, and it started again on
    the same file, for ever (no attempt was charged before the hash)."""
    import nwwatch.filehash as filehash
    import nwwatch.service.batch as batch
    from nwwatch.filehash import file_sha256

    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", np.random.default_rng(0).integers(
        0, 4000, (1024, 1024)).astype(np.uint16))  # 2 MiB
    monkeypatch.setattr(filehash, "PROGRESS_BYTES", 1 << 20)
    calls: list[int] = []
    assert file_sha256(acq / "a.tif", progress=lambda: calls.append(1)) \
        == file_sha256(acq / "a.tif")
    assert len(calls) == -(-(acq / "a.tif").stat().st_size // (1 << 20)) == 3  # chunks read
    # the service hashes with its heartbeat as the progress
    given: list = []
    real = batch.file_sha256
    monkeypatch.setattr(batch, "file_sha256",
                        lambda path, progress=None: given.append(progress) or real(path))
    engine = _engine(tmp_path, onnx_model)
    beats: list[int] = []
    engine.heartbeat = lambda: beats.append(1)
    process([acq / "a.tif"], engine)
    assert len(given) == 1 and given[0] is not None
    given[0]()
    assert beats


def test_replay_of_a_file_that_changes_while_it_is_read_is_incomplete(tmp_path, onnx_model,
                                                                       monkeypatch):
    # Was: a stack appended to while replay read it was counted as "vanished before it was
    # read", the last line said "replay complete" and the exit status was 0, though the
    # file is there with more pages and got no row; a script checking for 0 never ran it
    # again.
    import nwwatch.service.frames as frames_module

    acq = tmp_path / "acq"
    acq.mkdir()
    write_frame_tiff(acq / "a.tif", paint_insitu(100, size=64))
    write_stack_tiff(acq / "stack.tif", np.stack([paint_insitu(110, size=64)] * 3))
    real = frames_module.read_frames

    def read_then_append(path, *args, **kwargs):
        frames = real(path, *args, **kwargs)
        if Path(path).name == "stack.tif":  # its writer adds a page meanwhile
            write_stack_tiff(path, np.stack([paint_insitu(110, size=64)] * 4))
        return frames

    monkeypatch.setattr(frames_module, "read_frames", read_then_append)
    summary = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model)
    assert (summary.done, summary.vanished, summary.changed) == (1, 0, [acq / "stack.tif"])
    assert not summary.complete and summary.exit_status == 3
    lines = summary.lines()
    assert "1 changed while read" in lines[0]
    assert any(line.startswith("1 file changed while it was read") and "stack.tif" in line
               for line in lines), lines
    assert lines[-1].startswith("replay INCOMPLETE: 0 file(s) failed, 0 quarantined, 1 "
                                "changed while read"), lines[-1]
    monkeypatch.setattr(frames_module, "read_frames", real)
    again = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model)
    assert (again.done, again.skipped, again.changed, again.exit_status) == (1, 1, [], 0)
    # deleted once it was read: vanished (as on --dask), not a file to replay again
    write_frame_tiff(acq / "c.tif", paint_insitu(120, size=64))

    def read_then_delete(path, *args, **kwargs):
        frames = real(path, *args, **kwargs)
        Path(path).unlink()
        return frames

    monkeypatch.setattr(frames_module, "read_frames", read_then_delete)
    gone = replay(acq, tmp_path / "out", kind="insitu", model=onnx_model)
    assert (gone.vanished, gone.changed, gone.exit_status) == (1, [], 0)
