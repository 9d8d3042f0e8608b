"""Volume metrics of a segmented tomogram: solid fraction, porosity, surface, pore sizes.

Definitions (all on the voxel grid; ``mask`` is 1 solid, 0 pore or vacuum):

- **grain envelope**: the solid after a morphological closing with a ball of radius
  ``envelope_radius_px`` (bridges the mouths of surface pores narrower than about twice that
  radius), with every cavity not connected to the volume's border filled. Vacuum around the
  grain is outside it; pores are the non-solid voxels inside it. Outside the volume counts as
  vacuum (a crop from inside a grain is sealed along its faces by the closing). Voxels
  without data (``valid`` False: NaN, infinite, a constant fill) are vacuum to the closing,
  as outside the volume is, and are then left out of the envelope: neither grain nor pore.
- **porosity_envelope** = pore voxels / envelope voxels: the porosity a materials scientist
  means. **porosity_volume** = non-solid voxels / all voxels (pores and vacuum), i.e.
  ``1 - solid_fraction``.
- **surface area**: area of the marching-cubes iso-surface (level 0.5) of the mask - the
  solid/pore and solid/vacuum interface inside the volume, not the volume's own faces nor
  where the solid meets voxels without data (``valid``: the padding of an aligned
  reconstruction cuts the grain as a face does). On
  binary masks marching cubes overestimates smooth surfaces (a digital sphere: about +8 %).
  **specific surface area** = surface area / solid volume (px^-1, nm^-1).
- **pore count**: face-connected (6-neighbour) components of the pore space; a region
  without data cuts a pore as a face does (a pore crossed by NaN slices counts as its pieces).
  **largest_pore_fraction**: share of the pore volume in the largest one (1 = one open network).
- **pore diameters**: maximal-ball diameters on the pore's medial axis. The exact Euclidean
  distance transform of the pore space (distance from each pore voxel to the centre of the
  nearest solid or outside-envelope voxel with data; voxels without data bound no pore) is
  taken at its local maxima (26-neighbourhood; a ball centred where there is no data is not
  seen), the centres of the largest inscribed balls, and doubled. A slit ``w`` voxels wide (``w``
  odd) gives ``w + 1``; a digital ball of radius ``R`` gives about ``2 R + 2 / R``.
  Summarised as mean, median, 10th and 90th percentile.

Lengths in voxels are ``*_px`` (areas ``*_px2``, volumes ``*_px3``), in nanometres ``*_nm``;
the nm columns are null when the voxel size is unknown. Anisotropic voxels are handled: the
nm surface and distances are recomputed with the real spacing (sizes equal to within 0.1 %
count as cubic: a float32 pixel size binned, a calibration's rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pyarrow as pa

from nwwatch.volume.edt import distance_transform_edt_sq
from nwwatch.volume.labeling import component_sizes, label_volume
from nwwatch.volume.nodata import count_with_data
from nwwatch.volume.surface import surface_area

#: Bumped whenever a metric's definition or algorithm changes the numbers (3: the surface
#: leaves out where the solid meets voxels without data; 4: so do the envelope, the pores and
#: their diameters).
VOLUME_METRICS_VERSION = "4"

#: Default closing radius (voxels) of the grain envelope.
DEFAULT_ENVELOPE_RADIUS_PX = 10.0
#: Voxels of the Z slabs (before their margins) in which the envelope's closing is computed:
#: its distances only matter up to the radius, so slabs with that margin give the closing of
#: the whole volume exactly, with the distance transform of one slab in memory at a time.
ENVELOPE_SLAB_VOXELS = 1 << 24

_F64 = pa.float64()
_I64 = pa.int64()

#: The metric columns of a volume row, in order; ``VolumeMetrics.as_row()`` uses these keys.
VOLUME_METRIC_FIELDS: list[pa.Field] = [
    pa.field("size_z_px", _I64),
    pa.field("size_y_px", _I64),
    pa.field("size_x_px", _I64),
    pa.field("voxel_size_z_nm", _F64),
    pa.field("voxel_size_y_nm", _F64),
    pa.field("voxel_size_x_nm", _F64),
    pa.field("solid_volume_px3", _I64),
    pa.field("envelope_volume_px3", _I64),
    pa.field("pore_volume_px3", _I64),
    pa.field("solid_volume_nm3", _F64),
    pa.field("envelope_volume_nm3", _F64),
    pa.field("solid_fraction", _F64),
    pa.field("porosity_volume", _F64),
    pa.field("porosity_envelope", _F64),
    pa.field("surface_area_px2", _F64),
    pa.field("surface_area_nm2", _F64),
    pa.field("specific_surface_area_per_px", _F64),
    pa.field("specific_surface_area_per_nm", _F64),
    pa.field("pore_count", _I64),
    pa.field("largest_pore_fraction", _F64),
    pa.field("pore_diameter_mean_px", _F64),
    pa.field("pore_diameter_median_px", _F64),
    pa.field("pore_diameter_p10_px", _F64),
    pa.field("pore_diameter_p90_px", _F64),
    pa.field("pore_diameter_mean_nm", _F64),
    pa.field("pore_diameter_median_nm", _F64),
    pa.field("pore_diameter_p10_nm", _F64),
    pa.field("pore_diameter_p90_nm", _F64),
    pa.field("envelope_radius_px", _F64),
]


@dataclass(frozen=True)
class VolumeMetrics:
    """Metrics of one segmented volume; see the module docstring for the definitions.

    Floats are ``nan`` where undefined (no voxel size, no pore, empty envelope); ``as_row``
    turns them into nulls.
    """

    size_z_px: int
    size_y_px: int
    size_x_px: int
    voxel_size_z_nm: float
    voxel_size_y_nm: float
    voxel_size_x_nm: float
    solid_volume_px3: int
    envelope_volume_px3: int
    pore_volume_px3: int
    solid_volume_nm3: float
    envelope_volume_nm3: float
    solid_fraction: float
    porosity_volume: float
    porosity_envelope: float
    surface_area_px2: float
    surface_area_nm2: float
    specific_surface_area_per_px: float
    specific_surface_area_per_nm: float
    pore_count: int
    largest_pore_fraction: float
    pore_diameter_mean_px: float
    pore_diameter_median_px: float
    pore_diameter_p10_px: float
    pore_diameter_p90_px: float
    pore_diameter_mean_nm: float
    pore_diameter_median_nm: float
    pore_diameter_p10_nm: float
    pore_diameter_p90_nm: float
    envelope_radius_px: float

    def as_row(self) -> dict[str, int | float | None]:
        """The metric columns of a volume row: keys are the names of VOLUME_METRIC_FIELDS."""
        row: dict[str, int | float | None] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            row[key] = value
        return row


def _voxel_size(voxel_size_nm: float | tuple[float, float, float] | None):
    if voxel_size_nm is None:
        return None
    if np.ndim(voxel_size_nm) == 0:
        sizes = (float(voxel_size_nm),) * 3  # type: ignore[arg-type]
    else:
        sizes = tuple(float(v) for v in voxel_size_nm)  # type: ignore[union-attr]
    if len(sizes) != 3 or not all(math.isfinite(v) and v > 0 for v in sizes):
        raise ValueError(
            f"voxel_size_nm must be one positive number or (z, y, x), got {voxel_size_nm}"
        )
    return sizes


def voxels_with_data(volume: np.ndarray) -> np.ndarray | None:
    """bool (Z, Y, X): the voxels of ``volume`` with data (finite), for
    :func:`volume_metrics`'s ``valid``; None when every voxel has data (an integer volume, or
    a float one without NaN or infinity), so that such volumes hold no copy. A constant fill
    counts as no data once :func:`nwwatch.volume.fill.without_constant_fill` made it NaN."""
    data = np.asarray(volume)
    if count_with_data(data) == data.size:  # slice by slice: no mask to find there is none
        return None
    return np.isfinite(data)


def _fill_cavities(closed: np.ndarray) -> np.ndarray:
    """``closed`` plus every non-closed region that does not touch the volume's border."""
    outside, count = label_volume(~closed, connectivity=6)
    if count == 0:
        return closed.copy()
    border = np.zeros(count + 1, dtype=bool)
    for face in (outside[0], outside[-1], outside[:, 0], outside[:, -1],
                 outside[:, :, 0], outside[:, :, -1]):
        border[np.unique(face)] = True
    border[0] = True  # label 0 is `closed` itself
    return closed | ~border[outside]


