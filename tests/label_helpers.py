"""Synthetic frames whose truth is exactly expressible as labelling-tool geometry."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from nwwatch.label.geometry import Circle, LabelGeometry
from nwwatch.label.server import LabelSession, make_server, serve_in_thread
from nwwatch.synth.geometry import axis_vectors, droplet_geometry
from nwwatch.synth.insitu import render_insitu_frame
from nwwatch.synth.params import frame_rng, sample_frame_params


def plain_params(seed: int, index: int, size: int = 256, **changes):
    """A synthetic frame's parameters with a straight, untilted, untruncated wire crossing the
    frame, a facet square to it and no distractors (the shapes :func:`truth_geometry` draws: a
    circle cut by the facet and a rectangle)."""
    params = sample_frame_params(
        frame_rng(seed, index, 0), size, frame_index=index, tilt_deg=0.0, truncation_px=0.0,
        n_distractors=0, scale_bar=False, placement="centred", facet_incline_deg=0.0,
        wire_profile="straight", base_ratio=1.0)
    return dataclasses.replace(params, **changes) if changes else params


def truth_geometry(params) -> LabelGeometry:
    """The tool geometry of a frame from :func:`plain_params`: droplet circle (centre, R), the
    wire as a rectangle reaching far beyond the frame, facet = the rectangle's top edge."""
    wire = params.wire
    geo = droplet_geometry(wire)
    (u_r, u_c), (n_r, n_c) = axis_vectors(wire.axis_deg)
    a, length = wire.radius_px, 8.0 * params.size

    def at(y: float, x: float) -> tuple[float, float]:
        return (wire.facet_row + y * u_r + x * n_r, wire.facet_col + y * u_c + x * n_c)

    polygon = (at(0, a), at(-length, a), at(-length, -a), at(0, -a))
    return LabelGeometry((params.size, params.size), Circle(geo.centre, geo.radius_px),
                         polygon, pixel_size_nm=params.pixel_size_nm)


def render(params, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """(image uint16, labels uint8, truth dict) of ``params``."""
    return render_insitu_frame(params, np.random.default_rng(seed))


@contextmanager
def serving(session: LabelSession, port: int = 0) -> Iterator[str]:
    """The labelling page of ``session`` served on ``port`` (0: a free local port); yields
    its base URL (``http://127.0.0.1:PORT/``) and stops the server on leaving."""
    server = make_server(session, port=port)
    serve_in_thread(server)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def http_json(method: str, url: str, body: object = None) -> tuple[int, dict]:
    """(status, JSON answer) of an HTTP request to the labelling server, error answers too."""
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
