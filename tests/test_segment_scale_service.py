"""The whole-droplet second pass gives the same rows in the live service as in replay, with
frames that trigger it and frames that do not mixed in one batch."""

from __future__ import annotations

import numpy as np
from onnx_models import expected_labels
from servicekit import (
    DaemonProcess,
    assert_replay_gives_the_live_rows,
    model,
    paint_insitu,
    wait_rows,
    write_config,
)

from nwwatch.io import write_frame_tiff
from nwwatch.normalize import normalize_image
from nwwatch.segment.session import Segmenter

#: Equivalent droplet radius of the painted caps: 6-11 px with an 8 px half width, 12-22 px
#: with 16 px; the rule sits between.
WHOLE_RADIUS_PX = 11.5


def _frames() -> list[np.ndarray]:
    return [paint_insitu(100 + 12 * (i % 3), size=80, half_width=16 if i % 2 else 8)
            for i in range(6)]


def test_live_rows_equal_replay_rows_with_second_passes(tmp_path):
    acq, res = tmp_path / "acq", tmp_path / "res"
    acq.mkdir()
    meta = {"extra": {"working_scale": {"frame_px": 512,
                                        "whole_droplet_radius_px": WHOLE_RADIUS_PX}}}
    onnx_model = model(tmp_path, metadata=meta)
    segmenter = Segmenter(onnx_model, providers=("cpu",), threads=1)
    passes = []
    native = segmenter.segment_native
    segmenter.segment_native = lambda b, p=True: passes.append(b.shape) or native(b, p)
    triggered = []
    for image in _frames():
        passes.clear()
        out = segmenter.segment(normalize_image(image))
        triggered.append(len(passes) == 2)
        assert (out.labels[0] != expected_labels(image)).mean() < 0.02
    assert triggered == [False, True] * 3

    cfg = write_config(tmp_path / "c.toml", acq, res, onnx_model, batch_size=3)
    daemon = DaemonProcess(cfg, tmp_path / "log")
    daemon.wait_event("ready")
    for i, image in enumerate(_frames()):
        write_frame_tiff(acq / f"f{i}.tif", image, pixel_size_nm=0.8)
    live = wait_rows(res, 6, proc=daemon)
    assert daemon.terminate()[0] == 0
    assert_replay_gives_the_live_rows(live, acq, tmp_path / "replayed", onnx_model)
