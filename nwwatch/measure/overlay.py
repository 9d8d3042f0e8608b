"""Draw a measurement on its frame so a scientist sees at a glance why the value is what it is.

Shows the segmentation outlines (wire yellow, droplet cyan), the droplet outline points used
for the circle (pale orange dots) and those rejected as outliers (magenta), the interface
points used for the facet line (pale blue dots) and those rejected (magenta), the fitted
circle (orange) and its centre, the facet line (blue) labelled with how it was oriented, the
triple points (green, with the left/right angles); below the frame, in a caption band, the
angle with its uncertainty, the status and the ``reason_code``, and the reason; in red when
the measurement failed. Hershey fonts are ASCII only, hence "deg" for the degree sign.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure.result import ContactAngleResult
from nwwatch.measure.uncertainty import sigma_text
from nwwatch.normalize import stretch_to_uint8

_SHIFT = 4  # cv2 fixed-point drawing: coordinates in 1/16 px
_ONE = 1 << _SHIFT
_BLUE, _GREEN, _ORANGE = (255, 80, 0), (0, 200, 0), (0, 140, 255)
_YELLOW, _CYAN, _RED, _WHITE = (0, 220, 220), (230, 200, 0), (0, 0, 255), (255, 255, 255)
_MAGENTA = (255, 0, 255)
#: The points a fit used, drawn over its line in a paler tint of the line's colour, so that
#: each point can be told from the line it lies on.
_PALE_ORANGE, _PALE_BLUE = (150, 215, 255), (255, 200, 140)


def _labels_image(labels: np.ndarray) -> np.ndarray:
    grey = np.full(labels.shape, 200, np.uint8)
    grey[labels == NANOWIRE] = 120
    grey[labels == DROPLET] = 60
    return grey


#: Frames whose longer side is below this are drawn enlarged (an integer factor, each pixel a
#: block) so that the text, the points and the lines stay legible: on a 120 px crop the text
#: at its smallest legible size covered half the picture.
MIN_OVERLAY_SIDE_PX = 512


#: Frames whose longer side is above this are drawn reduced (an integer factor, each block of
#: frame pixels averaged into one): a 4096² camera frame's picture at full size is a 21 MB
#: PNG whose encoding takes most of a second of the measuring thread, for detail a QA
#: picture does not need (bench/results/large_frames.json).
MAX_OVERLAY_SIDE_PX = 2048


#: The narrowest picture, at a caption scale of 1: a frame narrower than this (after its
#: zoom) is drawn at the left of a black margin that widens the caption band.
CAPTION_MIN_WIDTH_PX = 240


def overlay_zoom(shape: tuple[int, ...]) -> int:
    """The integer factor :func:`draw_overlay` enlarges a frame of ``shape`` (H, W) by."""
    side = max(int(shape[0]), int(shape[1]), 1)
    return 1 if side >= MIN_OVERLAY_SIDE_PX else min(16, math.ceil(MIN_OVERLAY_SIDE_PX / side))


def overlay_reduction(shape: tuple[int, ...]) -> int:
    """The integer factor :func:`draw_overlay` reduces a frame of ``shape`` (H, W) by: 1 up
    to :data:`MAX_OVERLAY_SIDE_PX`, else the smallest that brings the longer side to it or
    below."""
    side = max(int(shape[0]), int(shape[1]), 1)
    return max(1, math.ceil(side / MAX_OVERLAY_SIDE_PX))


def _pt(row: float, col: float, zoom: float = 1.0) -> tuple[int, int]:
    # the centre of frame pixel (row, col) is the centre of its zoom x zoom block (zoom < 1:
    # of the canvas pixel its 1/zoom x 1/zoom block of frame pixels became)
    return (int(round(((col + 0.5) * zoom - 0.5) * _ONE)),
            int(round(((row + 0.5) * zoom - 0.5) * _ONE)))


def _reduce(image: np.ndarray, factor: int, average: bool) -> np.ndarray:
    """``image`` (H, W) reduced by ``factor``: each factor x factor block (the last ones
    padded with the edge) becomes its mean, or its centre pixel (``average`` False: label
    ids, which must not be mixed)."""
    h, w = image.shape
    hr, wr = -(-h // factor), -(-w // factor)
    padded = np.pad(image, ((0, hr * factor - h), (0, wr * factor - w)), mode="edge")
    if not average:
        return np.ascontiguousarray(padded[factor // 2::factor, factor // 2::factor])
    # with an integer factor OpenCV's area interpolation is the block mean, and faster than numpy
    return cv2.resize(padded, (wr, hr), interpolation=cv2.INTER_AREA)


def _text_box(shape: tuple[int, ...], text: str, org: tuple[int, int],
              scale: float) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Where :func:`_text` draws ``text`` asked at ``org`` on a canvas of ``shape``: the
    origin it uses and its dark box (x0, y0, x1, y1), both inclusive."""
    thick = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    # Kept inside the canvas: a label placed at a line's end or a point near the border (a
    # facet reaching past the frame's edge) would otherwise be drawn off the picture.
    height, width = shape[:2]
    x = min(max(org[0], 2), max(width - w - 3, 2))
    y = min(max(org[1], h + 2), max(height - base - 1, h + 2))
    return (x, y), (x - 2, y - h - 2, x + w + 2, y + base)