def grain_envelope(solid: np.ndarray, radius_px: float = DEFAULT_ENVELOPE_RADIUS_PX,
                   heartbeat: Callable[[], None] | None = None) -> np.ndarray:
    """The grain envelope: closing of the solid by a ball, cavities filled.

    Parameters
    ----------
    solid : bool ndarray (Z, Y, X)
    radius_px : closing radius in voxels (0 skips the closing; cavities are still filled)
    heartbeat : called after every Z slab of the closing (a watchdog's ping)

    Returns
    -------
    bool ndarray (Z, Y, X), a superset of ``solid``. Outside the volume counts as vacuum, so
    a grain near the border is not glued to it, and a crop from inside a grain is sealed along
    its faces wherever the solid there has gaps narrower than about ``2 * radius_px``.
    """
    solid = np.asarray(solid, dtype=bool)
    if not solid.any():
        return np.zeros(solid.shape, dtype=bool)
    if radius_px > 0:
        pad = int(np.ceil(radius_px)) + 1
        padded = np.pad(solid, pad)
        dilated = _within_radius(~padded, radius_px, pad, heartbeat)
        del padded
        closed = ~_within_radius(dilated, radius_px, pad, heartbeat)
        closed = closed[pad:-pad, pad:-pad, pad:-pad]
    else:
        closed = solid
    return _fill_cavities(closed)


