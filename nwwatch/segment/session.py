"""ONNX Runtime inference: provider choice that fails loudly, padding, IO binding.

onnxruntime-gpu falls back to the CPU silently when CUDA cannot be loaded, so
the provider actually obtained is read back from the session and compared with the request.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from nwwatch.classes import insitu_model_problem
from nwwatch.segment.confidence import band_margin, cap_confidence
from nwwatch.segment.contract import (
    INPUT_NAME,
    OUTPUT_LABELS,
    OUTPUT_PROBABILITIES,
    ModelMetadata,
    ModelMetadataError,
    graph_problem,
    read_metadata,
)
from nwwatch.segment.gpushapes import ShapeSessions, pad_batch, stable_batch
from nwwatch.segment.scale import (
    BOUNDARY_BAND_PX,
    CAP_DISAGREEMENT_FRACTION,
    MIN_DROPLET_AREA_PX,
    WorkingScale,
    WorkingScaleError,
    coarse_band,
    keep_fine_boundaries,
    largest_droplet_radius_px,
    passes_disagreement,
    resize_images,
    resize_probabilities,
    working_shape,
)

log = logging.getLogger(__name__)

#: Configuration names of execution providers, in the order ORT should try them.
PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}


class ModelLoadError(RuntimeError):
    """The model file cannot be used; the message names the file and the reason."""


class GpuUnavailableError(RuntimeError):
    """A GPU provider was required but ONNX Runtime did not obtain one."""


@dataclass(frozen=True)
class Segmentation:
    """Network output for a batch.

    labels : uint8 (N, H, W) class ids.
    probabilities : float32 (N, C, H, W) softmax, or None when not requested.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None


def pad_to_multiple(images: np.ndarray, multiple: int) -> np.ndarray:
    """Pad (N, H, W) at the bottom and right so H and W are multiples of ``multiple``.

    Reflect padding (edge padding where an image is too small to reflect). The one rule used
    at run time and in training (validation, INT8 calibration), so both see the same borders.
    """
    _, height, width = images.shape
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return images
    mode = "reflect" if pad_h < height and pad_w < width else "edge"
    return np.pad(images, ((0, 0), (0, pad_h), (0, pad_w)), mode=mode)


def _nvidia_device_present() -> bool:
    # Asking ORT for CUDA without a driver prints errors on every start; skip the attempt.
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def gpu_requested(providers: tuple[str, ...]) -> bool:
    """Whether ``providers`` (names of :data:`PROVIDERS`) names a GPU provider."""
    return any(PROVIDERS.get(n) in _GPU_PROVIDERS for n in providers)


def gpu_possible(providers: tuple[str, ...]) -> bool:
    """Whether a session asked for ``providers`` may get a GPU provider (one is requested and
    an NVIDIA driver is present); the session's ``uses_gpu`` says whether it did."""
    return gpu_requested(providers) and _nvidia_device_present()


#: What ONNX Runtime's TensorRT provider library needs (its ELF NEEDED entries).
TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvonnxparser.so.10")


@functools.cache
def tensorrt_loadable() -> bool:
    """Whether the TensorRT libraries that ONNX Runtime's TensorRT provider links can be
    loaded. Asking ORT for TensorRT without them costs more than the failed load: on an
    H200, replay's network calls after a change of input shape took 229-253 ms (quartiles)
    instead of 41-51 ms with CUDA alone (docs/models.md, "On a GPU")."""
    for name in TENSORRT_LIBRARIES:
        try:
            ctypes.CDLL(name)
        except OSError:
            return False
    return True


def _provider_list(names: tuple[str, ...], cache_dir: Path | None) -> list:
    unknown = [n for n in names if n not in PROVIDERS]
    if unknown:
        raise KeyError(f"unknown provider(s) {unknown}; choose from {sorted(PROVIDERS)}")
    out: list = []
    for name in names:
        full = PROVIDERS[name]
        if full in _GPU_PROVIDERS and not _nvidia_device_present():
            continue
        if full == "TensorrtExecutionProvider" and not tensorrt_loadable():
            log.info("TensorRT libraries %s not found: not asking ONNX Runtime for TensorRT",
                     " / ".join(TENSORRT_LIBRARIES))
            continue
        if full == "CUDAExecutionProvider":
            # HEURISTIC avoids an exhaustive cuDNN search per new input shape at start-up.
            out.append((full, {"cudnn_conv_algo_search": "HEURISTIC"}))
        elif full == "TensorrtExecutionProvider":
            options: dict[str, object] = {"trt_fp16_enable": True}
            if cache_dir is not None:
                options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
            out.append((full, options))
        else:
            out.append(full)
    if "CPUExecutionProvider" not in [p if isinstance(p, str) else p[0] for p in out]:
        out.append("CPUExecutionProvider")
    return out


