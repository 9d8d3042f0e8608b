"""Run a 2D volume model over a stack of slices: normalisation, slabs of neighbouring
slices, mirror margin, batching, tiling and blending (the loop of
:func:`nwwatch.volume.segment_volume`, once per slicing direction and flip)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nwwatch.normalize import NAN_FILL, normalize_image
from nwwatch.segment.session import Segmenter
from nwwatch.volume.slab import slab_stack
from nwwatch.volume.tiling import blend_weights, tile_starts

#: The widest input side tried for a model without ``min_input_px`` that ONNX Runtime refuses
#: to run on thin slices (its reflect pads are wider than the slice): models of
#: ``nwwatch train --volume`` need at most 49 px (the feature forest, docs/tomography.md).
MAX_INFERRED_INPUT_PX = 256
#: Most input pixels (slices x slab depth x side x side, with the margin) of one model call,
#: unless a single slice or tile is larger: a call's memory grows with its pixels (the
#: feature forest: ~500 bytes a pixel, 2795 MiB for 8 slices of 820 x 820 px, docs/tomography.md).
MAX_CALL_PIXELS = 1 << 20


def mirror_margin_px(margin_px: int, min_input_px: int, height_px: int, width_px: int) -> int:
    """The mirror margin (px) of a ``height_px`` x ``width_px`` slice: ``margin_px``, widened
    until the slice with it is at least ``min_input_px`` on its shorter side (the model's
    reflect pads must be shorter than what they mirror). Training uses it too, so a model is
    fitted on the borders it will see."""
    return max(margin_px, -(-(min_input_px - min(height_px, width_px)) // 2))


class VolumeModelError(ValueError):
    """The model cannot segment tomograms; the message names the model file and why."""


def _from_onnxruntime(exc: BaseException) -> bool:
    """An error raised by ONNX Runtime while running the graph (its own exception types)."""
    return type(exc).__module__.startswith("onnxruntime")


class SliceRunner:
    """Runs the model over stacks of 2D slices: normalisation, slabs, batching, tiling,
    blending.

    value_range : the volume's intensity range (``"volume"`` scope), or None to normalise
        each slice on its own; ignored when ``normalised`` (the stacks are normalised already).
    tile, overlap : tile side and overlap in px (None: whole slices).
    batch_size : slabs (or tiles) per model call.  solid_index : the model's solid class.
    margin : mirror margin in px.  slices : the model's ``input_slices`` (1: single slices).
    min_input : the model's ``min_input_px``: a stack whose slices (with the margin) or tiles
        are narrower gets a wider margin, or wider tiles, instead of a runtime error.
    heartbeat : called after every model call (the service's watchdog ping: one volume
        may take minutes).
    infer_min_input : the model declares no ``min_input_px`` (exported before the key
        existed): when ONNX Runtime fails on a stack whose input side is under
        :data:`MAX_INFERRED_INPUT_PX`, the stack is run again with that side doubled (kept for
        the next stacks), up to that limit; then :class:`VolumeModelError` says why.
    """

    def __init__(self, segmenter: Segmenter, value_range: tuple[float, float] | None,
                 tile: int | None, overlap: int, batch_size: int, solid_index: int,
                 margin: int = 0, normalised: bool = False, slices: int = 1,
                 min_input: int = 1, infer_min_input: bool = False,
                 heartbeat: Callable[[], None] | None = None) -> None:
        self.segmenter = segmenter
        self.heartbeat = heartbeat
        self.normalised = normalised
        self.value_range = value_range
        self.tile = tile
        self.overlap = overlap
        self.batch_size = batch_size
        self.solid_index = solid_index
        self.margin = margin
        self.slices = slices
        self.min_input = min_input
        self.infer_min_input = infer_min_input

    def _inputs(self, stack: np.ndarray, start: int, stop: int, m: int) -> np.ndarray:
        """float32 (B, S, H + 2m, W + 2m): the slabs of slices ``start:stop`` of ``stack``,
        normalised and mirrored by the margin."""
        if self.slices > 1:
            slabs = slab_stack(stack, np.arange(start, stop), self.slices)
        else:
            slabs = stack[start:stop, None]
        b, s = slabs.shape[:2]
        flat = slabs.reshape(b * s, *slabs.shape[2:])
        # Normalised before mirroring, so an "image"-scope slice keeps its own intensity range;
        # no data (NaN) takes the nearest data's grey in its slice, as in training.
        if self.normalised:
            images = np.asarray(flat, dtype=np.float32)
        elif self.value_range is not None:
            images = normalize_image(flat, self.value_range, nan_fill=NAN_FILL["tomogram"])
        else:
            images = np.stack([normalize_image(x, nan_fill=NAN_FILL["tomogram"]) for x in flat])
        if m:
            images = np.pad(images, ((0, 0), (m, m), (m, m)), mode="reflect")
        return images.reshape(b, s, *images.shape[1:])

    @staticmethod
    def _crop(result: np.ndarray, m: int) -> np.ndarray:
        return result[:, m:result.shape[1] - m, m:result.shape[2] - m] if m else result

    def _run(self, slabs: np.ndarray) -> np.ndarray:
        """float32 solid probability (B, H, W) of slabs (B, S, H, W), fed as B * S images."""
        flat = slabs.reshape(-1, *slabs.shape[2:])
        out = self.segmenter.segment(flat, probabilities=True)
        if self.heartbeat is not None:
            self.heartbeat()
        return out.probabilities[:, self.solid_index]  # type: ignore[index]

    def _geometry(self, height: int, width: int) -> tuple[int, int | None, bool, int]:
        """(mirror margin, tile side, tiled?, the smaller side of what the model sees) for
        slices of ``height`` x ``width`` px."""
        m = mirror_margin_px(self.margin, self.min_input, height, width)
        height, width = height + 2 * m, width + 2 * m
        tile = None if self.tile is None else max(self.tile, self.min_input)
        tiled = tile is not None and (height > tile or width > tile)
        side = min(height, width, tile) if tiled and tile is not None else min(height, width)
        return m, tile, tiled, side

    def stack(self, slices: np.ndarray) -> np.ndarray:
        """float32 solid probability (N, H, W) of ``slices`` (N, H, W); a slab model sees each
        slice with its neighbours along axis 0 of ``slices``.

        Raises
        ------
        VolumeModelError : ``infer_min_input``, ONNX Runtime failed on these slices and
            still fails with them mirrored to :data:`MAX_INFERRED_INPUT_PX` (a fault of the
            model: it cannot run on slices of this size). An ONNX Runtime error on slices
            that needed no widening propagates as it is.
        """
        widened = False
        while True:
            try:
                return self._stack(slices)
            except Exception as exc:
                side = self._geometry(*slices.shape[1:])[3]
                # Slices that needed no widening: the remedy for thin slices has nothing to
                # try, and the error is not theirs; it propagates as it is.
                if not (self.infer_min_input and _from_onnxruntime(exc)) or (
                        side >= MAX_INFERRED_INPUT_PX and not widened):
                    raise
                if side >= MAX_INFERRED_INPUT_PX:
                    raise VolumeModelError(
                        f"{self.segmenter.model_path}: ONNX Runtime cannot run the model on "
                        f"slices of {slices.shape[1]} x {slices.shape[2]} px, even mirrored "
                        f"to {side} px, and the model declares no extra.min_input_px (exported "
                        "by an older nwwatch: export it again with `nwwatch train --volume`, "
                        f"or segment without tri-planar fusion): {exc}") from exc
                self.min_input = min(2 * side, MAX_INFERRED_INPUT_PX)
                widened = True

    def _per_call(self, pixels: int) -> int:
        """Slabs (or tiles) of ``pixels`` px per model call: ``batch_size``, fewer when they
        would hold more than :data:`MAX_CALL_PIXELS`, at least one."""
        return max(1, min(self.batch_size, MAX_CALL_PIXELS // max(1, pixels * self.slices)))

    def _stack(self, slices: np.ndarray) -> np.ndarray:
        n, height, width = slices.shape
        # The model sees the slices with their mirror margins; results are cropped back.
        m, tile, tiled, _ = self._geometry(height, width)
        height, width = height + 2 * m, width + 2 * m
        result = np.empty(slices.shape, dtype=np.float32)
        if not tiled:
            step = self._per_call(height * width)
            for start in range(0, n, step):
                images = self._inputs(slices, start, min(n, start + step), m)
                result[start:start + step] = self._crop(self._run(images), m)
            return result
        assert tile is not None
        tile_h, tile_w = min(tile, height), min(tile, width)
        windows = [(r, c) for r in tile_starts(height, tile_h, min(self.overlap, tile_h - 1))
                   for c in tile_starts(width, tile_w, min(self.overlap, tile_w - 1))]
        weight = blend_weights((tile_h, tile_w), self.overlap)
        step = self._per_call(tile_h * tile_w)
        # Slices per batch so that one model call sees about `batch_size` tiles.
        per_call = max(1, step // len(windows))
        for start in range(0, n, per_call):
            images = self._inputs(slices, start, min(n, start + per_call), m)
            count = images.shape[0]
            tiles = np.stack([images[:, :, r:r + tile_h, c:c + tile_w] for r, c in windows],
                             axis=1).reshape(count * len(windows), self.slices, tile_h, tile_w)
            probs = np.concatenate([
                self._run(tiles[i:i + step]) for i in range(0, tiles.shape[0], step)
            ]).reshape(count, len(windows), tile_h, tile_w)
            total = np.zeros((count, height, width), dtype=np.float32)
            norm = np.zeros((height, width), dtype=np.float32)
            for k, (r, c) in enumerate(windows):
                total[:, r:r + tile_h, c:c + tile_w] += probs[:, k] * weight
                norm[r:r + tile_h, c:c + tile_w] += weight
            result[start:start + count] = self._crop(total / norm, m)
        return result