def _within_radius(foreground: np.ndarray, radius_px: float, margin: int,
                   heartbeat: Callable[[], None] | None = None) -> np.ndarray:
    """bool (Z, Y, X): the ``foreground`` voxels whose squared distance to the nearest
    other voxel is at most ``radius_px``², plus every other voxel; computed in Z slabs with
    ``margin`` >= ``radius_px`` slices either side (nearer voxels lie within them)."""
    depth, height, width = foreground.shape
    step = max(1, ENVELOPE_SLAB_VOXELS // max(1, height * width))
    out = np.empty(foreground.shape, dtype=bool)
    r2 = radius_px * radius_px
    for start in range(0, depth, step):
        stop = min(depth, start + step)
        low, high = max(0, start - margin), min(depth, stop + margin)
        distance = distance_transform_edt_sq(foreground[low:high], max_distance=radius_px)
        out[start:stop] = distance[start - low:stop - low] <= r2
        if heartbeat is not None:
            heartbeat()
    return out


def _medial_diameters(distance_sq: np.ndarray, pore: np.ndarray,
                      seen: np.ndarray | None = None) -> np.ndarray:
    """2 x distance at the pore voxels that are local maxima of the distance (26 neighbours)
    among the ``seen`` voxels (default: the pore; also the voxels without data, so that a
    voxel beside them is no maximum only because its neighbour's data is missing)."""
    d = distance_sq.astype(np.float32)  # not np.where's float64 copy first: 8 bytes a voxel
    d[~(pore if seen is None else seen)] = 0.0
    kernel = np.ones((3, 3), dtype=np.uint8)
    planar = np.stack([cv2.dilate(plane, kernel) for plane in d])
    neighbourhood = planar.copy()
    np.maximum(neighbourhood[1:], planar[:-1], out=neighbourhood[1:])
    np.maximum(neighbourhood[:-1], planar[1:], out=neighbourhood[:-1])
    ridge = pore & (d >= neighbourhood)
    return 2.0 * np.sqrt(distance_sq[ridge])


def _summary(diameters: np.ndarray) -> tuple[float, float, float, float]:
    if diameters.size == 0:
        return (math.nan,) * 4
    p10, median, p90 = np.percentile(diameters, [10, 50, 90])
    return float(diameters.mean()), float(median), float(p10), float(p90)


def volume_metrics(
    mask: np.ndarray,
    voxel_size_nm: float | tuple[float, float, float] | None = None,
    *,
    envelope_radius_px: float = DEFAULT_ENVELOPE_RADIUS_PX,
    heartbeat: Callable[[], None] | None = None,
    valid: np.ndarray | None = None,
) -> VolumeMetrics:
    """Measure a segmented tomogram.

    Parameters
    ----------
    mask : uint8 or bool ndarray (Z, Y, X), 1 (True) solid, 0 pore or vacuum.
    voxel_size_nm : one number (cubic voxels) or (z, y, x) in nm, optional.
    envelope_radius_px : closing radius of the grain envelope, voxels (see module docstring).
    heartbeat : called between the stages and the envelope's slabs, so that a caller with a
        watchdog (the service) is not taken for hung while a large volume is measured.
    valid : bool ndarray of the mask's shape, the voxels with data (not NaN, infinite or a
        constant fill); the others are in neither the envelope nor the pore space (porosity,
        pore count and diameters), and the surface area leaves out where the solid meets
        them. None: every voxel has data.

    Returns
    -------
    VolumeMetrics. A 256^3 volume takes a few seconds on two CPU cores.
    """
    array = np.asarray(mask)
    if array.ndim != 3 or min(array.shape) == 0:
        raise ValueError(f"mask must be a non-empty 3D (Z, Y, X) array, got shape {array.shape}")
    if array.dtype != bool and not np.isin(np.unique(array), (0, 1)).all():
        raise ValueError("mask must hold only 0 (pore or vacuum) and 1 (solid)")
    if not (math.isfinite(envelope_radius_px) and envelope_radius_px >= 0):
        raise ValueError(f"envelope_radius_px must be >= 0, got {envelope_radius_px}")
    sizes_nm = _voxel_size(voxel_size_nm)
    if valid is not None and np.shape(valid) != array.shape:
        raise ValueError(f"valid {np.shape(valid)} must have the mask's shape {array.shape}")
    solid = np.ascontiguousarray(array.astype(bool, copy=False))

    beat = heartbeat if heartbeat is not None else (lambda: None)
    envelope = grain_envelope(solid, envelope_radius_px, heartbeat)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        # A voxel without data is neither grain nor pore: it is only measured where the
        # closing saw it as vacuum, as it sees outside the volume.
        envelope &= valid
    pore = envelope & ~solid
    n_total = solid.size
    n_solid = int(np.count_nonzero(solid))
    n_envelope = int(np.count_nonzero(envelope))
    n_pore = int(np.count_nonzero(pore))
    # The distance transform's foreground: the pore and the voxels without data, which bound
    # no pore (what lies there is unknown; as NaN slices through a grain, they would make the
    # pore voxels beside them 1-voxel balls: p90 diameter 4.0 for 4.47 without the cut).
    if valid is None:
        edt_foreground = pore
    else:
        edt_foreground = ~valid
        edt_foreground |= pore

    area_px2 = surface_area(solid, valid=valid)
    beat()
    labels, pore_count = label_volume(pore, connectivity=6)
    largest = (float(component_sizes(labels, pore_count)[1:].max() / n_pore)
               if pore_count else math.nan)
    del labels
    beat()
    distance_sq = distance_transform_edt_sq(edt_foreground) if n_pore else None
    beat()
    diameters_px = (_medial_diameters(distance_sq, pore, edt_foreground)
                    if distance_sq is not None else np.zeros(0))
    del distance_sq  # before the anisotropic distances below: one of them at a time
    beat()

    nan = math.nan
    nm = dict.fromkeys(
        ("voxel_volume", "area", "mean", "median", "p10", "p90"), nan
    )
    if sizes_nm is not None:
        nm["voxel_volume"] = sizes_nm[0] * sizes_nm[1] * sizes_nm[2]
        if max(sizes_nm) - min(sizes_nm) <= 1e-3 * max(sizes_nm):
            # cubic, also to within 0.1 %, far below any calibration's accuracy (an MRC's
            # float32 pixel size binned, 0.43400004 against 0.434, took the anisotropic ridge,
            # which breaks the grid's ties on plateaus: a fifth of the ridge gone, p90
            # diameter -29 %)
            step = sum(sizes_nm) / 3.0
            nm["area"] = area_px2 * step * step
            diameters_nm = diameters_px * step
        else:
            nm["area"] = surface_area(solid, sizes_nm, valid)
            diameters_nm = (_medial_diameters(distance_transform_edt_sq(edt_foreground,
                                                                        sizes_nm),
                                              pore, edt_foreground)
                            if n_pore else np.zeros(0))
        nm["mean"], nm["median"], nm["p10"], nm["p90"] = _summary(diameters_nm)
    mean_px, median_px, p10_px, p90_px = _summary(diameters_px)
    solid_nm3 = n_solid * nm["voxel_volume"]
    return VolumeMetrics(
        size_z_px=int(solid.shape[0]),
        size_y_px=int(solid.shape[1]),
        size_x_px=int(solid.shape[2]),
        voxel_size_z_nm=sizes_nm[0] if sizes_nm else nan,
        voxel_size_y_nm=sizes_nm[1] if sizes_nm else nan,
        voxel_size_x_nm=sizes_nm[2] if sizes_nm else nan,
        solid_volume_px3=n_solid,
        envelope_volume_px3=n_envelope,
        pore_volume_px3=n_pore,
        solid_volume_nm3=solid_nm3,
        envelope_volume_nm3=n_envelope * nm["voxel_volume"],
        solid_fraction=n_solid / n_total,
        porosity_volume=1.0 - n_solid / n_total,
        porosity_envelope=n_pore / n_envelope if n_envelope else nan,
        surface_area_px2=area_px2,
        surface_area_nm2=nm["area"],
        specific_surface_area_per_px=area_px2 / n_solid if n_solid else nan,
        specific_surface_area_per_nm=nm["area"] / solid_nm3 if n_solid else nan,
        pore_count=int(pore_count),
        largest_pore_fraction=largest,
        pore_diameter_mean_px=mean_px,
        pore_diameter_median_px=median_px,
        pore_diameter_p10_px=p10_px,
        pore_diameter_p90_px=p90_px,
        pore_diameter_mean_nm=nm["mean"],
        pore_diameter_median_nm=nm["median"],
        pore_diameter_p10_nm=nm["p10"],
        pore_diameter_p90_nm=nm["p90"],
        envelope_radius_px=float(envelope_radius_px),
    )

