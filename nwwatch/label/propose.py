"""The starting geometry of a frame: shapes fitted to the model's labels.

:func:`propose_geometry` turns a predicted label image into a :class:`LabelGeometry` a person
corrects by dragging handles:

- droplet circle: the circle :func:`nwwatch.measure.measure_contact_angle` fits to the
  droplet's free surface; when the measurement gets no circle, or one whose droplet, cut as
  the rasteriser cuts it, does not overlap the model's (:func:`droplet_iou` under
  ``MIN_DROPLET_IOU``: a failed fit can return a circle of radius 10^5 px, or one whose disk
  lies beyond the wire polygon's edge), the measurement's circle fit
  (:func:`nwwatch.measure.circle.robust_fit`) on the droplet outline away from the wire;
  when neither overlaps the model's droplet, that droplet is proposed as a stroke;
- facet line: the measurement's facet when it found one (two draggable end points); given
  the raw frame, measured as the service measures it (the facet line moved onto the frame's
  wire/droplet intensity step where that is clear), so the proposal matches the service's row;
- wire polygon: the main wire's outline simplified by ``cv2.approxPolyDP`` and moved half a
  pixel outwards (the outline runs through the centres of the boundary pixels; the 50 %
  coverage edge lies half a pixel further out); with a facet line, the wire first reaches up
  to it along the base (:func:`close_seam`), so the droplet still sits on the wire where the
  facet was moved off the model's wire (onto the frame's intensity step);
- every other wire or droplet blob of at least :func:`min_blob_area_px` pixels, or of at least
  ``INTERFACE_MIN_AREA_PX`` where it lies near both the main droplet and the main wire (the
  interface): a polygon stroke of its class. The strokes are painted into the saved labels
  (training data), so the model's labels are kept where the contact angle is decided; away
  from the interface a blob under 20 of the model's working pixels is a speck the user would
  otherwise delete stroke by stroke (Undo removes only what the user did).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from nwwatch.classes import DROPLET, NANOWIRE
from nwwatch.label.geometry import Circle, LabelGeometry, Stroke, circle_droplet_mask
from nwwatch.segment.scale import DEFAULT_FRAME_PX

#: approxPolyDP tolerance (px) of the wire polygon and of blob strokes; doubled until the
#: polygon has at most MAX_VERTICES corners (a ragged prediction must stay draggable).
SIMPLIFY_PX = 1.5
MAX_VERTICES = 12
#: Droplet outline points closer than this to the wire are not on the free surface (px).
WIRE_MARGIN_PX = 2
#: How far (px) the wire is grown towards the facet line along the base: the measurement
#: moves the facet up to ``nwwatch.measure.refine.MAX_SHIFT_PX`` (4 px) onto the frame's
#: intensity step, plus one pixel for the labels' own boundary.
SEAM_PX = 5.0
#: ... and how far past the line onto the droplet's side, where the droplet covers it, so the
#: polygon simplification (``SIMPLIFY_PX``) cannot open the seam again.
SEAM_OVERLAP_PX = 2.0
#: Smallest extra blob kept as a stroke, in the model's working pixels: the model sees a frame
#: scaled to ``working_px`` on its long side (``nwwatch.segment.scale``), so a blob of this
#: many working pixels covers this times (long side / working_px)^2 frame pixels.
MIN_BLOB_WORKING_PX = 20
#: Near the interface (within ``INTERFACE_BAND_WORKING_PX`` working pixels of both the main
#: droplet and the main wire) blobs from this many frame pixels are kept, as at every size
#: before the rule above: that is where the labels decide the facet and the triple points.
INTERFACE_MIN_AREA_PX = 20
INTERFACE_BAND_WORKING_PX = 8
#: A droplet circle is proposed only where what it paints overlaps the model's droplet by at
#: least this intersection over union (:func:`droplet_iou`); otherwise the model's droplet
#: blob is proposed as a stroke, as the model drew it.
MIN_DROPLET_IOU = 0.5


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components (8-connectivity): (labels int32 (H, W), areas (n,), 0 = none)."""
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return comp, stats[:, cv2.CC_STAT_AREA].copy() * (np.arange(n) > 0)


