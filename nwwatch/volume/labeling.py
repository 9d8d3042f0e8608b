"""3D connected components without scipy: OpenCV labels each slice, union-find joins slices.

``cv2.connectedComponents`` is 2D only. Each (Y, X) slice is labelled in C, the labels are
made unique across slices, and the pairs of 2D components that touch between neighbouring
slices become edges of a small graph (one node per 2D component) whose components a
vectorised union-find resolves. Work in Python is proportional to the number of 2D
components, not voxels.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Face-connected (6 neighbours) or fully connected (26 neighbours) voxels.
CONNECTIVITIES = (6, 26)


def _check_connectivity(connectivity: int) -> None:
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {connectivity}")


def _slice_labels(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Per-slice labels made globally unique (int32, 0 = background) and their count."""
    planar = 4 if connectivity == 6 else 8
    labels = np.zeros(mask.shape, dtype=np.int32)
    offset = 0
    for z in range(mask.shape[0]):
        plane = mask[z]
        if not plane.any():
            continue
        count, lab = cv2.connectedComponents(plane.view(np.uint8), connectivity=planar,
                                             ltype=cv2.CV_32S)
        np.add(lab, offset, out=labels[z], where=lab > 0)
        offset += count - 1
    return labels, offset


def _touching_pairs(labels: np.ndarray, n_labels: int, connectivity: int) -> np.ndarray:
    """int64 (E, 2) pairs of global 2D labels that touch between slice z and z + 1."""
    below, above = labels[:-1], labels[1:]
    ny, nx = labels.shape[1:]
    shifts = [(0, 0)] if connectivity == 6 else [
        (dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    ]
    base = np.int64(n_labels + 1)
    keys = []
    for dy, dx in shifts:
        a = below[:, max(0, -dy):ny - max(0, dy), max(0, -dx):nx - max(0, dx)]
        b = above[:, max(0, dy):ny - max(0, -dy), max(0, dx):nx - max(0, -dx)]
        both = (a > 0) & (b > 0)
        # One int64 key per touching voxel pair; runs of the same pair are dropped before
        # the sort, since touching voxels come in long runs.
        key = a[both].astype(np.int64) * base + b[both]
        if key.size:
            keep = np.ones(key.size, dtype=bool)
            np.not_equal(key[1:], key[:-1], out=keep[1:])
            keys.append(key[keep])
    if not keys:
        return np.zeros((0, 2), dtype=np.int64)
    unique = np.unique(np.concatenate(keys))
    return np.stack([unique // base, unique % base], axis=1)


def _union_find(n_nodes: int, edges: np.ndarray) -> np.ndarray:
    """Root (smallest member) of each node 0..n_nodes-1 after joining every edge."""
    parent = np.arange(n_nodes, dtype=np.int64)
    if edges.size == 0:
        return parent
    u, v = edges[:, 0], edges[:, 1]
    while True:
        while True:  # full path compression: every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            return parent
        low = np.minimum(pu[differ], pv[differ])
        high = np.maximum(pu[differ], pv[differ])
        np.minimum.at(parent, high, low)  # hook the larger root under the smaller one


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
    _check_connectivity(connectivity)
    solid = np.ascontiguousarray(np.asarray(mask).astype(bool, copy=False))
    if solid.ndim != 3:
        raise ValueError(f"mask must be a 3D (Z, Y, X) array, got shape {solid.shape}")
    labels, n_planar = _slice_labels(solid, connectivity)
    if n_planar == 0:
        return labels, 0
    root = _union_find(n_planar + 1, _touching_pairs(labels, n_planar, connectivity))
    # Number the roots 1..count (a root is its component's smallest 2D label).
    is_root = root == np.arange(n_planar + 1)
    is_root[0] = False
    number = np.cumsum(is_root).astype(np.int32)
    lut = number[root]
    lut[0] = 0
    return lut[labels], int(number[-1])


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
