"""A label image resized with interpolation: a thin ring of nanowire labels round the droplet.

Class 1 lies between 0 and 2, so a bilinear or area resize of a 0/1/2 label image (instead
of nearest neighbour) turns the droplet/background boundary into a 1-2 px band of "nanowire":
the wire then seems to wrap the droplet, and the measurement fails on a free surface it
cannot see. Read on a failed measurement only, to name that cause.
"""

from __future__ import annotations

import cv2
import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE

#: Share of the droplet's outline pixels next to a thin nanowire band that also touches the
#: background, above which the label image is read as interpolated. Exact and wiggled labels
#: of the benchmark's real geometries have at most 0.02 (such pixels only at the triple
#: points), labels with ragged edges at most 0.25; label images resized bilinearly or by
#: area by 4/3 to 2x, 0.27-0.86 (the lowest at the fractional factors, whose frames measure).
MIN_SEAM_SHARE = 0.3
_K3 = np.ones((3, 3), np.uint8)


def interpolation_seam_share(labels: np.ndarray) -> float:
    """Share (0-1) of the droplet's outline pixels (uint8 (H, W) ``labels``, 8-connected
    boundary) that touch a nanowire band at most 2 px thick lying between droplet and
    background; 0 without droplet."""
    drop = cv2.compare(labels, DROPLET, cv2.CMP_EQ)
    x, y, w, h = cv2.boundingRect(drop)
    if w == 0:
        return 0.0
    r0, c0 = max(y - 3, 0), max(x - 3, 0)
    crop = labels[r0 : y + h + 3, c0 : x + w + 3]
    d = (crop == DROPLET).view(np.uint8)
    wire = (crop == NANOWIRE).view(np.uint8)
    opened = cv2.morphologyEx(wire, cv2.MORPH_OPEN, _K3).view(bool)
    seam = (wire.view(bool) & ~opened & cv2.dilate(d, _K3).view(bool)
            & cv2.dilate((crop == 0).view(np.uint8), _K3).view(bool))
    outline = d.view(bool) & ~cv2.erode(d, _K3, borderType=cv2.BORDER_REPLICATE).view(bool)
    near_seam = cv2.dilate(seam.view(np.uint8), _K3).view(bool)
    n = int(np.count_nonzero(outline))
    return float(np.count_nonzero(outline & near_seam)) / n if n else 0.0
