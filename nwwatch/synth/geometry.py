"""3D geometry of a nanowire with its droplet, projected along the beam (the z axis).

Coordinates are image pixels in the (row, col) convention with **integer indices at pixel
centres** (pixel (r, c) covers [r-0.5, r+0.5] x [c-0.5, c+0.5]); z points along the beam and
is measured in pixels too. Every function evaluates at arbitrary points (any broadcastable
``rows``/``cols`` arrays), so the renderer (supersampled grid) and the label rasteriser (fine
sub-samples of boundary pixels) share one exact model.

Wire frame of reference: ``u`` is the in-plane growth direction (from the wire towards its
droplet), ``n`` is ``u`` turned 90 degrees counter-clockwise *on screen*, i.e. it points to the
**left as seen looking from the wire towards the droplet**. For a point, ``y`` is its coordinate
along ``u`` and ``x`` along ``n``, both relative to the projected facet centre. The wire axis in
3D is ``cos(tilt) u + sin(tilt) z``: the tilt is a rotation about ``n``.

Real wires are not the textbook cylinder: the facet may be inclined in the image plane (its
normal ``m = cos(b) u + sin(b) n``, ``b = facet_incline_deg``, the facet line direction
``e = -sin(b) u + cos(b) n``), the side walls may flare, taper or step (the radius is a function
of the depth below the facet centre), and the droplet's base half-width may differ from the
wire's radius. For an untilted wire the facet plane contains the beam direction, so the
projected angle between the facet line and the droplet outline is the true contact angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WireSpec:
    """A cylindrical wire, optionally capped by a spherical-cap droplet on its top facet.

    Lengths in pixels, angles in degrees. ``axis_deg`` is the growth direction measured
    counter-clockwise from +col as seen on screen: ``atan2(-d_row, d_col)``.
    ``truncation_px`` cuts the top corner of the wire by a 45-degree cone of that height; the
    cut is filled with liquid (it belongs to the droplet). ``theta_deg`` None: bare wire.

    Real geometry (defaults give the textbook cylinder): ``facet_incline_deg`` turns the facet
    plane about the beam direction (counter-clockwise on screen, the normal from ``u``
    towards ``n``); ``droplet_base_px`` is the droplet's base half-width on the facet (None:
    ``radius_px``); the wire radius at depth ``d`` px below the facet centre is
    ``radius_px + flare * d`` plus ``step_px`` below ``step_depth_px`` (``flare`` > 0 widens
    towards the base, < 0 tapers; never below a quarter of ``radius_px``). An inclined facet
    or a base other than the wire radius needs ``tilt_deg == 0``.
    """

    facet_row: float
    facet_col: float
    axis_deg: float
    radius_px: float
    tilt_deg: float = 0.0
    truncation_px: float = 0.0
    length_px: float = 1.0e6
    theta_deg: float | None = None
    facet_incline_deg: float = 0.0
    droplet_base_px: float | None = None
    flare: float = 0.0
    step_depth_px: float = 0.0
    step_px: float = 0.0

    def __post_init__(self) -> None:
        if self.tilt_deg != 0.0 and (self.facet_incline_deg != 0.0 or (
                self.droplet_base_px is not None and self.droplet_base_px != self.radius_px)):
            raise ValueError("WireSpec: an inclined facet or a droplet base other than the "
                             "wire radius is only modelled for tilt_deg == 0")
        if abs(self.facet_incline_deg) >= 80.0:
            raise ValueError(f"WireSpec: facet_incline_deg must be in (-80, 80), "
                             f"got {self.facet_incline_deg}")
        if self.droplet_base_px is not None and not self.droplet_base_px > 0:
            raise ValueError(f"WireSpec: droplet_base_px must be > 0, got {self.droplet_base_px}")

    @property
    def base_px(self) -> float:
        """Half-width of the droplet's base on the facet (px)."""
        return self.radius_px if self.droplet_base_px is None else float(self.droplet_base_px)

    def radius_at(self, depth: np.ndarray) -> np.ndarray:
        """Wire radius (px) at ``depth`` px below the facet centre along the axis."""
        d = np.maximum(depth, 0.0)
        r = self.radius_px + self.flare * d
        if self.step_px != 0.0 and self.step_depth_px > 0.0:
            r = r + self.step_px * (d >= self.step_depth_px)
        return np.maximum(r, 0.25 * self.radius_px).astype(np.result_type(depth, np.float32),
                                                            copy=False)


@dataclass(frozen=True)
class SphereSpec:
    """A free liquid sphere (a droplet lying on the support), centre (row, col), radius in px."""

    row: float
    col: float
    radius_px: float