def _text(canvas: np.ndarray, text: str, org: tuple[int, int], color, scale: float) -> None:
    # A dark box behind the text keeps it readable on any frame (an outline drawn with a
    # thicker stroke does not line up with OpenCV 5's font engine).
    thick = max(1, int(round(scale * 2)))
    org, (x0, y0, x1, y1) = _text_box(canvas.shape, text, org, scale)
    cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 0, 0), -1)
    cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _free_org(shape: tuple[int, ...], text: str, candidates: list[tuple[int, int]],
              scale: float, taken: list[tuple[int, int, int, int]]) -> tuple[int, int]:
    """The first of ``candidates`` (text origins) where ``text``'s box covers none of the
    boxes ``taken``, else the first."""
    for org in candidates:
        box = _text_box(shape, text, org, scale)[1]
        if not any(_overlaps(box, other) for other in taken):
            return org
    return candidates[0]


def _dots(canvas: np.ndarray, points: np.ndarray, color, zoom: float = 1.0) -> None:
    """Dots at frame (row, col) ``points`` (N, 2): each fills its pixel's zoom x zoom block
    of ``canvas`` (zoom < 1: the canvas pixel holding it), clipped to it."""
    if points.size == 0:
        return
    if zoom < 1:
        points = (np.asarray(points, float) + 0.5) * zoom - 0.5
        zoom = 1
    zoom = int(zoom)
    idx = np.rint(points).astype(np.int64)
    h, w = canvas.shape[0] // zoom, canvas.shape[1] // zoom
    inside = (idx[:, 0] >= 0) & (idx[:, 0] < h) & (idx[:, 1] >= 0) & (idx[:, 1] < w)
    idx = idx[inside]
    for dr in range(zoom):
        for dc in range(zoom):
            canvas[idx[:, 0] * zoom + dr, idx[:, 1] * zoom + dc] = color


