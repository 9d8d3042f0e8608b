"""The measurement result value, its statuses and its row schema.

Statuses and whether they carry a valid angle (``angle_valid``):

| status | angle_valid | meaning |
| --- | --- | --- |
| ``ok`` | yes | measured |
| ``several_droplets`` | yes | measured the droplet on the main wire; others were ignored |
| ``angle_out_of_physical_range`` | no | measured, but outside ``PHYSICAL_RANGE_DEG``: value kept |
| ``fit_failed`` | no | wire and droplet found, geometry could not be measured |
| ``droplet_not_on_wire`` | no | no droplet sits on a wire's end |
| ``no_droplet`` / ``no_wire`` | no | the class is missing |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

#: Bumps whenever results for the same labels would change (the daemon's ledger keys on it).
MEASUREMENT_VERSION = "1.0.0"

OK = "ok"
SEVERAL_DROPLETS = "several_droplets"
OUT_OF_RANGE = "angle_out_of_physical_range"
FIT_FAILED = "fit_failed"
DROPLET_NOT_ON_WIRE = "droplet_not_on_wire"
NO_DROPLET = "no_droplet"
NO_WIRE = "no_wire"
STATUSES: tuple[str, ...] = (
    OK, SEVERAL_DROPLETS, OUT_OF_RANGE, FIT_FAILED, DROPLET_NOT_ON_WIRE, NO_DROPLET, NO_WIRE
)
#: Statuses whose contact angle is valid.
VALID_STATUSES: frozenset[str] = frozenset({OK, SEVERAL_DROPLETS})
#: Contact angles outside this range (degrees) are kept but flagged.
PHYSICAL_RANGE_DEG = (70.0, 170.0)

_F = pa.float64()
_I = pa.int32()
#: Measurement columns of a frame row, in order; ``ContactAngleResult.as_row()`` keys.
MEASUREMENT_FIELDS: list[pa.Field] = [
    pa.field("status", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("angle_valid", pa.bool_(), nullable=False),
    pa.field("contact_angle_deg", _F),
    pa.field("contact_angle_left_deg", _F),
    pa.field("contact_angle_right_deg", _F),
    pa.field("contact_angle_uncertainty_deg", _F),
    pa.field("base_half_width_px", _F),
    pa.field("cap_height_px", _F),
    pa.field("droplet_radius_px", _F),
    pa.field("circle_center_row", _F),
    pa.field("circle_center_col", _F),
    pa.field("triple_left_row", _F),
    pa.field("triple_left_col", _F),
    pa.field("triple_right_row", _F),
    pa.field("triple_right_col", _F),
    pa.field("facet_row", _F),
    pa.field("facet_col", _F),
    pa.field("facet_angle_deg", _F),
    pa.field("facet_gap_px", _F),
    pa.field("wire_width_px", _F),
    pa.field("wire_axis_deg", _F),
    pa.field("wire_tilt_deg", _F),
    pa.field("droplet_area_px2", _F),
    pa.field("droplet_volume_px3", _F),
    pa.field("fit_residual_rms_px", _F),
    pa.field("arc_span_deg", _F),
    pa.field("n_contour_points", _I),
    pa.field("n_droplets", _I),
    pa.field("droplet_cut", pa.bool_(), nullable=False),
    pa.field("pixel_size_nm", _F),
    pa.field("base_half_width_nm", _F),
    pa.field("cap_height_nm", _F),
    pa.field("droplet_radius_nm", _F),
    pa.field("wire_width_nm", _F),
    pa.field("droplet_area_nm2", _F),
    pa.field("droplet_volume_nm3", _F),
]


@dataclass(frozen=True)
class ContactAngleResult:
    """Contact angle of one droplet on one nanowire, or why there is none.

    Pixel quantities are in the image's (row, col) frame with integer pixel centres. Angles
    in degrees. ``contact_angle_deg`` is the mean of the left and right angles when both were
    measured, else the single-circle angle; ``contact_angle_left_deg`` is the angle at the
    triple point on the left of an observer looking along the growth direction on screen.
    ``facet_angle_deg`` is the facet line's direction (``wire_axis_deg`` + 90, in
    (-180, 180]). ``wire_tilt_deg`` is the out-of-plane tilt read from an elliptical facet
    outline (0 when the facet looks straight); the angle is then the apparent one, measured
    against the line through the triple points. ``*_nm`` fields are None unless
    ``pixel_size_nm`` was given.
    """

    status: str
    reason: str
    contact_angle_deg: float | None = None
    contact_angle_left_deg: float | None = None
    contact_angle_right_deg: float | None = None
    contact_angle_uncertainty_deg: float | None = None
    base_half_width_px: float | None = None
    cap_height_px: float | None = None
    droplet_radius_px: float | None = None
    circle_center_row: float | None = None
    circle_center_col: float | None = None
    triple_left_row: float | None = None
    triple_left_col: float | None = None
    triple_right_row: float | None = None
    triple_right_col: float | None = None
    facet_row: float | None = None
    facet_col: float | None = None
    facet_angle_deg: float | None = None
    facet_gap_px: float | None = None
    wire_width_px: float | None = None
    wire_axis_deg: float | None = None
    wire_tilt_deg: float | None = None
    droplet_area_px2: float | None = None
    droplet_volume_px3: float | None = None
    fit_residual_rms_px: float | None = None
    arc_span_deg: float | None = None
    n_contour_points: int | None = None
    n_droplets: int | None = None
    droplet_cut: bool = False
    pixel_size_nm: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; expected one of {STATUSES}")

    @property
    def angle_valid(self) -> bool:
        """True when ``contact_angle_deg`` is a valid measurement (see the module doc)."""
        return self.status in VALID_STATUSES and self.contact_angle_deg is not None

    def _nm(self, value: float | None, power: int = 1) -> float | None:
        if value is None or self.pixel_size_nm is None:
            return None
        return value * self.pixel_size_nm**power

    @property
    def base_half_width_nm(self) -> float | None:
        return self._nm(self.base_half_width_px)

    @property
    def cap_height_nm(self) -> float | None:
        return self._nm(self.cap_height_px)

    @property
    def droplet_radius_nm(self) -> float | None:
        return self._nm(self.droplet_radius_px)

    @property
    def wire_width_nm(self) -> float | None:
        return self._nm(self.wire_width_px)

    @property
    def droplet_area_nm2(self) -> float | None:
        return self._nm(self.droplet_area_px2, 2)

    @property
    def droplet_volume_nm3(self) -> float | None:
        return self._nm(self.droplet_volume_px3, 3)

    def as_row(self) -> dict[str, Any]:
        """Flat dict of scalars; keys are exactly the names of ``MEASUREMENT_FIELDS``."""
        return {f.name: getattr(self, f.name) for f in MEASUREMENT_FIELDS}

    def replace(self, **changes: Any) -> ContactAngleResult:
        return dataclasses.replace(self, **changes)
