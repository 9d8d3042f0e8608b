"""training.calibrate: per-class logit offsets fitted by cross-entropy, written into the graph."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest
import tifffile
from onnx_models import INSITU_CENTRES, build_threshold_model

from nwwatch.filehash import file_sha256
from nwwatch.segment.session import Segmenter
from training.calibrate import (
    OFFSET_NAME,
    CalibrationError,
    LogitOffsetFit,
    add_logit_offsets,
    boundary_band,
    fit_logit_offsets,
    main,
    network_logits,
    write_offset_model,
)

SHARPNESS = 8.0


def _threshold_logits(x: np.ndarray) -> np.ndarray:
    """The threshold model's logits (C, H, W) of a normalised image, up to a per-pixel constant."""
    c = np.asarray(INSITU_CENTRES, np.float32)[:, None, None]
    return 2 * SHARPNESS * c * x[None] - SHARPNESS * c**2


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def test_fit_recovers_known_offsets():
    # Labels drawn from softmax(z + b_true): the cross-entropy optimum of the offsets is b_true.
    rng = np.random.default_rng(0)
    b_true = np.array([0.0, 0.7, -0.4])
    logits, labels = [], []
    for _ in range(4):
        z = rng.normal(0.0, 2.0, (3, 128, 128)).astype(np.float32)
        p = _softmax(z + b_true[:, None, None])
        u = rng.random((128, 128))
        y = (u > p[0]).astype(np.uint8) + (u > p[0] + p[1]).astype(np.uint8)
        y[:5] = 255  # unlabeled rows are left out
        logits.append(z)
        labels.append(y)
    fit = fit_logit_offsets(logits, labels, band_px=None)
    assert fit.ok and fit.reason == "ok"
    assert fit.pixels == 4 * 123 * 128
    np.testing.assert_allclose(fit.offsets, b_true, atol=0.05)
    assert fit.loss_after < fit.loss_before


def test_fit_moves_a_misplaced_boundary_back():
    # A 1-D ramp whose classifier puts the 0/1 boundary 4 px left of the labels' boundary.
    x = np.tile(np.linspace(-1, 1, 64, dtype=np.float32), (32, 1))
    z = np.stack([-4.0 * x, 4.0 * x, np.full_like(x, -50.0)])  # boundary at x = 0 (col 31.5)
    labels = np.where(np.arange(64) < 36, 0, 1).astype(np.uint8)[None].repeat(32, 0)
    assert (np.argmax(z, axis=0) != labels).any()
    fit = fit_logit_offsets([z], [labels], band_px=6.0)
    shifted = np.argmax(z + np.asarray(fit.offsets, np.float32)[:, None, None], axis=0)
    # Separable data: the optimum puts the boundary between the two labelled columns.
    assert (shifted == labels).all()
    assert fit.offsets[1] < 0


def test_fit_without_pixels_is_a_value():
    z = np.zeros((3, 8, 8), np.float32)
    fit = fit_logit_offsets([z], [np.zeros((8, 8), np.uint8)], band_px=3.0)  # one class: no band
    assert not fit.ok and fit.reason == "no_pixels" and fit.offsets == ()


def test_boundary_band():
    y = np.zeros((10, 20), np.uint8)
    y[:, 10:] = 1
    band = boundary_band(y, 3.0)
    assert band[:, 7:13].all() and not band[:, :7].any() and not band[:, 13:].any()
    y[:, 8] = 255
    band = boundary_band(y, 3.0)
    assert not band[:, 8].any() and band[:, 7].all()


def test_network_logits_match_the_graph(tmp_path):
    model = build_threshold_model(tmp_path / "m.onnx", size_multiple=8,
                                  metadata={"extra": {"working_scale": None}})
    x = np.random.default_rng(1).uniform(-1, 1, (20, 27)).astype(np.float32)
    (z,) = network_logits(model, [x])
    assert z.shape == (3, 20, 27)
    np.testing.assert_allclose(z, _threshold_logits(x), atol=1e-5)


def test_written_model_adds_the_offsets(tmp_path):
    model = build_threshold_model(tmp_path / "m.onnx", size_multiple=8)
    offsets = (0.0, 3.0, -2.0)
    fit = LogitOffsetFit(offsets, 1.0, 0.5, 100, 3.0, True, "ok")
    out = write_offset_model(model, fit, tmp_path / "k.onnx", "test data", "python -m x")
    x = np.random.default_rng(2).uniform(-1, 1, (16, 24)).astype(np.float32)
    seg = Segmenter(out, providers=("cpu",), threads=1).segment_native(x[None])
    z = _threshold_logits(x) + np.asarray(offsets, np.float32)[:, None, None]
    np.testing.assert_array_equal(seg.labels[0], np.argmax(z, axis=0))
    np.testing.assert_allclose(seg.probabilities[0], _softmax(z), atol=1e-5)
    meta = Segmenter(out, providers=("cpu",)).metadata
    record = meta.extra["logit_offset"]
    assert record["offsets"] == list(offsets)
    assert record["source_model_sha256"] == file_sha256(model)
    assert meta.training_command == "python -m x"
    # A second offset adds to the first instead of stacking a second node.
    twice = add_logit_offsets(onnx.load(str(out)), (0.0, 1.0, 1.0))
    assert sum(n.name == OFFSET_NAME for n in twice.graph.node) == 1
    init = next(i for i in twice.graph.initializer if i.name == OFFSET_NAME)
    np.testing.assert_allclose(onnx.numpy_helper.to_array(init).ravel(), [0.0, 4.0, -1.0])


