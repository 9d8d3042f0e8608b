"""Whether a refused label image reads as another tool's class order: 1 droplet, 2 nanowire
(:func:`angle_if_exchanged`), or a background that is not 0 (:func:`background_not_zero`:
an image editor's indexed colours, whose palette order is not the classes').

Another tool's order reads as a wire on a droplet, or a background as a droplet or wire, and
is refused for a geometric reason. It is said, never corrected: which id means which class
is the user's to say. Of the benchmark's real-geometry labels refused in the right order,
none gives an angle exchanged and none reads as another background
(bench/bench_exchanged_ids.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nwwatch.classes import BACKGROUND, DROPLET, NANOWIRE, border_pixels, exchange_wire_and_droplet
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


@dataclass(frozen=True)
class OtherBackground:
    """A refused label page that reads as one whose background is ``background_id``, not 0.

    ``border_share`` and ``zero_border_share``: the shares of the frame's border pixels
    holding ``background_id`` and 0. ``renumbering`` (the page's id -> class id) and
    ``angle_deg``: a renumbering with ``background_id`` as background that gives a valid
    angle, and that angle. ``other_renumbering`` and ``other_angle_deg``: the other order of
    the two other ids, when it gives a valid angle too (else None); the ids then do not say
    which object is the nanowire and which the droplet: that is the user's to say."""

    background_id: int
    border_share: float
    zero_border_share: float
    renumbering: dict[int, int]
    angle_deg: float
    other_renumbering: dict[int, int] | None = None
    other_angle_deg: float | None = None


def background_not_zero(labels: np.ndarray, result: ContactAngleResult,
                        pixel_size_nm: float | None = None,
                        dark_id: int | None = None) -> OtherBackground | None:
    """Whether ``labels`` (uint8 (H, W), 0/1/2), refused as measured (``result``), read as a
    mask whose background is id 1 or 2; None when ``result`` is valid or no renumbering says
    so.

    The candidates are the id holding more of the frame's border than 0 does, and
    ``dark_id`` (the id an indexed PNG's palette draws darkest, when not 0). With a candidate
    as background, both orders of the two other ids are measured; the first candidate one of
    whose renumberings gives a valid angle is returned with it (with both, when both orders
    give one). The border's shares alone say nothing: a correct mask whose droplet the frame
    cuts, or whose thick wire fills a corner, may hold less of the border as background than
    as droplet or wire, and is refused for a cause of its own (an arc too short, an angle
    uncertain)."""
    if result.angle_valid:
        return None
    border = border_pixels(labels)
    shares = {k: float(np.mean(border == k)) if border.size else 0.0
              for k in (BACKGROUND, NANOWIRE, DROPLET)}
    top = max((NANOWIRE, DROPLET), key=lambda k: shares[k])
    candidates = [top] if shares[top] > shares[BACKGROUND] else []
    if dark_id in (NANOWIRE, DROPLET) and dark_id not in candidates:
        candidates.append(dark_id)
    for candidate in candidates:
        other = NANOWIRE + DROPLET - candidate
        valid = []
        for zero_to, other_to in ((NANOWIRE, DROPLET), (DROPLET, NANOWIRE)):
            renumbering = {candidate: BACKGROUND, BACKGROUND: zero_to, other: other_to}
            table = np.arange(256, dtype=np.uint8)
            for old, new in renumbering.items():
                table[old] = new
            found = measure_contact_angle(table[labels], pixel_size_nm=pixel_size_nm)
            if found.angle_valid:
                valid.append((renumbering, found.contact_angle_deg))
        if valid:
            second = valid[1] if len(valid) > 1 else (None, None)
            return OtherBackground(candidate, shares[candidate], shares[BACKGROUND],
                                   *valid[0], *second)
    return None
