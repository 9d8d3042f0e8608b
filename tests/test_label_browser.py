"""The labelling page in a real headless browser (Debian chromium + chromedriver).

The page loads a frame with the shipped model's proposal, a drag of the droplet's rim handle
and a brush stroke change the mask, Save writes a DATA folder that ``nwwatch train`` loads.
"""

from __future__ import annotations

import numpy as np
import pytest
from label_helpers import serving
from webdriver import Browser, require_browser

from nwwatch.classes import DROPLET, UNLABELED
from nwwatch.label.frames import frame_refs
from nwwatch.label.raster import rasterize
from nwwatch.label.server import LabelSession
from nwwatch.label.store import load_geometry
from nwwatch.synth import generate_insitu

READY = "return document.body.dataset.state === 'ready' && window.nwLabel.geometry !== null"


@pytest.fixture
def served(tmp_path):
    frames = tmp_path / "acquisition"
    generate_insitu(frames, 2, seed=3, size=256)
    refs = frame_refs(sorted(frames.glob("*.tif")))
    session = LabelSession(refs, tmp_path / "DATA")
    with serving(session) as url:
        yield session, url


def test_edit_in_the_browser_and_save_a_training_folder(served):
    require_browser()
    from training.data import load_folder

    session, url = served
    proposal = session.proposal(0)
    before = rasterize(proposal)
    with Browser() as browser:
        browser.get(url)
        browser.wait_for(READY)
        assert browser.execute("return window.nwLabel.origin") == "model"
        radius0 = browser.execute("return window.nwLabel.geometry.droplet.radius_px")
        assert radius0 == pytest.approx(proposal.droplet.radius_px)
        # Drag the rim handle 30 screen px outwards: the circle grows by 30 / scale pixels.
        browser.drag("[data-handle=droplet-radius]", 30, 0)
        browser.wait_for(READY)
        scale = browser.execute("return window.nwLabel.scale")
        radius1 = browser.execute("return window.nwLabel.geometry.droplet.radius_px")
        assert radius1 == pytest.approx(radius0 + 30 / scale, abs=2 / scale)
        # Paint a brush stroke of "unlabeled" in the top-left corner.
        browser.click("input[name=mode][value=brush]")
        browser.execute("document.getElementById('paint-class').value = '255'")
        browser.drag("#frame-image", -int(100 * scale), -int(100 * scale))
        browser.wait_for(READY)
        counts = browser.execute("return window.nwLabel.counts")
        assert int(counts[str(UNLABELED)]) > 0
        browser.click("#save")
        stem = browser.wait_for("return document.body.dataset.saved")
    assert stem == session.frames[0].stem
    data = load_folder(session.data_dir)  # what `nwwatch train` reads
    assert [item.stem for item in data.labeled] == [stem]
    label = data.labeled[0].label
    saved = load_geometry(session.data_dir, stem)
    assert np.array_equal(label, rasterize(saved))
    # The edit shows in the mask: more droplet, some unlabeled, nothing else lost.
    assert np.count_nonzero(label == DROPLET) > np.count_nonzero(before == DROPLET) + 100
    assert np.count_nonzero(label == UNLABELED) > 0
    changed = label != before
    assert np.all(np.isin(label[changed], [DROPLET, UNLABELED]))
    assert (session.data_dir / "truth.parquet").is_file()
