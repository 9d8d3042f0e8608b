"""Pick the nanowire and the droplet to measure from a label image.

Small blobs are ignored (below ``MIN_AREA_PX`` or ``MIN_AREA_FRACTION`` of the largest blob of
the same class). The measured pair is the largest droplet touching a wire - within ``GAP_PX``
pixels, so a thin background gap between droplet and wire is tolerated - on the largest wire
it touches. Where no droplet comes that close to a wire, a droplet is paired with a wire
across a wider gap, up to ``WIDE_GAP_FRACTION`` of its equivalent radius: hand-drawn labels
often leave the dark wire/droplet interface band unlabeled. The angle's uncertainty then
carries where in that gap the facet may lie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.measure.kernels import disc

MIN_AREA_PX = 12
MIN_AREA_FRACTION = 0.05
#: Share of 4-neighbour pixel pairs with different labels above which the label image is
#: noise, not a segmentation (a segmented frame has < 2 %, even with speckle < 5 %).
MAX_BOUNDARY_FRACTION = 0.1
#: Above this share, specks are removed by connected-component areas before contouring.
_SPECKLED_FRACTION = 0.015
#: More regions (>= MIN_AREA_PX) than this in one class: noise-like labels.
MAX_REGIONS = 64
#: Contours beyond this count are first thinned by connected-component areas (fast).
_MANY_CONTOURS = 200
#: Only the largest regions of each class are paired (the measured pair is among them).
_PAIR_CANDIDATES = 16
#: Largest background gap (px) between droplet and wire that still counts as "on the wire".
GAP_PX = 4
#: Where no droplet lies within GAP_PX of a wire: the widest gap bridged, as a share of the
#: droplet's equivalent radius sqrt(area / pi). Its position uncertainty (gap / sqrt(12))
#: alone puts sigma above the refusal cut beyond about 0.1 of the radius, so such frames keep
#: their angle with the reason instead of "not on a wire".
WIDE_GAP_FRACTION = 0.2


@dataclass(frozen=True)
class Selection:
    """The chosen components as hole-filled boolean masks of the crop ``box``, with the
    polygon moments of their outlines (``cv2.moments`` dicts, (x, y) = (col, row) of the crop).

    ``box`` is (row0, col0, row1, col1) (half-open) in the full image. ``status`` is None when
    both were found, else the failure status and ``reason``.
    """

    status: str | None
    reason: str
    reason_code: str = "ok"
    wire: np.ndarray | None = None
    droplet: np.ndarray | None = None
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    n_droplets: int | None = None
    droplet_area_px2: float | None = None
    #: the droplet's bounding box touches the frame's border (the measurement narrows this to
    #: its free surface once the facet line is known)
    droplet_cut: bool = False
    max_gap_px: int = GAP_PX
    wide_gap: bool = False
    wire_moments: dict | None = None
    droplet_moments: dict | None = None


def _blobs(
    mask: np.ndarray, speckled: bool = False, offset: tuple[int, int] = (0, 0)
) -> list[tuple[np.ndarray, float, tuple[int, int, int, int]]]:
    """Outer contours of the 8-connected blobs of ``mask`` that are large enough.

    Returns (contour, area_px2, (x, y, w, h)) sorted by decreasing area; the area counts
    pixels approximately (polygon area through the boundary pixel centres + half the
    perimeter + 1), which is exact enough to rank blobs and drop specks. ``mask`` may be a
    crop of the image at ``offset`` (row, col) with a background margin of at least 1 px
    where it does not reach the image border (findContours treats the array's outermost
    pixels as background): contours and boxes are in image coordinates.
    """
    m8 = mask.view(np.uint8)
    shift = (offset[1], offset[0])  # (x, y)
    contours = () if speckled else cv2.findContours(m8, cv2.RETR_EXTERNAL,
                                                    cv2.CHAIN_APPROX_SIMPLE, offset=shift)[0]
    if speckled or len(contours) > _MANY_CONTOURS:
        # Thousands of specks: keep only regions of MIN_AREA_PX pixels before contouring,
        # so the per-contour work below stays small.
        # Areas by counting the labels of the blob pixels: the same counts as
        # connectedComponentsWithStats, whose statistics cost ten times the labelling.
        n, lab = cv2.connectedComponents(m8, connectivity=8)
        area = np.bincount(lab[m8.view(bool)], minlength=n)
        big = np.nonzero(area[1:] >= MIN_AREA_PX)[0] + 1
        if big.size > MAX_REGIONS:
            return [(np.zeros((1, 1, 2), np.int32), float("inf"), (0, 0, 0, 0))] * (big.size)
        keep = np.zeros(n, np.uint8)
        keep[big] = 1
        contours, _ = cv2.findContours(np.take(keep, lab), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE, offset=shift)
    if not contours:
        return []
    areas = [_area_px2(c) for c in contours]
    limit = max(MIN_AREA_PX, MIN_AREA_FRACTION * max(areas))
    # Boxes of the kept blobs only (most contours of a network's labels are specks).
    return sorted(((c, a, cv2.boundingRect(c)) for c, a in zip(contours, areas, strict=True)
                   if a >= limit), key=lambda b: -b[1])


def _area_px2(contour: np.ndarray) -> float:
    """A blob's area from its outer contour, as :func:`_blobs` ranks and keeps blobs."""
    # A one-point contour (a lone pixel: half the specks of a network's labels) has no area
    # and no length: 1.0, without the two calls.
    if len(contour) == 1:
        return 1.0
    return cv2.contourArea(contour) + 0.5 * cv2.arcLength(contour, True) + 1.0


