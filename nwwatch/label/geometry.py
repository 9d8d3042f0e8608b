"""The labelling tool's geometry: a droplet circle, a wire polygon, a facet line, strokes.

One frame's labels are described by shapes a person can drag rather than by pixels:

- ``droplet``: a circle (centre (row, col), radius, px). The droplet is the disk cut by the
  facet line: only its part on the droplet's side of the facet is droplet (a spherical cap
  seen from the side), as in the synthetic frames (:mod:`nwwatch.synth.geometry`).
- ``wire``: a polygon of (row, col) vertices (it may extend beyond the frame).
- ``facet``: the line the droplet sits on; ``None`` means the wire polygon's edge shared with
  the droplet (:func:`facet_line`), two points make it explicit.
- ``strokes``: free polygons and brush strokes painted on top, in order, with a class id
  (0 background, 1 nanowire, 2 droplet, 255 unlabeled), for what is not a circle or a polygon.

Coordinates follow the package convention: (row, col), integer indices are pixel centres.
:func:`nwwatch.label.raster.rasterize` turns a :class:`LabelGeometry` into a label image;
:func:`contact_angle` gives the human contact angle the geometry implies.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE, UNLABELED
from nwwatch.io.limits import MAX_PLAUSIBLE_PIXEL_SIZE_NM

GEOMETRY_FORMAT = "nwwatch-label-geometry"
GEOMETRY_VERSION = 1
STROKE_CLASSES = (BACKGROUND, NANOWIRE, DROPLET, UNLABELED)
#: The keys of a geometry document: the shapes', and ``proposal`` (what the model proposed,
#: kept as it is in :attr:`LabelGeometry.extra`).
GEOMETRY_KEYS = ("format", "version", "shape", "pixel_size_nm", "droplet", "wire", "facet",
                 "strokes")
EXTRA_KEYS = ("proposal",)


class GeometryError(ValueError):
    """A geometry document that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Circle:
    """Droplet outline: ``center`` (row, col) and ``radius_px``, pixels."""

    center: tuple[float, float]
    radius_px: float


@dataclass(frozen=True)
class Stroke:
    """A painted region of class ``class_id``: a closed ``polygon`` when ``brush_px`` is None,
    else every point within ``brush_px`` of the open path ``points``; (row, col) pixels."""

    class_id: int
    points: tuple[tuple[float, float], ...]
    brush_px: float | None = None


