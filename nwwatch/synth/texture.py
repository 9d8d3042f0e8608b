"""Crystal texture of the wire: lattice fringes and stacking-fault bands.

Fringes are planes perpendicular to the growth axis (GaAs {111}, 0.326 nm apart). Stacking
faults and zinc-blende/wurtzite segments split the wire into bands along the axis; each band
shifts the fringes by a third of a period and changes the brightness slightly. Positions are
in *material* coordinates (distance along the axis, fixed to the crystal), so the bands stay
put while the wire grows and the facet moves on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: GaAs {111} plane spacing, nm.
GAAS_111_SPACING_NM = 0.326


@dataclass(frozen=True)
class StackingSequence:
    """Band boundaries (material coordinate, px, ascending) and per-band fringe phase (rad)
    and relative brightness offset; band i lies below ``boundaries[i]``."""

    boundaries: np.ndarray
    phase_rad: np.ndarray
    brightness: np.ndarray


def stacking_sequence(
    seed: int, mean_band_px: float, contrast: float, extent_px: float
) -> StackingSequence:
    """Random bands of exponential length (mean ``mean_band_px``) covering
    [-extent_px, extent_px]; brightness offsets in [-contrast, contrast]."""
    rng = np.random.default_rng(seed)
    n = int(math.ceil(2.0 * extent_px / max(mean_band_px, 0.5))) * 2 + 8
    lengths = rng.exponential(max(mean_band_px, 0.5), n)
    boundaries = -extent_px + np.cumsum(lengths)
    steps = rng.choice([0.0, 2.0 * math.pi / 3.0, -2.0 * math.pi / 3.0], n + 1, p=[0.4, 0.3, 0.3])
    phase = np.cumsum(steps)
    brightness = rng.uniform(-contrast, contrast, n + 1)
    return StackingSequence(boundaries, phase, brightness)


def lattice_modulation(
    y_material_px: np.ndarray,
    weight: np.ndarray,
    period_px: float,
    amplitude: float,
    sequence: StackingSequence,
    fringe_coordinate_px: np.ndarray | None = None,
) -> np.ndarray:
    """Multiplicative amplitude factor, float32 like ``y_material_px``:
    ``1 + weight * (amplitude cos(2 pi u / period + phase_band) + brightness_band)``.
    ``weight`` (0..1) fades the texture where the wire is thin; ``period_px`` 0 disables the
    fringes (unresolved lattice) but keeps the bands. Bands follow ``y_material_px`` (planes
    perpendicular to the axis); the fringes follow ``fringe_coordinate_px`` ``u`` (another
    set of planes seen edge-on; default: ``y_material_px``)."""
    band = np.searchsorted(sequence.boundaries, y_material_px)
    texture = sequence.brightness[band].astype(np.float32)
    if period_px > 0 and amplitude > 0:
        u = y_material_px if fringe_coordinate_px is None else fringe_coordinate_px
        arg = (2.0 * math.pi / period_px) * u + sequence.phase_rad[band]
        texture += amplitude * np.cos(arg).astype(np.float32)
    return (1.0 + weight * texture).astype(np.float32)
