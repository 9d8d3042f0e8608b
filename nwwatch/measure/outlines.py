"""The boundary points of the chosen wire and droplet that the measurement fits.

The droplet's outline as pixel-edge midpoints of its mask and, given the droplet
probability, as its 0.5 iso-line about that outline; the wire's outline near the droplet
only (facet, gap, side edges below it), so a long wire costs no time.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.measure.arc import MIN_POINTS
from nwwatch.measure.components import Selection
from nwwatch.measure.edges import BoundaryPoints, iso_boundary_points, mask_boundary_points
from nwwatch.measure.kernels import disc

#: The wire's outline is taken within this many droplet sizes (the larger of the droplet's
#: box sides), at least REACH_MIN_PX, around the droplet's box.
REACH_FACTOR = 1.5
REACH_MIN_PX = 24
#: The iso-line is kept within this ring about the droplet mask's outline (a disc of this
#: radius, px, dilated minus eroded), so other blobs and holes of the probability map do not
#: count.
RING_RADIUS_PX = 3


@dataclass(frozen=True)
class PairOutlines:
    """Boundary points in the coordinates of the selection's crop (``Selection.box``).

    ``droplet``: the droplet mask's outline; ``wire``: the wire mask's outline near the
    droplet; ``fine``: the droplet probability's 0.5 iso-line about the droplet's outline,
    None without a probability map or with fewer than ``MIN_POINTS`` points there.
    """

    droplet: BoundaryPoints
    wire: BoundaryPoints
    fine: BoundaryPoints | None


def pair_outlines(sel: Selection, droplet_probability: np.ndarray | None) -> PairOutlines:
    """Outlines of the selected pair (``sel`` from :func:`select_components`, found) and,
    with ``droplet_probability`` float (H, W) of the whole image, the droplet's sub-pixel
    iso-line about its mask's outline."""
    r0, c0, r1, c1 = sel.box
    # The droplet's outline lies in its bounding box (+1 px for the pixel pairs across it).
    x, y, w, h = cv2.boundingRect(sel.droplet.view(np.uint8))
    dy0, dx0 = max(y - 1, 0), max(x - 1, 0)
    drop_pts = mask_boundary_points(sel.droplet[dy0 : y + h + 1, dx0 : x + w + 1],
                                    offset=(dy0, dx0))
    reach = max(REACH_MIN_PX, int(REACH_FACTOR * max(w, h)))
    wy0, wx0 = max(y - reach, 0), max(x - reach, 0)
    wire_pts = mask_boundary_points(sel.wire[wy0 : y + h + reach, wx0 : x + w + reach],
                                    offset=(wy0, wx0))
    fine = None
    if droplet_probability is not None:
        # A ring of 3 px about the droplet's outline lies within 4 px of its bounding box.
        wr0, wc0 = max(y - 4, 0), max(x - 4, 0)
        wr1, wc1 = min(y + h + 4, r1 - r0), min(x + w + 4, c1 - c0)
        iso = iso_boundary_points(droplet_probability[r0 + wr0 : r0 + wr1, c0 + wc0 : c0 + wc1],
                                  offset=(wr0, wc0))
        kernel = disc(RING_RADIUS_PX)
        d8 = sel.droplet[wr0:wr1, wc0:wc1].view(np.uint8)
        # Dilated and not eroded: their difference, 0 or 1 (the erosion lies in the dilation).
        ring = cv2.morphologyEx(d8, cv2.MORPH_GRADIENT, kernel).view(bool)
        near = (ring[iso.inside[:, 0] - wr0, iso.inside[:, 1] - wc0]
                | ring[iso.outside[:, 0] - wr0, iso.outside[:, 1] - wc0])
        fine = iso.subset(near)
        if len(fine) < MIN_POINTS:
            fine = None
    return PairOutlines(drop_pts, wire_pts, fine)
