"""Sparse patch annotation of one slice, the way a user labels a few regions of a tomogram.

Following Li et al. (VISAPP 2023, seed 003): the slice is cut into a grid of square patches,
a random subset of patches keeps its true labels and every other pixel is unlabeled (255).
The paper forces at least one patch with object pixels and one with background pixels so that
contrastive positive and negative pairs exist; here the forced patches are stricter, a
*mostly solid* patch and a *mostly pore* patch (>= 50 % of their labeled pixels), and the pore
patch is taken inside the grain when one exists, because vacuum around the grain is the easy
part of the "pore" class and a user would point at real pores.
"""

from __future__ import annotations

import numpy as np

from nwwatch.classes import PORE, SOLID, UNLABELED


def patch_labels(truth: np.ndarray, labeled_fraction: float, rng: np.random.Generator, *,
                 patch_px: int = 10, grain: np.ndarray | None = None,
                 gap_px: int = 0) -> np.ndarray:
    """Keep the truth on a random set of aligned ``patch_px`` x ``patch_px`` patches.

    Patches tile the slice from (0, 0) in cells of ``patch_px``; a partial cell at the
    right/bottom edge is never chosen. A chosen cell's labeled patch is its top-left
    ``side`` x ``side`` square (``side = patch_px - gap_px``), starting at multiples of
    ``patch_px``. The number of patches is ``round(labeled_fraction * H * W / side**2)``, at
    least 2: one mostly-solid patch and one mostly-pore patch (inside ``grain`` when
    possible), or, on slices too small to have them, the most solid and the most porous;
    "mostly" is judged on the labeled square, so both classes are in the labels.

    Parameters
    ----------
    truth : uint8 (H, W), 1 solid, 0 pore
    labeled_fraction : float in (0, 1]
    rng : numpy Generator
    patch_px : int, patch side in pixels
    grain : bool (H, W), optional; where the grain is (pore patches are preferred inside it)
    gap_px : int, pixels of each patch's last rows and columns left unlabeled, so that patches
        chosen in neighbouring cells of the grid do not touch: with 1, every patch is a
        separate 8-connected component, a patch as ``nwwatch train --volume`` counts them
        (with 0, patches side by side are one there).

    Returns
    -------
    uint8 (H, W): 1 solid, 0 pore, 255 unlabeled.

    Raises
    ------
    ValueError
        If the slice holds fewer than 2 whole patches or its patches cannot give both classes.
    """
    truth = np.asarray(truth)
    if truth.ndim != 2:
        raise ValueError(f"truth must be a (H, W) slice, got shape {truth.shape}")
    if not 0.0 < labeled_fraction <= 1.0:
        raise ValueError(f"labeled_fraction must be in (0, 1], got {labeled_fraction}")
    if patch_px < 1:
        raise ValueError(f"patch_px must be >= 1, got {patch_px}")
    if not 0 <= gap_px < patch_px:
        raise ValueError(f"gap_px must be in [0, patch_px = {patch_px}), got {gap_px}")
    rows, cols = truth.shape[0] // patch_px, truth.shape[1] // patch_px
    if rows * cols < 2:
        raise ValueError(f"a {truth.shape} slice holds fewer than 2 patches of {patch_px} px")

    side = patch_px - gap_px

    def per_patch(mask: np.ndarray) -> np.ndarray:
        # over the labeled square only: judged on the whole cell, a "mostly pore" cell could
        # label solid alone and leave the labels with one class
        cut = mask[: rows * patch_px, : cols * patch_px].astype(np.float32)
        cells = cut.reshape(rows, patch_px, cols, patch_px)[:, :side, :, :side]
        return cells.mean(axis=(1, 3)).reshape(-1)

    solid_fraction = per_patch(truth == SOLID)
    inside = per_patch(grain) if grain is not None else np.ones_like(solid_fraction)
    pore_fraction = 1.0 - solid_fraction
    if solid_fraction.max() == 0.0 or pore_fraction.max() == 0.0:
        raise ValueError("the slice's patches do not hold both solid and pore pixels")
    solid_candidates = np.flatnonzero(solid_fraction >= 0.5)
    if solid_candidates.size == 0:  # tiny grains: the most solid patch will do
        solid_candidates = np.flatnonzero(solid_fraction == solid_fraction.max())
    first = int(rng.choice(solid_candidates))
    pore_fraction[first] = -1.0  # never the same patch twice
    pore_candidates = np.flatnonzero((pore_fraction >= 0.5) & (inside >= 0.5))
    if pore_candidates.size == 0:
        pore_candidates = np.flatnonzero(pore_fraction >= 0.5)
    if pore_candidates.size == 0:
        pore_candidates = np.flatnonzero(pore_fraction == pore_fraction.max())
    if pore_fraction[pore_candidates[0]] <= 0.0:
        raise ValueError("the slice has no pore pixels outside its only solid patch")
    second = int(rng.choice(pore_candidates))

    n_patches = int(np.clip(round(labeled_fraction * truth.size / side**2), 2, rows * cols))
    rest = np.setdiff1d(np.arange(rows * cols), [first, second])
    chosen = [first, second, *rng.choice(rest, size=n_patches - 2, replace=False).tolist()]

    labels = np.full(truth.shape, UNLABELED, dtype=np.uint8)
    for index in chosen:
        r, c = divmod(int(index), cols)
        window = (slice(r * patch_px, r * patch_px + side),
                  slice(c * patch_px, c * patch_px + side))
        labels[window] = np.where(truth[window] == SOLID, SOLID, PORE)
    return labels
