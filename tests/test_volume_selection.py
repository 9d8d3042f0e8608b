"""``nwwatch train --volume``: the labels choose the method (cross-validation over labeled
patches), the choice is exported under the model contract, and too few labels warn."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import cv2
import numpy as np
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from nwwatch.segment.session import Segmenter
from nwwatch.volume import segment_volume

torch = pytest.importorskip("torch")
from training.config import TrainConfig  # noqa: E402  (after the skip guard)
from training.data import label_warnings  # noqa: E402
from training.volume_forest import FOREST_SLAB_SLICES  # noqa: E402
from training.volume_select import (  # noqa: E402
    CANDIDATES,
    FOREST_MARGIN,
    MIN_PATCHES_FOR_FEATURES,
    choose,
    make_folds,
    mixed_patches,
    patch_groups,
    select_and_train,
)

SHAPE = (12, 48, 48)
Z = 6


def _blobs(seed: int) -> np.ndarray:
    """bool (Z, Y, X): smooth random solid, about 40 %."""
    from scipy import ndimage as ndi

    field = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(SHAPE), 3.0)
    return field > np.quantile(field, 0.6)


def _patch_labels(truth: np.ndarray, corners, side: int = 6) -> np.ndarray:
    labels = np.full(truth.shape, 255, np.uint8)
    for r, c in corners:
        labels[r:r + side, c:c + side] = truth[r:r + side, c:c + side]
    return labels


CORNERS = [(r, c) for r in (3, 21, 39) for c in (3, 21, 39)]


def _write(tmp_path, volume: np.ndarray, labels: np.ndarray):
    from nwwatch.io import write_volume_tiff

    volume_path = write_volume_tiff(tmp_path / "volume.tif", volume.astype(np.float32))
    labels_path = tmp_path / "labels.png"
    cv2.imwrite(str(labels_path), labels)
    return volume_path, labels_path


def _config(tmp_path, volume_path, labels_path, **kw) -> TrainConfig:
    return TrainConfig(
        out=str(tmp_path / "model.onnx"), arch="unet-paper",
        model_options={"widths": [8, 16], "dropout": 0.0}, volume=str(volume_path),
        slice_index=Z, labels=str(labels_path), epochs=4, steps_per_epoch=10, batch_size=4,
        crop=32, val_fraction=0.0, dice_weight=0.0, device="cpu", threads=1, lr=0.05,
        classifier_steps=5, exporter="legacy", **kw)


def test_patches_become_folds_and_too_few_patches_give_none():
    truth = np.zeros((20, 20), bool)
    truth[:, 10:] = True
    labels = _patch_labels(truth, [(0, 0), (10, 0), (0, 12), (10, 12)], side=6)
    groups = patch_groups([labels])
    assert sorted(np.unique(groups[0][groups[0] >= 0])) == [0, 1, 2, 3]
    folds = make_folds(groups, [labels], seed=0)
    assert len(folds) == 3 and sorted(g for fold in folds for g in fold) == [0, 1, 2, 3]
    # One pore and one solid patch: nothing can be held out and still leave both classes.
    labels = _patch_labels(truth, [(0, 0), (0, 12)], side=6)
    assert make_folds(patch_groups([labels]), [labels], seed=0) == []


def test_one_large_square_per_class_is_two_patches_not_its_pieces_on_the_grid():
    from training.volume_folds import BLOCK_PX, count_patches, labeled_patches

    labels = np.full((64, 96), 255, np.uint8)
    labels[10:40, 10:40], labels[10:40, 50:80] = 0, 1  # each crosses grid lines
    groups = patch_groups([labels])
    pieces = {c: len(np.unique(groups[0][labels == c])) for c in (0, 1)}
    assert pieces == {0: 4, 1: 4} and 30 > BLOCK_PX  # the grid cuts each square in four
    assert count_patches([labels]) == 2
    assert sorted(np.unique(labeled_patches([labels])[0]).tolist()) == [-1, 0, 1]
    # One patch per class: nothing can be held out, however finely the grid cuts it.
    assert make_folds(groups, [labels], seed=0) == []
    # Two patches per class, one of them large: folds over the grid's pieces; 4 patches.
    labels[50:56, 10:16], labels[50:56, 50:56] = 0, 1
    groups = patch_groups([labels])
    assert count_patches([labels]) == MIN_PATCHES_FOR_FEATURES
    assert len(make_folds(groups, [labels], seed=0)) == 3


def test_the_forest_preference_counts_whole_patches(tmp_path, monkeypatch):
    """Two patches, each labeled pore on one side and solid on the other and cut by the grid
    into four pieces: the rules see two patches (ties to the threshold), the folds eight
    groups."""
    import training.volume_select as volume_select

    truth = np.zeros(SHAPE, bool)
    truth[:, :, 24:] = True
    volume = truth * 1.0 + np.random.default_rng(3).normal(0, 0.3, SHAPE)
    labels = np.full(SHAPE[1:], 255, np.uint8)
    for rows in (slice(4, 24), slice(28, 44)):
        labels[rows, 14:34] = truth[Z][rows, 14:34]
    assert len(np.unique(patch_groups([labels])[0])) - 1 == 8
    seen = []
    real_choose = volume_select.choose
    monkeypatch.setattr(volume_select, "choose",
                        lambda scores, **kw: seen.append(kw) or real_choose(scores, **kw))
    volume_path, labels_path = _write(tmp_path, volume, labels)
    lines = []
    selection, _ = select_and_train(_config(tmp_path, volume_path, labels_path),
                                    ("threshold", "features"), echo=lines.append)
    assert selection.grouping == "patches" and selection.folds == 3
    assert seen == [{"patches": 2}]
    assert any("over 2 patches (8 pieces on the 20 px grid)" in line for line in lines)


def _two_patches(tmp_path):
    """A blob volume with one pore and one solid patch labeled: (volume path, labels path,
    volume)."""
    truth = _blobs(6)
    volume = truth * 1.0 + np.random.default_rng(7).normal(0, 0.3, SHAPE)
    labels = np.full(SHAPE[1:], 255, np.uint8)
    labels[:6, :6], labels[30:36, 30:36] = 0, 1
    return (*_write(tmp_path, volume, labels), volume)


def test_a_slice_labeled_in_full_is_told_why_nothing_was_held_out(tmp_path):
    """A slice labeled in every pixel is one patch (labeled pixels that touch are one,
    whatever their class): nothing can be held out, and the advice "label at least two
    separate patches of each class" alone read as "label more" to one who had labeled all."""
    truth = _blobs(6)
    volume = truth * 1.0 + np.random.default_rng(7).normal(0, 0.3, SHAPE)
    volume_path, labels_path = _write(tmp_path, volume, truth[Z].astype(np.uint8))
    lines = []
    selection, _ = select_and_train(_config(tmp_path, volume_path, labels_path),
                                    ("threshold",), echo=lines.append)
    assert selection.grouping == "none"
    advice = next(w for w in selection.warnings if "cannot choose" in w)
    assert "1 of the 1 here hold both" in advice and "label a second slice" in advice
    assert any(advice in line for line in lines)
    # patches of one class each: the advice stays as it was
    labels = np.full(SHAPE[1:], 255, np.uint8)
    labels[:6, :6], labels[30:36, 30:36] = 0, 1
    assert mixed_patches([labels]) == 0 and mixed_patches([truth[Z].astype(np.uint8)]) == 1


