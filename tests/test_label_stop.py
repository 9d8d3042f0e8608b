"""Stopping ``nwwatch label`` (Ctrl+C, SIGTERM) while a save is on its way: the save is
written whole and answered before the server stops; saves asked for afterwards are refused
with 503 (nothing written), never cut off between the label and the image files."""

from __future__ import annotations

import threading
import time

from label_helpers import http_json as _http
from label_helpers import plain_params, render, serving, truth_geometry

import nwwatch.label.server as server_module
from nwwatch.io import write_frame_tiff
from nwwatch.io.dataset import pair_folder
from nwwatch.label.frames import frame_refs
from nwwatch.label.server import LabelSession


def test_stop_waits_for_the_save_on_its_way_and_refuses_later_ones(tmp_path, monkeypatch):
    # before: the command's main thread returned at Ctrl+C and the save's (daemon) thread
    # died with it, after the label PNG and before the image: a half-written frame in DATA.
    params = plain_params(21, 0)
    image = render(params, seed=1)[0]
    write_frame_tiff(tmp_path / "f.tif", image, pixel_size_nm=0.5)
    session = LabelSession(frame_refs([tmp_path / "f.tif"]), tmp_path / "DATA")
    release, entered = threading.Event(), threading.Event()
    real_save = server_module.save_labeled_frame

    def slow_save(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(server_module, "save_labeled_frame", slow_save)
    geometry = truth_geometry(params).to_json()
    answers: dict[str, tuple[int, dict]] = {}
    with serving(session) as url:
        saver = threading.Thread(target=lambda: answers.update(
            first=_http("POST", url + "api/frames/0/save?base=", geometry)))
        saver.start()
        assert entered.wait(30)
        assert session.saves_in_flight() == 1
        stopped = threading.Event()
        stopper = threading.Thread(target=lambda: stopped.set() if session.stop_saving(30)
                                   else None)
        stopper.start()
        time.sleep(0.3)
        assert not stopped.is_set()  # still waiting for the save
        status, doc = _http("POST", url + "api/frames/0/save", geometry)
        assert status == 503 and "stopping" in doc["error"]
        release.set()
        stopper.join(30)
        assert stopped.is_set()
        saver.join(30)
    status, doc = answers["first"]
    assert status == 200 and doc["stem"] == "f"  # answered before the stop returned
    assert [stem for stem, _, _ in pair_folder(session.data_dir)] == ["f"]
    assert (session.data_dir / "geometry" / "f.json").is_file()
    assert (session.data_dir / "truth.parquet").is_file()
    assert not list(session.data_dir.rglob("*.part"))


def test_stop_with_no_save_on_its_way_returns_at_once(tmp_path):
    session = LabelSession([], tmp_path / "DATA")
    assert session.stop_saving(timeout=0) is True
    assert session.begin_save() is False and session.saves_in_flight() == 0
