"""Contact angle of a catalyst droplet on a nanowire's top facet, from a label image.

``measure_contact_angle(labels, droplet_probability=None, pixel_size_nm=None, image=None)``
(``image``: the raw frame, whose intensity step places the facet line) returns a
frozen ``ContactAngleResult`` (a failure is a value with a ``status``, a machine-readable
``reason_code`` from ``REASON_CODES`` and a human ``reason``);
``draw_overlay`` shows the fit on the frame; ``MEASUREMENT_FIELDS`` are the result's columns
in a frame row. See docs/measurement.md for the method and its benchmark.
"""

from nwwatch.measure.contact_angle import measure_contact_angle
from nwwatch.measure.overlay import draw_overlay
from nwwatch.measure.result import (
    MEASUREMENT_FIELDS,
    MEASUREMENT_VERSION,
    PHYSICAL_RANGE_DEG,
    REASON_CODES,
    STATUSES,
    VALID_STATUSES,
    ContactAngleResult,
)

__all__ = [
    "MEASUREMENT_FIELDS",
    "MEASUREMENT_VERSION",
    "PHYSICAL_RANGE_DEG",
    "REASON_CODES",
    "STATUSES",
    "VALID_STATUSES",
    "ContactAngleResult",
    "draw_overlay",
    "measure_contact_angle",
]