def test_two_patches_keep_the_threshold_and_say_why(tmp_path):
    volume_path, labels_path, volume = _two_patches(tmp_path)
    lines = []
    selection, out = select_and_train(_config(tmp_path, volume_path, labels_path),
                                      echo=lines.append)
    assert (selection.method, selection.grouping, selection.folds) == ("threshold", "none", 0)
    assert all(math.isnan(v) for v in selection.scores.values())
    assert any("label at least two separate patches" in line for line in lines)
    extra = Segmenter(out, providers=("cpu",)).metadata.extra
    assert extra["selection"]["grouping"] == "none"
    assert extra["model_config"]["sigma_px"] == 1.0  # nothing held out: the reference blur
    assert extra["z_sigma_px"] == 1.0  # the runtime feeds it slices blurred along Z
    assert extra["min_input_px"] == 5  # 1 + the blur's radius (4 sigma of 1 px)
    # Nothing was held out: every mask of this model says so.
    seg = segment_volume(Segmenter(out, providers=("cpu",)), volume)
    assert seg.verdict.status == "suspect"
    assert "method_unvalidated" in seg.verdict.reason_codes


def test_candidates_given_twice_are_tried_once_and_none_given_is_a_usage_error(tmp_path):
    from nwwatch.cli import main

    truth = _blobs(6)
    volume = truth * 1.0 + np.random.default_rng(7).normal(0, 0.3, SHAPE)
    volume_path, labels_path = _write(tmp_path, volume, _patch_labels(truth[Z], CORNERS))
    common = ["train", "--volume", str(volume_path), "--slice", str(Z), "--labels",
              str(labels_path), "--out", str(tmp_path / "m.onnx"), "--threads", "1", "--quiet"]
    none = CliRunner().invoke(main, [*common, "--candidates", " , "])
    assert none.exit_code == 2 and "no candidate given" in none.output
    # A name that is no candidate is said as such, before the network options are checked
    # against the candidates (it was "--epochs sets the training of a network; the --volume
    # candidates foo hold none").
    for extra in ([], ["--epochs", "1"]):
        unknown = CliRunner().invoke(main, [*common, "--candidates", "foo", *extra])
        assert unknown.exit_code == 2, unknown.output
        assert "unknown candidates ['foo']; choose from" in unknown.output, unknown.output
    empty = CliRunner().invoke(main, [*common, "--candidates", " , ", "--epochs", "1"])
    assert empty.exit_code == 2 and "no candidate given" in empty.output, empty.output
    twice = CliRunner().invoke(main, [*common, "--candidates", "threshold,threshold"])
    assert twice.exit_code == 0, twice.output
    scored = [line for line in twice.output.splitlines() if line.strip().startswith("threshold")]
    assert len(scored) == 1, twice.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_without_cuda_stops_before_the_cross_validation(tmp_path):
    # The networks asked for the device only when their first fold started: the threshold's
    # and the forest's folds ran first (minutes on a large volume), then the run failed.
    from nwwatch.cli import main

    truth = _blobs(6)
    volume = truth * 1.0 + np.random.default_rng(7).normal(0, 0.3, SHAPE)
    volume_path, labels_path = _write(tmp_path, volume, _patch_labels(truth[Z], CORNERS))
    common = ["train", "--volume", str(volume_path), "--slice", str(Z), "--labels",
              str(labels_path), "--out", str(tmp_path / "m.onnx"), "--threads", "1", "--quiet",
              "--device", "cuda"]
    result = CliRunner().invoke(main, [*common, "--candidates", "threshold,features,unet"])
    assert result.exit_code == 1, result.output
    assert "CUDA is not available" in result.output
    assert "cross-validation" not in result.output and "held-out" not in result.output
    assert not (tmp_path / "m.onnx").exists()
    # Without a network among the candidates the device is never used: the run goes on.
    small = CliRunner().invoke(main, [*common, "--candidates", "threshold"])
    assert small.exit_code == 0, small.output