@dataclass(frozen=True)
class DropletGeometry:
    """Exact droplet truth of a :class:`WireSpec` (pixels, degrees, (row, col) convention).

    ``centre`` is the projected centre of the droplet's circle outline; ``left``/``right`` are
    the projected triple points, where the droplet outline meets the wire's silhouette, left
    and right as seen looking from the wire towards the droplet. ``theta_apparent_deg`` is what
    a perfect measurement of the projection gives: the fitted circle (``centre``, ``radius_px``)
    and the facet line through the two triple points, ``cos(theta) = -s/R``.
    """

    theta_deg: float
    theta_apparent_deg: float
    a_px: float
    h_px: float
    radius_px: float
    centre: tuple[float, float]
    left: tuple[float, float]
    right: tuple[float, float]
    facet: tuple[float, float]
    volume_px3: float


def axis_vectors(axis_deg: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Unit vectors ``u`` (growth direction) and ``n`` (its left) as (d_row, d_col) pairs."""
    angle = math.radians(axis_deg)
    d_row, d_col = -math.sin(angle), math.cos(angle)
    # Turning (d_row, d_col) 90 degrees counter-clockwise on screen (row axis down).
    return (d_row, d_col), (-d_col, d_row)


def facet_vectors(wire: WireSpec) -> tuple[tuple[float, float], tuple[float, float]]:
    """Facet normal ``m`` (into the droplet) and facet line direction ``e`` (towards the left
    triple point) as (d_row, d_col) pairs; ``m = u`` and ``e = n`` for a straight facet."""
    (u_r, u_c), (n_r, n_c) = axis_vectors(wire.axis_deg)
    b = math.radians(wire.facet_incline_deg)
    cb, sb = math.cos(b), math.sin(b)
    return (cb * u_r + sb * n_r, cb * u_c + sb * n_c), (-sb * u_r + cb * n_r, -sb * u_c + cb * n_c)


def droplet_geometry(wire: WireSpec) -> DropletGeometry:
    """Exact contact-angle truth of the droplet sitting on ``wire`` (needs ``theta_deg``).

    Base half-width ``a`` = wire radius (the droplet is pinned at the facet edge),
    ``R = a / sin(theta)``, sphere centre at signed height ``s = -R cos(theta)`` above the
    facet plane. In projection the sphere outline is a circle of radius ``R`` centred at
    ``s cos(tilt)`` along ``u``. For theta >= 90 deg that circle meets the wire silhouette at
    ``y = -s (1 - cos tilt)``, which keeps the apparent angle equal to theta; for theta < 90 deg
    the outline reaches the wire along the rim of the facet, at ``y = 0``, and the apparent
    angle is ``acos(cos(theta) cos(tilt))``. An untilted wire (any facet inclination, base
    half-width ``a = droplet_base_px``) has ``u``, ``n`` replaced by the facet normal and line
    direction (:func:`facet_vectors`) and the apparent angle equals theta.
    """
    if wire.theta_deg is None:
        raise ValueError("droplet_geometry: the wire has no droplet (theta_deg is None)")
    theta = math.radians(wire.theta_deg)
    tilt = math.radians(wire.tilt_deg)
    a = wire.base_px
    radius = a / math.sin(theta)
    s = -radius * math.cos(theta)
    (d_row, d_col), (l_row, l_col) = facet_vectors(wire)
    y_centre = s * math.cos(tilt)
    y_triple = -s * (1.0 - math.cos(tilt)) if s >= 0 else 0.0
    cos_app = -(y_centre - y_triple) / radius
    theta_app = math.degrees(math.acos(max(-1.0, min(1.0, cos_app))))
    fr, fc = wire.facet_row, wire.facet_col

    def point(y: float, x: float) -> tuple[float, float]:
        return (fr + y * d_row + x * l_row, fc + y * d_col + x * l_col)

    h = radius * (1.0 - math.cos(theta))
    c = math.cos(theta)
    volume = math.pi * a**3 / 3.0 * (2.0 - 3.0 * c + c**3) / math.sin(theta) ** 3
    return DropletGeometry(
        theta_deg=float(wire.theta_deg),
        theta_apparent_deg=theta_app,
        a_px=a,
        h_px=h,
        radius_px=radius,
        centre=point(y_centre, 0.0),
        left=point(y_triple, a),
        right=point(y_triple, -a),
        facet=(fr, fc),
        volume_px3=volume,
    )


def wire_chords(
    wire: WireSpec, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projected thicknesses (px) of a wire and its droplet at points (rows, cols).

    Returns ``(solid, cap, shell)``: the chord through the solid wire, through the droplet's
    spherical cap, and through the liquid filling the truncated corner. Arrays broadcast
    from ``rows`` and ``cols``; dtype follows them (float32 grids stay float32).

    Untilted wires are exact for any profile and facet inclination (the rays are
    perpendicular to the axis). A tilted wire with a flared or stepped profile uses the
    radius at the ray's projected depth (exact for the cylinder).
    """
    (d_row, d_col), (l_row, l_col) = axis_vectors(wire.axis_deg)
    dr = rows - wire.facet_row
    dc = cols - wire.facet_col
    y = dr * d_row + dc * d_col
    x = dr * l_row + dc * l_col
    tilt = math.radians(wire.tilt_deg)
    c_t, s_t = math.cos(tilt), math.sin(tilt)
    profiled = wire.flare != 0.0 or wire.step_px != 0.0
    r = wire.radius_at(-y / c_t) if profiled else wire.radius_px
    q = np.sqrt(np.maximum(r * r - x * x, 0.0))
    if wire.facet_incline_deg != 0.0:
        (m_row, m_col), (e_row, e_col) = facet_vectors(wire)
        height = dr * m_row + dc * m_col  # signed distance above the facet plane
        lateral = dr * e_row + dc * e_col
    else:
        height, lateral = y, x
    if s_t > 0:
        # The ray (fixed y, x; free z) is inside the infinite cylinder for z in [z1, z2];
        # heights y cos + z sin between -length and 0 (the top facet).
        z1 = (y * s_t - q) / c_t
        z2 = (y * s_t + q) / c_t
        z_top = -y * (c_t / s_t)
        z_bottom = (-wire.length_px - y * c_t) / s_t
        chord = np.maximum(np.minimum(z2, z_top) - np.maximum(z1, z_bottom), 0.0)
    else:
        chord = np.where((height <= 0) & (y >= -wire.length_px), 2.0 * q, 0.0)
    c = wire.truncation_px
    if c > 0:
        # 45-degree cone over the top `c` pixels; heights approximated by the distance
        # below the facet plane (tilt <= 10 deg).
        r_solid = r - np.clip(height + c, 0.0, c)
        q_solid = np.sqrt(np.maximum(r_solid * r_solid - x * x, 0.0))
        fraction = np.where(q > 0, q_solid / np.where(q > 0, q, 1.0), 0.0)
        solid = chord * fraction
        shell = chord - solid
    else:
        solid = chord
        shell = np.zeros_like(chord)
    if wire.theta_deg is None:
        return solid, np.zeros_like(chord), shell
    theta = math.radians(wire.theta_deg)
    radius = wire.base_px / math.sin(theta)
    s = -radius * math.cos(theta)
    w2 = radius * radius - (height - s * c_t) ** 2 - lateral * lateral
    w = np.sqrt(np.maximum(w2, 0.0))
    if s_t > 0:
        z_low = np.maximum(s * s_t - w, -y * (c_t / s_t))
        cap = np.where(w2 > 0, np.maximum(s * s_t + w - z_low, 0.0), 0.0)
    else:
        cap = np.where(height >= 0, 2.0 * w, 0.0)
    return solid, cap.astype(chord.dtype, copy=False), shell.astype(chord.dtype, copy=False)


def sphere_chord(sphere: SphereSpec, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Projected thickness (px) of a sphere at points (rows, cols)."""
    w2 = sphere.radius_px**2 - (rows - sphere.row) ** 2 - (cols - sphere.col) ** 2
    return 2.0 * np.sqrt(np.maximum(w2, 0.0))


Scene = tuple[WireSpec | SphereSpec, ...]


@dataclass
class Projection:
    """Projected thickness (px) of all objects and their class membership at some points."""

    solid: np.ndarray
    liquid: np.ndarray
    wire: np.ndarray  # bool: the ray meets solid wire
    droplet: np.ndarray  # bool: the ray meets a droplet (cap, sphere, or filled truncation)


def project_scene(scene: Scene, rows: np.ndarray, cols: np.ndarray) -> Projection:
    """Sum the chords of every object of ``scene`` at points (rows, cols).

    A ray through both a droplet's cap and a wire counts as droplet (the label rule
    "droplet over wire"); the liquid in a truncated corner counts as droplet only where the
    ray misses the solid, so the solid core under it stays wire.
    """
    shape = np.broadcast_shapes(np.shape(rows), np.shape(cols))
    dtype = np.result_type(rows, cols, np.float32)
    solid = np.zeros(shape, dtype)
    liquid = np.zeros(shape, dtype)
    wire_mask = np.zeros(shape, bool)
    drop_mask = np.zeros(shape, bool)
    for obj in scene:
        if isinstance(obj, WireSpec):
            s, cap, shell = wire_chords(obj, rows, cols)
            solid += s
            liquid += cap + shell
            has_solid = s > 0
            wire_mask |= has_solid
            drop_mask |= (cap > 0) | ((shell > 0) & ~has_solid)
        else:
            t = sphere_chord(obj, rows, cols)
            liquid += t
            drop_mask |= t > 0
    return Projection(solid=solid, liquid=liquid, wire=wire_mask, droplet=drop_mask)