def draw_overlay(
    image: np.ndarray | None, labels: np.ndarray, result: ContactAngleResult
) -> np.ndarray:
    """Render ``result`` over ``image``.

    ``image`` (H, W) any real dtype, contrast-stretched to its 0.5-99.5 percentiles, or None
    to draw on a grey rendering of ``labels`` (uint8 (H, W)). Returns uint8 (zH + C, zW, 3)
    BGR: the frame drawn on, then a black caption band of C rows with the angle, the status
    and the reason (a frame narrower than :data:`CAPTION_MIN_WIDTH_PX` times the caption's
    scale has black columns added at its right: (zH + C, that width, 3)). z =
    :func:`overlay_zoom` of (H, W): 1 from 512 px up; a smaller frame is
    enlarged by the smallest integer factor that brings its longer side to 512 px or more (at
    most 16), each frame pixel a z x z block, and frame pixel (row, col) is the block starting
    at (z row, z col). A frame longer than :data:`MAX_OVERLAY_SIDE_PX` is reduced instead by
    k = :func:`overlay_reduction` (z = 1/k, H and W rounded up): each k x k block of frame
    pixels, starting at (k r, k c), is canvas pixel (r, c); the drawing keeps its sub-pixel
    positions.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise ValueError(f"labels must be (H, W) with pixels, got shape {labels.shape}")
    if not isinstance(result, ContactAngleResult):
        raise TypeError(f"result must be measure_contact_angle's ContactAngleResult, got "
                        f"{type(result).__name__}")
    if image is None:
        grey = _labels_image(labels)
    else:
        if np.shape(image) != labels.shape:
            raise ValueError(f"image shape {np.shape(image)} != labels shape {labels.shape}")
        grey = stretch_to_uint8(image)
    frame_shape = labels.shape  # the frame's, which (row, col) of the result are in
    z: float = overlay_zoom(labels.shape)
    k = overlay_reduction(labels.shape)
    if z > 1:
        grey = np.repeat(np.repeat(grey, z, axis=0), z, axis=1)
        labels = np.repeat(np.repeat(labels, z, axis=0), z, axis=1)
    elif k > 1:
        grey, labels, z = _reduce(grey, k, True), _reduce(labels, k, False), 1.0 / k
    canvas = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    scale = max(max(labels.shape) / 512.0, 0.6)  # labels are now at the canvas's size
    # a tall, narrow frame's caption keeps room for about 28 characters a line: at the
    # frame's own width (64 px) its reason was cut into pieces of a word or less. Padded
    # before anything is drawn, so that the labels placed near its right edge are not cut.
    least = int(CAPTION_MIN_WIDTH_PX * scale)
    if canvas.shape[1] < least:
        canvas = np.pad(canvas, ((0, 0), (0, least - canvas.shape[1]), (0, 0)))

    def pt(row: float, col: float) -> tuple[int, int]:
        return _pt(row, col, z)

    def at(row: float, col: float) -> tuple[int, int]:
        """Canvas (x, y) in whole pixels of frame (row, col), for text."""
        x, y = _pt(row, col, z)
        return x >> _SHIFT, y >> _SHIFT

    # marks and their labels by the frame's area, the caption by its long side: a 2000 x 64
    # frame drew 16 px discs and 1.8-scale labels over its 15 px droplet
    marks = max(math.sqrt(labels.shape[0] * labels.shape[1]) / 512.0, 0.6)
    lw = max(1, int(round(marks)))
    for cls, color in ((NANOWIRE, _YELLOW), (DROPLET, _CYAN)):
        contours, _ = cv2.findContours((labels == cls).astype(np.uint8), cv2.RETR_LIST,
                                       cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, color, 1, cv2.LINE_AA)
    r = result
    facet_label = None  # drawn after the points, over them
    if r.facet_row is not None and r.facet_angle_deg is not None:
        phi = math.radians(r.facet_angle_deg)
        d = np.array([-math.sin(phi), math.cos(phi)])  # facet direction (row, col)
        # the base's length where the circle meets the line; a refusal before that (no
        # triple points) draws the line over the interface points it fitted, or the droplet
        half = _facet_half_length(r, d)
        p0 = np.array([r.facet_row, r.facet_col]) - half * d
        p1 = np.array([r.facet_row, r.facet_col]) + half * d
        cv2.line(canvas, pt(*p0), pt(*p1), _BLUE, lw, cv2.LINE_AA, _SHIFT)
        if r.facet_source:
            end = p1 if p1[0] > p0[0] else p0  # label the lower end, clear of the droplet
            edge = ""
            if r.facet_edge == "refined" and r.facet_edge_shift_px is not None:
                edge = f", image {round(r.facet_edge_shift_px, 1) + 0.0:+.1f} px"  # no "-0.0"
            elif r.facet_edge not in (None, "labels"):
                edge = f", labels ({r.facet_edge})"
            other = p0 if end is p1 else p1
            facet_label = (f"facet: {r.facet_source}{edge}", at(*end), at(*other))
    if r.circle_center_row is not None and r.droplet_radius_px is not None:
        centre = pt(r.circle_center_row, r.circle_center_col)
        cv2.circle(canvas, centre, int(round(r.droplet_radius_px * z * _ONE)), _ORANGE, lw,
                   cv2.LINE_AA, _SHIFT)
        cv2.circle(canvas, centre, 3 * _ONE * lw, _ORANGE, -1, cv2.LINE_AA, _SHIFT)
    # The points go over the lines: a rejected point lies on or next to the fitted line, which
    # drawn afterwards covered every one of them.
    if r.points is not None:
        for pts, color in ((r.points.circle, _PALE_ORANGE), (r.points.facet, _PALE_BLUE),
                           (r.points.circle_rejected, _MAGENTA),
                           (r.points.facet_rejected, _MAGENTA)):
            _dots(canvas, pts, color, z)
    # a triple point outside the image is neither drawn nor labelled: its label, kept in the
    # picture, read as a point on the frame's edge
    sides = [
        (row, col, name if angle is None else f"{name} {angle:.1f}")
        for row, col, angle, name in (
            (r.triple_left_row, r.triple_left_col, r.contact_angle_left_deg, "L"),
            (r.triple_right_row, r.triple_right_col, r.contact_angle_right_deg, "R"))
        if row is not None and -0.5 < row < frame_shape[0] - 0.5
        and -0.5 < col < frame_shape[1] - 0.5]
    # The facet's label goes where it covers neither a triple point's disc nor its label
    # (at the line's lower end, else its upper end or further along past either): a triple
    # point near the lower end had its label drawn over the facet's.
    disc = 4 * lw
    taken = [(x - disc, y - disc, x + disc, y + disc)
             for x, y in (at(row, col) for row, col, _ in sides)]
    font_triple, font_facet = 0.45 * marks, 0.4 * marks
    placed = []
    for row, col, label in sides:
        x, y = at(row, col)
        org = (x + 6 * lw, y - 6 * lw)
        placed.append((label, org))
        taken.append(_text_box(canvas.shape, label, org, font_triple)[1])
    if facet_label is not None:
        text, (xe, ye), (xo, yo) = facet_label
        (_, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_facet,
                                    max(1, int(round(font_facet * 2))))
        step = h + 6 * lw
        candidates = [(xe + 4 * lw, ye), (xo + 4 * lw, yo)]
        for k in range(1, 4):
            candidates += [(xe + 4 * lw, ye + k * step), (xo + 4 * lw, yo - k * step)]
        _text(canvas, text, _free_org(canvas.shape, text, candidates, font_facet, taken),
              _BLUE, font_facet)
    for row, col, _ in sides:
        cv2.circle(canvas, pt(row, col), 4 * _ONE * lw, _GREEN, -1, cv2.LINE_AA, _SHIFT)
    for label, org in placed:
        _text(canvas, label, org, _GREEN, font_triple)
    return _with_caption(canvas, _caption(r, canvas.shape[1], scale), scale)


def _facet_half_length(r: ContactAngleResult, direction: np.ndarray) -> float:
    """Half the length (px) of the facet line drawn: 1.6 times the base's half chord; without
    one (refused before the circle met the line), as far as its fitted interface points reach
    along ``direction`` (unit (2,), row, col) and 8 px more, else the droplet's radius."""
    if r.base_half_width_px:
        return 1.6 * r.base_half_width_px
    facet = None if r.points is None else r.points.facet
    if facet is not None and len(facet):
        along = (np.asarray(facet, dtype=float) - (r.facet_row, r.facet_col)) @ direction
        return float(np.abs(along).max()) + 8.0
    return r.droplet_radius_px or 16.0


