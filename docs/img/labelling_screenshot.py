"""Regenerate docs/img/labelling-tool.png: the labelling page in headless chromium.

Run: PYTHONPATH=. .venv/bin/python docs/img/labelling_screenshot.py   (about 20 s; needs
chromium and chromium-driver, see `make browser`)

A frame of the new-look set of bench/bench_finetune.py (one the shipped model gets partly
wrong), opened with the model's proposal; the droplet's rim handle is dragged onto the
visible outline and an "unlabeled" polygon is painted over an unclear corner.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from bench_finetune import new_look  # noqa: E402
from webdriver import Browser  # noqa: E402

from nwwatch.io import write_frame_tiff  # noqa: E402
from nwwatch.label.frames import frame_refs  # noqa: E402
from nwwatch.label.server import LabelSession, make_server, serve_in_thread  # noqa: E402
from nwwatch.synth.insitu import frame_params, render_insitu_frame  # noqa: E402

FRAME = (4242, 1001)  # (seed, frame) of the new look


def main() -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        params = new_look(frame_params(FRAME[0], FRAME[1], 512))
        image, _, _ = render_insitu_frame(params, np.random.default_rng(FRAME[1]))
        path = Path(tmp) / "frame_01001.tif"
        write_frame_tiff(path, image, pixel_size_nm=params.pixel_size_nm)
        session = LabelSession(frame_refs([path]), Path(tmp) / "DATA")
        server = make_server(session)
        serve_in_thread(server)
        try:
            with Browser(1400, 900) as browser:
                browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
                browser.wait_for("return document.body.dataset.state === 'ready' "
                                 "&& window.nwLabel.geometry !== null")
                target = ROOT / "docs" / "img" / "labelling-tool.png"
                browser.screenshot(target)
        finally:
            server.shutdown()
    return target


if __name__ == "__main__":
    print(main())