def test_a_slice_labeled_in_every_pixel_warns_about_the_0_convention(tmp_path):
    # napari and ilastik export 0 as "unlabeled": here it is pore, and the whole slice
    # becomes labels. Not an error (a slice may be labeled in full), but said.
    from nwwatch.cli import main

    truth = _blobs(6)
    volume = truth * 1.0 + np.random.default_rng(7).normal(0, 0.3, SHAPE)
    painted = truth[Z].astype(np.uint8)  # solid painted 1, the rest left at 0
    volume_path, labels_path = _write(tmp_path, volume, painted)
    args = ["train", "--volume", str(volume_path), "--slice", str(Z), "--labels",
            str(labels_path), "--out", str(tmp_path / "m.onnx"), "--threads", "1", "--quiet",
            "--candidates", "threshold"]
    full = CliRunner().invoke(main, args)
    assert full.exit_code == 0, full.output
    # The labels file the user gave, not the internal name of the slice (volume_z00006).
    assert ("warning: every pixel of labels.png (slice 6 of volume.tif) is labeled (none is "
            "255)" in full.output)
    assert "if 0 meant 'unlabeled' (napari, ilastik), mark those pixels 255" in full.output
    _write(tmp_path, volume, _patch_labels(truth[Z], CORNERS))  # patches: nothing to say
    assert "every pixel" not in CliRunner().invoke(main, args).output


def test_a_labels_file_that_labels_nothing_beside_others_is_said(tmp_path):
    # Alone it is refused (no class labeled); beside another slice's labels it was taken
    # without a word, though it adds nothing: most likely the wrong file.
    import cv2

    from nwwatch.cli import main

    truth = _blobs(6)
    volume = truth * 1.0 + np.random.default_rng(7).normal(0, 0.3, SHAPE)
    volume_path, labels_path = _write(tmp_path, volume, _patch_labels(truth[Z], CORNERS))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full(SHAPE[1:], 255, np.uint8))
    result = CliRunner().invoke(main, [
        "train", "--volume", str(volume_path), "--slice", str(Z), "--labels", str(labels_path),
        "--slice", "2", "--labels", str(blank), "--out", str(tmp_path / "m.onnx"),
        "--threads", "1", "--quiet", "--candidates", "threshold"])
    assert result.exit_code == 0, result.output
    assert ("warning: blank.png (slice 2 of volume.tif) labels no pixel (every pixel is 255)"
            in result.output)
    assert "labels no pixel" not in CliRunner().invoke(main, [
        "train", "--volume", str(volume_path), "--slice", str(Z), "--labels", str(labels_path),
        "--out", str(tmp_path / "m2.onnx"), "--threads", "1", "--quiet",
        "--candidates", "threshold"]).output


def test_two_patches_keep_the_first_candidate_given_when_the_threshold_is_not_one(tmp_path):
    # --candidates features: with nothing to hold out the threshold was kept all the same.
    volume_path, labels_path, _ = _two_patches(tmp_path)
    selection, out = select_and_train(_config(tmp_path, volume_path, labels_path),
                                      ("unet", "features"), echo=lambda line: None)
    assert (selection.method, selection.grouping) == ("features", "none")
    assert "features, the first of the candidates given, is kept unchecked" in selection.reason
    meta = Segmenter(out, providers=("cpu",)).metadata
    assert meta.arch == "feature-forest" and meta.extra["selection"]["grouping"] == "none"


def test_ties_go_to_the_simpler_candidate():
    assert choose({"threshold": 0.95, "contrastive": 0.955})[0] == "threshold"
    kept, reason = choose({"threshold": 0.90, "unet": 0.97, "contrastive": 0.965})
    assert kept == "unet" and "best" in reason
    assert choose({"threshold": math.nan, "features": 0.8})[0] == "features"
    assert CANDIDATES[0] == "threshold"
    # Labels in several places: a tie goes to the feature forest, which also sees context.
    tied = {"threshold": 0.95, "features": 0.94, "unet": 0.945}
    assert choose(tied, patches=MIN_PATCHES_FOR_FEATURES - 1)[0] == "threshold"
    kept, reason = choose(tied, patches=MIN_PATCHES_FOR_FEATURES)
    assert kept == "features" and "context" in reason
    # The forest is kept unless another candidate is better by more than FOREST_MARGIN.
    assert choose({"threshold": 0.95, "features": 0.95 - FOREST_MARGIN + 0.001},
                  patches=9)[0] == "features"
    assert choose({"threshold": 0.95, "features": 0.95 - FOREST_MARGIN - 0.001},
                  patches=9)[0] == "threshold"
    assert choose({"threshold": 0.95, "features": 0.95 - FOREST_MARGIN + 0.001},
                  patches=3)[0] == "threshold"


@pytest.mark.slow
def test_the_threshold_wins_where_intensity_tells_the_classes_apart(tmp_path):
    truth = _blobs(0)
    rng = np.random.default_rng(1)
    volume = truth * 1.0 + rng.normal(0, 0.6, SHAPE)  # noisy: a blur is what it takes
    volume_path, labels_path = _write(tmp_path, volume, _patch_labels(truth[Z], CORNERS))
    config = _config(tmp_path, volume_path, labels_path)
    selection, out = select_and_train(config, ("threshold", "unet"))
    assert selection.method == "threshold" and selection.grouping == "patches"
    assert selection.folds == 3
    # The U-Net scored, or its cross-validation stopped once it could no longer be kept.
    unet = selection.scores["unet"] if "unet" not in selection.stopped \
        else selection.stopped["unet"]
    assert selection.scores["threshold"] >= unet - 0.01
    meta = Segmenter(out, providers=("cpu",)).metadata
    assert (meta.arch, meta.paradigm, meta.kind) == ("smoothed-threshold", "threshold",
                                                     "tomogram")
    assert meta.extra["selection"]["method"] == "threshold"
    assert set(meta.extra["selection"]["scores"]) == {"threshold", "unet"}
    assert meta.extra["model_config"]["sigma_px"] > 0  # the labels asked for a blur
    seg = segment_volume(Segmenter(out, providers=("cpu",)), volume)
    keep = np.arange(SHAPE[0]) != Z
    pred, true = seg.mask[keep].astype(bool), truth[keep]
    assert np.count_nonzero(pred & true) / np.count_nonzero(pred | true) > 0.8
    assert seg.verdict.status == "ok"


