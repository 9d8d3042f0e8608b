"""Whether a refused label image reads as another tool's class order (1 droplet, 2 nanowire).

Another tool's order reads as a wire on a droplet and is refused for a geometric reason.
It is said, never corrected: which id means which class is the user's to say. Of the
benchmark's real-geometry labels refused in the right order, none gives an angle exchanged
(bench/bench_exchanged_ids.py).
"""

from __future__ import annotations

import numpy as np

from nwwatch.classes import exchange_wire_and_droplet
from nwwatch.measure.contact_angle import measure_contact_angle
from nwwatch.measure.result import ContactAngleResult

#: Label images a DATA folder's check measures (``nwwatch train``, ``nwwatch evaluate``
#: without angles of its own to compare): a few ms each.
EXCHANGE_CHECKED = 16


def angle_if_exchanged(labels: np.ndarray, result: ContactAngleResult,
                       pixel_size_nm: float | None = None) -> float | None:
    """The contact angle (degrees) of ``labels`` (uint8 (H, W), 0/1/2) with ids 1 and 2
    exchanged, when ``result`` (their measurement as drawn) is refused and the exchanged
    labels give a valid angle; else None."""
    if result.angle_valid:
        return None
    swapped = measure_contact_angle(exchange_wire_and_droplet(labels),
                                    pixel_size_nm=pixel_size_nm)
    return swapped.contact_angle_deg if swapped.angle_valid else None
