"""Pick the nanowire and the droplet to measure from a label image.

Small blobs are ignored (below ``MIN_AREA_PX`` or ``MIN_AREA_FRACTION`` of the largest blob of
the same class). The measured pair is the largest droplet touching - within ``GAP_PX`` pixels,
so a thin background gap between droplet and wire is tolerated - the largest wire that carries
a droplet.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE

MIN_AREA_PX = 12
MIN_AREA_FRACTION = 0.05
#: Largest background gap (px) between droplet and wire that still counts as "on the wire".
GAP_PX = 4


@dataclass(frozen=True)
class Selection:
    """The chosen components as hole-filled boolean masks of the crop ``box``.

    ``box`` is (row0, col0, row1, col1) (half-open) in the full image. ``status`` is None when
    both were found, else the failure status and ``reason``.
    """

    status: str | None
    reason: str
    wire: np.ndarray | None = None
    droplet: np.ndarray | None = None
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    n_droplets: int = 0
    droplet_area_px2: float | None = None
    droplet_cut: bool = False


def _blobs(mask: np.ndarray) -> list[tuple[np.ndarray, float, tuple[int, int, int, int]]]:
    """Outer contours of the 8-connected blobs of ``mask`` that are large enough.

    Returns (contour, area_px2, (x, y, w, h)) sorted by decreasing area; the area counts
    pixels approximately (polygon area through the boundary pixel centres + half the
    perimeter + 1), which is exact enough to rank blobs and drop specks.
    """
    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    blobs = [
        (c, cv2.contourArea(c) + 0.5 * cv2.arcLength(c, True) + 1.0, cv2.boundingRect(c))
        for c in contours
    ]
    if not blobs:
        return []
    limit = max(MIN_AREA_PX, MIN_AREA_FRACTION * max(b[1] for b in blobs))
    return sorted((b for b in blobs if b[1] >= limit), key=lambda b: -b[1])


def _filled(contour: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Hole-filled mask of ``contour`` in the crop ``box`` (row0, col0, row1, col1)."""
    r0, c0, r1, c1 = box
    out = np.zeros((r1 - r0, c1 - c0), np.uint8)
    cv2.drawContours(out, [contour], -1, 1, thickness=cv2.FILLED, offset=(-c0, -r0))
    return out.astype(bool)


def _box(rect: tuple[int, int, int, int], margin: int, shape: tuple[int, int]) -> tuple[int, ...]:
    x, y, w, h = rect
    return (
        max(y - margin, 0),
        max(x - margin, 0),
        min(y + h + margin, shape[0]),
        min(x + w + margin, shape[1]),
    )


def select_components(labels: np.ndarray) -> Selection:
    """Choose the wire and droplet to measure in ``labels`` (uint8 (H, W))."""
    shape = labels.shape
    wires = _blobs(labels == NANOWIRE)
    drops = _blobs(labels == DROPLET)
    if not wires:
        extra = " (a droplet is present)" if drops else ""
        return Selection("no_wire", f"no nanowire region of at least {MIN_AREA_PX} px{extra}")
    if not drops:
        return Selection("no_droplet", f"no droplet region of at least {MIN_AREA_PX} px")
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GAP_PX + 1, 2 * GAP_PX + 1))
    pair = None  # (wire index, droplet index): wires and droplets are sorted by area
    for di, (dcont, _, drect) in enumerate(drops):
        box = _box(drect, GAP_PX + 1, shape)
        near = cv2.dilate(_filled(dcont, box).view(np.uint8), kernel).astype(bool)
        for wi, (wcont, _, wrect) in enumerate(wires):
            wbox = _box(wrect, 0, shape)
            if wbox[0] >= box[2] or wbox[2] <= box[0] or wbox[1] >= box[3] or wbox[3] <= box[1]:
                continue
            if (near & _filled(wcont, box)).any() and (pair is None or wi < pair[0]):
                pair = (wi, di)
                break
    if pair is None:
        return Selection(
            "droplet_not_on_wire",
            f"no droplet lies within {GAP_PX} px of a nanowire "
            f"({len(drops)} droplet(s), {len(wires)} wire(s))",
        )
    wcont, _, wrect = wires[pair[0]]
    dcont, _, drect = drops[pair[1]]
    bw, bd = _box(wrect, 3, shape), _box(drect, 3, shape)
    box = (min(bw[0], bd[0]), min(bw[1], bd[1]), max(bw[2], bd[2]), max(bw[3], bd[3]))
    wire = _filled(wcont, box)
    droplet = _filled(dcont, box)
    wire &= ~droplet  # a wire blob enclosed by the droplet belongs to the droplet
    if wire.sum() < MIN_AREA_PX:
        return Selection("fit_failed", "the nanowire lies inside the droplet's outline",
                         n_droplets=len(drops))
    x, y, w, h = drect
    cut = bool(x == 0 or y == 0 or x + w == shape[1] or y + h == shape[0])
    return Selection(
        None,
        "",
        wire=wire,
        droplet=droplet,
        box=box,
        n_droplets=len(drops),
        droplet_area_px2=float(droplet.sum()),
        droplet_cut=cut,
    )
