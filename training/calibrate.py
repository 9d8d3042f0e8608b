"""Per-class logit offsets for a trained model, fitted on labeled frames without training.

A loss with a Dice term moves a class boundary away from the position cross-entropy alone
would give it (the Bayes position of the pixel-wise posterior). A constant added to one class's
logits moves every boundary of that class the same way, so a few constants, one per class
(the first class fixed at 0: only differences matter), fitted by minimising the
cross-entropy of the offset logits against true labels, move the boundaries back where the
data put them. The network is unchanged; the offsets are an ``Add`` in front of the graph's
``ArgMax`` and softmax, so the runtime (:class:`nwwatch.segment.session.Segmenter`) reads the
model as before.

    python -m training.calibrate MODEL.onnx DATA --out MODEL2.onnx [--band-px 3] [--json FIT.json]

DATA is a labeled folder (:mod:`nwwatch.io.dataset`) that is not an evaluation set. The logits
are the network's, for each frame normalised and scaled as the runtime does at its first pass
(:mod:`nwwatch.segment.scale`), mapped back to the frame's pixels. With ``--band-px`` only pixels
within that distance of a pixel of another true class enter the loss: the offsets then answer
to where the boundaries lie, not to regions the model gets wholly wrong.

A model fine-tuned from offset weights retrains the last layer; the offsets are not part of the
weights (``training/pretrained``) and must be fitted again for a fine-tuned model.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from scipy.ndimage import distance_transform_edt
from scipy.optimize import minimize

from nwwatch.atomic import atomic_write, atomic_write_json
from nwwatch.classes import UNLABELED
from nwwatch.filehash import file_sha256
from nwwatch.options import stream_problem
from nwwatch.segment.contract import (
    INPUT_NAME,
    METADATA_KEY,
    OUTPUT_LABELS,
    ModelMetadataError,
    read_metadata,
)
from nwwatch.segment.scale import WorkingScale, resize_images, working_shape
from nwwatch.segment.session import pad_to_multiple
from training.modelmeta import model_file_metadata

#: Name of the initializer holding the offsets, shape (1, C, 1, 1).
OFFSET_NAME = "nwwatch_logit_offset"


class CalibrationError(ValueError):
    """A model or dataset the offsets cannot be fitted to or written into; names the file."""


@dataclass(frozen=True)
class LogitOffsetFit:
    """Result of :func:`fit_logit_offsets`.

    offsets : one float per class (logit units), the fixed class's 0; empty when no fit.
    loss_before, loss_after : mean cross-entropy (nats per pixel) without and with them.
    pixels : pixels in the loss.
    band_px : the boundary band used (None: every labeled pixel).
    ok : whether the optimiser converged; ``reason`` says why not.
    """

    offsets: tuple[float, ...]
    loss_before: float
    loss_after: float
    pixels: int
    band_px: float | None
    ok: bool
    reason: str


def logits_tensor(model: onnx.ModelProto) -> str:
    """Name of the tensor the graph's ``labels`` output is the ArgMax of (the logits)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    name = OUTPUT_LABELS
    while name in producers:
        node = producers[name]
        if node.op_type == "ArgMax":
            return node.input[0]
        if node.op_type not in ("Cast", "Identity"):
            break
        name = node.input[0]
    raise CalibrationError(f"no ArgMax behind the {OUTPUT_LABELS!r} output: not an nwwatch model")


def boundary_band(labels: np.ndarray, band_px: float) -> np.ndarray:
    """bool (H, W): labeled pixels within ``band_px`` (Euclidean, pixel centres) of a pixel
    of another labeled class. ``labels`` uint8 (H, W) class ids, 255 unlabeled."""
    band = np.zeros(labels.shape, bool)
    labeled = labels != UNLABELED
    for c in np.unique(labels[labeled]):
        near_c = distance_transform_edt(labels != c) <= band_px
        band |= near_c & labeled & (labels != c)
    return band


