"""3D connected components (``scipy.ndimage.label``) and the small-component cleanup."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Face-connected (6 neighbours) or fully connected (26 neighbours) voxels.
CONNECTIVITIES = (6, 26)


def label_volume(mask: np.ndarray, connectivity: int = 6) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary volume.

    Parameters
    ----------
    mask : bool or 0/1 ndarray (Z, Y, X)
    connectivity : 6 (voxels sharing a face) or 26 (sharing a face, an edge or a corner)

    Returns
    -------
    labels : int32 ndarray (Z, Y, X), 0 outside ``mask``, components numbered 1..count.
    count : int
    """
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity}")
    solid = np.asarray(mask).astype(bool, copy=False)
    if solid.ndim != 3:
        raise ValueError(f"mask must be a 3D (Z, Y, X) array, got shape {solid.shape}")
    structure = ndi.generate_binary_structure(3, 1 if connectivity == 6 else 3)
    labels = np.zeros(solid.shape, dtype=np.int32)
    count = ndi.label(solid, structure=structure, output=labels)
    return labels, int(count)


def component_sizes(labels: np.ndarray, count: int) -> np.ndarray:
    """int64 (count + 1,) voxel count of each label; entry 0 counts the background."""
    return np.bincount(labels.ravel(), minlength=count + 1)


def remove_small_components(
    mask: np.ndarray, min_voxels: int, *, connectivity: int = 26
) -> np.ndarray:
    """Drop the connected components of ``mask`` smaller than ``min_voxels`` voxels.

    Parameters
    ----------
    mask : bool or 0/1 ndarray (Z, Y, X)
    min_voxels : components with fewer voxels are removed (0 or 1 keeps everything)
    connectivity : 6 or 26

    Returns
    -------
    bool ndarray (Z, Y, X)
    """
    solid = np.asarray(mask).astype(bool, copy=False)
    if min_voxels <= 1 or not solid.any():
        return solid.copy()
    labels, count = label_volume(solid, connectivity)
    keep = component_sizes(labels, count) >= min_voxels
    keep[0] = False
    return keep[labels]
