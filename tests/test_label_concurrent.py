"""Several processes saving into one DATA folder, and a save killed midway: real processes."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from label_helpers import http_json, plain_params, render, truth_geometry

import nwwatch
from nwwatch.io import write_frame_tiff
from nwwatch.io.dataset import pair_folder
from nwwatch.label.geometry import Circle
from nwwatch.label.raster import rasterize
from nwwatch.label.store import load_geometry, save_labeled_frame

SIZE = 256
#: The children import the nwwatch this test imported (a checkout's, by PYTHONPATH) and the
#: test helpers.
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(Path(nwwatch.__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)])}
#: A child that saves frame STEM with the helpers' geometry, its radius times SCALE.
SAVE = """
import dataclasses, sys
from label_helpers import plain_params, render, truth_geometry
from nwwatch.label.geometry import Circle
from nwwatch.label.store import save_labeled_frame
data, stem, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
params = plain_params(7, 0, size={size})
image, _, _ = render(params)
geometry = truth_geometry(params)
geometry = dataclasses.replace(geometry, droplet=Circle(geometry.droplet.center,
                                                        geometry.droplet.radius_px * scale))
{before}
save_labeled_frame(data, stem, image, geometry, {{}})
"""


def _geometry(scale: float):
    params = plain_params(7, 0, size=SIZE)
    geometry = truth_geometry(params)
    return render(params)[0], dataclasses.replace(
        geometry, droplet=Circle(geometry.droplet.center, geometry.droplet.radius_px * scale))


def _save_child(data: Path, stem: str, scale: float, before: str = "") -> subprocess.Popen:
    code = SAVE.format(size=SIZE, before=before)
    return subprocess.Popen([sys.executable, "-c", code, str(data), stem, str(scale)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=CHILD_ENV)


def _consistent(data: Path) -> dict[str, float]:
    """Assert every saved frame's label image is its geometry file rasterised and the truth
    table has one row per geometry file; return {file: angle} of the truth table."""
    stems = sorted(p.stem for p in (data / "geometry").glob("*.json"))
    for stem in stems:
        label = cv2.imread(str(data / "labels" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(label, rasterize(load_geometry(data, stem))), stem
    table = pq.read_table(data / "truth.parquet").to_pylist()
    assert sorted(row["file"] for row in table) == [f"images/{s}.tif" for s in stems]
    for row in table:
        doc = json.loads((data / "geometry" / f"{Path(row['file']).stem}.json").read_text())
        assert row["theta_apparent_deg"] == doc["contact_angle_deg"]
    assert [stem for stem, _, _ in pair_folder(data)] == stems  # what `nwwatch train` reads
    return {row["file"]: row["theta_apparent_deg"] for row in table}


def test_a_save_from_another_process_during_a_slow_truth_write_keeps_both_rows(tmp_path):
    # before: each save listed geometry/ and rewrote truth.parquet without a lock; a save
    # whose truth write came last, built before another process's geometry file was written,
    # dropped that frame's row (5 of 300 rounds of two processes saving at once). Here the
    # first save's truth write is slowed down (a busy disk) to make the order certain.
    data = tmp_path / "DATA"
    slow = _save_child(data, "a", 1.0, before=(
        "import time, nwwatch.results.parquet as parquet\n"
        "real = parquet.write_table_atomic\n"
        "def slow(table, path):\n"
        "    print('listed', flush=True)\n"
        "    time.sleep(1.5)\n"
        "    return real(table, path)\n"
        "parquet.write_table_atomic = slow\n"))
    try:
        assert slow.stdout.readline() == "listed\n", slow.communicate(timeout=60)[1]
        other = _save_child(data, "b", 1.1)
        assert other.wait(timeout=60) == 0, other.communicate()[1]
        assert slow.wait(timeout=60) == 0, slow.communicate()[1]
    finally:
        slow.kill()
    assert set(_consistent(data)) == {"images/a.tif", "images/b.tif"}




def _save(url: str, scale: float, answers: list[tuple[int, dict]]) -> None:
    answers.append(http_json("POST", url, _geometry(scale)[1].to_json()))


def test_two_label_servers_saving_one_frame_at_once_refuse_one_save(tmp_path):
    # before: the check of the page's saved_token and the write were one step only within a
    # process; two `nwwatch label` on one DATA both accepted saves of the same version of a
    # frame (20 of 20 rounds), the second overwriting the first unasked, and 3 of 20 left the
    # label image of one save beside the geometry file of the other.
    image, geometry = _geometry(1.0)
    write_frame_tiff(tmp_path / "acq" / "f.tif", image)
    data = tmp_path / "DATA"
    servers = [subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "label",
         str(tmp_path / "acq" / "f.tif"), "--out", str(data), "--no-browser", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
        for _ in range(2)]
    try:
        urls = [proc.stdout.readline().split(" at ")[1].split()[0] for proc in servers]
        key = http_json("GET", urls[0] + "api/frames")[1]["frames"][0]["key"]
        for round_ in range(3):
            token = http_json("GET", urls[0] + "api/frames/0/geometry")[1]["saved_token"]
            answers: list[tuple[int, dict]] = []
            # each round's shapes are new, so that each save changes the saved file
            threads = [threading.Thread(target=_save, args=(
                f"{url}api/frames/0/save?base={token}&frame={key}", scale + 0.01 * round_,
                answers)) for url, scale in zip(urls, (0.8, 1.2), strict=True)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(status for status, _ in answers) == [200, 409], answers
            refused = next(doc for status, doc in answers if status == 409)
            saved = next(doc for status, doc in answers if status == 200)
            assert refused["conflict"] and refused["saved_token"] == saved["saved_token"]
            _consistent(data)
    finally:
        for proc in servers:
            proc.send_signal(signal.SIGTERM)
        for proc in servers:
            proc.communicate(timeout=60)


KILL_BEFORE_GEOMETRY = (  # kill -9 once the label image is written
    "import os, signal, nwwatch.label.store as store\n"
    "real = store.write_json\n"
    "def write_json(path, doc):\n"
    "    if path.parent.name == 'geometry':\n"
    "        os.kill(os.getpid(), signal.SIGKILL)\n"
    "    return real(path, doc)\n"
    "store.write_json = write_json\n")
KILL_BEFORE_IMAGE = (  # kill -9 once the label image and the geometry file are written
    "import os, signal, nwwatch.io\n"
    "def write_frame_tiff(*args, **kwargs):\n"
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
    "nwwatch.io.write_frame_tiff = write_frame_tiff\n")


@pytest.mark.parametrize("stem, kill, repaired", ids=["label-only", "first-save-no-image"],
                         argvalues=[
    ("kept", KILL_BEFORE_GEOMETRY, "labels/kept.png was rasterised again from "
                                   "geometry/kept.json"),
    ("new", KILL_BEFORE_IMAGE, "its first save had not written images/new.tif yet: "
                               "labels/new.png and geometry/new.json were removed"),
])
def test_a_save_killed_midway_is_repaired_by_the_next_session(tmp_path, stem, kill, repaired):
    # before: kill -9 between the label image and the geometry file left the new labels
    # beside the old shapes (trained on one, shown and measured from the other), and during
    # a first save left a label without its image, for which `nwwatch train` refuses the
    # whole folder; the next session neither repaired nor said anything.
    data = tmp_path / "DATA"
    image, geometry = _geometry(1.0)
    save_labeled_frame(data, "kept", image, geometry, {})
    angles = _consistent(data)
    child = _save_child(data, stem, 1.3, before=kill)
    assert child.wait(timeout=60) == -signal.SIGKILL, child.communicate()[1]
    write_frame_tiff(tmp_path / "acq" / "f.tif", image)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "label",
         str(tmp_path / "acq" / "f.tif"), "--out", str(data), "--no-browser", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    try:
        assert proc.stdout.readline().startswith("labelling 1 frame")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert _consistent(data) == angles  # the last complete save's frames and angles
    assert (f"warning: {data}: the save of {stem} was stopped midway (the process was killed, "
            f"or a write failed): {repaired}") in " ".join(err.split())
    assert not list(data.glob(".*.json"))


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_frames_named_in_bytes_or_at_length_are_labelled_and_saved(tmp_path):
    """A frame whose name is not UTF-8, and one whose stem is 237 bytes (legal names): the
    page lists and saves both, on an IPv6 address where the machine has one. Before, the
    frame list failed (UnicodeEncodeError), the long one could never be saved ("File name
    too long"), and ``--host ::1`` could not listen."""
    image, geometry = _geometry(1.0)
    acq = tmp_path / "acq"
    names = [os.fsdecode(b"f\xe9.tif"), "a" * 237 + ".tif"]
    for name in names:  # written, then renamed: the atomic writer's temporary name is longer
        write_frame_tiff(acq / "short.tif", image)
        (acq / "short.tif").rename(acq / name)
    data = tmp_path / "DATA"
    host = "::1" if _ipv6_loopback() else "127.0.0.1"
    server = subprocess.Popen(
        [sys.executable, "-c", "from nwwatch.cli import main; main()", "label",
         *(str(acq / name) for name in names), "--out", str(data), "--no-browser",
         "--host", host, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
    try:
        line = server.stdout.readline()
        assert " at " in line, server.communicate(timeout=60)[1][-3000:]
        url = line.split(" at ")[1].split()[0]
        frames = http_json("GET", url + "api/frames")[1]["frames"]
        assert sorted(f["name"] for f in frames) == sorted(
            [r"f\xe9.tif", "a" * 237 + ".tif"])
        for frame in frames:
            token = http_json("GET", f"{url}api/frames/{frame['index']}/geometry")[1][
                "saved_token"]
            status, doc = http_json("POST", f"{url}api/frames/{frame['index']}/save?base={token}"
                                        f"&frame={frame['key']}", geometry.to_json())
            assert status == 200, doc
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=60)
    assert len(_consistent(data)) == 2
