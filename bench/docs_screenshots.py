"""Regenerate the docs' pictures of the browser pages, in Debian's headless chromium driven
through ``tests/webdriver.py`` (needs chromium and chromium-driver, see ``make browser``).

Run from the repository root:
``PYTHONPATH=. .venv/bin/python -m bench.docs_screenshots [labelling] [dashboard]``
(both without arguments; about 20 s each on 2 cores).

- ``labelling``: docs/img/labelling-tool.png and labelling-corrected.png. A frame of the
  new-look set of bench/bench_finetune.py (one the shipped model gets partly wrong): first as
  opened, with the model's proposal; then corrected: the wire polygon set to the frame's true
  wire, clipped at the frame, the model's stray blobs removed and an "unlabeled" brush stroke
  over the top-right corner, through the page's own state and preview, as a person's drags
  would.
- ``dashboard``: docs/img/dashboard.png. The live service (threshold test model of
  tests/onnx_models.py, ``[output] overlays = "all"``) on 30 painted 256x256 frames whose
  contact angle drifts from 100 to 130 degrees, every seventh frame background only (refused),
  and one empty file (quarantined); the page once the latest frame's overlay has loaded.

Pictures are written as 256-colour PNGs (a screenshot of a noisy frame is ~600 kB as RGB).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from webdriver import Browser  # noqa: E402

FRAME = (4242, 1001)  # (seed, frame) of the new look


def _save(browser: Browser, target: Path) -> Path:
    """The screenshot as a 256-colour PNG: legible at about 40 % of the RGB file's size. The
    octree palette keeps small areas of their own colour (the median-cut default turned the
    labelling page's thin red facet line grey)."""
    from PIL import Image

    raw = browser.screenshot(target)
    with Image.open(raw) as image:
        palette = image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE,
                                                dither=Image.Dither.NONE)
    palette.save(target, optimize=True)
    return target


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


def labelling() -> list[Path]:
    """docs/img/labelling-tool.png (the model's proposal) and labelling-corrected.png."""
    from bench_finetune import LOOKS
    from label_helpers import truth_geometry

    from nwwatch.io import write_frame_tiff
    from nwwatch.label.frames import frame_refs
    from nwwatch.label.server import LabelSession, make_server, serve_in_thread
    from nwwatch.synth.insitu import render_insitu_frame

    with tempfile.TemporaryDirectory(prefix="nwwatch-docs-") as tmp:
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
                shots = [_save(browser, IMG / "labelling-tool.png")]
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
                shots.append(_save(browser, IMG / "labelling-corrected.png"))
        finally:
            server.shutdown()
    return shots


def dashboard() -> list[Path]:
    """docs/img/dashboard.png: the live service's page with the latest frame's overlay."""
    from dashkit import dashboard_url, write_frames
    from servicekit import DaemonProcess, model, wait_rows, write_config

    rng = np.random.default_rng(3)
    angles = [None if k % 7 == 3 else round(100 + k + float(rng.normal(0, 2.5)), 1)
              for k in range(30)]
    with tempfile.TemporaryDirectory(prefix="nwwatch-docs-") as tmp_name:
        tmp = Path(tmp_name)
        acq, res = tmp / "acq" / "run1", tmp / "res"
        acq.mkdir(parents=True)
        cfg = write_config(tmp / "c.toml", acq, res, model(tmp), settle=0.3,
                           extra='[dashboard]\nlisten = "127.0.0.1:0"\n')
        cfg.write_text(cfg.read_text().replace("[output]", '[output]\noverlays = "all"'))
        daemon = DaemonProcess(cfg, tmp / "log")
        try:
            url = dashboard_url(daemon)
            daemon.wait_event("ready")
            write_frames(acq, angles, size=256, half_width=36, top=120)  # 1 s apart
            (acq / "empty.tif").write_bytes(b"")  # quarantined
            wait_rows(res, len(angles), timeout=120, proc=daemon)
            daemon.wait_event("file_quarantined")
            with Browser(1280, 1250) as browser:
                browser.get(url + "/")
                browser.wait_for(
                    "const c = document.getElementById('chart');"
                    f"return Number(c.dataset.points) + Number(c.dataset.refused) === "
                    f"{len(angles)} && document.getElementById('quarantine')"
                    ".textContent.includes('empty.tif');", 60)
                browser.wait_for("const i = document.querySelector('#latest-overlay img');"
                                 "return i !== null && i.complete && i.naturalWidth > 0", 60)
                title = browser.execute("return document.title")
                if title != "acq/run1 · nwwatch":  # the caption says so
                    raise RuntimeError(f"the tab is titled {title!r}")
                shot = _save(browser, IMG / "dashboard.png")
        finally:
            daemon.terminate()
    return [shot]


PAGES = {"labelling": labelling, "dashboard": dashboard}


def main(argv: list[str]) -> int:
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0
    names = argv or list(PAGES)
    unknown = [n for n in names if n not in PAGES]
    if unknown:
        print(f"unknown page(s) {unknown}; choose from {sorted(PAGES)}", file=sys.stderr)
        return 2
    for name in names:
        for path in PAGES[name]():
            print(f"{path.relative_to(ROOT)}  {path.stat().st_size / 1000:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
