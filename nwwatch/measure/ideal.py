"""Exact rendering of an ideal droplet cap on a nanowire, the ground-truth model for tests.

A wire of half-width ``a`` grows along the in-plane direction ``axis_deg``; its top facet is
the line through ``facet_center_rc`` perpendicular to the axis. The droplet is the part of the
disc of radius ``R = a / sin(theta)`` centred at signed distance ``s = -R cos(theta)`` from the
facet (positive on the droplet side) that lies on the droplet side of the facet. Pixel
``(r, c)`` covers ``[r-0.5, r+0.5] x [c-0.5, c+0.5]`` (integer pixel centres); each pixel gets
the class that covers most of its area, measured on a ``supersample x supersample`` grid of
sample points inside the pixel (only pixels near a boundary are supersampled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE


@dataclass(frozen=True)
class IdealCap:
    """Rendered cap and its exact geometry (pixels, (row, col), integer pixel centres).

    ``labels`` uint8 (H, W); ``droplet_coverage`` float32 (H, W), the droplet's area fraction
    of every pixel (a perfect droplet probability map).
    """

    labels: np.ndarray
    droplet_coverage: np.ndarray
    contact_angle_deg: float
    base_half_width_px: float
    droplet_radius_px: float
    cap_height_px: float
    wire_axis_deg: float
    facet_center_rc: tuple[float, float]
    circle_center_rc: tuple[float, float]
    triple_left_rc: tuple[float, float]
    triple_right_rc: tuple[float, float]


def axis_vectors(axis_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit growth direction ``u`` and left normal ``n`` as (d_row, d_col) for ``axis_deg``.

    ``axis_deg`` is counter-clockwise from +col as seen on screen (row axis down), so
    ``u = (-sin, cos)``; ``n`` is ``u`` turned 90 degrees counter-clockwise on screen (the
    observer's left when looking along the growth direction).
    """
    phi = math.radians(axis_deg)
    u = np.array([-math.sin(phi), math.cos(phi)])
    n = np.array([-u[1], u[0]])
    return u, n


def render_ideal_cap(
    shape: tuple[int, int],
    contact_angle_deg: float,
    base_half_width_px: float,
    axis_deg: float,
    facet_center_rc: tuple[float, float],
    wire_length_px: float = 1e4,
    supersample: int = 16,
) -> IdealCap:
    """Render labels (0 background, 1 wire, 2 droplet) of an ideal cap; see the module doc.

    ``wire_length_px`` is the wire's length below the facet (the wire is cut by the frame
    when it is longer than the frame). Angles in degrees, lengths in pixels.
    """
    if not 0.0 < contact_angle_deg < 180.0:
        raise ValueError(f"contact_angle_deg must be in (0, 180), got {contact_angle_deg}")
    if base_half_width_px <= 0:
        raise ValueError(f"base_half_width_px must be > 0, got {base_half_width_px}")
    height, width = shape
    theta = math.radians(contact_angle_deg)
    a = float(base_half_width_px)
    radius = a / math.sin(theta)
    s = -radius * math.cos(theta)
    u, n = axis_vectors(axis_deg)
    origin = np.asarray(facet_center_rc, dtype=float)

    def classify(rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dr, dc = rows - origin[0], cols - origin[1]
        t = dr * u[0] + dc * u[1]
        lat = dr * n[0] + dc * n[1]
        drop = (t >= 0) & ((t - s) ** 2 + lat**2 <= radius**2)
        wire = (t < 0) & (t >= -wire_length_px) & (np.abs(lat) <= a)
        return drop, wire

    rows, cols = np.mgrid[0:height, 0:width].astype(float)
    drop_c, wire_c = classify(rows, cols)
    drop_cov = drop_c.astype(np.float32)
    wire_cov = wire_c.astype(np.float32)
    # Pixels within a half diagonal (+margin) of a boundary are mixed: supersample those only.
    dr, dc = rows - origin[0], cols - origin[1]
    t = dr * u[0] + dc * u[1]
    lat = dr * n[0] + dc * n[1]
    near = 0.75
    mixed = np.abs(np.hypot(t - s, lat) - radius) < near
    mixed |= (np.abs(t) < near) & (np.abs(lat) < max(a, radius) + near)
    mixed |= (np.abs(np.abs(lat) - a) < near) & (t < near) & (t > -wire_length_px - near)
    mixed |= (np.abs(t + wire_length_px) < near) & (np.abs(lat) < a + near)
    mr, mc = np.nonzero(mixed)
    if mr.size:
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        orow, ocol = np.meshgrid(offsets, offsets, indexing="ij")
        sub_r = mr[:, None] + orow.ravel()[None, :]
        sub_c = mc[:, None] + ocol.ravel()[None, :]
        d_sub, w_sub = classify(sub_r, sub_c)
        drop_cov[mr, mc] = d_sub.mean(axis=1)
        wire_cov[mr, mc] = w_sub.mean(axis=1)
    back_cov = 1.0 - drop_cov - wire_cov
    stacked = np.stack([back_cov, wire_cov, drop_cov])
    classes = np.array([BACKGROUND, NANOWIRE, DROPLET], dtype=np.uint8)
    labels = classes[np.argmax(stacked, axis=0)]
    centre = origin + s * u
    half_chord = a
    return IdealCap(
        labels=labels,
        droplet_coverage=drop_cov,
        contact_angle_deg=float(contact_angle_deg),
        base_half_width_px=a,
        droplet_radius_px=radius,
        cap_height_px=radius + s,
        wire_axis_deg=float(axis_deg),
        facet_center_rc=(float(origin[0]), float(origin[1])),
        circle_center_rc=(float(centre[0]), float(centre[1])),
        triple_left_rc=tuple(float(v) for v in origin + half_chord * n),
        triple_right_rc=tuple(float(v) for v in origin - half_chord * n),
    )