@dataclass(frozen=True)
class LabelGeometry:
    """Everything the tool stores for one frame (see the module docstring).

    ``shape`` is the frame's (H, W); ``pixel_size_nm`` is copied from the frame when known.
    """

    shape: tuple[int, int]
    droplet: Circle | None = None
    wire: tuple[tuple[float, float], ...] | None = None
    facet: tuple[tuple[float, float], tuple[float, float]] | None = None
    strokes: tuple[Stroke, ...] = ()
    pixel_size_nm: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> LabelGeometry:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (lists of [row, col]); :func:`geometry_from_json` reads it back."""
        return {
            "format": GEOMETRY_FORMAT,
            "version": GEOMETRY_VERSION,
            "shape": list(self.shape),
            "pixel_size_nm": self.pixel_size_nm,
            "droplet": None if self.droplet is None else {
                "center": list(self.droplet.center), "radius_px": self.droplet.radius_px},
            "wire": None if self.wire is None else [list(p) for p in self.wire],
            "facet": None if self.facet is None else [list(p) for p in self.facet],
            "strokes": [
                {"class": s.class_id, "points": [list(p) for p in s.points],
                 **({"brush_px": s.brush_px} if s.brush_px is not None else {})}
                for s in self.strokes
            ],
            **self.extra,
        }


#: Coordinates, radii and brush widths beyond this are refused (a frame is far smaller):
#: their squares overflowed in the rasteriser, an HTTP 500 with a traceback.
MAX_COORDINATE_PX = 1e7
#: The most strokes a geometry holds, points a brush stroke has, and corners a polygon (a
#: paint polygon, the wire) has: far more than a person draws on one frame (a proposal's
#: stray blobs are polygons of at most 12 corners, its wire too; a brush stroke gets a point
#: per half pixel dragged, 10,000 are a drag of over a minute; a polygon's corners are
#: clicked one by one). Every stroke costs each preview and save its own rasterisation, and
#: a polygon's every corner is tested at every point it is drawn at: 60,000 strokes held the
#: server's thread for minutes, also after the page had gone.
MAX_STROKES = 2000
MAX_POINTS = 10_000
MAX_CORNERS = 1000


def _is_number(value: Any) -> bool:
    """An int or a float of JSON, not a boolean (``true`` is an int to Python: 1)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    """An integer of JSON: not a boolean, not ``1.0``."""
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """``value`` as JSON writes it (``null``, ``true``), cut short: a message names a bad
    value, not megabytes of it."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not from a JSON document (a tuple of a caller's)
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _point(value: Any, key: str) -> tuple[float, float]:
    if (not isinstance(value, list | tuple) or len(value) != 2
            # compared, not converted: NaN fails the bound, and an int of 400 digits
            # (valid JSON) would overflow float() or math.isfinite
            or not all(_is_number(v) and abs(v) <= MAX_COORDINATE_PX for v in value)):
        raise GeometryError(f"{key}: expected [row, col] numbers (within "
                            f"±{MAX_COORDINATE_PX:g} px), got {_shown(value)}")
    return float(value[0]), float(value[1])


def _points(value: Any, key: str, minimum: int, most: int,
            what: str = "points") -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or len(value) < minimum:
        raise GeometryError(f"{key}: expected a list of at least {minimum} [row, col] points")
    if len(value) > most:
        raise GeometryError(f"{key}: {len(value)} {what}; at most {most} are taken")
    return tuple(_point(p, f"{key}[{i}]") for i, p in enumerate(value))


def geometry_from_json(doc: dict[str, Any], limits: bool = True) -> LabelGeometry:
    """Validate and read a geometry document (the output of :meth:`LabelGeometry.to_json`).

    Raises :class:`GeometryError` naming the first bad key. Numbers are JSON numbers (a
    boolean is none), a stroke's class an integer; with ``limits`` (a request's geometry)
    at most :data:`MAX_STROKES` strokes, :data:`MAX_POINTS` points a brush stroke and
    :data:`MAX_CORNERS` corners a polygon. Without (a geometry file saved before the limits,
    read back): no limit, and a longer brush stroke is read as strokes of at most
    :data:`MAX_POINTS` points, each starting where the one before ends, which paint the same
    pixels and which the page can send back.
    """
    most_strokes, most_points, most_corners = (
        (MAX_STROKES, MAX_POINTS, MAX_CORNERS) if limits else (sys.maxsize,) * 3)
    if not isinstance(doc, dict):
        raise GeometryError(f"expected a JSON object (the geometry), got {_shown(doc)}")
    # A misspelt key ("wires", "stroke") read as absent dropped that shape without a word,
    # and the next save wrote the frame's labels without it.
    _known_keys(doc, "", GEOMETRY_KEYS + EXTRA_KEYS)
    if doc.get("format", GEOMETRY_FORMAT) != GEOMETRY_FORMAT:
        raise GeometryError(f"format: expected {GEOMETRY_FORMAT!r}, got "
                            f"{_shown(doc.get('format'))}")
    version = doc.get("version", GEOMETRY_VERSION)
    if not _is_int(version) or version != GEOMETRY_VERSION:
        raise GeometryError(f"version: this nwwatch reads version {GEOMETRY_VERSION}, got "
                            f"{_shown(version)}")
    shape = doc.get("shape")
    if (not isinstance(shape, list) or len(shape) != 2
            or not all(_is_int(v) and v > 0 for v in shape)):
        raise GeometryError(f"shape: expected [height, width] positive integers, got "
                            f"{_shown(shape)}")
    droplet = None
    if doc.get("droplet") is not None:
        d = doc["droplet"]
        if not isinstance(d, dict):
            raise GeometryError("droplet: expected {center: [row, col], radius_px: R} or null")
        _known_keys(d, "droplet.", ("center", "radius_px"))
        radius = d.get("radius_px")
        if not _is_number(radius) or not 0 < radius <= MAX_COORDINATE_PX:
            raise GeometryError(f"droplet.radius_px: expected a positive number (up to "
                                f"{MAX_COORDINATE_PX:g} px), got {_shown(radius)}")
        droplet = Circle(_point(d.get("center"), "droplet.center"), float(radius))
    wire = (None if doc.get("wire") is None
            else _points(doc["wire"], "wire", 3, most_corners, "corners"))
    facet = None
    if doc.get("facet") is not None:
        a, b = _points(doc["facet"], "facet", 2, most_corners)[:2]
        if a == b:
            raise GeometryError("facet: the two points coincide")
        facet = (a, b)
    listed = doc.get("strokes")
    if listed is None:
        listed = []
    if not isinstance(listed, list):  # a string's characters were read as its strokes
        raise GeometryError(f"strokes: expected a list of strokes, got {_shown(listed)}")
    if len(listed) > most_strokes:
        raise GeometryError(f"strokes: {len(listed)} strokes; at most {most_strokes} are taken")
    strokes = []
    for i, s in enumerate(listed):
        key = f"strokes[{i}]"
        if not isinstance(s, dict):
            raise GeometryError(f"{key}: expected a stroke {{class, points[, brush_px]}}, got "
                                f"{_shown(s)}")
        _known_keys(s, f"{key}.", ("class", "points", "brush_px"))
        class_id = s.get("class")
        if not _is_int(class_id) or class_id not in STROKE_CLASSES:  # true == 1, 1.0 == 1
            raise GeometryError(f"{key}.class: expected one of {list(STROKE_CLASSES)}, got "
                                f"{_shown(class_id)}")
        brush = s.get("brush_px")
        if brush is not None and not (_is_number(brush) and 0 < brush <= MAX_COORDINATE_PX):
            raise GeometryError(f"{key}.brush_px: expected a positive number (up to "
                                f"{MAX_COORDINATE_PX:g} px), got {_shown(brush)}")
        pts = (_points(s.get("points"), f"{key}.points", 3, most_corners, "corners")
               if brush is None else _points(s.get("points"), f"{key}.points", 1, most_points))
        if brush is None:
            strokes.append(Stroke(class_id, pts, None))
            continue
        for start in range(0, max(len(pts) - 1, 1), MAX_POINTS - 1):
            strokes.append(Stroke(class_id, pts[start:start + MAX_POINTS], float(brush)))
    pixel = doc.get("pixel_size_nm")
    if pixel is not None and not (_is_number(pixel)
                                  and 0 < pixel <= MAX_PLAUSIBLE_PIXEL_SIZE_NM):
        raise GeometryError(f"pixel_size_nm: expected a positive number (up to "
                            f"{MAX_PLAUSIBLE_PIXEL_SIZE_NM:g} nm) or null, got {_shown(pixel)}")
    extra = {k: v for k, v in doc.items() if k in EXTRA_KEYS}
    return LabelGeometry((shape[0], shape[1]), droplet, wire, facet, tuple(strokes),
                         None if pixel is None else float(pixel), extra)


def _known_keys(doc: dict[str, Any], prefix: str, known: tuple[str, ...]) -> None:
    """Raise :class:`GeometryError` naming the first key of ``doc`` not in ``known``."""
    for key in doc:
        if key not in known:
            raise GeometryError(f"{prefix}{key}: unknown key (expected "
                                f"{', '.join(prefix + k for k in known)})")


@dataclass(frozen=True)
class FacetLine:
    """The facet: ``point`` (row, col) on it, unit ``u`` pointing from the wire into the
    droplet, ``edge`` its two end points (the wire polygon's edge, or the explicit line)."""

    point: np.ndarray
    u: np.ndarray
    edge: tuple[np.ndarray, np.ndarray]


def inside_polygon(poly: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Even-odd test: which points (broadcast ``rows``, ``cols``) lie inside polygon ``poly``
    (N, 2) (row, col). Points exactly on an edge count on one side only (half-open rule)."""
    inside = np.zeros(np.broadcast_shapes(np.shape(rows), np.shape(cols)), dtype=bool)
    r0, c0 = poly[:, 0], poly[:, 1]
    r1, c1 = np.roll(r0, -1), np.roll(c0, -1)
    # A grid (rows a column, cols a row, as the rasteriser's coarse pass): each edge touches
    # only the grid rows it crosses, a few of the 16384 rows of a 4096² frame's grid.
    grid = (np.ndim(rows) == 2 and np.ndim(cols) == 2 and np.shape(rows)[1] == 1
            and np.shape(cols)[0] == 1 and inside.shape == (np.shape(rows)[0], np.shape(cols)[1]))
    for a_r, a_c, b_r, b_c in zip(r0, c0, r1, c1, strict=True):
        if a_r == b_r:
            continue  # horizontal edge: never crossed by a horizontal ray
        crosses = (a_r > rows) != (b_r > rows)
        col_at = a_c + (rows - a_r) * ((b_c - a_c) / (b_r - a_r))
        if grid:
            hit = np.flatnonzero(crosses[:, 0])
            inside[hit] ^= cols < col_at[hit]
        else:
            inside ^= crosses & (cols < col_at)
    return inside


def _chord_in_disk(a: np.ndarray, b: np.ndarray, center: np.ndarray, radius: float) -> float:
    """Length of segment ab inside the disk."""
    d = b - a
    length = float(np.hypot(*d))
    if length == 0:
        return 0.0
    f = a - center
    # |a + t d - c|^2 = R^2 for t in [0, 1]
    qa, qb, qc = d @ d, 2 * (f @ d), f @ f - radius**2
    disc = qb * qb - 4 * qa * qc
    if disc <= 0:
        return 0.0
    t0, t1 = (-qb - math.sqrt(disc)) / (2 * qa), (-qb + math.sqrt(disc)) / (2 * qa)
    return max(0.0, min(t1, 1.0) - max(t0, 0.0)) * length


def facet_line(geometry: LabelGeometry) -> FacetLine | None:
    """The facet the droplet sits on, or None without a wire (or without facet and droplet).

    Explicit ``facet``: that line, ``u`` pointing away from the wire polygon's centroid (or
    towards the droplet centre without a wire). Otherwise the wire polygon's edge shared with
    the droplet: the edge with the longest stretch inside the droplet circle, weighted by how
    squarely it faces the droplet (|cos| between its normal and the direction from the wire's
    centroid to the circle's centre), so a side edge the circle also crosses is not taken.
    ``u`` is then the edge's outward normal.
    """
    wire = None if geometry.wire is None else np.asarray(geometry.wire, dtype=float)
    drop = geometry.droplet
    if geometry.facet is not None:
        a, b = (np.asarray(p, dtype=float) for p in geometry.facet)
        t = (b - a) / np.hypot(*(b - a))
        u = np.array([-t[1], t[0]])
        mid = 0.5 * (a + b)
        if wire is not None:
            away = mid - wire.mean(axis=0)
        elif drop is not None:
            away = np.asarray(drop.center) - mid
        else:
            away = u
        if away @ u < 0:
            u = -u
        return FacetLine(mid, u, (a, b))
    if wire is None or drop is None:
        return None
    center = np.asarray(drop.center, dtype=float)
    axis = center - wire.mean(axis=0)
    axis_norm = float(np.hypot(*axis))
    # All edges' probes in one call: a call per edge is corners squared in Python loops (15 s
    # for a wire of 1,000 corners, and a preview finds the facet several times)
    ends = np.roll(wire, -1, axis=0)
    lengths = np.hypot(*(ends - wire).T)
    has_length = lengths > 0
    with np.errstate(divide="ignore", invalid="ignore"):  # edges of no length: not used
        normals = np.stack([ends[:, 1] - wire[:, 1], -(ends[:, 0] - wire[:, 0])], axis=1) \
            / lengths[:, None]
        probes = 0.5 * (wire + ends) + 1e-3 * lengths[:, None] * normals
    probes[~has_length] = wire[~has_length]
    inward = inside_polygon(wire, probes[:, 0], probes[:, 1])
    best, best_score = None, 0.0
    for i in range(len(wire)):
        if not has_length[i]:
            continue
        a, b, normal = wire[i], ends[i], normals[i]
        if inward[i]:
            normal = -normal  # outward: away from the polygon's inside
        facing = abs(float(normal @ axis)) / axis_norm if axis_norm > 0 else 1.0
        score = _chord_in_disk(a, b, center, drop.radius_px) * facing
        if score > best_score:
            best, best_score = (a, b, normal), score
    if best is None:
        return None
    a, b, normal = best
    return FacetLine(0.5 * (a + b), normal, (a, b))


#: A membership test: which points (broadcast rows, cols) lie inside a shape.
Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]


def droplet_inside(geometry: LabelGeometry) -> Inside | None:
    """The droplet circle's shape: a test of which points (broadcast ``rows``, ``cols``) lie in
    its disk on the droplet's side of :func:`facet_line` (the whole disk without a facet), or
    None without a circle. :func:`nwwatch.label.raster.rasterize` paints this as droplet, and
    the proposal and the human angle judge a circle by it, so neither counts a part of the
    disk the saved labels cut away."""
    if geometry.droplet is None:
        return None
    (cr, cc), r2 = geometry.droplet.center, geometry.droplet.radius_px ** 2
    facet = facet_line(geometry)

    def inside(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        disk = (rows - cr) ** 2 + (cols - cc) ** 2 < r2
        if facet is None:
            return disk
        side = (rows - facet.point[0]) * facet.u[0] + (cols - facet.point[1]) * facet.u[1]
        return disk & (side >= 0)
    return inside


def circle_droplet_mask(geometry: LabelGeometry) -> np.ndarray:
    """bool (H, W) of ``geometry.shape``: the pixels whose centre :func:`droplet_inside`
    puts in the circle's droplet (strokes not applied); all False without a circle."""
    h, w = geometry.shape
    out = np.zeros((h, w), dtype=bool)
    inside = droplet_inside(geometry)
    if inside is None:
        return out
    (cr, cc), radius = geometry.droplet.center, geometry.droplet.radius_px
    # only the disk's bounding box (in the frame) can be painted
    r0, r1 = max(0, math.floor(cr - radius)), min(h, math.ceil(cr + radius) + 1)
    c0, c1 = max(0, math.floor(cc - radius)), min(w, math.ceil(cc + radius) + 1)
    if r0 < r1 and c0 < c1:
        out[r0:r1, c0:c1] = inside(np.arange(r0, r1, dtype=np.float64)[:, None],
                                   np.arange(c0, c1, dtype=np.float64)[None, :])
    return out


@dataclass(frozen=True)
class HumanAngle:
    """Contact angle the geometry implies, or why there is none (``angle_deg`` None).

    ``cos(theta) = -s / R`` with ``s`` the signed distance of the circle centre from the facet
    line along ``u`` (positive on the droplet side) - the measurement's definition
    (docs/measurement.md) applied to the drawn circle and facet.
    """

    angle_deg: float | None
    reason: str
    s_px: float | None = None


#: A gap of background between the wire and the facet line is named when it lies under at
#: least this share of the droplet's base (its middle 60 %, where the wire is within
#: GAP_REACH_PX of the line).
GAP_SHARE = 0.3
GAP_REACH_PX = 16.0


def _under_base(facet: FacetLine, geometry: LabelGeometry, labels: np.ndarray,
                share: float) -> tuple[np.ndarray, np.ndarray] | None:
    """What ``labels`` hold under the droplet's base on the wire's side of ``facet``: the
    depths (0.5 to :data:`GAP_REACH_PX`, 0.5 px apart) and the classes read there, (depths,
    places), -1 off the frame; places 1 px apart along the middle ``share`` of the base (the
    circle's chord on the facet line). None where the circle does not reach the line."""
    sampled = _base_pixels(facet, geometry, share)
    if sampled is None:
        return None
    depths, rc = sampled
    ok = ((rc >= 0) & (rc < np.array(labels.shape))).all(axis=-1)
    read_at = np.full(ok.shape, -1)
    read_at[ok] = labels[rc[ok][:, 0], rc[ok][:, 1]]
    return depths, read_at


def _base_pixels(facet: FacetLine, geometry: LabelGeometry,
                 share: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The pixels :func:`_under_base` reads: the depths and the (row, col) of each (depths,
    places, 2), on the frame or not; None where the circle does not reach the line."""
    center = np.asarray(geometry.droplet.center, dtype=float)
    s = float((center - facet.point) @ facet.u)
    radius = geometry.droplet.radius_px
    if abs(s) >= radius:
        return None
    half = share * math.sqrt(radius**2 - s**2)
    t = np.array([facet.u[1], -facet.u[0]])
    foot = center - s * facet.u
    along = np.arange(-half, half + 0.5, 1.0)
    depths = np.arange(0.5, GAP_REACH_PX + 0.01, 0.5)
    # (a sample on the line itself may be the droplet's pixel: a facet through pixel centres)
    pts = foot[None, None, :] + along[None, :, None] * t - depths[:, None, None] * facet.u
    return depths, np.rint(pts).astype(int)


def facet_gap_note(geometry: LabelGeometry, labels: np.ndarray) -> str:
    """Why ``labels`` (the rasterised (H, W) label image of ``geometry``) hold background
    between the wire and the facet line, or "": a wire polygon drawn short of the facet
    leaves a seam there that the page's angle (from the shapes) does not see, and that
    ``nwwatch measure`` reads as a gap, taking the facet line in its middle (another angle,
    or a refusal for a wide one).

    Sampled 1 px apart along the middle 60 % of the droplet's base, where the labels read
    wire within :data:`GAP_REACH_PX` on the wire's side of the line: background between the
    line and the wire there over :data:`GAP_SHARE` of those places."""
    facet = facet_line(geometry)
    if facet is None or geometry.droplet is None or geometry.wire is None:
        return ""
    under = _under_base(facet, geometry, labels, 0.6)
    if under is None:
        return ""
    depths, read_at = under  # (depths, places)
    is_wire = read_at == NANOWIRE
    wire_there = is_wire.any(axis=0)
    first = np.argmax(is_wire, axis=0)  # where the wire starts
    gap = wire_there & ((read_at == BACKGROUND)
                        & (np.arange(len(depths))[:, None] < first)).any(axis=0)
    if wire_there.sum() < 5 or gap.sum() < GAP_SHARE * wire_there.sum():
        return ""
    widths = depths[first[gap]]
    return (f"background between the wire and the facet line (up to {np.median(widths):.1f} "
            "px): the saved labels hold a gap there, which nwwatch measure reads as one, "
            "the facet line in its middle; draw the wire polygon up to the facet line")


def contact_angle(geometry: LabelGeometry, labels: np.ndarray | None = None) -> HumanAngle:
    """The human contact angle of ``geometry`` (degrees), a value with a reason on failure.

    With ``labels`` (its rasterised (H, W) label image) none where too few of the pixels the
    circle itself paints (:func:`circle_droplet_mask`) are droplet there: fewer than
    ``MIN_AREA_PX`` or than ``MIN_AREA_FRACTION`` of the label image's largest 8-connected
    droplet region (:mod:`nwwatch.measure.components`: a droplet region ``nwwatch measure``
    passes over). The
    circle cut away at the facet line, painted over as unlabeled or drawn off the frame is
    not an angle the labels stand behind (no ground truth for ``nwwatch evaluate``), even
    where droplet strokes elsewhere give the labels droplet pixels of their own.

    Nor where the facet line is not the labels' either: nanowire pixels within
    :data:`GAP_REACH_PX` of it on the wire's side under fewer than ``MIN_INTERFACE_LENGTH_PX``
    (6) places 1 px apart along the droplet's base (the circle's chord on the line; all of a
    shorter base). That is the shortest wire/droplet interface from which ``nwwatch
    measure`` orients a facet line itself (:mod:`nwwatch.measure.facet`), and the reach is
    that of :func:`facet_gap_note` (a wire drawn up to that far short of the line is named
    there, not refused here): a wire polygon painted over as background or unlabeled under
    the droplet leaves a facet the label image holds no trace of."""
    if geometry.droplet is None:
        return HumanAngle(None, "no droplet circle")
    facet = facet_line(geometry)
    if facet is None:
        return HumanAngle(None, "no facet: draw the wire polygon or a facet line")
    center = np.asarray(geometry.droplet.center, dtype=float)
    radius = geometry.droplet.radius_px
    s = float((center - facet.point) @ facet.u)
    if abs(s) >= radius:
        return HumanAngle(None, f"the circle (R = {radius:.1f} px) does not reach the facet "
                                f"line (centre {s:.1f} px from it)", s)
    if labels is not None:
        reason = (_too_few_circle_pixels(geometry, labels)
                  or _too_little_wire_under_base(geometry, facet, labels))
        if reason:
            return HumanAngle(None, reason, s)
    return HumanAngle(math.degrees(math.acos(-s / radius)), "", s)


def _too_little_wire_under_base(geometry: LabelGeometry, facet: FacetLine,
                                labels: np.ndarray) -> str:
    """Why the wire pixels of ``labels`` under the droplet's base are too few to stand
    behind the facet line, or "" (see :func:`contact_angle`)."""
    from nwwatch.measure.facet import MIN_INTERFACE_LENGTH_PX

    under = _under_base(facet, geometry, labels, 1.0)
    if under is None:
        return ""
    _, read_at = under
    base_px = read_at.shape[1]  # places 1 px apart along the base
    backed_px = int(np.count_nonzero((read_at == NANOWIRE).any(axis=0)))
    least_px = min(math.ceil(MIN_INTERFACE_LENGTH_PX), base_px)
    if backed_px >= least_px:
        return ""
    needed = f"at least {least_px} px of the droplet's {base_px} px base"
    if geometry.wire is not None:
        # A wire polygon drawn (not painted over) beyond the reach from an explicit facet
        # line: the line or the polygon's edge is misplaced, and that is what to say.
        depth_px = _wire_depth_under_base(geometry, facet)
        if depth_px is None:
            return ("no facet in the labels: the wire polygon does not reach under the "
                    f"droplet's {base_px} px base on the facet line (nanowire needed there "
                    f"under {needed}); move the facet line or the wire polygon")
        if depth_px > GAP_REACH_PX:
            return (f"no facet in the labels: the wire polygon is drawn {depth_px:.1f} px "
                    f"from the facet line under the droplet (more than {GAP_REACH_PX:g} px; "
                    f"nanowire needed within it under {needed}); move the facet line or "
                    "the wire's edge")
        # The polygon alone, before the strokes: a polygon under only the end of the base
        # (drawn beside the droplet, or slanted steeply away from the line) is the shape to
        # move; strokes painting over a polygon that was under enough of it are the cause.
        unstroked = read_at if not geometry.strokes else _unstroked_under_base(geometry,
                                                                               facet)
        polygon_backed = (unstroked == NANOWIRE).any(axis=0)
        polygon_px = int(np.count_nonzero(polygon_backed))
        off_px = _polygon_off_frame(geometry, facet, polygon_backed)
        if polygon_px < least_px and (off_px == 0 or polygon_px + off_px < least_px):
            if not polygon_px:
                # within the reach yet between two of the places 1 px apart
                return ("no facet in the labels: the wire polygon does not reach under the "
                        f"droplet's {base_px} px base on the facet line (nanowire needed "
                        f"within {GAP_REACH_PX:g} px of it under {needed}); move the wire "
                        "polygon under the droplet or the facet line onto the wire's edge")
            return (f"no facet in the labels: the wire polygon lies within "
                    f"{GAP_REACH_PX:g} px of the facet line under only {polygon_px} px of "
                    f"the droplet's {base_px} px base (at least {least_px} px needed); move "
                    "the wire polygon under the droplet or the facet line onto the wire's "
                    "edge")
        if polygon_px >= least_px:
            painted = sorted({_CLASS_WORDS.get(int(v), str(int(v)))
                              for v in read_at[(unstroked == NANOWIRE)
                                               & (read_at != NANOWIRE)]})
            where = (f"under only {backed_px} px of the droplet's {base_px} px base"
                     if backed_px else f"under none of the droplet's {base_px} px base")
            return (f"no facet in the labels: nanowire pixels within {GAP_REACH_PX:g} px of "
                    f"the facet line {where} (at least {least_px} px needed; the wire painted "
                    f"over as {' or '.join(painted)} by strokes, the polygon alone under "
                    f"{polygon_px} px of it); erase those strokes or paint the wire back "
                    "under the droplet")
        on_frame = (f"under only {polygon_px} px of the droplet's {base_px} px base"
                    if polygon_px else f"under none of the droplet's {base_px} px base")
        return (f"no facet in the labels: the wire polygon lies within {GAP_REACH_PX:g} px "
                f"of the facet line {on_frame} on the frame (at least {least_px} px needed): "
                "the rest lies off the frame, where the label image holds no wire")
    where = (f"under only {backed_px} px of the droplet's {base_px} px base"
             if backed_px else f"under none of the droplet's {base_px} px base")
    return (f"no facet in the labels: nanowire pixels within {GAP_REACH_PX:g} px of the "
            f"facet line {where} (at least {least_px} px needed; the wire painted over as "
            "background or unlabeled, or off the frame); draw or paint the wire under the "
            "droplet")


#: How a reason names the class a stroke paints.
_CLASS_WORDS = {BACKGROUND: "background", DROPLET: "droplet", UNLABELED: "unlabeled"}


def _polygon_off_frame(geometry: LabelGeometry, facet: FacetLine,
                       polygon_backed: np.ndarray) -> int:
    """How many places of the droplet's base, besides those ``polygon_backed`` (the wire
    polygon's pixels on the frame within :data:`GAP_REACH_PX` of the facet line, per place),
    have the polygon there off the frame only (pixel centres inside it): base the label
    image cannot hold, not a polygon to move."""
    sampled = _base_pixels(facet, geometry, 1.0)
    if sampled is None:
        return 0
    rc = sampled[1]
    off = ~((rc >= 0) & (rc < np.array(geometry.shape))).all(axis=-1)
    inside = inside_polygon(np.asarray(geometry.wire, dtype=float),
                            rc[..., 0].astype(float), rc[..., 1].astype(float))
    return int(np.count_nonzero((inside & off).any(axis=0) & ~polygon_backed))


def _unstroked_under_base(geometry: LabelGeometry, facet: FacetLine) -> np.ndarray:
    """What the droplet and wire alone (no strokes) rasterise to at the pixels
    :func:`_under_base` reads (depths, places; -1 off the frame): only the box round them is
    rasterised, with the 2 px (here 3) round each pixel its class depends on, not the frame."""
    from nwwatch.label.raster import rasterize_shapes

    rc = _base_pixels(facet, geometry, 1.0)[1]
    shape = np.array(geometry.shape)
    ok = ((rc >= 0) & (rc < shape)).all(axis=-1)
    read_at = np.full(ok.shape, -1)
    if not ok.any():
        return read_at
    lo = np.maximum(rc[ok].min(axis=0) - 3, 0)
    hi = np.minimum(rc[ok].max(axis=0) + 4, shape)
    window = rasterize_shapes(geometry, (int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1])))
    read_at[ok] = window[rc[ok][:, 0] - lo[0], rc[ok][:, 1] - lo[1]]
    return read_at


def _wire_depth_under_base(geometry: LabelGeometry, facet: FacetLine) -> float | None:
    """How far (px) the wire polygon's nearest point under the droplet's base (the circle's
    chord on the facet line) lies from the line on the wire's side: 0 where it reaches or
    crosses the line, None where no part of it is under the base."""
    center = np.asarray(geometry.droplet.center, dtype=float)
    s = float((center - facet.point) @ facet.u)
    half = math.sqrt(max(geometry.droplet.radius_px**2 - s**2, 0.0))
    t = np.array([facet.u[1], -facet.u[0]])
    foot = center - s * facet.u
    rel = np.asarray(geometry.wire, dtype=float) - foot
    poly = [(float(p @ t), float(-(p @ facet.u))) for p in rel]  # (along, depth)
    # the polygon clipped to the strip across the base (Sutherland-Hodgman, two sides): a
    # polygon's least depth in it is at one of the clipped corners
    for sign in (1.0, -1.0):
        kept = []
        for i, (a0, d0) in enumerate(poly):
            a1, d1 = poly[(i + 1) % len(poly)]
            in0, in1 = sign * a0 <= half, sign * a1 <= half
            if in0:
                kept.append((a0, d0))
            if in0 != in1:
                f = (sign * half - a0) / (a1 - a0)
                kept.append((sign * half, d0 + f * (d1 - d0)))
        poly = kept
        if not poly:
            return None
    return max(0.0, min(d for _, d in poly))


def _too_few_circle_pixels(geometry: LabelGeometry, labels: np.ndarray) -> str:
    """Why the circle's own droplet pixels in ``labels`` are too few for an angle, or ""."""
    from nwwatch.measure.components import MIN_AREA_FRACTION, MIN_AREA_PX, largest_region_px2

    droplet = labels == DROPLET
    own_px = int(np.count_nonzero(droplet & circle_droplet_mask(geometry)))
    if own_px == 0:
        total_px = int(np.count_nonzero(droplet))
        strokes = (f"; the label image's {total_px} droplet pixels are the strokes'"
                   if total_px else "")
        return ("no droplet pixel in the labels from the circle (its disk cut away at the "
                "facet line, painted over as unlabeled, or off the frame)" + strokes)
    # measure passes over a droplet region under this share of the largest one, not of all
    # droplet pixels: many small stroked droplets beside the circle's leave it measured
    largest_px = largest_region_px2(droplet)
    least_px = max(MIN_AREA_PX, math.ceil(MIN_AREA_FRACTION * largest_px))
    if own_px >= least_px:
        return ""
    need = ("" if least_px == MIN_AREA_PX else
            f", {100 * MIN_AREA_FRACTION:g} % of the largest droplet region's "
            f"{largest_px:.0f} px")
    return (f"the circle paints only {own_px} droplet pixels in the labels (under "
            f"{least_px}{need}: nwwatch measure passes over a droplet region smaller than "
            "that); draw the circle on the droplet")
