"""Re-implementation of the first paper's contact-angle method, as the benchmark's baseline.

Written from its description, not from its code:
3x3 morphological edges of the droplet and wire masks; the interface is where the two edge
bands overlap; a Hough line on a 1-degree grid (first peak) gives the facet; the profile gives
``a`` (half the interface length along the line) and ``h`` (largest distance of a droplet pixel
from the line); ``theta = pi - 2 atan(a / h)``. Droplets cut by the frame use an integer-radius
Hough circle instead (``h = R + s``, ``a = sqrt(R^2 - s^2)``). Angles outside [80, 135] degrees
are dropped (returned as None, like the original's silent exclusion).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE

KEPT_RANGE_DEG = (80.0, 135.0)
_K3 = np.ones((3, 3), np.uint8)


def _edges(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(np.uint8)
    return cv2.dilate(m, _K3) - cv2.erode(m, _K3)


def baseline_contact_angle(labels: np.ndarray) -> float | None:
    """Contact angle in degrees by the baseline method, or None when it fails or drops it."""
    drop = labels == DROPLET
    wire = labels == NANOWIRE
    if drop.sum() < 10 or wire.sum() < 10:
        return None
    interface = (_edges(drop) & _edges(wire)).astype(np.uint8) * 255
    lines = cv2.HoughLines(interface, 1, np.pi / 180, 5)
    if lines is None:
        return None
    rho, phi = lines[0][0]  # first peak: x cos(phi) + y sin(phi) = rho, x = col, y = row
    normal = np.array([math.sin(phi), math.cos(phi)])  # (row, col)
    direction = np.array([normal[1], -normal[0]])
    ir, ic = np.nonzero(interface)
    along = ir * direction[0] + ic * direction[1]
    a = 0.5 * float(along.max() - along.min())
    dr, dc = np.nonzero(drop)
    dist = dr * normal[0] + dc * normal[1] - rho
    side = 1.0 if np.median(dist) > 0 else -1.0
    h_profile = float((side * dist).max())
    height, width = labels.shape
    cut = drop[0].any() or drop[-1].any() or drop[:, 0].any() or drop[:, -1].any()
    if cut:
        edge = _edges(drop) * 255
        circles = cv2.HoughCircles(edge, cv2.HOUGH_GRADIENT, dp=1, minDist=max(height, width),
                                   param1=100, param2=10, minRadius=5,
                                   maxRadius=max(height, width))
        if circles is None:
            return None
        cx, cy, radius = circles[0][0]
        radius = float(round(radius))  # integer radius grid
        s = side * (cy * normal[0] + cx * normal[1] - rho)
        if abs(s) >= radius:
            return None
        a = math.sqrt(radius**2 - s**2)
        h_profile = radius + s
    if h_profile <= 0 or a <= 0:
        return None
    theta = math.degrees(math.pi - 2.0 * math.atan(a / h_profile))
    lo, hi = KEPT_RANGE_DEG
    return theta if lo <= theta <= hi else None