def _caption(r: ContactAngleResult, width_px: int,
             scale: float) -> list[tuple[str, tuple[int, int, int], float]]:
    """(text, colour, font scale) of each caption line: the angle, the status, the reason,
    each wrapped to the picture's width (a narrow frame's picture cut the angle's line)."""
    lines: list[tuple[str, tuple[int, int, int], float]] = []
    color = _WHITE if r.angle_valid else _RED
    room = width_px - int(16 * scale)

    def add(text: str, font: float) -> None:
        thick = max(1, int(round(font * 2)))
        line = ""
        for word in text.split():
            wider = f"{line} {word}".strip()
            if line and cv2.getTextSize(wider, cv2.FONT_HERSHEY_SIMPLEX, font,
                                        thick)[0][0] > room:
                lines.append((line, color, font))
                line = word
            else:
                line = wider
        if line:
            lines.append((line, color, font))

    if r.contact_angle_deg is not None:
        unc = r.contact_angle_uncertainty_deg
        # a degenerate fit's sigma (a million degrees) in scientific notation, the row's as is
        text = f"theta {r.contact_angle_deg:.2f}" + (f" +- {sigma_text(unc)}"
                                                     if unc is not None else "")
        add(text + " deg", 0.6 * scale)
    add(r.status if r.reason_code in ("ok", r.status) else f"{r.status} / {r.reason_code}",
        0.5 * scale)
    if r.reason:
        add(r.reason, 0.42 * scale)
    return lines


def _with_caption(canvas: np.ndarray, lines, scale: float) -> np.ndarray:
    """``canvas`` with a black band below it holding ``lines``: the text never covers the
    frame (over it, a failure's reason hid the upper part of the picture, a triple point or
    the wire included)."""
    steps = [int(22 * scale) if font >= 0.5 * scale else int(18 * scale) for _, _, font in lines]
    band = np.zeros((sum(steps) + int(10 * scale), canvas.shape[1], 3), np.uint8)
    y = 0
    for (text, color, font), step in zip(lines, steps, strict=True):
        y += step
        _text(band, text, (int(8 * scale), y), color, font)
    return np.vstack([canvas, band])
