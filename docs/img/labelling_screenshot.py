"""Regenerate docs/img/labelling-tool.png and labelling-corrected.png: the labelling page in
headless chromium.

Run: PYTHONPATH=. .venv/bin/python docs/img/labelling_screenshot.py   (about 20 s; needs
chromium and chromium-driver, see `make browser`)

A frame of the new-look set of bench/bench_finetune.py (one the shipped model gets partly
wrong): first as opened, with the model's proposal (labelling-tool.png); then corrected
(labelling-corrected.png): the script sets the wire polygon to the frame's true wire, clips
it at the frame, removes the model's stray blobs and paints an "unlabeled" brush stroke over
the top-right corner, through the page's own state and preview, as a person's drags would.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from bench_finetune import LOOKS  # noqa: E402
from label_helpers import truth_geometry  # noqa: E402
from webdriver import Browser  # noqa: E402

from nwwatch.io import write_frame_tiff  # noqa: E402
from nwwatch.label.frames import frame_refs  # noqa: E402
from nwwatch.label.server import LabelSession, make_server, serve_in_thread  # noqa: E402
from nwwatch.synth.insitu import render_insitu_frame  # noqa: E402

FRAME = (4242, 1001)  # (seed, frame) of the new look


def _clip_to_frame(polygon: np.ndarray, size: int) -> np.ndarray:
    """The polygon cut to the frame's square (Sutherland-Hodgman), so every corner has an
    on-screen handle."""
    lo, hi = -0.5, size - 0.5
    out = polygon
    for axis, bound, keep_above in ((0, lo, True), (0, hi, False), (1, lo, True),
                                    (1, hi, False)):
        pts, clipped = out, []
        for i in range(len(pts)):
            a, b = pts[i - 1], pts[i]
            a_in = a[axis] >= bound if keep_above else a[axis] <= bound
            b_in = b[axis] >= bound if keep_above else b[axis] <= bound
            if a_in != b_in:
                t = (bound - a[axis]) / (b[axis] - a[axis])
                clipped.append(a + t * (b - a))
            if b_in:
                clipped.append(b)
        out = np.asarray(clipped)
    return out


def main() -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        params = LOOKS["hard"][0](FRAME[0], FRAME[1], 512)
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
                truth = truth_geometry(params)
                wire = _clip_to_frame(np.asarray(truth.wire), params.size)
                browser.execute(
                    "const s = window.nwLabel; s.geometry.wire = arguments[0];"
                    "s.geometry.droplet = arguments[1]; s.geometry.strokes = [arguments[2]];"
                    "document.querySelector('input[value=brush]').checked = true;"
                    "document.getElementById('paint-class').value = '255';",
                    wire.tolist(), {"center": list(truth.droplet.center),
                                    "radius_px": truth.droplet.radius_px},
                    {"class": 255, "brush_px": 12, "points": [[20, 430], [60, 470], [90, 500]]})
                browser.execute("document.getElementById('explicit-facet').click()")
                browser.wait_for("return document.body.dataset.state === 'ready'")
                browser.execute("document.getElementById('explicit-facet').click()")
                browser.wait_for("return document.body.dataset.state === 'ready'")
                browser.screenshot(target.with_name("labelling-corrected.png"))
        finally:
            server.shutdown()
    return target


if __name__ == "__main__":
    print(main())
