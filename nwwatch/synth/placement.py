"""Where the main wire and the distractors go in a synthetic in-situ frame.

Lengths in pixels, (row, col) convention with integer indices at pixel centres; see
:mod:`nwwatch.synth.geometry` for the wire's frame of reference.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np

from nwwatch.synth.geometry import (
    SphereSpec,
    WireSpec,
    axis_vectors,
    droplet_geometry,
    project_scene,
)


def _visible_wire_length(fr: float, fc: float, d_row: float, d_col: float, size: int) -> float:
    """Distance from the facet centre back along the axis to the frame border (px)."""
    lengths = []
    for pos, d in ((fr, -d_row), (fc, -d_col)):
        if d > 1e-9:
            lengths.append((size - 1 - pos) / d)
        elif d < -1e-9:
            lengths.append(pos / -d)
    return max(0.0, min(lengths)) if lengths else 0.0


#: Where the main wire is put: ``centred`` (droplet well inside the frame, long wire behind),
#: ``corner`` (a wide wire coming out of a frame corner, its side edges outside the frame
#: within about one radius of the facet), ``stub`` (0.2-1 radius of wire visible behind the
#: facet before the frame cuts it).
PLACEMENTS = ("centred", "corner", "stub")


def _side_lengths(wire: WireSpec, size: int) -> tuple[float, float]:
    """Visible lengths (px) of the wire's two side edges behind the facet."""
    (d_row, d_col), (l_row, l_col) = axis_vectors(wire.axis_deg)
    r = wire.radius_px
    out = []
    for sign in (1.0, -1.0):
        sr, sc = wire.facet_row + sign * r * l_row, wire.facet_col + sign * r * l_col
        inside = 0.0 <= sr <= size - 1 and 0.0 <= sc <= size - 1
        out.append(_visible_wire_length(sr, sc, d_row, d_col, size) if inside else 0.0)
    return out[0], out[1]


def place_wire(
    rng: np.random.Generator,
    size: int,
    *,
    theta_deg: float,
    axis_deg: float,
    a_px: float,
    tilt_deg: float,
    truncation_px: float,
    cut: bool,
    placement: str = "centred",
    shape: dict[str, float] | None = None,
) -> WireSpec:
    """Choose the facet position of the main wire: droplet fully inside the frame with a
    3 px margin (or cut by the frame edge when ``cut``), facet inside the frame, and the
    ``placement``'s view of the wire (see :data:`PLACEMENTS`) as well as a few random tries
    find. ``shape`` holds extra :class:`WireSpec` fields (facet inclination, profile, base)."""
    if placement not in PLACEMENTS:
        raise KeyError(f"unknown placement {placement!r}; choose one of {PLACEMENTS}")
    template = WireSpec(
        facet_row=0.0, facet_col=0.0, axis_deg=float(axis_deg), radius_px=float(a_px),
        tilt_deg=float(tilt_deg), truncation_px=float(truncation_px),
        theta_deg=float(theta_deg), **(shape or {}),
    )
    geo = droplet_geometry(template)
    radius = geo.radius_px
    (d_row, d_col), _ = axis_vectors(axis_deg)
    margin = 3.0
    best: tuple[float, float, float] | None = None
    for _ in range(200):
        if cut:
            lo, hi = -0.4 * radius, size - 1 + 0.4 * radius
        else:
            lo, hi = radius + margin, size - 1 - radius - margin
        if hi < lo:
            lo = hi = (size - 1) / 2.0
        if not cut and placement == "centred":
            # Operators centre the droplet: draw from the middle 60 % of the allowed range.
            mid, half = (lo + hi) / 2.0, 0.3 * (hi - lo)
            lo, hi = mid - half, mid + half
        pr, pc = rng.uniform(lo, hi, 2)
        fr, fc = pr - geo.centre[0], pc - geo.centre[1]
        inner = (a_px * 0.5, size - 1 - a_px * 0.5)
        if not (inner[0] <= fr <= inner[1] and inner[0] <= fc <= inner[1]):
            continue
        if cut:
            border = min(pr, pc, size - 1 - pr, size - 1 - pc)
            if border > radius - 3.0:
                continue
        visible = _visible_wire_length(fr, fc, d_row, d_col, size)
        if placement == "centred":
            score, done = visible, visible >= max(1.5 * a_px, 0.3 * size)
        elif placement == "stub":
            miss = max(0.2 * a_px - visible, visible - a_px, 0.0)
            score, done = -miss, miss == 0.0
        else:
            sides = _side_lengths(replace(template, facet_row=fr, facet_col=fc), size)
            score = -max(sides) if visible > 0.2 * a_px else -math.inf
            done = max(sides) <= 1.2 * a_px and visible > 0.2 * a_px
        if best is None or score > best[2]:
            best = (fr, fc, score)
        if done:
            break
    if best is None:
        best = ((size - 1) / 2.0, (size - 1) / 2.0, 0.0)
    return replace(template, facet_row=float(best[0]), facet_col=float(best[1]))


def _pixel_centres_mask(objects: tuple, size: int) -> np.ndarray:
    centres = np.arange(size, dtype=np.float32)
    proj = project_scene(objects, centres[:, None], centres[None, :])
    return (proj.wire | proj.droplet).astype(np.uint8)


def place_distractors(
    rng: np.random.Generator, size: int, main: WireSpec, count: int
) -> tuple[WireSpec | SphereSpec, ...]:
    """Up to ``count`` extra wires (some with droplets) and free droplets, smaller than the
    main ones and at least 4 px away from every other object."""
    placed: list[WireSpec | SphereSpec] = []
    radius = main.radius_px / math.sin(math.radians(main.theta_deg or 90.0))
    occupied = _pixel_centres_mask((main,), size)
    kernel = np.ones((9, 9), np.uint8)
    for _ in range(count):
        for _try in range(30):
            if rng.random() < 0.5:
                cand: WireSpec | SphereSpec = SphereSpec(
                    row=float(rng.uniform(0, size - 1)), col=float(rng.uniform(0, size - 1)),
                    radius_px=float(rng.uniform(max(3.0, 0.1 * radius), max(4.0, 0.5 * radius))),
                )
            else:
                cand = WireSpec(
                    facet_row=float(rng.uniform(0, size - 1)),
                    facet_col=float(rng.uniform(0, size - 1)),
                    axis_deg=float(rng.uniform(-180, 180)),
                    radius_px=float(max(3.0, rng.uniform(0.3, 0.7) * main.radius_px)),
                    tilt_deg=float(rng.uniform(0, 10)),
                    theta_deg=float(rng.uniform(90, 140)) if rng.random() < 0.6 else None,
                )
            mask = _pixel_centres_mask((cand,), size)
            if mask.sum() < 9:
                continue
            if np.any(mask & cv2.dilate(occupied, kernel)):
                continue
            placed.append(cand)
            occupied |= mask
            break
    return tuple(placed)
