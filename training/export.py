"""Export a trained network to an nwwatch ONNX file, verified against torch before it is written.

The network maps normalised images (N, 1, H, W) to logits (N, C, H, W). The exported graph
wraps it so that it follows :mod:`nwwatch.segment.contract`: input ``image``, outputs
``labels`` (uint8 argmax) and ``probabilities`` (softmax), dynamic N, H and W, opset
``contract.OPSET``, weights inside the file and the :class:`ModelMetadata` JSON under the
``nwwatch`` metadata key.

Exports can be silently wrong (an adaptive pooling whose bin edges were baked in at the trace
size), so every export is run with ONNX Runtime on several shapes that differ
from the trace shape (non-square, several batch sizes) and compared with torch: probabilities
within ``atol`` and identical labels wherever torch's decision is not a near-tie. The file is
written under a temporary name in the destination folder, verified, then renamed; a failed
verification raises :class:`ExportVerificationError` and leaves nothing at ``path``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from nwwatch.filehash import file_sha256
from nwwatch.segment.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OPSET,
    OUTPUT_LABELS,
    OUTPUT_PROBABILITIES,
    ModelMetadata,
)
from training.modelfiles import temporary_model_path

log = logging.getLogger(__name__)

EXPORTERS = ("dynamo", "legacy")
#: (N, H, W) verification shapes before rounding H and W up to the model's size_multiple.
DEFAULT_VERIFY_SHAPES: tuple[tuple[int, int, int], ...] = (
    (1, 64, 160),
    (3, 160, 96),
    (2, 224, 224),
)
#: (N, H, W) of the trace sample before rounding; differs from every verification shape.
DEFAULT_SAMPLE_SHAPE = (2, 96, 128)


class ExportVerificationError(RuntimeError):
    """The exported graph does not reproduce the torch model; nothing was written."""


@dataclass(frozen=True)
class ShapeCheck:
    """Verification of one input shape (N, H, W).

    max_abs_diff : largest |probability_onnx - probability_torch|.
    argmax_agreement : fraction of pixels whose labels are identical.
    near_ties : pixels whose torch top-2 probabilities are within 2 * atol (labels may differ
        there without the export being wrong).
    """

    shape: tuple[int, int, int]
    max_abs_diff: float
    argmax_agreement: float
    near_ties: int


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how it was verified."""

    path: Path
    exporter: str
    opset: int
    trace_shape: tuple[int, int, int]
    checks: tuple[ShapeCheck, ...]
    file_size_bytes: int
    sha256: str
    export_s: float
    verify_s: float

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.checks)

    @property
    def min_argmax_agreement(self) -> float:
        return min(c.argmax_agreement for c in self.checks)


class ContractWrapper(nn.Module):
    """logits network -> (labels uint8 (N, H, W), probabilities float32 (N, C, H, W)).

    The softmax is spelled out (max, exp, sum, divide): ONNX Runtime's CPU ``Softmax`` over the
    channel axis of an NCHW tensor transposes it twice and took 3x the time of the whole lean
    UNet at 512x512.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.network(image)
        labels = torch.argmax(logits, dim=1).to(torch.uint8)
        shifted = torch.exp(logits - torch.amax(logits, dim=1, keepdim=True))
        return labels, shifted / torch.sum(shifted, dim=1, keepdim=True)


def _round_up(value: int, multiple: int) -> int:
    return multiple * max(1, math.ceil(value / multiple))


def _default_shapes(multiple: int) -> list[tuple[int, int, int]]:
    return [
        (n, _round_up(h, multiple), _round_up(w, multiple)) for n, h, w in DEFAULT_VERIFY_SHAPES
    ]


def _trace(wrapper: nn.Module, sample: torch.Tensor, path: Path, exporter: str) -> None:
    names = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_LABELS, OUTPUT_PROBABILITIES])
    if exporter == "dynamo":
        dim = torch.export.Dim.DYNAMIC
        progress = io.StringIO()
        # The dynamo exporter prints its stages to stdout; keep them out of progress bars.
        with contextlib.redirect_stdout(progress):
            torch.onnx.export(
                wrapper,
                (sample,),
                str(path),
                dynamo=True,
                opset_version=OPSET,
                external_data=False,
                dynamic_shapes={"image": {0: dim, 2: dim, 3: dim}},
                verbose=False,
                **names,
            )
        log.debug("dynamo exporter: %s", progress.getvalue())
    else:
        axes = {
            INPUT_NAME: {0: "N", 2: "H", 3: "W"},
            OUTPUT_LABELS: {0: "N", 1: "H", 2: "W"},
            OUTPUT_PROBABILITIES: {0: "N", 2: "H", 3: "W"},
        }
        with warnings.catch_warnings():
            # Chosen explicitly by the caller; its deprecation notice is noise here.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                wrapper,
                (sample,),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                dynamic_axes=axes,
                **names,
            )


def install_model_file(temp: Path, path: Path) -> None:
    """Put the verified model file ``temp`` at ``path``: flushed to disk first, so a power
    cut after the rename cannot leave ``path`` naming an empty or partial file."""
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)


def finish_model_file(path: Path, metadata: ModelMetadata, model_version: int) -> None:
    """Embed the metadata, check opset and IO, save with all weights inside the file (the
    exporters' common last step before verification; ``path`` is the temporary file)."""
    model = onnx.load(str(path), load_external_data=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != OPSET:
        raise ExportVerificationError(f"exported opset {opsets} is not the pinned opset {OPSET}")
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_LABELS, OUTPUT_PROBABILITIES]:
        raise ExportVerificationError(
            f"graph inputs {inputs} / outputs {outputs} break the contract"
        )
    dims = model.graph.input[0].type.tensor_type.shape.dim
    fixed = [i for i in (0, 2, 3) if dims[i].HasField("dim_value")]
    if fixed:
        raise ExportVerificationError(f"input dims {fixed} of {INPUT_NAME!r} are not dynamic")
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})
    model.model_version = int(model_version)
    model.producer_name = "nwwatch-training"
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportVerificationError(f"the exported graph is not valid ONNX: {exc}") from exc
    onnx.save_model(model, str(path), save_as_external_data=False)
    stray = path.with_name(path.name + ".data")
    if stray.exists():
        stray.unlink()