def largest_region_px2(mask: np.ndarray) -> float:
    """Area (px) of the largest 8-connected region of the boolean (H, W) ``mask``, holes
    filled, as :func:`select_components` measures the regions it ranks and keeps (those under
    ``MIN_AREA_PX`` or ``MIN_AREA_FRACTION`` of this one are passed over); 0.0 for none."""
    contours = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                cv2.CHAIN_APPROX_SIMPLE)[0]
    return max((_area_px2(c) for c in contours), default=0.0)


def _filled(contour: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Hole-filled mask of ``contour`` in the crop ``box`` (row0, col0, row1, col1)."""
    r0, c0, r1, c1 = box
    out = np.zeros((r1 - r0, c1 - c0), np.uint8)
    cv2.drawContours(out, [contour], -1, 1, thickness=cv2.FILLED, offset=(-c0, -r0))
    return out.view(bool)  # 0 or 1: no copy


def _box(rect: tuple[int, int, int, int], margin: int, shape: tuple[int, int]) -> tuple[int, ...]:
    x, y, w, h = rect
    return (
        max(y - margin, 0),
        max(x - margin, 0),
        min(y + h + margin, shape[0]),
        min(x + w + margin, shape[1]),
    )


def wide_gap_px(droplet_area_px2: float) -> int:
    """The widest background gap (px) bridged to a droplet of this area when none lies
    within ``GAP_PX`` of a wire: ``WIDE_GAP_FRACTION`` of its equivalent radius, at least
    ``GAP_PX``."""
    return max(GAP_PX, math.ceil(WIDE_GAP_FRACTION * math.sqrt(droplet_area_px2 / math.pi)))


def _pair(wires: list, drops: list, shape: tuple[int, int],
          wide: bool) -> tuple[int, int] | None:
    """(wire index, droplet index) of the largest droplet within reach of a wire, on the
    largest wire it reaches: within ``GAP_PX``, or (``wide``) within :func:`wide_gap_px`
    of the droplet's area; None when no droplet reaches one."""
    candidates = list(enumerate(drops[:_PAIR_CANDIDATES]))
    areas = [area for _, (_, area, _) in candidates]
    if len(set(areas)) < len(areas):
        # droplets of one area (the contour scan's order, which turning the frame changes,
        # chose among them): the one nearest its wire first, then the scan's order
        def nearest(drop: tuple) -> int:
            return next((k for k in range(1, GAP_PX + 1)
                         if _reached(drop, wires, shape, k) is not None), GAP_PX + 1)

        candidates.sort(key=lambda c: (-c[1][1], nearest(c[1])))
    for di, drop in candidates:
        gap = wide_gap_px(drop[1]) if wide else GAP_PX
        wi = _reached(drop, wires, shape, gap)
        if wi is not None:
            return wi, di
    return None


def _reached(drop: tuple, wires: list, shape: tuple[int, int], gap: int) -> int | None:
    """The index of the first of ``wires`` (largest first) that ``drop`` reaches within
    ``gap`` px, or None."""
    dcont, _, drect = drop
    box = _box(drect, gap + 1, shape)
    near = cv2.dilate(_filled(dcont, box).view(np.uint8), disc(gap)).view(bool)
    for wi, (wcont, _, wrect) in enumerate(wires[:_PAIR_CANDIDATES]):
        wbox = _box(wrect, 0, shape)
        if wbox[0] >= box[2] or wbox[2] <= box[0] or wbox[1] >= box[3] or wbox[3] <= box[1]:
            continue
        if (near & _filled(wcont, box)).any():
            return wi
    return None


def select_components(labels: np.ndarray) -> Selection:
    """Choose the wire and droplet to measure in ``labels`` (uint8 (H, W))."""
    shape = labels.shape
    # Every pixel but background lies in this box; with 1 px of background around it (where
    # the image goes on), the counts and contours below are those of the whole image.
    x, y, w, h = cv2.boundingRect(labels)
    y0, x0 = max(y - 1, 0), max(x - 1, 0)
    objects = labels[y0 : y + h + 1, x0 : x + w + 1]
    # cv2's vectorised compare and count: a third of numpy's cost on a 512x512 frame.
    changes = (cv2.countNonZero(cv2.compare(objects[:, 1:], objects[:, :-1], cv2.CMP_NE))
               + cv2.countNonZero(cv2.compare(objects[1:], objects[:-1], cv2.CMP_NE)))
    pairs = max(labels.shape[0] * (labels.shape[1] - 1) + labels.shape[1] * (labels.shape[0] - 1),
                1)
    if changes > MAX_BOUNDARY_FRACTION * pairs:
        return Selection("fit_failed", f"the label image is noise-like: "
                         f"{100 * changes / pairs:.0f} % of neighbouring pixels differ "
                         f"(> {100 * MAX_BOUNDARY_FRACTION:.0f} %)", "labels_noisy")
    speckled = changes > _SPECKLED_FRACTION * pairs
    wires = _blobs(objects == NANOWIRE, speckled, (y0, x0))
    drops = _blobs(objects == DROPLET, speckled, (y0, x0))
    for name, blobs in (("nanowire", wires), ("droplet", drops)):
        if len(blobs) > MAX_REGIONS:
            return Selection("fit_failed", f"the label image is noise-like: more than "
                             f"{MAX_REGIONS} {name} regions of >= {MIN_AREA_PX} px",
                             "labels_noisy")
    if not wires:
        extra = " (a droplet is present)" if drops else ""
        return Selection("no_wire", f"no nanowire region of at least {MIN_AREA_PX} px{extra}",
                         "no_wire", n_droplets=len(drops))
    if not drops:
        return Selection("no_droplet", f"no droplet region of at least {MIN_AREA_PX} px",
                         "no_droplet", n_droplets=0)
    # The largest droplet that touches a wire, on the largest wire it touches (wires and
    # droplets are sorted by area). Ranking by droplet, not by wire: at high magnification the
    # measured wire can be a short stub smaller than a distant wire with its own small droplet.
    pair = _pair(wires, drops, shape, wide=False)
    wide = pair is None
    if wide:
        pair = _pair(wires, drops, shape, wide=True)
    if pair is None:
        return Selection(
            "droplet_not_on_wire",
            f"no droplet lies within {GAP_PX} px, or {100 * WIDE_GAP_FRACTION:.0f} % of its "
            f"radius, of a nanowire ({len(drops)} droplet(s), {len(wires)} wire(s))",
            "droplet_not_on_wire", n_droplets=len(drops),
        )
    wcont, _, wrect = wires[pair[0]]
    dcont, _, drect = drops[pair[1]]
    bw, bd = _box(wrect, 3, shape), _box(drect, 3, shape)
    box = (min(bw[0], bd[0]), min(bw[1], bd[1]), max(bw[2], bd[2]), max(bw[3], bd[3]))
    crop = labels[box[0] : box[2], box[1] : box[3]]
    # Holes are filled (background or stray specks of the other class), but the main wire's
    # own pixels stay wire, so a ragged interface is not pushed into the wire by the
    # droplet's outer contour.
    outline = _filled(dcont, box)
    wire_outline = _filled(wcont, box)
    droplet = outline & ~(wire_outline & (crop == NANOWIRE))
    wire = wire_outline & ~droplet
    if np.count_nonzero(wire & ~outline) < MIN_AREA_PX:  # all of the wire lies inside the droplet
        wire[:] = False
    if np.count_nonzero(wire) < MIN_AREA_PX:
        return Selection("fit_failed", "the nanowire lies inside the droplet's outline",
                         "wire_inside_droplet", n_droplets=len(drops))
    x, y, w, h = drect
    cut = bool(x == 0 or y == 0 or x + w == shape[1] or y + h == shape[0])
    return Selection(
        None,
        "",
        "ok",
        wire=wire,
        droplet=droplet,
        box=box,
        n_droplets=len(drops),
        droplet_area_px2=float(np.count_nonzero(droplet)),
        droplet_cut=cut,
        max_gap_px=wide_gap_px(drops[pair[1]][1]),
        wide_gap=wide,
        # Polygon moments of the outlines (crop coordinates): centroids and the wire's
        # principal axis at a fraction of the cost of image moments.
        wire_moments=_outline_moments(wcont, box, wire),
        droplet_moments=_outline_moments(dcont, box, droplet),
    )


def _outline_moments(contour: np.ndarray, box: tuple[int, int, int, int],
                     mask: np.ndarray) -> dict:
    """``cv2.moments`` of ``contour`` in the crop ``box``; of the pixels of ``mask`` (crop)
    where the outline encloses no area (a blob one pixel thick: its centroid read as the
    crop's corner turned the facet's normal the wrong way in half of the orientations)."""
    moments = cv2.moments(contour - np.array([box[1], box[0]], np.int32))
    if moments["m00"] < 1.0:
        moments = cv2.moments(mask.astype(np.uint8), binaryImage=True)
    return moments
