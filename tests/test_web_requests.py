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
from nwwatch.label.geometry import MAX_CORNERS, MAX_POINTS, MAX_STROKES
from nwwatch.label.server import MAX_BODY_BYTES, LabelSession


def _answer(url: str, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """(status, headers, body) of one request."""
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
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def _request(url: str, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, bytes]:
    status, _, text = _answer(url, method, path, body, headers)
    return status, text


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


def _not_framable(headers: http.client.HTTPMessage) -> bool:
    return (headers.get("X-Frame-Options") == "DENY"
            and headers.get("Content-Security-Policy") == "frame-ancestors 'none'")


def test_no_answer_of_the_labelling_page_may_be_framed(labelling):
    # before: none carried X-Frame-Options nor a frame-ancestors policy; a page of another
    # site could show the labelling page in a frame and steer clicks into Save
    url, data, geometry = labelling
    own = {"Origin": url.rstrip("/"), **JSON}
    for method, path, body, headers, status in (
            ("GET", "/", None, {}, 200),
            ("GET", "/static/label.js", None, {}, 200),
            ("GET", "/api/frames", None, {}, 200),
            ("GET", "/api/frames/0/image.png", None, {}, 200),
            ("GET", "/api/frames/9/image.png", None, {}, 404),
            ("GET", "/api/frames", None, {"Host": "attacker.example"}, 403),
            ("POST", "/api/frames/0/preview", geometry, own, 200),
            ("POST", "/api/frames/0/preview", b"{", own, 400),
            ("POST", "/api/frames/0/save", geometry, {"Content-Type": "text/plain"}, 403),
            ("PUT", "/", b"", {}, 501)):  # the standard library's own error page
        got, headers, text = _answer(url, method, path, body, headers)
        assert got == status, (method, path, text[:200])
        assert _not_framable(headers), (method, path, dict(headers))


def test_no_answer_of_the_dashboard_may_be_framed(tmp_path):
    from dashkit import dashboard_thread

    (tmp_path / "res" / "frames").mkdir(parents=True)
    with dashboard_thread(tmp_path / "res") as (_, url):
        for path, headers, status in (("/", {}, 200), ("/api/acquisitions", {}, 200),
                                      ("/static/dashboard.js", {}, 200),
                                      ("/api/acquisitions/nope/series", {}, 404),
                                      ("/results/none.png", {}, 404),
                                      ("/metrics", {}, 404),  # served by the live service
                                      ("/api/acquisitions", {"Host": "attacker.example"}, 403)):
            got, answer, text = _answer(url, "GET", path, headers=headers)
            assert got == status, (path, text[:200])
            assert _not_framable(answer), (path, dict(answer))


def _off_frame(points: int) -> list[list[float]]:
    """``points`` points left of and above the frame: a stroke or a wire there paints
    nothing (cheap to draw)."""
    return [[-10.0 - i % 2, -10.0 - i % 3] for i in range(points)]


def _stroke(points: int, brush_px: float | None = None) -> dict:
    stroke = {"class": 1, "points": _off_frame(points)}
    return stroke if brush_px is None else {**stroke, "brush_px": brush_px}


@pytest.mark.parametrize(("change", "named"), [
    ({"strokes": [_stroke(3)] * (MAX_STROKES + 1)},
     f"strokes: {MAX_STROKES + 1} strokes; at most {MAX_STROKES} are taken"),
    ({"strokes": [_stroke(MAX_POINTS + 1, brush_px=3)]},
     f"strokes[0].points: {MAX_POINTS + 1} points; at most {MAX_POINTS} are taken"),
    ({"strokes": [_stroke(MAX_CORNERS + 1)]},
     f"strokes[0].points: {MAX_CORNERS + 1} corners; at most {MAX_CORNERS} are taken"),
    ({"wire": _off_frame(MAX_CORNERS + 1), "droplet": None},
     f"wire: {MAX_CORNERS + 1} corners; at most {MAX_CORNERS} are taken"),
])
def test_more_strokes_points_or_corners_than_the_limits_are_refused(labelling, change, named):
    # before: taken, each stroke rasterised in turn: 60,000 full-frame strokes held the
    # server's thread for minutes, also after the page had gone
    url, data, geometry = labelling
    doc = {**json.loads(geometry), **change}
    for endpoint in ("preview", "save"):
        status, text = _request(url, "POST", f"/api/frames/0/{endpoint}",
                                json.dumps(doc).encode(), JSON)
        assert status == 400 and json.loads(text)["error"] == f"geometry: {named}", text
    assert not (data / "labels").exists()


def test_geometry_at_the_limits_is_taken(labelling):
    from nwwatch.label.geometry import geometry_from_json

    url, _, geometry = labelling
    doc = json.loads(geometry)
    many = {**doc, "strokes": [_stroke(3)] * MAX_STROKES}
    assert len(geometry_from_json(many).strokes) == MAX_STROKES
    for change in ({"strokes": [_stroke(MAX_POINTS, brush_px=3), _stroke(MAX_CORNERS)]},
                   {"wire": _off_frame(MAX_CORNERS)}):
        status, text = _request(url, "POST", "/api/frames/0/preview",
                                json.dumps({**doc, **change}).encode(), JSON)
        assert status == 200, text


@pytest.mark.parametrize(("body", "error"), [
    # before: "geometry: geometry: expected a JSON object"
    (b"null", "geometry: expected a JSON object (the geometry), got null"),
    (b"[]", "geometry: expected a JSON object (the geometry), got []"),
    (b"", "geometry: the request has no body (the geometry, a JSON object)"),
    # before: "geometry: 'utf-16-le' codec can't decode byte 0x7d in position 2: ..."
    (b"\xff\xfe{}", "geometry: the body is not UTF-8 text (byte 0: b'\\xff'); send the JSON "
                     "as UTF-8"),
])
def test_a_body_that_is_no_geometry_object_is_said_once(labelling, body, error):
    url, _, _ = labelling
    status, text = _request(url, "POST", "/api/frames/0/preview", body, JSON)
    assert status == 400 and json.loads(text)["error"] == error, text


@pytest.mark.parametrize(("change", "named"), [
    # before: saved, the stroke painted as nanowire (true == 1 to Python)
    ({"strokes": [{"class": True, "points": [[1, 1], [1, 9], [9, 9]]}]},
     "strokes[0].class: expected one of [0, 1, 2, 255], got true"),
    ({"strokes": [{"class": 1.0, "points": [[1, 1], [1, 9], [9, 9]]}]},
     "strokes[0].class: expected one of [0, 1, 2, 255], got 1.0"),
    ({"strokes": [{"class": 1, "points": [[1, 1]], "brush_px": True}]},
     "strokes[0].brush_px: expected a positive number (up to 1e+07 px), got true"),
    ({"shape": [True, 128]}, "shape: expected [height, width] positive integers, got "
                             "[true, 128]"),
    ({"pixel_size_nm": True}, "pixel_size_nm: expected a positive number (up to "),
    ({"droplet": {"center": [True, 5], "radius_px": 5}}, "droplet.center: expected"),
    ({"droplet": {"center": [5, 5], "radius_px": True}}, "droplet.radius_px: expected"),
    ({"version": True}, "version: this nwwatch reads version 1, got true"),
    # before: "strokes[0].class: ..." (the string's characters, the object's keys read as
    # strokes), or an object without keys taken as no strokes
    ({"strokes": "abc"}, 'strokes: expected a list of strokes, got "abc"'),
    ({"strokes": {}}, "strokes: expected a list of strokes, got {}"),
    ({"strokes": {"class": 1, "points": [[1, 1], [1, 9], [9, 9]]}},
     "strokes: expected a list of strokes, got {"),
    ({"strokes": [5]}, "strokes[0]: expected a stroke {class, points[, brush_px]}, got 5"),
])
def test_a_boolean_is_no_number_and_strokes_are_a_list(labelling, change, named):
    url, data, geometry = labelling
    doc = {**json.loads(geometry), **change}
    status, text = _request(url, "POST", "/api/frames/0/save", json.dumps(doc).encode(), JSON)
    assert status == 400 and json.loads(text)["error"].startswith(f"geometry: {named}"), text
    assert not (data / "labels").exists()
