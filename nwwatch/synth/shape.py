"""Real-geometry draws of a synthetic in-situ frame: placement kind, facet inclination,
droplet base, side-wall profile (see :func:`nwwatch.synth.params.sample_frame_params`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nwwatch.synth.placement import PLACEMENTS

#: Side-wall profiles of the main wire.
PROFILES = ("straight", "flared", "tapered", "stepped")


@dataclass(frozen=True)
class ShapeDraw:
    """Real-geometry choices of one frame (see :func:`nwwatch.synth.params.sample_frame_params`)."""

    placement: str
    real_facet: bool
    incline_deg: float
    base_ratio: float
    profile: str
    flare: float
    step_fraction: float
    step_depth_fraction: float
    large_radius_fraction: float
    corner_axis_deg: float
    corner_radius_fraction: float

    def wire_fields(self, a_px: float, incline_deg: float, ratio: float) -> dict[str, float]:
        """Extra :class:`WireSpec` fields for a wire of radius ``a_px``."""
        fields: dict[str, float] = {"facet_incline_deg": float(incline_deg)}
        if ratio != 1.0:
            fields["droplet_base_px"] = float(ratio * a_px)
        if self.profile in ("flared", "tapered"):
            fields["flare"] = float(self.flare)
        elif self.profile == "stepped":
            fields["step_px"] = float(self.step_fraction * a_px)
            fields["step_depth_px"] = float(self.step_depth_fraction * a_px)
        return fields


def draw_shape(
    geo: np.random.Generator, size: int, *, placement: str | None,
    facet_incline_deg: float | None, wire_profile: str | None, base_ratio: float | None,
) -> ShapeDraw:
    # Every value is drawn whether used or not, so fixing one keeps the others.
    kind = str(geo.choice(["centred", "large", "corner", "stub"], p=[0.5, 0.15, 0.2, 0.15]))
    real_facet = bool(geo.random() < 0.55)
    inclined = bool(geo.random() < 0.7)
    incline = float(geo.uniform(3.0, 30.0)) * (1.0 if geo.random() < 0.5 else -1.0)
    other_base = bool(geo.random() < 0.4)
    ratio = float(geo.uniform(0.75, 1.2))
    profile = str(geo.choice(PROFILES, p=[0.35, 0.3, 0.15, 0.2]))
    flare_up, flare_down = float(geo.uniform(0.05, 0.5)), -float(geo.uniform(0.02, 0.15))
    step = float(geo.uniform(0.1, 0.4)) * (1.0 if geo.random() < 0.6 else -1.0)
    step_depth = float(geo.uniform(0.3, 2.0))
    large = float(geo.uniform(0.25, 0.49))
    corner = int(geo.integers(4))
    corner_jitter = float(geo.uniform(-20.0, 20.0))
    corner_radius = float(geo.uniform(0.15, 0.3))
    if placement is None:
        placement = "centred" if kind == "large" else kind
    elif placement not in PLACEMENTS:
        raise KeyError(f"unknown placement {placement!r}; choose one of {PLACEMENTS}")
    if wire_profile is None:
        wire_profile = profile
    elif wire_profile not in PROFILES:
        raise KeyError(f"unknown wire_profile {wire_profile!r}; choose one of {PROFILES}")
    incline = (incline if real_facet and inclined else 0.0) if facet_incline_deg is None \
        else float(facet_incline_deg)
    ratio = (ratio if real_facet and other_base else 1.0) if base_ratio is None \
        else float(base_ratio)
    if not ratio > 0:
        raise ValueError(f"sample_frame_params: base_ratio must be > 0, got {ratio}")
    # Growth direction from the corner (row, col) = (corner // 2, corner % 2) * size inwards.
    d_row, d_col = (-1.0 if corner // 2 else 1.0), (-1.0 if corner % 2 else 1.0)
    corner_axis = math.degrees(math.atan2(-d_row, d_col)) + corner_jitter
    return ShapeDraw(
        placement=placement,
        real_facet=real_facet or incline != 0.0 or ratio != 1.0,
        incline_deg=incline,
        base_ratio=ratio,
        profile=wire_profile,
        flare=flare_up if wire_profile == "flared" else flare_down,
        step_fraction=step,
        step_depth_fraction=step_depth,
        large_radius_fraction=large if kind == "large" and placement == "centred" else 0.0,
        corner_axis_deg=corner_axis,
        corner_radius_fraction=corner_radius,
    )