def class_argmax(probs: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) index of the largest of float (N, C, H, W) along C, the first on ties
    (as ``np.argmax``), a channel at a time: several times faster than ``np.argmax(axis=1)``,
    whose strided reduction dominated the runtime outside the network."""
    best = probs[:, 0].copy()
    labels = np.zeros(best.shape, np.uint8)
    for c in range(1, probs.shape[1]):
        better = probs[:, c] > best
        labels[better] = c
        np.maximum(best, probs[:, c], out=best)
    return labels


def read_model_file(path: str | os.PathLike[str]) -> bytes:
    """The content of the model file ``path``; :class:`ModelLoadError` naming it when it is
    missing or cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read it ({exc})") from None


#: Normalised images lie in [-1, 1] (:func:`nwwatch.normalize.normalize_image`); beyond
#: this, raw detector counts (tens to thousands) were given.
_NORMALISED_LIMIT = 16.0


def _normalised_batch(images, check_range: bool = True) -> np.ndarray:
    """``images`` as float32 (N, H, W) (a single (H, W) as N = 1); ValueError for another
    rank, an integer or non-numeric array, or (``check_range``) values far outside [-1, 1]:
    raw counts given without normalize_image segmented into nonsense without a word."""
    array = np.asarray(images)
    if not (np.issubdtype(array.dtype, np.floating) or array.size == 0):
        raise ValueError(f"images must be float normalize_image output in [-1, 1], got dtype "
                         f"{array.dtype} (raw frames: nwwatch.normalize.normalize_image first)")
    batch = np.asarray(array, dtype=np.float32)
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3:
        raise ValueError(f"images must be (N, H, W) or (H, W), got shape {batch.shape}")
    # scikit-image's and PIL's grey (H, W, 1); one frame one pixel wide is (1, H, 1)
    if batch.shape[2] == 1 and batch.shape[0] > 1:
        raise ValueError(f"images must be (N, H, W) or (H, W), got shape {batch.shape}: an "
                         f"(H, W, 1) frame would be H frames one pixel wide; give "
                         f"images[..., 0]")
    if batch.shape[0] and not (batch.shape[1] and batch.shape[2]):
        raise ValueError(f"images must be frames of at least one pixel, got shape "
                         f"{batch.shape}")
    # NaN fails both comparisons (normalize_image fills it); ~0.06 ms a 512² frame
    if check_range and batch.size and not (batch.min() >= -_NORMALISED_LIMIT
                           and batch.max() <= _NORMALISED_LIMIT):
        odd = int(np.count_nonzero(~np.isfinite(batch)))
        if odd:
            raise ValueError(f"images hold {odd} NaN or infinite value(s) (a NaN as well where "
                             f"the working scale resized an infinite one): normalize_image "
                             f"gives no-data pixels a value; give it the raw frame")
        raise ValueError(f"images must be normalize_image output in [-1, 1], got values "
                         f"from {float(batch.min()):g} to {float(batch.max()):g} (raw "
                         f"frames: nwwatch.normalize.normalize_image first)")
    return batch


#: The shorter side (px, rounded up to an odd multiple of ``size_multiple``) of the input a
#: model is tried on when it loads (:meth:`Segmenter._probe`).
_PROBE_SIDE_PX = 64
#: ... and of the input it is tried on when that fails (a least input size, as a wide
#: reflect padding needs).
_PROBE_LARGE_SIDE_PX = 320
#: How far from [0, 1] and from a sum of 1 the test input's ``probabilities`` may be (an
#: INT8 model's rounding); logits and per-class sigmoids miss by far more.
_SOFTMAX_TOLERANCE = 0.02