def network_logits(model_path: str | os.PathLike[str], images: list[np.ndarray],
                   threads: int | None = 1) -> list[np.ndarray]:
    """The network's logits float32 (C, H, W) for each normalised frame float32 (H, W).

    As the runtime's first pass: the frame resized by the model's working scale, padded to its
    size multiple, the padding cut off, the logits resized back (bilinear) to the frame.
    """
    model = onnx.load(str(model_path))
    meta = read_metadata(model.metadata_props, model_path)
    scale = WorkingScale.from_metadata(meta.kind, meta.extra)
    name = logits_tensor(model)
    model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    out = []
    for image in images:
        height, width = image.shape
        rows, cols = working_shape(height, width, scale.size_factor(height, width))
        work = resize_images(np.asarray(image, np.float32)[None], rows, cols)
        feed = np.ascontiguousarray(pad_to_multiple(work, meta.size_multiple)[:, None])
        logits = session.run([name], {INPUT_NAME: feed})[0][0, :, :rows, :cols]
        if (rows, cols) != (height, width):
            logits = np.stack([cv2.resize(z, (width, height), interpolation=cv2.INTER_LINEAR)
                               for z in logits])
        out.append(np.ascontiguousarray(logits, dtype=np.float32))
    return out


def fit_logit_offsets(logits: list[np.ndarray], labels: list[np.ndarray],
                      band_px: float | None = 3.0, fixed_class: int = 0) -> LogitOffsetFit:
    """Per-class offsets b minimising the mean cross-entropy of softmax(z + b) against labels.

    Parameters
    ----------
    logits : float (C, H, W) per frame.
    labels : uint8 (H, W) per frame, class ids, 255 unlabeled (left out).
    band_px : only pixels within this distance of another true class (:func:`boundary_band`);
        None: every labeled pixel.
    fixed_class : the class whose offset stays 0.

    The loss is convex in b; L-BFGS with the exact gradient (mean of softmax minus one-hot).
    A fit without pixels or without convergence is returned with ``ok`` False and a reason.
    """
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} logit maps but {len(labels)} label maps")
    zs, ys = [], []
    for z, y in zip(logits, labels, strict=True):
        if z.shape[1:] != y.shape:
            raise ValueError(f"logits {z.shape} and labels {y.shape} differ in (H, W)")
        mask = y != UNLABELED if band_px is None else boundary_band(y, band_px)
        zs.append(z[:, mask].T.astype(np.float32))
        ys.append(y[mask].astype(np.int64))
    n_classes = logits[0].shape[0] if logits else 0
    z = np.concatenate(zs) if zs else np.zeros((0, n_classes), np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    if y.size == 0:
        return LogitOffsetFit((), float("nan"), float("nan"), 0, band_px, False, "no_pixels")
    free = [c for c in range(n_classes) if c != fixed_class]
    rows = np.arange(y.size)

    def loss_grad(b_free: np.ndarray) -> tuple[float, np.ndarray]:
        b = np.zeros(n_classes)
        b[free] = b_free
        shifted = z + b.astype(np.float32)
        top = shifted.max(axis=1, keepdims=True)
        e = np.exp(shifted - top, dtype=np.float64)
        total = e.sum(axis=1)
        loss = float(np.mean(np.log(total) + top[:, 0] - shifted[rows, y]))
        p = e / total[:, None]
        grad = p.mean(axis=0) - np.bincount(y, minlength=n_classes) / y.size
        return loss, grad[free]

    before = loss_grad(np.zeros(len(free)))[0]
    result = minimize(loss_grad, np.zeros(len(free)), jac=True, method="L-BFGS-B")
    offsets = np.zeros(n_classes)
    offsets[free] = result.x
    return LogitOffsetFit(tuple(float(v) for v in offsets), before, float(result.fun),
                          int(y.size), band_px, bool(result.success),
                          "ok" if result.success else f"not_converged: {result.message}")


def add_logit_offsets(model: onnx.ModelProto, offsets: tuple[float, ...]) -> onnx.ModelProto:
    """A copy of ``model`` with ``offsets`` (one per class) added to its logits in front of
    every node that reads them (ArgMax and softmax). A model that has offsets already gets
    the sum."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    values = np.asarray(offsets, np.float32).reshape(1, -1, 1, 1)
    for init in out.graph.initializer:
        if init.name == OFFSET_NAME:
            total = numpy_helper.to_array(init) + values
            init.CopyFrom(numpy_helper.from_array(total.astype(np.float32), OFFSET_NAME))
            return out
    logits = logits_tensor(out)
    shifted = f"{logits}_offset"
    nodes = list(out.graph.node)
    producer = next((i for i, n in enumerate(nodes) if logits in n.output), -1)
    for node in nodes:
        for k, name in enumerate(node.input):
            if name == logits:
                node.input[k] = shifted
    add = onnx.helper.make_node("Add", [logits, OFFSET_NAME], [shifted], name=OFFSET_NAME)
    nodes.insert(producer + 1, add)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.append(numpy_helper.from_array(values, OFFSET_NAME))
    return out


def write_offset_model(model_path: str | os.PathLike[str], fit: LogitOffsetFit,
                       out_path: str | os.PathLike[str], data: str, command: str) -> Path:
    """Write ``model_path`` with ``fit``'s offsets to ``out_path``; the metadata keeps the
    model's own and records the offsets, the fit and the source model (``extra.logit_offset``)
    and ``command`` as the training command."""
    if not fit.ok:
        raise CalibrationError(f"{model_path}: the fit failed ({fit.reason}); nothing written")
    model = onnx.load(str(model_path))
    meta = read_metadata(model.metadata_props, model_path)
    extra = dict(meta.extra)
    record = {"offsets": list(fit.offsets), "class_names": list(meta.class_names),
              "fit": {k: v for k, v in asdict(fit).items() if k != "offsets"},
              "data": data, "source_model_sha256": file_sha256(model_path),
              "source_training_command": meta.training_command}
    if "logit_offset" in extra:
        record["earlier"] = extra["logit_offset"]
    extra["logit_offset"] = record
    meta = replace(meta, extra=extra, training_command=command)
    edited = add_logit_offsets(model, fit.offsets)
    del edited.metadata_props[:]
    onnx.helper.set_model_props(edited, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(edited)
    out = Path(out_path)
    with atomic_write(out) as handle:  # never half a model at --out (a full disk, a crash)
        onnx.save_model(edited, handle)
    return out


def main(argv: list[str] | None = None) -> int:
    from nwwatch.io.dataset import DatasetLayoutError

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path, help="labeled DATA folder (not an evaluation set)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the model with the offsets (another file than MODEL)")
    parser.add_argument("--band-px", type=float, default=3.0,
                        help="pixels within this distance of another true class (<= 0: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the fit here as well")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    command = "python -m training.calibrate " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    try:
        if args.out.resolve() == args.model.resolve():  # the fitted model would be lost
            raise CalibrationError(f"--out {args.out} is the model itself; write the model "
                                   f"with the offsets to another file")
        if problem := stream_problem(args.out):  # renamed over, it would be replaced
            raise CalibrationError(f"--out {args.out} {problem}: give the model a file")
        _calibrate(args, command)
    except (CalibrationError, DatasetLayoutError, ModelMetadataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _calibrate(args: argparse.Namespace, command: str) -> None:
    """``main``'s work: fit the offsets on ``args.data``, write ``args.out``."""
    from nwwatch.io.dataset import pair_folder, read_pair
    from nwwatch.normalize import NAN_FILL, normalize_image

    if not args.model.is_file():
        raise CalibrationError(f"{args.model}: model not found")
    meta = model_file_metadata(args.model)
    images, labels = [], []
    from nwwatch.volume.fill import data_volumes

    # A volume's constant fill is no data, as in training: the grey range is that of its
    # data, its voxels NaN and a label on them left out (255), whatever a tomogram's scope.
    scope = meta.normalization_scope
    volumes, _ = data_volumes(args.data, meta.kind, scope)
    for _, image_path, label_path in pair_folder(args.data):
        raw, label = read_pair(image_path, label_path, len(meta.class_names))
        value_range = volumes.range_for(image_path, raw) if scope == "volume" else None
        if volumes is not None:
            raw, label, _, _ = volumes.slice_with_data(image_path, raw, label,
                                                       required=scope == "volume")
        images.append(normalize_image(raw, value_range, nan_fill=NAN_FILL[meta.kind]))
        labels.append(label)
    band = args.band_px if args.band_px > 0 else None
    fit = fit_logit_offsets(network_logits(args.model, images, args.threads), labels, band)
    print(f"{len(images)} frames, {fit.pixels} pixels: offsets "
          + ", ".join(f"{n} {b:+.4f}" for n, b in zip(meta.class_names, fit.offsets, strict=False))
          + f"; cross-entropy {fit.loss_before:.5f} -> {fit.loss_after:.5f} ({fit.reason})")
    write_offset_model(args.model, fit, args.out, f"{len(images)} frames of {args.data}", command)
    print(f"wrote {args.out}")
    if args.json:
        if stream_problem(args.json):  # /dev/stdout, a pipe: written into, never renamed over
            args.json.write_text(json.dumps(asdict(fit), indent=1) + "\n")
        else:
            atomic_write_json(args.json, asdict(fit))


if __name__ == "__main__":
    sys.exit(main())