def test_failed_fit_writes_nothing(tmp_path):
    model = build_threshold_model(tmp_path / "m.onnx")
    fit = LogitOffsetFit((), float("nan"), float("nan"), 0, 3.0, False, "no_pixels")
    with pytest.raises(CalibrationError, match="no_pixels"):
        write_offset_model(model, fit, tmp_path / "k.onnx", "d", "c")
    assert not (tmp_path / "k.onnx").exists()


def test_a_write_that_fails_leaves_no_half_model(tmp_path, monkeypatch):
    # before: onnx.save_model wrote straight to --out, so a full disk left half a model there
    model = build_threshold_model(tmp_path / "m.onnx")
    fit = LogitOffsetFit((0.0, 1.0, -1.0), 1.0, 0.5, 100, 3.0, True, "ok")

    def half_then_full(proto, f, **_):
        if isinstance(f, str):
            with open(f, "wb") as handle:
                handle.write(b"half a model")
        else:
            f.write(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", half_then_full)
    with pytest.raises(OSError, match="No space"):
        write_offset_model(model, fit, tmp_path / "k.onnx", "d", "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_cli_fits_and_writes_a_loadable_model(tmp_path):
    # Frames whose labels put the wire/droplet boundary at a different grey than the model.
    model = build_threshold_model(tmp_path / "m.onnx", metadata={"extra": {}})
    data = tmp_path / "data"
    (data / "labels").mkdir(parents=True)
    grey = np.tile(np.linspace(0, 255, 48), (32, 1)).astype(np.uint8)
    label = np.select([grey < 100, grey < 170], [1, 2], 0).astype(np.uint8)
    for k in range(2):
        tifffile.imwrite(data / f"f{k}.tif", grey)
        cv2.imwrite(str(data / "labels" / f"f{k}.png"), label)
    main([str(model), str(data), "--out", str(tmp_path / "k.onnx"), "--band-px", "4",
          "--json", str(tmp_path / "fit.json")])
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["ok"] and fit["loss_after"] < fit["loss_before"]
    seg = Segmenter(tmp_path / "k.onnx", providers=("cpu",), threads=1)
    assert seg.metadata.extra["logit_offset"]["offsets"] == fit["offsets"]
    assert seg.metadata.training_command.startswith("python -m training.calibrate ")


def test_cli_writes_the_fit_into_a_pipe_and_refuses_a_device_as_the_model(tmp_path, capsys):
    """``--json`` naming a FIFO (or /dev/stdout) is written into, not renamed over: its reader
    gets the fit and the FIFO stays; ``--out`` naming a FIFO (or a device: /dev/null) is
    refused before the fit."""
    import os
    import threading

    model = build_threshold_model(tmp_path / "m.onnx", metadata={"extra": {}})
    data = tmp_path / "data"
    (data / "labels").mkdir(parents=True)
    grey = np.tile(np.linspace(0, 255, 48), (32, 1)).astype(np.uint8)
    tifffile.imwrite(data / "f0.tif", grey)
    cv2.imwrite(str(data / "labels" / "f0.png"),
                np.select([grey < 100, grey < 170], [1, 2], 0).astype(np.uint8))
    fifo = tmp_path / "fit.fifo"
    os.mkfifo(fifo)
    assert main([str(model), str(data), "--out", str(fifo)]) == 2
    assert f"--out {fifo} is a device, a FIFO or a socket" in capsys.readouterr().err
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    assert main([str(model), str(data), "--out", str(tmp_path / "k.onnx"),
                 "--json", str(fifo)]) == 0
    reader.join(60)
    assert json.loads(got[0])["pixels"] > 0 and fifo.is_fifo()


def test_cli_errors_are_one_line_and_the_model_is_never_replaced(tmp_path, capsys):
    # before: a DATA folder with an image without label, or a missing model, was a traceback,
    # and --out MODEL rewrote the model it was fitted on
    model = build_threshold_model(tmp_path / "m.onnx", metadata={"extra": {}})
    before = model.read_bytes()
    data = tmp_path / "data"
    (data / "labels").mkdir(parents=True)
    tifffile.imwrite(data / "f0.tif", np.zeros((32, 48), np.uint8))
    assert main([str(model), str(data), "--out", str(tmp_path / "k.onnx")]) == 2
    assert capsys.readouterr().err == (f"error: {data / 'f0.tif'}: no label for this image "
                                       f"(expected {data / 'labels' / 'f0.png'})\n")
    assert main([str(tmp_path / "nope.onnx"), str(data), "--out",
                 str(tmp_path / "k.onnx")]) == 2
    assert f"{tmp_path / 'nope.onnx'}" in capsys.readouterr().err
    cv2.imwrite(str(data / "labels" / "f0.png"), np.zeros((32, 48), np.uint8))
    assert main([str(model), str(data), "--out", str(model)]) == 2
    assert "--out" in capsys.readouterr().err and model.read_bytes() == before
    assert not (tmp_path / "k.onnx").exists()