class Segmenter:
    """Run an nwwatch ONNX model on normalised frames.

    Parameters
    ----------
    model_path : path to an ONNX file following :mod:`nwwatch.segment.contract`.
    providers : preference order among ``"tensorrt"``, ``"cuda"``, ``"cpu"``.
    require_gpu : raise :class:`GpuUnavailableError` when no GPU provider was obtained.
    threads : intra-op CPU threads (None: ONNX Runtime's default, all cores).
    cache_dir : where TensorRT may cache engines.
    flip_average : average the softmax over the frame and its three mirror images (4x the
        inference time; see docs/models.md for what it buys).

    :meth:`segment` may be called from several threads at once on one instance: it keeps
    no state between calls (every array it writes is made within the call) except, on a GPU
    provider, the sessions per input shape (:mod:`nwwatch.segment.gpushapes`, behind a lock),
    and ONNX Runtime's ``InferenceSession.run`` is safe to call concurrently (each call runs
    on its calling thread plus the session's intra-op pool; it releases the GIL).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        providers: tuple[str, ...] = ("cuda", "cpu"),
        require_gpu: bool = False,
        threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        flip_average: bool = False,
        model_bytes: bytes | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.flip_average = flip_average
        # Read once: the hash the rows carry and every session (those made later per input
        # shape on a GPU too) are of these bytes, even if the file is replaced meanwhile
        # (a fine-tuned model copied over the configured path while the service runs).
        # ``model_bytes``: the file's content as read already (several sessions of one model
        # are of the same bytes).
        if model_bytes is None:
            model_bytes = read_model_file(self.model_path)
        self.model_sha256 = hashlib.sha256(model_bytes).hexdigest()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # Idle ORT worker threads spin by default; in the service they share the cores with
        # reading and measurement threads, and spinning steals those threads' CPU time.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        requested = _provider_list(tuple(providers), Path(cache_dir) if cache_dir else None)
        make = functools.partial(ort.InferenceSession, model_bytes,
                                 sess_options=options, providers=requested)
        try:
            self._session = make()
        except Exception as exc:  # ORT raises its own exception types for bad files
            if _external_data(str(exc)):
                raise ModelLoadError(
                    f"{self.model_path}: its weights are in a separate file (ONNX external "
                    f"data, such as {self.model_path.name}.data, which torch.onnx.export "
                    f"writes for its dynamo exporter); nwwatch runs a model from one file, "
                    f"whose sha256 is the model's identity in every row: save it as one file "
                    f"(python -c \"import onnx; onnx.save(onnx.load('{self.model_path.name}'), "
                    f"'{self.model_path.stem}-one.onnx')\" beside it; models under 2 GB) or "
                    f"export it with torch.onnx.export(..., external_data=False)") from exc
            raise ModelLoadError(f"{self.model_path}: ONNX Runtime cannot load it ({exc})") from exc
        obtained = self._session.get_providers()
        self.provider = obtained[0]
        self.uses_gpu = self.provider in _GPU_PROVIDERS
        # GPU providers only: sessions per input shape (nwwatch/segment/gpushapes.py).
        self._shapes = ShapeSessions(make, self._session) if self.uses_gpu else None
        if require_gpu and not self.uses_gpu:
            raise GpuUnavailableError(
                f"a GPU provider was required (asked for {list(providers)}) but ONNX Runtime "
                f"runs {self.model_path.name} on {obtained}; check the NVIDIA driver, CUDA 13 "
                f"and cuDNN 9 libraries, or set require_gpu = false"
            )
        self.metadata = self._read_metadata()
        try:
            self.working_scale = WorkingScale.from_metadata(self.metadata.kind,
                                                            self.metadata.extra)
        except WorkingScaleError as exc:
            raise ModelLoadError(f"{self.model_path}: {exc}") from None
        outputs = [o.name for o in self._session.get_outputs()]
        inputs = [i.name for i in self._session.get_inputs()]
        missing = {OUTPUT_LABELS, OUTPUT_PROBABILITIES} - set(outputs)
        if INPUT_NAME not in inputs or missing:
            raise ModelLoadError(
                f"{self.model_path}: not an nwwatch model (needs input {INPUT_NAME!r} and "
                f"outputs {OUTPUT_LABELS!r}, {OUTPUT_PROBABILITIES!r}; it has input(s) "
                f"{inputs} and output(s) {outputs}; docs/models.md says how to wrap a model)"
            )
        problem = graph_problem({t.name: (t.type, list(t.shape or [])) for t in (
            *self._session.get_inputs(), *self._session.get_outputs())}, self.metadata)
        if problem is not None:
            raise ModelLoadError(f"{self.model_path}: breaks the nwwatch model contract "
                                 f"({problem}; nwwatch/segment/contract.py)")
        self._probe()

    def _probe(self) -> None:
        """Run the model once on a small input of noise in [-1, 1] and refuse it, naming the
        file, where every frame would fail alike or be wrong without a word: ONNX Runtime
        fails at a size that is a multiple of ``size_multiple`` (the multiple too small), the
        outputs are not of the input's size, or ``probabilities`` is not a softmax over the
        classes (logits, or a sigmoid per class). A few ms a load for the shipped model."""
        multiple = self.metadata.size_multiple
        extra = self.metadata.extra
        least = extra.get("min_input_px", 0)
        least = least if isinstance(least, int) else 0
        # a slab model's slices come along N; a bad count is named where volumes need it
        # (nwwatch.volume.slab), not guessed here
        slices, given = self.input_slices, extra.get("input_slices", 1)
        if isinstance(given, bool) or given != slices:
            return
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4  # a failure is said in the refusal, not as ORT's line
        failed = []
        # A small input, then a large one: a model may need a least input size its metadata
        # does not give (the runtime widens a tomogram's slices for it), but one that fails
        # at both sizes fails on every frame.
        for side_px in (_PROBE_SIDE_PX, _PROBE_LARGE_SIDE_PX):
            k = -(-max(side_px, least) // multiple) | 1  # odd: a multiple too small fails
            rows, cols = multiple * k, multiple * (k + 2)
            feed = np.random.default_rng(0).uniform(-1, 1, (slices, 1, rows, cols)).astype(
                np.float32)
            try:
                labels, probs = self._session.run([OUTPUT_LABELS, OUTPUT_PROBABILITIES],
                                                  {INPUT_NAME: feed}, quiet)
                break
            except Exception as exc:  # ORT's own exception types
                text = str(exc).strip()
                failed.append(f"{rows} x {cols} px: {text.splitlines()[0] if text else repr(exc)}")
        else:
            raise ModelLoadError(
                f"{self.model_path}: ONNX Runtime fails on test inputs that are multiples of "
                f"its size_multiple {multiple} (is the multiple its H and W need larger? its "
                f"metadata must say it) ({'; '.join(failed)})")
        classes = len(self.metadata.class_names)
        if labels.shape != (1, rows, cols) or probs.shape != (1, classes, rows, cols):
            raise ModelLoadError(
                f"{self.model_path}: a test input of {slices} x 1 x {rows} x {cols} gave "
                f"{OUTPUT_LABELS!r} {list(labels.shape)} and {OUTPUT_PROBABILITIES!r} "
                f"{list(probs.shape)}, not [1, {rows}, {cols}] and [1, {classes}, {rows}, "
                f"{cols}]: the outputs must be of the input's size (one per "
                f"{'slab' if slices > 1 else 'frame'}; an input size that is a multiple of its "
                f"size_multiple {multiple} but not of the network's gives other sizes)")
        sums = probs.sum(axis=1, dtype=np.float64)
        if not (np.isfinite(probs).all() and probs.min() >= -_SOFTMAX_TOLERANCE
                and probs.max() <= 1 + _SOFTMAX_TOLERANCE
                and np.abs(sums - 1).max() <= _SOFTMAX_TOLERANCE):
            raise ModelLoadError(
                f"{self.model_path}: {OUTPUT_PROBABILITIES!r} is not a softmax over its "
                f"{classes} classes (on a test input: values from {np.nanmin(probs):.3g} to "
                f"{np.nanmax(probs):.3g}, per-pixel sums from {np.nanmin(sums):.3g} to "
                f"{np.nanmax(sums):.3g}, not in [0, 1] summing to 1): logits or a sigmoid per "
                f"class need a Softmax over the class axis in the graph")

    def _read_metadata(self) -> ModelMetadata:
        try:
            return read_metadata(self._session.get_modelmeta().custom_metadata_map,
                                 self.model_path)
        except ModelMetadataError as exc:
            raise ModelLoadError(str(exc)) from None

    @property
    def name(self) -> str:
        return self.model_path.stem

    def graph_signature(self) -> dict[str, list[dict[str, object]]]:
        """The graph's inputs and outputs as ONNX Runtime reads them: ``{"inputs": [...],
        "outputs": [...]}``, each ``{"name", "type", "shape"}`` with ``type`` as ONNX Runtime
        spells it (``tensor(float)``) and ``shape`` a list whose entries are a size, the name
        of a dynamic dimension (``"N"``, ``"H"``) or None (dynamic, unnamed)."""

        def describe(args) -> list[dict[str, object]]:
            return [{"name": a.name, "type": a.type,
                     "shape": [d if isinstance(d, int | str) else None for d in a.shape]}
                    for a in args]

        return {"inputs": describe(self._session.get_inputs()),
                "outputs": describe(self._session.get_outputs())}

    def require_kind(self, kind: str, task: str) -> None:
        """Raise :class:`ModelLoadError` naming the file unless the model's metadata kind is
        ``kind`` ("insitu" or "tomogram"); ``task`` says what needs it ("labelling frames")."""
        if self.metadata.kind != kind:
            article = "an" if self.metadata.kind == "insitu" else "a"  # as the service says it
            raise ModelLoadError(f"{self.model_path}: {article} {self.metadata.kind!r} model; "
                                 f"{task} needs {'an in-situ' if kind == 'insitu' else 'a ' + kind}"
                                 f" model")
        problem = insitu_model_problem(self.metadata.class_names) if kind == "insitu" else None
        if problem:  # else `measure --model` stops with an IndexError traceback
            raise ModelLoadError(f"{self.model_path}: {problem} ({task})")

    def segment(self, images: np.ndarray, probabilities: bool = True) -> Segmentation:
        """Segment a batch of normalised images at the model's working scale.

        Frames are resized into the scale the model was trained for
        (:mod:`nwwatch.segment.scale`) and the results mapped back, so labels and
        probabilities are always in the frames' own pixels.

        Parameters
        ----------
        images : float32 (N, H, W) or (H, W), output of ``normalize_image``.
        probabilities : also return the softmax (N, C, H, W); skip it to save a copy.

        Returns
        -------
        Segmentation with arrays of the input's (N, H, W).
        """
        # the values are checked once, where every path runs the network: segment_native
        batch = _normalised_batch(images, check_range=False)
        height, width = batch.shape[1:]
        scale = self.working_scale
        factor = scale.size_factor(height, width)
        if (factor == 1.0 and scale.droplet_radius_px is None
                and scale.whole_droplet_radius_px is None and not self.flip_average):
            return self.segment_native(batch, probabilities)
        first = self._segment_at(batch, factor)
        probs, labels = first.probabilities, first.labels
        for i in range(labels.shape[0]):  # a slab model's outputs: one per S slices
            # Frame pixels; the smallest trusted region is set in working pixels.
            radius = largest_droplet_radius_px(labels[i], MIN_DROPLET_AREA_PX / factor ** 2)
            radius = None if radius is None else radius * factor
            again = scale.droplet_factor(radius, height, width, factor,
                                         self.metadata.size_multiple)
            if again is None:
                continue
            second = self._segment_at(batch[i:i + 1], again)
            if scale.droplet_too_large(radius):
                band_px = max(1, round(BOUNDARY_BAND_PX / factor))  # frame pixels
                # Where the passes disagree beyond the band the frame is less certain than
                # either says; its boundary margins (and so its confidence, the labelling
                # queue's ranking) must not exceed either's. Where they agree, the merged
                # softmax's own margins stand.
                ceiling = None
                band = coarse_band(second.labels[0], band_px)  # once: both steps read it
                if (passes_disagreement(labels[i], second.labels[0], band_px, band=band)
                        > CAP_DISAGREEMENT_FRACTION):
                    ceiling = min(band_margin(probs[i], labels[i]),
                                  band_margin(second.probabilities[0], second.labels[0]))
                probs[i] = keep_fine_boundaries(probs[i], second.probabilities[0], labels[i],
                                                second.labels[0], band_px, band=band)
                labels[i] = class_argmax(probs[i:i + 1])[0]
                if ceiling is not None:
                    probs[i] = cap_confidence(probs[i], labels[i], ceiling)
            else:
                probs[i], labels[i] = second.probabilities[0], second.labels[0]
        return Segmentation(labels=labels, probabilities=probs if probabilities else None)

    def _segment_at(self, batch: np.ndarray, factor: float) -> Segmentation:
        """Segment (N, H, W) resized by ``factor``; softmax resized back to (N, C, H, W)."""
        height, width = batch.shape[1:]
        rows, cols = working_shape(height, width, factor)
        if (rows, cols) == (height, width) and not self.flip_average:
            # Nothing to resize or average: the network's own labels are the argmax.
            native = self.segment_native(batch, True)
            # Contiguous and writable (a second pass may replace a frame): a copy only when
            # padding was cut off.
            return Segmentation(labels=native.labels, probabilities=np.ascontiguousarray(
                native.probabilities, dtype=np.float32))
        probs = self._probabilities(resize_images(batch, rows, cols))
        probs = resize_probabilities(probs, height, width)
        return Segmentation(labels=class_argmax(probs), probabilities=probs)

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Softmax (N, C, H, W) of (N, H, W); with ``flip_average`` the mean over the frame
        and its left-right, up-down and both-ways mirror images, mapped back."""
        probs = np.array(self.segment_native(batch, True).probabilities, dtype=np.float32)
        if not self.flip_average:
            return probs
        for axes in ((2,), (1,), (1, 2)):
            mirrored = np.ascontiguousarray(np.flip(batch, axis=axes))
            out = self.segment_native(mirrored, True).probabilities
            probs += np.flip(out, axis=tuple(a + 1 for a in axes))
        return probs / np.float32(4.0)

    def segment_native(self, images: np.ndarray, probabilities: bool = True) -> Segmentation:
        """Segment float32 (N, H, W) or (H, W) normalised images as they are (no working
        scale)."""
        batch = _normalised_batch(images)
        height, width = batch.shape[1:]
        if batch.shape[0] == 0:  # the GPU path's stable batch sizes start at one frame
            return Segmentation(
                labels=np.zeros((0, height, width), np.uint8),
                probabilities=np.zeros((0, len(self.metadata.class_names), height, width),
                                       np.float32) if probabilities else None)
        feed = np.ascontiguousarray(pad_to_multiple(batch, self.metadata.size_multiple)[:, None])
        wanted = [OUTPUT_LABELS, OUTPUT_PROBABILITIES] if probabilities else [OUTPUT_LABELS]
        if self.uses_gpu:
            outputs = self._run_bound(feed, wanted)
        else:
            outputs = self._session.run(wanted, {INPUT_NAME: feed})
        labels = outputs[0][:, :height, :width]
        probs = outputs[1][:, :, :height, :width] if probabilities else None
        return Segmentation(labels=np.ascontiguousarray(labels), probabilities=probs)

    def _run_bound(self, feed: np.ndarray, wanted: list[str]) -> list[np.ndarray]:
        # The batch padded to a stable size and run on its shape's own session
        # (gpushapes.py); IO binding: input copied once to the device, only the requested
        # outputs come back, the padding's cut off.
        # A slab model's input is S slices an output (extra.input_slices): padded by whole
        # slabs, its outputs cut at the slabs given (a power-of-two count of slices is never
        # a multiple of an odd S > 1, which the graph's regrouping refused).
        slices = self.input_slices
        count = feed.shape[0] // slices
        feed = pad_batch(feed, stable_batch(count) * slices)
        session = self._shapes.session_for(feed.shape)
        binding = session.io_binding()
        binding.bind_cpu_input(INPUT_NAME, feed)
        for name in wanted:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        return [out[:count] for out in binding.copy_outputs_to_cpu()]

    @property
    def input_slices(self) -> int:
        """Slices an output of the model takes (``extra.input_slices``; 1 for a frame model,
        or where the value is not a positive odd integer, which a volume's segmentation
        refuses by name)."""
        value = self.metadata.extra.get("input_slices", 1)
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1 and value % 2
        return value if ok else 1


def _external_data(message: str) -> bool:
    """Whether ONNX Runtime's load error ``message`` is about tensors kept in an external
    data file (from bytes, it cannot find them: it says so in several ways)."""
    return "xternal data" in message or "xternal tensor" in message \
        or "model_path.empty()" in message