def test_labels_that_do_not_match_their_slice_warn_whatever_is_kept(tmp_path):
    """Labels flipped upside down against their slice (a slice exported by IMOD's mrc2tif,
    painted and brought back) leave every candidate near chance on the held-out patches: a
    candidate was kept, exit 0, no word."""
    truth = _blobs(0)
    volume = truth * 1.0 + np.random.default_rng(1).normal(0, 0.3, SHAPE)
    labels = _patch_labels(truth[Z][::-1], CORNERS)
    volume_path, labels_path = _write(tmp_path, volume, labels)
    lines: list[str] = []
    selection, _ = select_and_train(_config(tmp_path, volume_path, labels_path),
                                    ("threshold",), echo=lines.append)
    assert selection.scores["threshold"] < 0.7
    (warning,) = [w for w in selection.warnings if "held-out labeled pixels poorly" in w]
    assert "flipped upside down" in warning and f"warning: {warning}" in lines
    # the labels of the slice as it is: no such warning
    cv2.imwrite(str(labels_path), _patch_labels(truth[Z], CORNERS))
    selection, _ = select_and_train(_config(tmp_path, volume_path, labels_path),
                                    ("threshold",), echo=lines.append)
    assert selection.scores["threshold"] > 0.9
    assert not [w for w in selection.warnings if "held-out labeled pixels poorly" in w]


def _checker_volume(truth: np.ndarray) -> np.ndarray:
    """Solid is a fine checkerboard of +-1 around the pore's grey: equal means, no threshold
    (blurred or not) can separate them; a network or a feature classifier sees the texture."""
    checker = np.indices(SHAPE).sum(axis=0) % 2 * 2.0 - 1.0
    return np.where(truth, checker, 0.0) + np.random.default_rng(3).normal(0, 0.05, SHAPE)


@pytest.mark.slow
def test_the_network_wins_where_only_texture_tells_the_classes_apart(tmp_path):
    truth = _blobs(2)
    volume_path, labels_path = _write(tmp_path, _checker_volume(truth),
                                      _patch_labels(truth[Z], CORNERS))
    config = _config(tmp_path, volume_path, labels_path)
    selection, out = select_and_train(config, ("threshold", "unet"))
    assert selection.method == "unet", selection
    assert selection.scores["unet"] > selection.scores["threshold"] + 0.1
    meta = Segmenter(out, providers=("cpu",)).metadata
    assert meta.paradigm == "supervised" and meta.extra["selection"]["method"] == "unet"
    assert out.with_suffix(".pt").is_file()


def test_the_feature_forest_wins_where_only_texture_tells_the_classes_apart(tmp_path):
    truth = _blobs(2)
    volume = _checker_volume(truth)
    volume_path, labels_path = _write(tmp_path, volume, _patch_labels(truth[Z], CORNERS))
    config = _config(tmp_path, volume_path, labels_path)
    selection, out = select_and_train(config, ("threshold", "features"), z_sigma_px=0.0)
    assert selection.method == "features", selection
    assert selection.scores["features"] > selection.scores["threshold"] + 0.1
    meta = Segmenter(out, providers=("cpu",)).metadata
    assert (meta.arch, meta.paradigm) == ("feature-forest", "features")
    assert meta.extra["selection"]["method"] == "features"
    assert "input_slices" not in meta.extra
    seg = segment_volume(Segmenter(out, providers=("cpu",)), volume)
    keep = np.arange(SHAPE[0]) != Z
    pred, true = seg.mask[keep].astype(bool), truth[keep]
    assert np.count_nonzero(pred & true) / np.count_nonzero(pred | true) > 0.8


@pytest.mark.slow
@pytest.mark.parametrize("with_echo", [True, False])
def test_too_few_labels_warn_once(tmp_path, caplog, with_echo):
    """A class with fewer than 50 labeled pixels is said once: on the caller's echo when it
    gives one (the CLI), else in the log."""
    truth = _blobs(4)
    volume = truth * 1.0 + np.random.default_rng(5).normal(0, 0.3, SHAPE)
    labels = _patch_labels(truth[Z], CORNERS)
    labels[(labels == 1) & (np.arange(48)[None, :] > 8)] = 255
    n_solid = int(np.count_nonzero(labels == 1))
    assert 0 < n_solid < 50
    volume_path, labels_path = _write(tmp_path, volume, labels)
    lines: list[str] = []
    with caplog.at_level(logging.WARNING, logger="training.volume_select"):
        select_and_train(_config(tmp_path, volume_path, labels_path), ("threshold",),
                         echo=lines.append if with_echo else None)
    sentence = f"only {n_solid} labeled solid pixels"
    said = [line for line in lines if sentence in line]
    logged = [r for r in caplog.records if sentence in r.getMessage()]
    assert (len(said), len(logged)) == ((1, 0) if with_echo else (0, 1))


def test_the_few_labels_warning_counts_one_pixel_in_the_singular():
    from types import SimpleNamespace

    label = np.full((8, 8), 255, np.uint8)
    label[0, 0] = 0  # one pore pixel
    label[1:, :] = 1  # 56 solid pixels
    data = SimpleNamespace(class_names=("pore", "solid"), notes=[],
                           labeled=[SimpleNamespace(label=label, stem="s")])
    assert label_warnings(data) == [
        "only 1 labeled pore pixel (fewer than 50): label one more patch of pore, on this "
        "slice or another one"]


