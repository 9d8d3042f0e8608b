"""Cross-validation folds of ``nwwatch train --volume``: labeled patches and held-out sets.

A patch is an 8-connected component of labeled pixels of one slice
(:func:`labeled_patches`). The rules count patches: cross-validation needs two of each
class (:func:`make_folds`), and the preference for the feature forest needs labels in
several places (``training.volume_select.MIN_PATCHES_FOR_FEATURES``). The folds hold out
groups (:func:`patch_groups`): the patches cut along a grid of ``BLOCK_PX`` squares of the
slice. The grid keeps one fold from holding out most of the labels: patches labeled side by
side merge into one component (on the 96³ benchmark at 25 % of a slice, one component held
1100 of 1600 labeled pixels), and a candidate trained on the remaining third is scored on a
problem much harder than the one the final model, trained on every label, faces. The price:
where a patch is larger than a grid square, a held-out group can touch a training group of
the same patch along a grid line. Counting the grid's pieces as patches would let one large
square per class pass both rules, so the rules count whole patches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

#: Folds of the cross-validation at most (fewer when there are fewer patches).
MAX_FOLDS = 3
#: Side (px) of the grid squares that cut large labeled components into patches: two by two
#: of the benchmark's 10 px labeling patches.
BLOCK_PX = 20


def labeled_patches(labels: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Patch ids of the labeled pixels of each slice: int32 (Y, X), -1 unlabeled; a patch is
    an 8-connected component of labeled pixels (label != 255) of one slice, numbered across
    slices."""
    patches, offset = [], 0
    for label in labels:
        ids, count = ndi.label(label != 255, structure=np.ones((3, 3), dtype=bool))
        patches.append(np.where(ids > 0, ids - 1 + offset, -1).astype(np.int32))
        offset += count
    return patches


def count_patches(labels: Sequence[np.ndarray]) -> int:
    """Number of labeled patches (:func:`labeled_patches`) over all slices."""
    return sum(int(ndi.label(label != 255, structure=np.ones((3, 3), dtype=bool))[1])
               for label in labels)


def mixed_patches(labels: Sequence[np.ndarray]) -> int:
    """How many labeled patches (:func:`labeled_patches`) hold pixels of more than one class:
    patches labeled side by side, or a slice labeled in full, which is one patch."""
    mixed = 0
    for label in labels:
        ids, count = ndi.label(label != 255, structure=np.ones((3, 3), dtype=bool))
        if count:
            index = np.arange(1, count + 1)
            low, high = ndi.minimum(label, ids, index), ndi.maximum(label, ids, index)
            mixed += int(np.count_nonzero(np.asarray(low) != np.asarray(high)))
    return mixed


def patch_groups(labels: Sequence[np.ndarray], block_px: int = BLOCK_PX) -> list[np.ndarray]:
    """Group ids of the labeled pixels of each slice: int32 (Y, X), -1 unlabeled; a group is
    the part of an 8-connected component of labeled pixels in one ``block_px`` square of the
    slice's grid (squares start at pixel (0, 0)), numbered across slices."""
    groups, offset = [], 0
    for label in labels:
        ids, _ = ndi.label(label != 255, structure=np.ones((3, 3), dtype=bool))
        rows, cols = np.indices(label.shape)
        cells = (rows // block_px) * (label.shape[1] // block_px + 1) + cols // block_px
        key = np.where(ids > 0, ids.astype(np.int64) * (cells.max() + 1) + cells, -1)
        unique, inverse = np.unique(key, return_inverse=True)
        first = 1 if unique[0] == -1 else 0
        numbered = inverse.reshape(label.shape) - first
        groups.append(np.where(ids > 0, numbered + offset, -1).astype(np.int32))
        offset += len(unique) - first
    return groups


def _groups_with(groups: Sequence[np.ndarray], labels: Sequence[np.ndarray], cls: int) -> int:
    return len({int(g) for group, label in zip(groups, labels, strict=True)
                for g in np.unique(group[label == cls])})


def make_folds(groups: Sequence[np.ndarray], labels: Sequence[np.ndarray], seed: int,
               max_folds: int = MAX_FOLDS, tries: int = 50) -> list[list[int]]:
    """Held-out group ids of each fold; every fold's training part keeps both classes and
    every fold holds out at least one labeled pixel. Empty when a class lies in fewer than
    two patches (:func:`labeled_patches`: the grid's pieces of one patch do not count), in
    fewer than two groups, or no such split exists."""
    patches = labeled_patches(labels)
    if any(min(_groups_with(patches, labels, c), _groups_with(groups, labels, c)) < 2
           for c in (0, 1)):
        return []
    ids = sorted({int(g) for group in groups for g in np.unique(group[group >= 0])})
    n_folds = min(max_folds, len(ids))
    if n_folds < 2:
        return []
    classes = {g: set() for g in ids}
    for group, label in zip(groups, labels, strict=True):
        for g, c in zip(group[group >= 0], label[group >= 0], strict=True):
            classes[int(g)].add(int(c))
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        order = list(rng.permutation(ids))
        folds = [[int(g) for g in order[k::n_folds]] for k in range(n_folds)]
        if all({c for g in ids if g not in fold for c in classes[g]} >= {0, 1}
               for fold in folds):
            return folds
    return []


def held_out_counts(labels: Sequence[np.ndarray], groups: Sequence[np.ndarray],
                     folds: Sequence[Sequence[int]]) -> np.ndarray:
    """int64 (folds, 2): held-out labeled pixels of each class (pore, solid) in each fold."""
    return np.array([[sum(int(np.count_nonzero(np.isin(group, held) & (label == c)))
                          for group, label in zip(groups, labels, strict=True))
                      for c in (0, 1)] for held in folds], dtype=np.int64)
