"""Draw a measurement on its frame so a scientist sees at a glance why the value is what it is.

Shows the segmentation outlines (wire yellow, droplet cyan), the droplet outline points used
for the circle (pale orange dots) and those rejected as outliers (magenta), the interface
points used for the facet line (pale blue dots) and those rejected (magenta), the fitted
circle (orange) and its centre, the facet line (blue) labelled with how it was oriented, the
triple points (green, with the left/right angles), the angle with its uncertainty, the status
and the ``reason_code``; status, code and reason in red when the measurement failed. Hershey
fonts are ASCII only, hence "deg" for the degree sign.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure.result import ContactAngleResult
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


def _pt(row: float, col: float) -> tuple[int, int]:
    return int(round(col * _ONE)), int(round(row * _ONE))


def _text(canvas: np.ndarray, text: str, org: tuple[int, int], color, scale: float) -> None:
    # A dark box behind the text keeps it readable on any frame (an outline drawn with a
    # thicker stroke does not line up with OpenCV 5's font engine).
    thick = max(1, int(round(scale * 2)))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    # Kept inside the canvas: a label placed at a line's end or a point near the border (a
    # facet reaching past the frame's edge) would otherwise be drawn off the picture.
    height, width = canvas.shape[:2]
    x = min(max(org[0], 2), max(width - w - 3, 2))
    y = min(max(org[1], h + 2), max(height - base - 1, h + 2))
    org = (x, y)
    cv2.rectangle(canvas, (x - 2, y - h - 2), (x + w + 2, y + base), (0, 0, 0), -1)
    cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _dots(canvas: np.ndarray, points: np.ndarray, color) -> None:
    """Single-pixel dots at (row, col) ``points`` (N, 2), clipped to the canvas."""
    if points.size == 0:
        return
    idx = np.rint(points).astype(np.int64)
    h, w = canvas.shape[:2]
    inside = (idx[:, 0] >= 0) & (idx[:, 0] < h) & (idx[:, 1] >= 0) & (idx[:, 1] < w)
    canvas[idx[inside, 0], idx[inside, 1]] = color


def draw_overlay(
    image: np.ndarray | None, labels: np.ndarray, result: ContactAngleResult
) -> np.ndarray:
    """Render ``result`` over ``image``.

    ``image`` (H, W) any real dtype, contrast-stretched to its 0.5-99.5 percentiles, or None
    to draw on a grey rendering of ``labels`` (uint8 (H, W)). Returns uint8 (H, W, 3) BGR.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    if image is None:
        grey = _labels_image(labels)
    else:
        if np.shape(image) != labels.shape:
            raise ValueError(f"image shape {np.shape(image)} != labels shape {labels.shape}")
        grey = stretch_to_uint8(image)
    canvas = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    scale = max(max(labels.shape) / 512.0, 0.6)  # stays legible on small frames
    lw = max(1, int(round(scale)))
    for cls, color in ((NANOWIRE, _YELLOW), (DROPLET, _CYAN)):
        contours, _ = cv2.findContours((labels == cls).astype(np.uint8), cv2.RETR_LIST,
                                       cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, color, 1, cv2.LINE_AA)
    r = result
    facet_label = None  # drawn after the points, over them
    if r.facet_row is not None and r.facet_angle_deg is not None:
        phi = math.radians(r.facet_angle_deg)
        d = np.array([-math.sin(phi), math.cos(phi)])  # facet direction (row, col)
        half = 1.6 * (r.base_half_width_px or 10.0)
        p0 = np.array([r.facet_row, r.facet_col]) - half * d
        p1 = np.array([r.facet_row, r.facet_col]) + half * d
        cv2.line(canvas, _pt(*p0), _pt(*p1), _BLUE, lw, cv2.LINE_AA, _SHIFT)
        if r.facet_source:
            end = p1 if p1[0] > p0[0] else p0  # label the lower end, clear of the droplet
            edge = ""
            if r.facet_edge == "refined" and r.facet_edge_shift_px is not None:
                edge = f", image {r.facet_edge_shift_px:+.1f} px"
            elif r.facet_edge not in (None, "labels"):
                edge = f", labels ({r.facet_edge})"
            facet_label = (f"facet: {r.facet_source}{edge}", (int(end[1]) + 4 * lw, int(end[0])))
    if r.circle_center_row is not None and r.droplet_radius_px is not None:
        centre = _pt(r.circle_center_row, r.circle_center_col)
        cv2.circle(canvas, centre, int(round(r.droplet_radius_px * _ONE)), _ORANGE, lw,
                   cv2.LINE_AA, _SHIFT)
        cv2.circle(canvas, centre, 3 * _ONE * lw, _ORANGE, -1, cv2.LINE_AA, _SHIFT)
    # The points go over the lines: a rejected point lies on or next to the fitted line, which
    # drawn afterwards covered every one of them.
    if r.points is not None:
        for pts, color in ((r.points.circle, _PALE_ORANGE), (r.points.facet, _PALE_BLUE),
                           (r.points.circle_rejected, _MAGENTA),
                           (r.points.facet_rejected, _MAGENTA)):
            _dots(canvas, pts, color)
    if facet_label is not None:
        _text(canvas, *facet_label, _BLUE, 0.4 * scale)
    sides = (
        (r.triple_left_row, r.triple_left_col, r.contact_angle_left_deg, "L"),
        (r.triple_right_row, r.triple_right_col, r.contact_angle_right_deg, "R"),
    )
    for row, col, angle, name in sides:
        if row is None:
            continue
        cv2.circle(canvas, _pt(row, col), 4 * _ONE * lw, _GREEN, -1, cv2.LINE_AA, _SHIFT)
        label = name if angle is None else f"{name} {angle:.1f}"
        _text(canvas, label, (int(col) + 6 * lw, int(row) - 6 * lw), _GREEN, 0.45 * scale)
    y = int(22 * scale)
    if r.contact_angle_deg is not None:
        unc = r.contact_angle_uncertainty_deg
        text = f"theta {r.contact_angle_deg:.2f}" + (f" +- {unc:.2f}" if unc is not None else "")
        _text(canvas, text + " deg", (int(8 * scale), y), _WHITE if r.angle_valid else _RED,
              0.6 * scale)
        y += int(22 * scale)
    color = _WHITE if r.angle_valid else _RED
    status = r.status if r.reason_code in ("ok", r.status) else f"{r.status} / {r.reason_code}"
    _text(canvas, status, (int(8 * scale), y), color, 0.5 * scale)
    if r.reason:
        # Long reasons wrap over a few lines so they stay inside the frame.
        width = max(20, int(labels.shape[1] / (9 * scale)))
        words, line = r.reason.split(), ""
        for word in words:
            if len(line) + len(word) + 1 > width:
                y += int(18 * scale)
                _text(canvas, line, (int(8 * scale), y), color, 0.42 * scale)
                line = word
            else:
                line = f"{line} {word}".strip()
        if line:
            y += int(18 * scale)
            _text(canvas, line, (int(8 * scale), y), color, 0.42 * scale)
    return canvas