def test_train_volume_cli_chooses_and_the_service_reads_the_choice(tmp_path):
    from nwwatch.cli import main
    from nwwatch.service import replay

    truth = _blobs(4)
    volume = truth * 1.0 + np.random.default_rng(5).normal(0, 0.3, SHAPE)
    labels = _patch_labels(truth[Z], CORNERS)
    labels[(labels == 1) & (np.arange(48)[None, :] > 8)] = 255  # leave 11 labeled solid pixels
    labels[3:5, 3:8][truth[Z, 3:5, 3:8]] = 255
    acq = tmp_path / "acq"
    acq.mkdir()
    volume_path, labels_path = _write(acq, volume, labels)
    n_solid = int(np.count_nonzero(labels == 1))
    assert 0 < n_solid < 50
    model = tmp_path / "model.onnx"
    result = CliRunner().invoke(main, [
        "train", "--volume", str(volume_path), "--slice", str(Z), "--labels", str(labels_path),
        "--candidates", "threshold,features", "--out", str(model), "--threads", "1",
        "--exporter", "legacy", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"warning: only {n_solid} labeled solid pixels" in result.output
    assert "label one more patch of solid" in result.output
    assert "kept: " in result.output
    meta = Segmenter(model, providers=("cpu",)).metadata
    assert meta.extra["class_pixel_counts"]["solid"] == n_solid
    assert meta.extra["selection"]["warnings"]
    labels_path.unlink()  # the service sees the volume only
    assert replay(acq, tmp_path / "out", kind="tomogram", model=model).done == 1
    row = ds.dataset(tmp_path / "out" / "volumes").to_table().to_pandas().iloc[0]
    # Trained on 11 solid pixels: whatever the mask, the row says so.
    assert row.status == "suspect" and "few_labeled_pixels" in row.reason_code.split(",")


class _AllPore(torch.nn.Module):
    """Calls every pixel pore."""

    size_multiple = 1

    def forward(self, x):
        return torch.cat([torch.ones_like(x), -torch.ones_like(x)], dim=1)


class _FakeTrainer:
    def __init__(self, image):
        self.image_ = image
        self.fits = 0

    def fit(self, method, labels):
        self.fits += 1
        return _AllPore()

    def image(self, method, index):
        return self.image_


def test_cross_validation_stops_a_candidate_that_can_no_longer_be_kept():
    from training.volume_select import _cross_validate

    truth = _blobs(8)[Z]
    labels = [_patch_labels(truth, CORNERS)]
    groups = patch_groups(labels)
    folds = make_folds(groups, labels, seed=0)
    assert len(folds) == 3
    full = _FakeTrainer(np.zeros(truth.shape, np.float32))
    score, run = _cross_validate(full, "unet", labels, groups, folds)
    assert (run, full.fits) == (3, 3) and score == pytest.approx(0.5)  # pore recall 1, solid 0
    early = _FakeTrainer(np.zeros(truth.shape, np.float32))
    bound, run = _cross_validate(early, "unet", labels, groups, folds, floor=0.99)
    # Stopped before the last fold; the bound is an upper bound of the score it gave up on.
    assert run < 3 and early.fits == run and 0.5 <= bound < 0.99
    assert _cross_validate(_FakeTrainer(full.image_), "unet", labels, groups, folds,
                           floor=0.5)[1] == 3  # reachable: every fold runs


def test_the_slab_forest_wins_where_only_the_change_along_z_tells_solid_from_pore(tmp_path):
    """Solid is +1 on even slices and -1 on odd ones, pore 0: no threshold separates them,
    and the forest's Z-smoothed slices average the solid away; its Z derivatives, from the
    slab the runtime feeds it, keep it."""
    truth = _blobs(6)
    sign = np.where(np.arange(SHAPE[0]) % 2 == 0, 1.0, -1.0)[:, None, None]
    volume = np.where(truth, sign, 0.0) + np.random.default_rng(7).normal(0, 0.05, SHAPE)
    volume_path, labels_path = _write(tmp_path, volume, _patch_labels(truth[Z], CORNERS))
    # An even and an odd slice: the solid's curvature along Z has both signs.
    odd_path = tmp_path / "labels_odd.png"
    cv2.imwrite(str(odd_path), _patch_labels(truth[Z + 1], CORNERS))
    config = _config(tmp_path, volume_path, labels_path)
    config = replace(config, slice_index=[Z, Z + 1], labels=[str(labels_path), str(odd_path)])
    selection, out = select_and_train(config, ("threshold", "features"),
                                      forest_slices=FOREST_SLAB_SLICES)
    assert selection.method == "features", selection
    meta = Segmenter(out, providers=("cpu",)).metadata
    # The forest smooths along Z itself: the runtime feeds it the slab, not blurred slices.
    assert meta.extra["input_slices"] == FOREST_SLAB_SLICES > 1
    assert meta.extra["z_sigma_px"] == 0.0
    seg = segment_volume(Segmenter(out, providers=("cpu",)), volume)
    half = FOREST_SLAB_SLICES // 2
    inner = [z for z in range(half, SHAPE[0] - half) if z not in (Z, Z + 1)]
    pred, true = seg.mask[inner].astype(bool), truth[inner]
    assert np.count_nonzero(pred & true) / np.count_nonzero(pred | true) > 0.7


def test_the_candidates_see_a_nan_slab_as_the_runtime_does(tmp_path):
    # The runtime leaves voxels without data out of the Z blur and gives a slice without
    # data the nearest data slice's grey (tests/test_volume_segment.py, test_volume_slab.py);
    # the threshold's and the forest's training input must be the same volume, or they
    # learn another one.
    from nwwatch.normalize import NAN_FILL, intensity_range, normalize_image
    from nwwatch.volume import smooth_along_z
    from training.data import load_volume_slice
    from training.volume_candidates import CandidateTrainer

    truth = _blobs(3)
    volume = truth * 1.0 + np.random.default_rng(1).normal(0, 0.3, SHAPE)
    volume[:2] = np.nan
    volume[9, :10] = np.nan
    volume_path, labels_path = _write(tmp_path, volume, _patch_labels(truth[Z], CORNERS))
    data = load_volume_slice(volume_path, Z, labels_path)
    config = _config(tmp_path, volume_path, labels_path)
    trainer = CandidateTrainer(config, data, tmp_path, z_sigma_px=1.0)
    raw = volume.astype(np.float32)
    normalised = normalize_image(raw, intensity_range(raw), nan_fill=NAN_FILL["tomogram"])
    normalised[:2] = normalised[2]  # slices 0 and 1 have no data: slice 2's grey
    fed = smooth_along_z(normalised, 1.0, valid=np.isfinite(raw))
    np.testing.assert_allclose(trainer.volume, fed, atol=1e-6)
    # the slab forest's slab of slice 2 holds it below
    slab = CandidateTrainer(config, data, tmp_path, z_sigma_px=0.0, forest_slices=3).slab([2])
    np.testing.assert_allclose(slab[0], normalised[[1, 2, 3]], atol=1e-6)


def test_quantize_is_refused_by_the_method_selection(tmp_path):
    # The selected method is exported without an INT8 copy: asking for one is an error (nwwatch
    # train refuses it earlier as a usage error, tests/test_training_outputs.py), not a
    # request dropped without a word.
    volume_path, labels_path, _ = _two_patches(tmp_path)
    with pytest.raises(ValueError, match="without an INT8 copy"):
        select_and_train(_config(tmp_path, volume_path, labels_path, quantize="int8"),
                         ("threshold",))
    assert not (tmp_path / "model.onnx").exists() and not list(tmp_path.glob("*int8*"))


def test_a_model_without_a_network_says_why_it_cannot_seed_or_continue_a_run(tmp_path):
    # before: --resume, --init and --frozen-encoder of the threshold --volume kept said only
    # "MODEL.pt not found", as if the checkpoint had been moved
    from nwwatch.cli import main
    from training.checkpoint import CheckpointError
    from training.weights import load_initial_weights

    truth = _blobs(6)
    volume = truth * 1.0 + np.random.default_rng(7).normal(0, 0.3, SHAPE)
    volume_path, labels_path = _write(tmp_path, volume, _patch_labels(truth[Z], CORNERS))
    model = tmp_path / "m.onnx"
    inputs = ["--volume", str(volume_path), "--slice", str(Z), "--labels", str(labels_path),
              "--threads", "1", "--quiet"]
    kept = CliRunner().invoke(main, ["train", *inputs, "--candidates", "threshold", "--out",
                                     str(model)])
    assert kept.exit_code == 0, kept.output
    what = (f"{model} is the smoothed-threshold model that `nwwatch train --volume` kept "
            f"(method threshold), not a network: it has no checkpoint, and ")
    resume = CliRunner().invoke(main, ["train", "--resume", "--out", str(model), "--quiet"])
    assert resume.exit_code == 2, resume.output
    assert f"{tmp_path / 'm.pt'}: nothing to resume: {what}it is fitted in one go" in \
        " ".join(resume.output.split())
    with pytest.raises(CheckpointError, match="fine-tuning starts from a network's trained "
                                              "weights; for a network on that volume"):
        load_initial_weights(str(model))
    frozen = CliRunner().invoke(main, ["train", *inputs, "--paradigm", "cct",
                                       "--frozen-encoder", str(model), "--out",
                                       str(tmp_path / "c.onnx")])
    assert frozen.exit_code == 1, frozen.output
    assert f"{what}it has no encoder to freeze" in frozen.output


def test_slices_that_each_hold_one_class_are_said():
    # Solid labeled on one slice, pore (vacuum) on another: every method's held-out score was
    # 1.000 and the mask held half as much solid again, without a word.
    from types import SimpleNamespace

    solid = np.full((8, 8), 255, np.uint8)
    solid[:4, :4] = 1
    pore = np.full((8, 8), 255, np.uint8)
    pore[4:, 4:] = 0
    data = SimpleNamespace(class_names=("pore", "solid"), notes=[],
                           labeled=[SimpleNamespace(label=solid.repeat(4, 0), stem="a"),
                                    SimpleNamespace(label=pore.repeat(4, 0), stem="b")])
    (said,) = [w for w in label_warnings(data) if "no labeled slice" in w]
    assert "label both classes, side by side, on at least one slice" in said
    both = solid.repeat(4, 0).copy()
    both[-4:, -4:] = 0
    data.labeled[0].label = both  # one slice with both: nothing to say
    assert not [w for w in label_warnings(data) if "no labeled slice" in w]


def _binned(volume: np.ndarray) -> np.ndarray:
    z, y, x = (s // 2 for s in volume.shape)
    return volume[:2 * z, :2 * y, :2 * x].reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))


def test_a_model_records_its_voxel_size_and_flags_a_volume_of_another(tmp_path):
    # A model trained at 0.32 nm served a 2x-binned volume (0.64 nm) with a worse mask and
    # an ok row: nothing recorded the training volume's voxel size.
    import json

    import onnx

    from nwwatch.cli import main
    from nwwatch.io import write_volume_tiff
    from nwwatch.segment.contract import METADATA_KEY
    from nwwatch.service import replay

    truth = np.concatenate([_blobs(4)] * 2)  # 24 slices: binned, still 12
    volume = (truth * 1.0 + np.random.default_rng(5).normal(0, 0.3, truth.shape))
    volume = volume.astype(np.float32)
    labels_path = tmp_path / "labels.png"
    cv2.imwrite(str(labels_path), _patch_labels(truth[Z], CORNERS))
    trained_on = write_volume_tiff(tmp_path / "train.tif", volume, voxel_size_nm=0.32)
    selection, model = select_and_train(_config(tmp_path, trained_on, labels_path),
                                         ("threshold",))
    assert Segmenter(model, providers=("cpu",)).metadata.extra["voxel_size_nm"] == \
        pytest.approx([0.32, 0.32, 0.32])
    shown = CliRunner().invoke(main, ["model", str(model)]).output
    assert ("training voxel size: 0.32 x 0.32 x 0.32 nm (z x y x x); a volume more than "
            "1.5 x apart on an axis both declare is suspect (voxel_size_mismatch)") in shown

    acq = tmp_path / "acq"
    acq.mkdir()
    binned = _binned(volume).astype(np.float32)
    write_volume_tiff(acq / "same.tif", volume, voxel_size_nm=0.32)
    write_volume_tiff(acq / "bin2.tif", binned, voxel_size_nm=0.64)
    write_volume_tiff(acq / "close.tif", binned + 1.0, voxel_size_nm=0.45)  # 1.41 x
    write_volume_tiff(acq / "zonly.tif", binned + 2.0, voxel_size_nm=(0.64, 0.32, 0.32))
    write_volume_tiff(acq / "unknown.tif", binned + 3.0)  # declares no voxel size
    assert replay(acq, tmp_path / "out", kind="tomogram", model=model).done == 5
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in
            ds.dataset(tmp_path / "out" / "volumes").to_table().to_pylist()}
    flagged = {name for name, row in rows.items()
               if "voxel_size_mismatch" in row["reason_code"].split(",")}
    assert flagged == {"bin2.tif", "zonly.tif"}
    assert rows["bin2.tif"]["status"] == "suspect"
    assert ("the volume's voxels are 0.64 x 0.64 x 0.64 nm (z x y x x), 2 x the training "
            "volume's 0.32 x 0.32 x 0.32 nm") in rows["bin2.tif"]["reason"]
    assert "2 / 1 / 1 x (z / y / x)" in rows["zonly.tif"]["reason"]

    # Models without the record (trained before it was written) are not checked; nor is a
    # model whose training volume declared no voxel size.
    older = tmp_path / "older.onnx"
    proto = onnx.load(str(model))
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            meta = json.loads(prop.value)
            del meta["extra"]["voxel_size_nm"]
            prop.value = json.dumps(meta, sort_keys=True)
    onnx.save(proto, str(older))
    assert "training voxel size: not recorded" in CliRunner().invoke(
        main, ["model", str(older)]).output
    unknown = write_volume_tiff(tmp_path / "unknown.tif", volume)
    _, blind = select_and_train(_config(tmp_path / "blind", unknown, labels_path),
                                ("threshold",))
    assert Segmenter(blind, providers=("cpu",)).metadata.extra["voxel_size_nm"] is None
    assert Segmenter(blind, providers=("cpu",)).metadata.extra["voxel_size_source"] == "volume"
    for other in (older, blind):
        seg = segment_volume(Segmenter(other, providers=("cpu",)), binned,
                             voxel_size_nm=(0.64, 0.64, 0.64))
        assert "voxel_size_mismatch" not in seg.verdict.reason_codes


