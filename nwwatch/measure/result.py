"""The measurement result value, its statuses and its row schema.

Statuses and whether they carry a valid angle (``angle_valid``):

| status | angle_valid | meaning |
| --- | --- | --- |
| ``ok`` | yes | measured |
| ``several_droplets`` | yes | measured the largest droplet on a wire; others were ignored |
| ``angle_out_of_physical_range`` | no | measured, but outside ``PHYSICAL_RANGE_DEG``: value kept |
| ``fit_failed`` | no | wire and droplet found, geometry could not be measured |
| ``droplet_not_on_wire`` | no | no droplet sits on a wire's end |
| ``no_droplet`` / ``no_wire`` | no | the class is missing |

Every result also carries a ``reason_code`` from :data:`REASON_CODES` (``ok`` for a valid
angle) next to the human ``reason``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class MeasurementPoints:
    """The points behind a result, for overlays (image (row, col), float64 (N, 2)): droplet
    outline points used for the circle and those rejected, interface points used for the
    facet line and those rejected. Not part of the row."""

    circle: np.ndarray
    circle_rejected: np.ndarray
    facet: np.ndarray
    facet_rejected: np.ndarray

#: Bumps whenever the rows of the same input files would change, by the measurement or by
#: what reaches it (reading, normalisation): the daemon's ledger keys on it.
MEASUREMENT_VERSION = "2.2.22"


def measurement_version_tuple(version: str) -> tuple[int, ...]:
    """``"2.2.19"`` as (2, 2, 19), which sorts after (2, 2, 2); () for a version that is not
    numbers (or none)."""
    try:
        return tuple(int(part) for part in str(version).split("."))
    except ValueError:
        return ()

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
#: Machine-readable cause of a result (``reason_code``), stable across versions; ``reason``
#: is the human text with the numbers.
REASON_CODES: dict[str, str] = {
    "ok": "measured (reason may carry notes)",
    "no_wire": "no nanowire region of at least 12 px",
    "no_droplet": "no droplet region of at least 12 px",
    "labels_noisy": "the label image is noise-like (too many class changes or regions)",
    "droplet_not_on_wire": "no droplet lies on a nanowire",
    "wire_inside_droplet": "the nanowire lies inside the droplet's outline",
    "interface_missing": "too few wire/droplet interface points to place the facet",
    "interface_not_line": "the wire/droplet interface is not a straight line (curved, "
                          "several pieces, or scattered more than its cost in degrees allows)",
    "free_surface_too_small": "too few droplet edge points on the free surface",
    "arc_too_short": "the visible arc of the droplet outline is too short",
    "not_a_circle": "the droplet outline is not a circle arc",
    "circle_misses_facet": "the fitted circle does not reach the facet line",
    "angle_uncertain": "the angle's uncertainty is too large",
    "out_of_physical_range": "measured, but outside the physical range",
    "numerical_failure": "a solver failed on degenerate points",
}

#: Contact angles outside this range (degrees) are kept but flagged.
PHYSICAL_RANGE_DEG = (70.0, 170.0)

_F = pa.float64()
_I = pa.int32()
#: Measurement columns of a frame row, in order; ``ContactAngleResult.as_row()`` keys.
MEASUREMENT_FIELDS: list[pa.Field] = [
    pa.field("status", pa.string(), nullable=False),
    pa.field("reason_code", pa.string(), nullable=False),
    pa.field("reason", pa.string(), nullable=False),
    pa.field("angle_valid", pa.bool_(), nullable=False),
    pa.field("contact_angle_deg", _F),
    pa.field("contact_angle_left_deg", _F),
    pa.field("contact_angle_right_deg", _F),
    pa.field("contact_angle_uncertainty_deg", _F),
    pa.field("contact_angle_left_uncertainty_deg", _F),
    pa.field("contact_angle_right_uncertainty_deg", _F),
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
    pa.field("facet_source", pa.string()),
    pa.field("facet_inclination_deg", _F),
    pa.field("facet_scatter_px", _F),
    pa.field("n_facet_points", _I),
    pa.field("facet_edge", pa.string()),
    pa.field("facet_edge_shift_px", _F),
    pa.field("facet_edge_snr", _F),
    pa.field("wire_status", pa.string()),
    pa.field("wire_width_px", _F),
    pa.field("wire_axis_deg", _F),
    pa.field("wire_tilt_deg", _F),
    pa.field("droplet_area_px2", _F),
    pa.field("droplet_volume_px3", _F),
    pa.field("fit_residual_rms_px", _F),
    pa.field("cap_excess_px", _F),
    pa.field("triple_depth_px", _F),
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
    in degrees. ``contact_angle_deg`` is the angle between the circle fitted to the whole
    free surface and the facet line; ``contact_angle_left_deg`` / ``_right_deg`` come from
    circles fitted to each half of the arc, left as seen by an observer looking from the
    wire into the droplet, each with its own 1-sigma (``*_uncertainty_deg``: a half arc
    scatters more than the whole). ``facet_angle_deg`` is the facet line's direction (its normal
    into the droplet + 90, in (-180, 180]); ``facet_source`` says how it was oriented
    (``interface``: fitted to the wire/droplet interface; ``wire_axis``: perpendicular to the
    wire axis, a prior for a short interface; ``centroids``: perpendicular to the
    wire-to-droplet direction). ``facet_inclination_deg`` is the facet normal's angle to the
    wire axis (when the axis is measured). ``wire_axis_deg``, ``wire_width_px`` are reported
    as ``wire_status`` says (``measured``, ``axis_only``, ``not_measured``) and the angle
    never depends on them. ``base_half_width_px`` is half the chord between the triple
    points. ``wire_tilt_deg`` is the out-of-plane tilt read from an elliptical facet outline
    (0 when the facet looks straight); the angle is then the apparent one, against the line
    through the triple points. ``facet_edge`` says whether the facet line was moved onto
    the image's intensity step (``refined``, by ``facet_edge_shift_px`` along its normal,
    positive into the droplet; ``facet_edge_snr`` the step's contrast over noise), measured
    on labels alone (``labels``), or kept on the labels because the image's step was unclear
    (:data:`nwwatch.measure.refine.EDGE_STATUSES`). ``cap_excess_px`` is how far the labelled
    droplet reaches beyond the measured cap (mean thickness along the base,
    :func:`nwwatch.measure.capcheck.cap_excess_px`) and ``triple_depth_px`` how far inside the
    measured wire and droplet the triple points lie
    (:func:`nwwatch.measure.capcheck.triple_point_depth_px`); both enter the uncertainty. ``*_nm``
    fields are None unless ``pixel_size_nm`` was given.
    """

    status: str
    reason: str
    reason_code: str = "ok"
    contact_angle_deg: float | None = None
    contact_angle_left_deg: float | None = None
    contact_angle_right_deg: float | None = None
    contact_angle_uncertainty_deg: float | None = None
    contact_angle_left_uncertainty_deg: float | None = None
    contact_angle_right_uncertainty_deg: float | None = None
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
    facet_source: str | None = None
    facet_inclination_deg: float | None = None
    facet_scatter_px: float | None = None
    n_facet_points: int | None = None
    facet_edge: str | None = None
    facet_edge_shift_px: float | None = None
    facet_edge_snr: float | None = None
    wire_status: str | None = None
    wire_width_px: float | None = None
    wire_axis_deg: float | None = None
    wire_tilt_deg: float | None = None
    droplet_area_px2: float | None = None
    droplet_volume_px3: float | None = None
    fit_residual_rms_px: float | None = None
    cap_excess_px: float | None = None
    triple_depth_px: float | None = None
    arc_span_deg: float | None = None
    n_contour_points: int | None = None
    n_droplets: int | None = None
    droplet_cut: bool = False
    pixel_size_nm: float | None = None
    points: MeasurementPoints | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; expected one of {STATUSES}")
        if self.reason_code not in REASON_CODES:
            raise KeyError(f"unknown reason_code {self.reason_code!r}; expected one of "
                           f"{tuple(REASON_CODES)}")

    @property
    def angle_valid(self) -> bool:
        """True when ``contact_angle_deg`` is a valid measurement (see the module doc)."""
        return self.status in VALID_STATUSES and self.contact_angle_deg is not None

    def _nm(self, value: float | None, power: int = 1) -> float | None:
        if value is None or self.pixel_size_nm is None:
            return None
        try:
            return value * self.pixel_size_nm**power
        except OverflowError:  # an absurd pixel size: float ** raises where * gives inf
            return math.inf

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


class Refused(Exception):
    """A stage of the measurement whose check failed: ``result`` is the failure (status
    ``fit_failed`` with its ``reason_code``), which the measurement returns."""

    def __init__(self, result: ContactAngleResult) -> None:
        super().__init__(result.reason)
        self.result = result

    def __reduce__(self):  # else unpickling calls __init__(reason) and fails
        return (type(self), (self.result,))


def refuse(code: str, reason: str, **fields: Any) -> Refused:
    """The :class:`Refused` of a ``fit_failed`` result with ``reason_code`` ``code``."""
    return Refused(ContactAngleResult(FIT_FAILED, reason, code, **fields))
