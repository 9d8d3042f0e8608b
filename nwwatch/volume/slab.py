"""Slab input: a volume model that sees each slice with its neighbours.

A ``tomogram`` model whose metadata names ``extra["input_slices"] = S`` (odd, S = 2k + 1)
segments slice z from the slab of the S slices z - k ... z + k, lowest first. The ONNX
contract's input stays ``image`` (M, 1, H, W): the runtime feeds N slabs as M = N * S images,
the S slices of each slab consecutive, and the graph regroups them as S channels; its
outputs have N. Slices beyond the volume's ends are the end slice repeated (replicated
edges), so a slab exists for every slice of any volume, even a one-slice one. A model without
the key takes one slice (S = 1): every model exported before slabs keeps working unchanged.

The slab is built from whatever stack the runtime segments (the Z slices, or the Y or X
slices of tri-planar fusion), from the normalised volume, so training
(``training.volume_select``) and the service see the same neighbours through
:func:`slab_stack`.
"""

from __future__ import annotations

import numpy as np

from nwwatch.segment.session import Segmenter

#: Metadata key (in ``ModelMetadata.extra``) of the number of slices a model takes.
INPUT_SLICES_KEY = "input_slices"


class SlabModelError(ValueError):
    """The model's ``input_slices`` is not a positive odd integer; the message names the file."""


def model_input_slices(segmenter: Segmenter) -> int:
    """Slices per input slab (odd, >= 1) of the model, from ``extra["input_slices"]``
    (absent: 1, one slice)."""
    value = segmenter.metadata.extra.get(INPUT_SLICES_KEY, 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise SlabModelError(f"{segmenter.model_path}: extra.{INPUT_SLICES_KEY} must be a "
                             f"positive odd integer (2k + 1 slices), got {value!r}")
    return value


def slab_indices(depth: int, centres: np.ndarray | list[int], slices: int) -> np.ndarray:
    """int64 (N, S): for each centre slice, the indices of its slab (centre - k ... centre + k,
    clipped to [0, depth - 1]: the end slices repeat beyond the volume)."""
    if slices < 1 or slices % 2 == 0:
        raise ValueError(f"slices must be a positive odd integer, got {slices}")
    half = slices // 2
    centres = np.asarray(centres, dtype=np.int64).reshape(-1, 1)
    return np.clip(centres + np.arange(-half, half + 1), 0, depth - 1)


def slab_stack(volume: np.ndarray, centres: np.ndarray | list[int], slices: int) -> np.ndarray:
    """(N, S, Y, X) of ``volume`` (Z, Y, X): the slab of each centre slice along axis 0
    (:func:`slab_indices`), in ``volume``'s dtype."""
    return np.asarray(volume)[slab_indices(volume.shape[0], centres, slices)]