def verify_onnx(
    path: str | os.PathLike[str],
    wrapper: nn.Module,
    shapes: Sequence[tuple[int, int, int]],
    metadata: ModelMetadata,
    *,
    atol: float = 1e-4,
    seed: int = 0,
) -> tuple[ShapeCheck, ...]:
    """Compare ONNX Runtime (CPU) with torch on random normalised inputs of each (N, H, W).

    Raises :class:`ExportVerificationError` when the metadata does not read back equal, a
    probability differs by more than ``atol``, or a label differs where torch's top-2
    probabilities are more than ``2 * atol`` apart.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    stored = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if stored is None or ModelMetadata.from_json(stored) != metadata:
        raise ExportVerificationError(f"{METADATA_KEY!r} metadata does not read back unchanged")
    generator = torch.Generator().manual_seed(seed)
    checks = []
    for n, h, w in shapes:
        image = torch.rand((n, 1, h, w), generator=generator) * 2 - 1
        with torch.no_grad():
            labels_t, probs_t = wrapper(image)
        labels_o, probs_o = session.run(
            [OUTPUT_LABELS, OUTPUT_PROBABILITIES], {INPUT_NAME: image.numpy()}
        )
        where = f"shape (N, H, W) = {(n, h, w)}"
        if labels_o.dtype != np.uint8 or labels_o.shape != (n, h, w):
            raise ExportVerificationError(
                f"{where}: labels are {labels_o.dtype} {labels_o.shape}, want uint8 {(n, h, w)}"
            )
        if probs_o.dtype != np.float32 or probs_o.shape != tuple(probs_t.shape):
            raise ExportVerificationError(
                f"{where}: probabilities are {probs_o.dtype} {probs_o.shape}, "
                f"want float32 {tuple(probs_t.shape)}"
            )
        diff = float(np.abs(probs_o - probs_t.numpy()).max())
        top2 = torch.topk(probs_t, 2, dim=1).values
        near_tie = ((top2[:, 0] - top2[:, 1]) <= 2 * atol).numpy()
        same = labels_o == labels_t.numpy()
        check = ShapeCheck((n, h, w), diff, float(same.mean()), int(near_tie.sum()))
        log.debug("export check %s", check)
        if not diff <= atol:
            raise ExportVerificationError(
                f"{where}: ONNX probabilities differ from torch by {diff:.3g} > atol {atol:g}"
            )
        decisive_mismatch = int((~same & ~near_tie).sum())
        if decisive_mismatch:
            raise ExportVerificationError(
                f"{where}: {decisive_mismatch} labels differ from torch away from near-ties "
                f"(agreement {check.argmax_agreement:.6f})"
            )
        checks.append(check)
    return tuple(checks)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    metadata: ModelMetadata,
    *,
    sample: torch.Tensor | None = None,
    verify_shapes: Sequence[tuple[int, int, int]] | None = None,
    atol: float = 1e-4,
    exporter: str = "dynamo",
    model_version: int = 1,
) -> ExportReport:
    """Export ``model`` to an nwwatch ONNX file at ``path``, verified before it is written.

    Parameters
    ----------
    model : maps normalised images float32 (N, 1, H, W) to logits (N, C, H, W); copied to the
        CPU in eval mode (the caller's model is not modified).
    path : destination ``.onnx`` file.
    metadata : stored under the ``nwwatch`` key; its ``size_multiple`` must equal the model's
        (when the model has one) and H, W of every shape must be multiples of it.
    sample : trace input (N, 1, H, W); default random, (2, 96, 128) rounded up to the multiple;
        a batch of 1 is repeated to 2 (a traced size of 1 would be fixed, not dynamic).
    verify_shapes : (N, H, W) shapes run through ONNX Runtime and torch; default (1, 64, 160),
        (3, 160, 96), (2, 224, 224) rounded up to the multiple. Must differ from the trace shape.
    atol : tolerance on probabilities.
    exporter : ``"dynamo"`` (torch.export based, the default) or ``"legacy"`` (TorchScript
        based, ~10x faster to export; both verified correct on these architectures).
    model_version : ONNX ``model_version`` field.

    Returns
    -------
    ExportReport : per-shape max |diff| and label agreement, file size, sha256.

    Raises
    ------
    ExportVerificationError : the exported graph does not reproduce torch; ``path`` untouched.
    ValueError : shapes that are not multiples of ``size_multiple`` or equal the trace shape.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter: {exporter!r} is not one of {EXPORTERS}")
    multiple = metadata.size_multiple
    own = getattr(model, "size_multiple", None)
    if own is not None and own != multiple:
        raise ValueError(f"metadata.size_multiple {multiple} != model.size_multiple {own}")
    if sample is None:
        n, h, w = DEFAULT_SAMPLE_SHAPE
        generator = torch.Generator().manual_seed(1)
        sample = torch.rand(
            (n, 1, _round_up(h, multiple), _round_up(w, multiple)), generator=generator
        )
        sample = sample * 2 - 1
    sample = sample.detach().to("cpu", torch.float32)
    if sample.ndim != 4 or sample.shape[1] != 1:
        raise ValueError(f"sample: need (N, 1, H, W), got {tuple(sample.shape)}")
    if sample.shape[0] == 1:
        # torch.export specialises dimensions of size 1; a batch of 2 keeps N dynamic.
        sample = sample.repeat(2, 1, 1, 1)
    trace_shape = (int(sample.shape[0]), int(sample.shape[2]), int(sample.shape[3]))
    shapes = [tuple(int(v) for v in s) for s in (verify_shapes or _default_shapes(multiple))]
    for shape in [trace_shape, *shapes]:
        if shape[1] % multiple or shape[2] % multiple:
            raise ValueError(f"shape {shape}: H and W must be multiples of {multiple}")
    if trace_shape in shapes or len({s[1:] for s in shapes} - {trace_shape[1:]}) == 0:
        raise ValueError(f"verify_shapes {shapes} must differ from the trace shape {trace_shape}")

    network = copy.deepcopy(model).to("cpu", torch.float32).eval()
    wrapper = ContractWrapper(network).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_model_path(path)
    started = time.perf_counter()
    try:
        try:
            with torch.no_grad():
                _trace(wrapper, sample, temp, exporter)
        except Exception as exc:
            raise ExportVerificationError(f"{exporter} export failed: {exc}") from exc
        finish_model_file(temp, metadata, model_version)
        exported = time.perf_counter()
        checks = verify_onnx(temp, wrapper, shapes, metadata, atol=atol)
        verified = time.perf_counter()
        digest = file_sha256(temp)
        size = temp.stat().st_size
        install_model_file(temp, path)
    finally:
        for leftover in (temp, temp.with_name(temp.name + ".data")):
            if leftover.exists():
                leftover.unlink()
    report = ExportReport(
        path=path,
        exporter=exporter,
        opset=OPSET,
        trace_shape=trace_shape,
        checks=checks,
        file_size_bytes=size,
        sha256=digest,
        export_s=exported - started,
        verify_s=verified - exported,
    )
    log.info(
        "exported %s (%d bytes, max |diff| %.2g, min agreement %.6f)",
        path,
        size,
        report.max_abs_diff,
        report.min_argmax_agreement,
    )
    return report
