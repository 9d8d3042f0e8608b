"""Exactly rendered droplet caps for the measurement tests, from the generator's own model
(:mod:`nwwatch.synth.geometry`: one cap model in the code base) rasterised by area coverage
(:func:`nwwatch.synth.labels.scene_labels`, integer pixel centres)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nwwatch.synth.geometry import WireSpec, droplet_geometry
from nwwatch.synth.geometry import axis_vectors as _axis_vectors
from nwwatch.synth.labels import scene_labels


@dataclass(frozen=True)
class IdealCap:
    """Rendered cap and its exact geometry (pixels, (row, col), integer pixel centres)."""

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
    wire: WireSpec


def axis_vectors(axis_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Growth direction ``u`` and its left normal ``n`` as numpy (d_row, d_col) arrays."""
    u, n = _axis_vectors(axis_deg)
    return np.array(u), np.array(n)


def render_ideal_cap(
    shape: tuple[int, int],
    contact_angle_deg: float,
    base_half_width_px: float,
    axis_deg: float,
    facet_center_rc: tuple[float, float],
    wire_length_px: float = 1e4,
    wire_radius_px: float | None = None,
    **wire_fields: float,
) -> IdealCap:
    """A droplet of base half-width ``base_half_width_px`` on a wire (radius
    ``wire_radius_px``, default the base) growing along ``axis_deg``; ``wire_fields`` are
    further :class:`WireSpec` fields (facet_incline_deg, flare, step_px, ...)."""
    radius = base_half_width_px if wire_radius_px is None else wire_radius_px
    wire = WireSpec(facet_row=float(facet_center_rc[0]), facet_col=float(facet_center_rc[1]),
                    axis_deg=float(axis_deg), radius_px=float(radius),
                    length_px=float(wire_length_px), theta_deg=float(contact_angle_deg),
                    droplet_base_px=float(base_half_width_px), **wire_fields)
    labels, coverage = scene_labels((wire,), shape)
    geo = droplet_geometry(wire)
    return IdealCap(
        labels=labels, droplet_coverage=coverage, contact_angle_deg=geo.theta_apparent_deg,
        base_half_width_px=geo.a_px, droplet_radius_px=geo.radius_px,
        cap_height_px=geo.h_px, wire_axis_deg=float(axis_deg),
        facet_center_rc=geo.facet, circle_center_rc=geo.centre, triple_left_rc=geo.left,
        triple_right_rc=geo.right, wire=wire,
    )


def theta_tolerance_deg(a: float) -> float:
    """Worst case from a binary mask: a grid-aligned facet is only known to +-0.5 px (costs
    0.5/a rad) plus the circle fit (up to ~0.3/a rad when pixel centres fall on the outline)."""
    return math.degrees(0.8 / a)