def _fiji_tiff(path, volume: np.ndarray, pixel_nm: float):
    """``volume`` saved as Fiji saves a stack whose voxel depth was never set: a pixel size
    in microns and no spacing= (ImageJ's default depth, 1 micron)."""
    import tifffile

    per_um = 1000.0 / pixel_nm
    tifffile.imwrite(path, volume.astype(np.float32), imagej=True, resolution=(per_um, per_um),
                     metadata={"unit": "micron", "axes": "ZYX"})
    return path


def test_a_depth_a_tiff_does_not_declare_is_neither_recorded_nor_compared(tmp_path):
    # A Fiji tomogram of 0.32 nm pixels saved without a voxel depth read as 1000 x 0.32 x
    # 0.32 nm: served to a model of 0.32 nm voxels it was `suspect voxel_size_mismatch`
    # ("resample the volume to the training voxel size"), its row stored z = 1000 nm; a model
    # trained on it recorded z = 1000 nm and flagged every calibrated volume it served.
    from nwwatch.cli import main
    from nwwatch.io import write_volume_tiff
    from nwwatch.service import replay

    truth = np.concatenate([_blobs(4)] * 2)
    volume = (truth * 1.0 + np.random.default_rng(5).normal(0, 0.3, truth.shape))
    volume = volume.astype(np.float32)
    labels_path = tmp_path / "labels.png"
    cv2.imwrite(str(labels_path), _patch_labels(truth[Z], CORNERS))

    calibrated = write_volume_tiff(tmp_path / "train.tif", volume, voxel_size_nm=0.32)
    _, model = select_and_train(_config(tmp_path, calibrated, labels_path), ("threshold",))
    fiji = _fiji_tiff(tmp_path / "fiji_train.tif", volume, 0.32)
    _, fiji_model = select_and_train(_config(tmp_path / "f", fiji, labels_path),
                                     ("threshold",))
    assert Segmenter(fiji_model, providers=("cpu",)).metadata.extra["voxel_size_nm"] == \
        [None, pytest.approx(0.32), pytest.approx(0.32)]
    shown = CliRunner().invoke(main, ["model", str(fiji_model)]).output
    assert ("training voxel size: ? x 0.32 x 0.32 nm (z x y x x; z not declared by the "
            "training volume, not compared)") in shown

    acq = tmp_path / "acq"
    acq.mkdir()
    binned = _binned(volume).astype(np.float32)
    _fiji_tiff(acq / "fiji.tif", volume + 1.0, 0.32)
    _fiji_tiff(acq / "fiji_bin2.tif", binned, 0.64)
    write_volume_tiff(acq / "calibrated.tif", volume + 2.0, voxel_size_nm=0.32)
    for name, served in (("calibrated", model), ("fiji", fiji_model)):
        assert replay(acq, tmp_path / name, kind="tomogram", model=served).done == 3
        rows = {r["source"].rsplit("/", 1)[-1]: r for r in
                ds.dataset(tmp_path / name / "volumes").to_table().to_pylist()}
        flagged = {n for n, row in rows.items()
                   if "voxel_size_mismatch" in row["reason_code"].split(",")}
        assert flagged == {"fiji_bin2.tif"}, name  # y and x, which both declare
        # a volume without a declared depth has no voxel size in its row, as documented
        assert [rows["fiji.tif"][f"voxel_size_{axis}_nm"] for axis in "zyx"] == [None] * 3
        assert rows["fiji.tif"]["surface_area_nm2"] is None
        assert rows["calibrated.tif"]["voxel_size_z_nm"] == pytest.approx(0.32)