def outline_polygon(mask: np.ndarray, simplify_px: float = SIMPLIFY_PX,
                    max_vertices: int = MAX_VERTICES) -> np.ndarray | None:
    """Simplified outer outline of the largest blob of ``mask`` (bool (H, W)), moved half a
    pixel outwards; float64 (N <= max_vertices, 2) (row, col), or None when there is no blob
    of 3+ vertices. The tolerance starts at ``simplify_px`` and doubles until the outline has
    at most ``max_vertices`` corners."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    tolerance = simplify_px
    simple = cv2.approxPolyDP(contour, tolerance, True)
    while len(simple) > max_vertices:
        tolerance *= 2.0
        simple = cv2.approxPolyDP(contour, tolerance, True)
    simple = simple[:, 0, :].astype(np.float64)
    if len(simple) < 3:
        return None
    return _offset(simple, 0.5)[:, ::-1].copy()


def _offset(poly_xy: np.ndarray, distance: float) -> np.ndarray:
    """Move every edge of polygon (N, 2) (x, y) outwards by ``distance`` (miter joins, the
    miter clipped at twice the distance)."""
    x, y = poly_xy[:, 0], poly_xy[:, 1]
    area = 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    d = np.roll(poly_xy, -1, axis=0) - poly_xy
    length = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12)
    normal = np.stack([d[:, 1], -d[:, 0]], axis=1) / length[:, None]  # outward if area > 0
    if area < 0:
        normal = -normal
    n_in, n_out = np.roll(normal, 1, axis=0), normal  # edges ending / starting at vertex
    miter = n_in + n_out
    cos = np.maximum(1.0 + (n_in * n_out).sum(axis=1), 0.5)
    return poly_xy + distance * miter / cos[:, None]


def close_seam(wire: np.ndarray, facet: tuple[tuple[float, float], tuple[float, float]],
               droplet: Circle) -> np.ndarray:
    """``wire`` (bool (H, W)) grown up to the facet line along the base.

    The facet segment ``facet`` ((row, col), (row, col)) ends at the triple points. Pixels
    inside ``droplet``'s disk whose centre projects between the segment's ends and lies from
    ``SEAM_PX`` on the wire's side (the side of the wire pixels near the line) to
    ``SEAM_OVERLAP_PX`` on the droplet's side become wire. The rasterised droplet is the disk
    cut by the facet line, so without this a facet moved off the model's wire leaves a strip
    of background between droplet and wire in the saved labels (a droplet that does not sit
    on the wire: its labels measure ``interface_missing``). Returns a new bool (H, W).
    """
    a, b = (np.asarray(p, dtype=float) for p in facet)
    length = float(np.hypot(*(b - a)))
    if length == 0 or not wire.any():
        return wire
    t = (b - a) / length
    n = np.array([-t[1], t[0]])
    rows, cols = np.indices(wire.shape, dtype=float)
    along = (rows - a[0]) * t[0] + (cols - a[1]) * t[1]
    across = (rows - a[0]) * n[0] + (cols - a[1]) * n[1]
    base = (along >= 0) & (along <= length)
    near = base & (np.abs(across) <= SEAM_PX + 1) & wire
    if not near.any():
        return wire
    if across[near].mean() > 0:  # measure ``across`` positive towards the droplet
        across = -across
    (cr, cc), radius = droplet.center, droplet.radius_px
    disk = (rows - cr) ** 2 + (cols - cc) ** 2 <= radius**2
    seam = base & disk & (across >= -SEAM_PX) & (across <= SEAM_OVERLAP_PX)
    return wire | seam


def working_factor(shape: tuple[int, ...], working_px: int | None) -> float:
    """Frame pixels per model working pixel of a frame of ``shape`` (H, W): long side /
    ``working_px``, at least 1 (smaller frames are not counted in finer pixels; None: 1)."""
    if not working_px:
        return 1.0
    return max(1.0, max(shape[:2]) / float(working_px))


def min_blob_area_px(shape: tuple[int, ...], working_px: int | None = DEFAULT_FRAME_PX) -> int:
    """Smallest extra blob (frame pixels) of a frame of ``shape`` (H, W) proposed as a stroke
    away from the interface: ``MIN_BLOB_WORKING_PX`` x :func:`working_factor` squared (20 px
    up to 512 px frames, 80 at 1024, 320 at 2048, 1280 at 4096 for a 512 px working scale)."""
    return int(round(MIN_BLOB_WORKING_PX * working_factor(shape, working_px) ** 2))


def _interface_zone(drop_mask: np.ndarray, wire_mask: np.ndarray, band_px: float) -> np.ndarray:
    """bool (H, W): pixels within ``band_px`` of both masks (where droplet meets wire)."""
    if not (drop_mask.any() and wire_mask.any()):
        return np.zeros(drop_mask.shape, bool)

    def near(mask: np.ndarray) -> np.ndarray:
        dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
        return dist <= band_px
    return near(drop_mask) & near(wire_mask)


def droplet_iou(geometry: LabelGeometry, drop_mask: np.ndarray) -> float:
    """Intersection over union of the model's droplet (bool (H, W) ``drop_mask``) and the
    droplet ``geometry``'s circle paints, evaluated at pixel centres
    (:func:`nwwatch.label.geometry.circle_droplet_mask`): its disk cut at the facet line as
    the rasteriser cuts it (the explicit facet, else the wire polygon's edge under the
    circle), so a disk that overlaps the model's droplet only where the saved labels cut it
    away does not score that overlap."""
    painted = circle_droplet_mask(geometry)
    inter = np.count_nonzero(painted & drop_mask)
    union = np.count_nonzero(painted | drop_mask)
    return inter / union if union else 0.0


Polygon = tuple[tuple[float, float], ...]


def _wire_shape(wire_mask: np.ndarray,
                facet: tuple[tuple[float, float], tuple[float, float]] | None,
                droplet: Circle | None) -> tuple[np.ndarray, Polygon | None]:
    """The proposed wire: ``wire_mask`` grown up to ``facet`` under ``droplet``
    (:func:`close_seam`) when both are given, and its outline polygon (None without a wire)."""
    if not wire_mask.any():
        return wire_mask, None
    if facet is not None and droplet is not None:
        wire_mask = close_seam(wire_mask, facet, droplet)
    poly = outline_polygon(wire_mask)
    return wire_mask, None if poly is None else tuple(map(tuple, poly.tolist()))


def _free_surface_circle(droplet: np.ndarray, wire: np.ndarray) -> Circle | None:
    from nwwatch.measure.circle import robust_fit

    contours, _ = cv2.findContours(droplet.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    pts = max(contours, key=len)[:, 0, ::-1].astype(np.float64)  # (row, col)
    size = 2 * WIRE_MARGIN_PX + 1
    near = cv2.dilate(wire.astype(np.uint8), np.ones((size, size), np.uint8)).astype(bool)
    h, w = droplet.shape
    r, c = pts[:, 0].astype(int), pts[:, 1].astype(int)
    keep = ~near[r, c] & (r > 0) & (r < h - 1) & (c > 0) & (c < w - 1)
    if keep.sum() < 5:
        return None
    fit, _ = robust_fit(pts[keep])
    if not (fit.converged and math.isfinite(fit.radius)):
        return None
    # The outline runs through boundary pixel centres, half a pixel inside the edge.
    return Circle((float(fit.center[0]), float(fit.center[1])), float(fit.radius) + 0.5)


def propose_geometry(
    labels: np.ndarray,
    droplet_probability: np.ndarray | None = None,
    pixel_size_nm: float | None = None,
    min_area_px: int | None = None,
    image: np.ndarray | None = None,
    working_px: int | None = DEFAULT_FRAME_PX,
) -> LabelGeometry:
    """Geometry fitted to a predicted label image (see the module docstring).

    Parameters
    ----------
    labels : uint8 (H, W), 0 background, 1 nanowire, 2 droplet.
    droplet_probability : float (H, W), optional; passed to the measurement (sub-pixel circle).
    pixel_size_nm : copied into the geometry.
    min_area_px : smaller extra blobs are left out away from the interface; None:
        :func:`min_blob_area_px` of the frame (scaled with the frame).
    image : (H, W), optional; the raw frame the labels came from (not the normalised one),
        passed to the measurement as the service passes it.
    working_px : long side (px) the model segmented the frame at (its ``working_scale``
        ``frame_px``); sets the minimum blob and the interface band in frame pixels.

    Returns
    -------
    LabelGeometry; ``droplet``/``wire`` are None when the model found none.
    """
    from nwwatch.measure import measure_contact_angle

    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    result = measure_contact_angle(labels, droplet_probability, pixel_size_nm, image=image)
    wire_comp, wire_areas = _components(labels == NANOWIRE)
    drop_comp, drop_areas = _components(labels == DROPLET)
    main_drop = int(np.argmax(drop_areas)) if drop_areas.max(initial=0) > 0 else 0
    main_wire = 0
    if wire_areas.max(initial=0) > 0:
        main_wire = int(np.argmax(wire_areas))
        if main_drop:  # the wire the droplet sits on, not merely the largest one
            near = cv2.dilate((drop_comp == main_drop).astype(np.uint8), np.ones((5, 5)))
            touching = np.bincount(wire_comp[near.astype(bool)], minlength=len(wire_areas))
            touching[0] = 0
            if touching.max() > 0:
                main_wire = int(np.argmax(touching))
    wire_mask = wire_comp == main_wire if main_wire else np.zeros(labels.shape, bool)
    drop_mask = drop_comp == main_drop if main_drop else np.zeros(labels.shape, bool)

    facet = None
    if result.facet_row is not None and result.facet_angle_deg is not None:
        half = result.base_half_width_px or 0.5 * (result.wire_width_px or 0.0)
        if half > 0:
            angle = math.radians(result.facet_angle_deg)
            n = np.array([-math.sin(angle), math.cos(angle)])  # (d_row, d_col) along the facet
            p = np.array([result.facet_row, result.facet_col])
            facet = (tuple(map(float, p + half * n)), tuple(map(float, p - half * n)))
    droplet = None
    candidates = []
    if result.circle_center_row is not None and result.droplet_radius_px:
        candidates.append(Circle((result.circle_center_row, result.circle_center_col),
                                 result.droplet_radius_px))
    if main_drop:
        candidates.append(_free_surface_circle(drop_mask, wire_mask))
    for circle in candidates:
        if circle is None:
            continue
        # Scored as it would be saved: its disk cut by the facet line or, without one, by
        # the edge of this wire polygon it sits on. A failed measurement can return a circle
        # that is nearly a line (radius 10^5 px), which would paint the frame droplet, or a
        # circle whose disk overlaps the model's droplet only beyond the polygon's edge,
        # where the rasteriser cuts it away (none of its pixels saved, yet an angle); the
        # model's droplet is then kept as a stroke.
        grown, wire = _wire_shape(wire_mask, facet, circle)
        if droplet_iou(LabelGeometry(labels.shape, circle, wire, facet),
                       drop_mask) >= MIN_DROPLET_IOU:
            droplet = circle
            break
    if droplet is None:
        grown, wire = _wire_shape(wire_mask, facet, None)
    wire_mask = grown

    factor = working_factor(labels.shape, working_px)
    if min_area_px is None:
        min_area_px = min_blob_area_px(labels.shape, working_px)
    zone = _interface_zone(drop_mask, wire_mask, INTERFACE_BAND_WORKING_PX * factor)
    strokes = []
    for class_id, comp, areas, main in ((NANOWIRE, wire_comp, wire_areas, main_wire),
                                        (DROPLET, drop_comp, drop_areas, main_drop)):
        small = np.nonzero((areas >= min(INTERFACE_MIN_AREA_PX, min_area_px))
                           & (areas < min_area_px))[0]
        at_interface = set(np.unique(comp[zone & np.isin(comp, small)]).tolist())
        for k in np.nonzero(areas >= min(INTERFACE_MIN_AREA_PX, min_area_px))[0]:
            if k == main and (class_id == NANOWIRE or droplet is not None):
                continue
            if areas[k] < min_area_px and k not in at_interface:
                continue
            poly = outline_polygon(comp == k)
            if poly is not None:
                strokes.append(Stroke(class_id, tuple(map(tuple, poly.tolist()))))
    return LabelGeometry(
        labels.shape, droplet, wire, facet, tuple(strokes), pixel_size_nm,
        {"proposal": {"status": result.status, "contact_angle_deg": result.contact_angle_deg}},
    )
