"""What the two local web servers take from a browser: a page of another site must not write
the labelling tool's DATA (cross-site requests) nor read either server through a name it
makes resolve to 127.0.0.1 (DNS rebinding); bodies and paths that cannot be served are
refused with a status, never a traceback or gigabytes of memory."""

from __future__ import annotations

import http.client
import json

import pytest
from label_helpers import plain_params, render, serving, truth_geometry

from nwwatch.io import write_frame_tiff
from nwwatch.label.frames import frame_refs
from nwwatch.label.server import MAX_BODY_BYTES, LabelSession


def _request(url: str, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.putrequest(method, path, skip_host="Host" in (headers or {}))
        for key, value in (headers or {}).items():
            connection.putheader(key, value)
        if body is not None and "Content-Length" not in (headers or {}):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture()
def labelling(tmp_path):
    params = plain_params(3, 0, size=128)
    image, _, _ = render(params)
    write_frame_tiff(tmp_path / "acq" / "f.tif", image)
    data = tmp_path / "DATA"
    session = LabelSession(frame_refs([tmp_path / "acq" / "f.tif"], data_dir=data), data)
    geometry = json.dumps(truth_geometry(params).to_json()).encode()
    with serving(session) as url:
        yield url, data, geometry


JSON = {"Content-Type": "application/json"}


def test_a_page_of_another_origin_cannot_save_or_preview(labelling):
    url, data, geometry = labelling
    for headers in ({"Origin": "http://evil.example", **JSON},  # a fetch with CORS
                    {"Content-Type": "text/plain"},  # a form or a no-cors fetch
                    {}):
        for endpoint in ("save", "preview"):
            status, body = _request(url, "POST", f"/api/frames/0/{endpoint}", geometry,
                                    headers)
            assert status == 403, (headers, body)
    assert not (data / "labels").exists()
    own = {"Origin": url.rstrip("/"), **JSON}  # the page itself
    assert _request(url, "POST", "/api/frames/0/preview", geometry, own)[0] == 200
    assert _request(url, "POST", "/api/frames/0/save", geometry, own)[0] == 200
    assert (data / "labels" / "f.png").is_file()


@pytest.mark.parametrize("host", ["rebind.attacker.example", "attacker.example:80",
                                  "127.0.0.1.attacker.example", "127.0.0.1:x, evil.example"])
def test_the_labelling_server_answers_only_its_loopback_names(labelling, host):
    url, _, _ = labelling
    port = url.rstrip("/").rsplit(":", 1)[1]
    assert _request(url, "GET", "/api/frames", headers={"Host": host})[0] == 403
    for own in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost:9000",  # ssh -L
                f"[::1]:{port}", f"LOCALHOST.:{port}"):
        assert _request(url, "GET", "/api/frames", headers={"Host": own})[0] == 200


def test_a_preview_of_another_size_than_the_frame_is_refused(labelling):
    url, _, _ = labelling
    doc = {"format": "nwwatch-label-geometry", "version": 1, "shape": [8000, 8000],
           "droplet": {"center": [4000, 4000], "radius_px": 2000},
           "wire": [[0, 0], [8000, 0], [8000, 2666]], "facet": None, "strokes": []}
    status, body = _request(url, "POST", "/api/frames/0/preview", json.dumps(doc).encode(),
                            JSON)
    assert status == 400 and b"[8000, 8000] != frame [128, 128]" in body


@pytest.mark.parametrize(("length", "body", "status"), [
    ("-1", b"{}", 400), ("12x", b"{}", 400), ("\u00b2", b"{}", 400),  # a digit to isdigit
    (None, b'{"format": "nwwatch-label-geometry", "version": 1, "shape": [128, 128], '
           b'"droplet": {"center": [64, 64], "radius_px": 1' + b"0" * 400 + b'}, '
           b'"wire": null, "facet": null, "strokes": []}', 400),  # an int float() overflows
    (str(MAX_BODY_BYTES + 1), b"{}", 413),
    (None, b"[" * 200_000, 400),  # nested too deeply for the JSON parser
])
def test_bad_bodies_get_a_status_not_a_hang_or_a_traceback(labelling, length, body, status):
    url, _, _ = labelling
    headers = dict(JSON) if length is None else {**JSON, "Content-Length": length}
    got, text = _request(url, "POST", "/api/frames/0/preview", body, headers)
    assert got == status, text
    assert b'"error"' in text


def test_the_dashboard_answers_only_its_loopback_names_and_404s_odd_paths(tmp_path):
    """The dashboard as the service runs it, on 127.0.0.1: another host name gets 403; a
    picture path with a NUL byte or a name too long is a 404 (it was a 500 and a traceback in
    the service's log, which any page could cause with an <img>)."""
    from dashkit import dashboard_thread

    (tmp_path / "res" / "frames").mkdir(parents=True)
    with dashboard_thread(tmp_path / "res") as (_, url):
        port = url.rsplit(":", 1)[1]
        for own in (f"127.0.0.1:{port}", "localhost:9000"):
            assert _request(url, "GET", "/api/acquisitions", headers={"Host": own})[0] == 200
        status, body = _request(url, "GET", "/api/acquisitions",
                                headers={"Host": "attacker.example"})
        assert status == 403 and b"loopback" in body
        for odd in ("a%00.png", "A" * 300 + ".png"):
            assert _request(url, "GET", f"/results/{odd}")[0] == 404