def _select_tiny_unet(volume_path, labels_path, out) -> None:
    """``nwwatch train --volume`` with the unet as only candidate, one step of a tiny net."""
    import json

    from nwwatch.cli import main

    tiny = {"widths": [4, 8], "encoder_convs": [1, 1], "decoder_convs": [1]}
    result = CliRunner().invoke(main, [
        "train", "--volume", str(volume_path), "--slice", str(Z), "--labels", str(labels_path),
        "--out", str(out), "--candidates", "unet", "--epochs", "1", "--steps-per-epoch", "1",
        "--batch-size", "2", "--crop", "32", "--threads", "1", "--exporter", "legacy",
        "--quiet", "--model-options", json.dumps(tiny)])
    assert result.exit_code == 0, result.output


def test_a_label_file_saved_during_the_selection_does_not_train_the_kept_network(
        tmp_path, monkeypatch):
    # The kept network's final training read the user's label file again: an edit saved
    # while the candidates were scored (from the labelling tool, say) trained a network the
    # selection never scored, under the old labels' scores and warnings.

    import training.volume_select as volume_select
    from nwwatch.cli import main

    truth = _blobs(6)
    volume = truth * 1.0 + np.random.default_rng(7).normal(0, 0.3, SHAPE)
    labels = _patch_labels(truth[Z], [(3, 3)], 24)
    volume_path, labels_path = _write(tmp_path, volume, labels)
    scored = {name: int(np.count_nonzero(labels == value))
              for name, value in (("pore", 0), ("solid", 1))}
    chosen = volume_select.Selection

    def edited_meanwhile(*args, **kwargs):  # once the method is chosen, before its training
        edited = np.full_like(labels, 255)
        edited[:8], edited[8:16] = 1, 0
        cv2.imwrite(str(labels_path), edited)
        return chosen(*args, **kwargs)

    monkeypatch.setattr(volume_select, "Selection", edited_meanwhile)
    out = tmp_path / "m.onnx"
    _select_tiny_unet(volume_path, labels_path, out)
    counts = Segmenter(out, providers=("cpu",)).metadata.extra["class_pixel_counts"]
    assert {k: counts[k] for k in scored} == scored
    # and --candidates on a resume is refused, not silently ignored
    refused = CliRunner().invoke(main, ["train", "--resume", "--out", str(out), "--candidates",
                                        "threshold", "--quiet"])
    assert refused.exit_code == 2 and "--resume" in refused.output, refused.output


def test_a_selected_network_resumes_and_exports_from_its_checkpoint(tmp_path):
    # The kept network's checkpoint named the labels the selection wrote in its temporary
    # folder (gone once it ended) and the slice as a list ([6]) where the CLI records an int:
    # neither --resume nor --resume --export-only could read it, nor take the labels anew.

    from nwwatch.cli import main
    from training.checkpoint import load_checkpoint

    truth = _blobs(6)
    volume = truth * 1.0 + np.random.default_rng(7).normal(0, 0.3, SHAPE)
    # One patch: no fold, so the network is kept unchecked (its final training only).
    volume_path, labels_path = _write(tmp_path, volume, _patch_labels(truth[Z], [(3, 3)], 24))
    out = tmp_path / "m.onnx"
    _select_tiny_unet(volume_path, labels_path, out)
    config = load_checkpoint(tmp_path / "m.pt")["config"]
    assert config["labels"] == str(labels_path.resolve()) and config["slice_index"] == Z
    chosen = Segmenter(out, providers=("cpu",)).metadata.extra["selection"]
    assert chosen["grouping"] == "none"  # the runtime's method_unvalidated verdict reads it
    exported = CliRunner().invoke(main, ["train", "--resume", "--export-only", "--out",
                                         str(out), "--quiet"])
    assert exported.exit_code == 0, exported.output
    # The resume's export keeps the record of how the network was chosen (it was dropped).
    assert Segmenter(out, providers=("cpu",)).metadata.extra["selection"] == chosen
    resumed = CliRunner().invoke(main, ["train", "--resume", "--epochs", "2", "--out", str(out),
                                        "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(tmp_path / "m.pt")["epoch"] == 2
    assert Segmenter(out, providers=("cpu",)).metadata.extra["selection"] == chosen
    # Labels moved: given anew with the volume and slice, as the CLI records them.
    moved = labels_path.rename(tmp_path / "moved.png")
    again = CliRunner().invoke(main, [
        "train", "--resume", "--epochs", "3", "--out", str(out), "--volume", str(volume_path),
        "--slice", str(Z), "--labels", str(moved), "--quiet"])
    assert again.exit_code == 0, again.output
    torch.set_num_threads(1)
