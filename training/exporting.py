"""Turn a trained logits model into the shipped ONNX file(s) with full metadata.

Uses the models helper's :func:`training.export.export_onnx` (verified against torch before
writing) and, with ``quantize = "int8"``, :func:`training.quantize.quantize_int8` (kept only
when label agreement with fp32 is >= 99.9 %).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from nwwatch.classes import SOLID, UNLABELED
from nwwatch.segment.contract import ModelMetadata
from nwwatch.segment.scale import METADATA_KEY as WORKING_SCALE_KEY
from nwwatch.segment.scale import scale_from_labels
from nwwatch.volume.crosscheck import REFERENCE_SIGMA_PX, ContrastAccumulator
from nwwatch.volume.verdict import VOXEL_SIZE_KEY, VOXEL_SIZE_SOURCE_KEY
from training.config import TrainConfig
from training.data import TrainingData
from training.modelfiles import int8_path


def class_mean_intensity(data: TrainingData) -> dict[str, float]:
    """Mean normalised intensity of the labeled pixels of each class ({name: mean}); classes
    without a labeled pixel are left out."""
    out = {}
    for class_id, name in enumerate(data.class_names):
        values = [item.image[item.label == class_id] for item in data.labeled]
        values = [v for v in values if v.size]
        if values:
            out[name] = round(float(np.concatenate(values).mean()), 6)
    return out


def _solid_id(class_names: tuple[str, ...]) -> int:
    """The solid class's id as the runtime finds it (``nwwatch.volume.segment``)."""
    return class_names.index("solid") if "solid" in class_names else SOLID


def _volume_pages(data: TrainingData) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Every normalised page of the training volume with its voxels that have data (None: all
    of them). The ``--volume`` workflow's labeled slices are named ``..._zNNNNN`` and the
    unlabeled ones are the others in order, which places ``data.valid``'s slices."""
    pages = [item.image for item in data.labeled] + list(data.unlabeled)
    if data.valid is None:
        return [(page, None) for page in pages]
    labeled_z = [re.search(r"_z(\d+)$", item.stem) for item in data.labeled]
    depth = data.valid.shape[0]
    if None in labeled_z or len(pages) != depth:
        return [(page, None) for page in pages]
    taken = [int(match.group(1)) for match in labeled_z]
    order = taken + [z for z in range(depth) if z not in set(taken)]
    return [(page, data.valid[z]) for page, z in zip(pages, order, strict=True)]


def class_contrast(data: TrainingData) -> dict[str, dict[str, float]]:
    """How far apart the solid and the other classes lie in normalised intensity, for the
    runtime's ``contrast_inverted`` / ``no_contrast`` verdicts (``nwwatch.volume.verdict``).

    ``labels``: the labeled solid pixels against all other labeled pixels. ``volume``: every
    page of the training data (the ``--volume`` workflow: the whole volume) blurred per slice
    as the runtime's reference (``REFERENCE_SIGMA_PX``) and cut half-way between the labeled
    solid mean and the mean of the other classes' means (the cut of
    ``nwwatch.volume.verdict.labels_threshold_share``); the statistics of the unblurred
    values on each side. Each is :meth:`ClassContrast.as_dict`; a part is left out when a side
    has fewer than two pixels.
    """
    solid_id = _solid_id(tuple(data.class_names))
    labels = ContrastAccumulator()
    for item in data.labeled:
        labeled = (item.label != UNLABELED) & (item.label < len(data.class_names))
        labels.add(item.image, item.label == solid_id, labeled)
    out: dict[str, dict[str, float]] = {}
    on_labels = labels.result()
    if math.isfinite(on_labels.separation_sd):
        out["labels"] = on_labels.as_dict()
    means = class_mean_intensity(data)
    solid_name = data.class_names[solid_id]
    others = [v for k, v in means.items() if k != solid_name]
    if solid_name not in means or not others:
        return out
    cut = 0.5 * (means[solid_name] + sum(others) / len(others))
    brighter = means[solid_name] > sum(others) / len(others)
    volume = ContrastAccumulator()
    for page, valid in _volume_pages(data):
        blurred = cv2.GaussianBlur(page, (0, 0), REFERENCE_SIGMA_PX)
        volume.add(page, blurred > cut if brighter else blurred < cut,
                   np.isfinite(page) if valid is None else valid)
    on_volume = volume.result()
    if (math.isfinite(on_volume.separation_sd) and on_volume.separation_sd != 0
            and math.isfinite(on_volume.solid_sd_ratio) and on_volume.solid_sd_ratio > 0):
        out["volume"] = on_volume.as_dict()
    return out


def training_voxel_size(data: TrainingData) -> list[float | None] | None:
    """The training volume's voxel size as recorded in a tomogram model's
    ``extra["voxel_size_nm"]``: [z, y, x] nm, None on an axis the volume declared no size
    for (never compared), or None when it declared none at all."""
    if data.voxel_size_nm is None or all(v is None for v in data.voxel_size_nm):
        return None
    return [None if v is None else float(v) for v in data.voxel_size_nm]


def class_pixel_counts(data: TrainingData) -> dict[str, int]:
    """Labeled pixels of each class ({name: count}, every class listed)."""
    return {name: int(sum(np.count_nonzero(item.label == class_id) for item in data.labeled))
            for class_id, name in enumerate(data.class_names)}


#: The labeled images' stems are recorded in a model trained on at most this many (about
#: 20 bytes each in its metadata).
LABELED_STEMS_MAX = 10_000


def build_metadata(model: torch.nn.Module, config: TrainConfig, data: TrainingData,
                   metrics: dict[str, float], provenance: dict[str, Any], data_sha256: str,
                   version: str, crop_px: int | None = None,
                   exported: tuple[int, list[str]] | None = None,
                   start_metrics: dict[str, float] | None = None,
                   selection: dict[str, Any] | None = None) -> ModelMetadata:
    """The :class:`ModelMetadata` of a trained model. ``crop_px``: the side of the crops it
    trained on (``training.augment.effective_crop``: ``config.crop`` capped at the largest
    image), recorded as ``extra.crop``; ``extra.crop_option`` is ``config.crop`` (``--crop``).
    None: ``config.crop``. ``exported``: (epoch, held-out stems), recorded as
    ``extra.exported_epoch`` and ``extra.validation_images``. ``start_metrics``: a
    fine-tune's starting weights scored as the epochs were, before training, recorded as
    ``extra.start_metrics``. ``selection``: how ``nwwatch train --volume`` chose this
    network (``extra["selection"]``, which the runtime's verdicts read), kept by its
    checkpoint for the exports of its resumes."""
    extra: dict[str, Any] = {
        "epochs": config.epochs,
        "seed": config.seed,
        # What the model saw, not the option: with frames smaller than --crop the crops were
        # capped (a 384 option on 128 px frames trained on 128 px crops).
        "crop": config.crop if crop_px is None else int(crop_px),
        "crop_option": config.crop,
        "model_config": dict(getattr(model, "config", {})),
        "training_source": data.source,
        "labeled_images": len(data.labeled),
        "unlabeled_images": len(data.unlabeled),
    }
    if len(data.labeled) <= LABELED_STEMS_MAX:
        # which of a DATA folder's images it saw (trained on, or chose its epoch): nwwatch
        # evaluate on that folder names them, not frames labelled since
        extra["labeled_stems"] = sorted(item.stem for item in data.labeled)
    if exported is not None:
        # which epoch's weights these are, and which images chose it: keep those out of an
        # evaluation of the model (they chose it, so they flatter it)
        extra["exported_epoch"], extra["validation_images"] = exported[0], list(exported[1])
    if start_metrics is not None:
        # what the weights it was fine-tuned from scored on those images: a model that
        # scores below them is known as such
        extra["start_metrics"] = {k: float(v) for k, v in start_metrics.items()}
    if data.kind == "insitu" and config.working_scale is not None:
        # a fine-tune trained on its frames brought into its starting model's scale
        extra[WORKING_SCALE_KEY] = dict(config.working_scale)
    elif data.kind == "insitu" and data.labeled:
        # The runtime resizes frames into the object scale the model learned (frame pixels).
        extra[WORKING_SCALE_KEY] = scale_from_labels(
            [item.label for item in data.labeled], config.crop).to_dict()
    if data.kind == "tomogram":
        # The runtime's label-free cross-check needs to know which class is bright.
        extra["class_mean_intensity"] = class_mean_intensity(data)
        # The runtime flags models trained on too few pixels of a class (nwwatch.volume.verdict).
        extra["class_pixel_counts"] = class_pixel_counts(data)
        # The runtime's contrast verdicts compare the mask's classes with these.
        extra["contrast"] = class_contrast(data)
        # The runtime flags a volume of another voxel size (voxel_size_mismatch).
        extra[VOXEL_SIZE_KEY] = training_voxel_size(data)
        extra[VOXEL_SIZE_SOURCE_KEY] = data.voxel_size_source
    if provenance:
        extra["provenance"] = provenance
    if selection is not None:
        extra["selection"] = dict(selection)
    return ModelMetadata(
        kind=data.kind,
        class_names=tuple(data.class_names),
        arch=str(getattr(model, "arch", config.arch)),
        paradigm=config.paradigm,
        size_multiple=int(model.size_multiple),
        normalization_scope=data.normalization_scope,
        nwwatch_version=version,
        training_data_sha256=data_sha256,
        training_command=config.command,
        validation_metrics={k: float(v) for k, v in metrics.items()},
        extra=extra,
    )


def calibration_stack(images: list[np.ndarray], multiple: int, count: int = 16,
                      max_side: int = 512) -> np.ndarray:
    """float32 (N, h, w): centre crops of a common size (a multiple of ``multiple``)."""
    chosen = images[:count]
    height = min(min(i.shape[0] for i in chosen), max_side)
    width = min(min(i.shape[1] for i in chosen), max_side)
    height = max(multiple, height - height % multiple)
    width = max(multiple, width - width % multiple)
    out = []
    for image in chosen:
        if image.shape[0] < height or image.shape[1] < width:
            image = np.pad(image, ((0, max(0, height - image.shape[0])),
                                   (0, max(0, width - image.shape[1]))), mode="edge")
        r0 = (image.shape[0] - height) // 2
        c0 = (image.shape[1] - width) // 2
        out.append(image[r0:r0 + height, c0:c0 + width])
    return np.stack(out).astype(np.float32)


def export_trained(model: torch.nn.Module, config: TrainConfig, data: TrainingData,
                   metrics: dict[str, float], provenance: dict[str, Any], data_sha256: str,
                   calibration_images: list[np.ndarray], version: str,
                   validation_images: list[np.ndarray] | None = None,
                   crop_px: int | None = None,
                   exported: tuple[int, list[str]] | None = None,
                   start_metrics: dict[str, float] | None = None,
                   selection: dict[str, Any] | None = None,
                   ) -> tuple[Path, Path | None, dict[str, Any]]:
    """Write ``config.out`` (and ``<stem>-int8.onnx`` when asked and accepted).
    ``crop_px``: the crop side the run trained with; ``exported``: (the epoch whose weights
    these are, the held-out stems that chose it) and ``start_metrics`` (a fine-tune's
    starting weights' scores) and ``selection`` (:func:`build_metadata`).

    The INT8 candidate is calibrated on training images and its label agreement with fp32 is
    measured on ``validation_images`` (held out) when given.

    Returns (fp32 path, int8 path or None, reports).
    """
    from training.export import export_onnx

    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    metadata = build_metadata(model, config, data, metrics, provenance, data_sha256, version,
                              crop_px, exported, start_metrics, selection)
    calibration = calibration_stack(calibration_images, int(model.size_multiple))
    reports: dict[str, Any] = {"export": export_onnx(model, out, metadata,
                                                     exporter=config.exporter)}
    kept_int8 = None
    if config.quantize == "int8":
        from training.quantize import quantize_int8

        candidate = int8_path(out)
        try:
            held_out = (calibration_stack(validation_images, int(model.size_multiple))
                        if validation_images else None)
            report = quantize_int8(out, candidate, calibration, min_agreement=0.999,
                                   validation_images=held_out)
        except Exception as exc:  # rejected or failed: the fp32 model stays the result
            reports["int8"] = f"not kept: {exc}"
            candidate.unlink(missing_ok=True)
        else:
            reports["int8"] = report
            if getattr(report, "kept", True) and candidate.is_file():
                kept_int8 = candidate
    return out, kept_int8, reports


def export_line(report: Any) -> str:
    """How the exported model was verified against torch, for the user (``report``: the
    :class:`training.export.ExportReport` of :func:`export_trained`'s ``reports["export"]``)."""
    shapes = ", ".join("x".join(map(str, check.shape)) for check in report.checks)
    return (f"export verified: ONNX Runtime against torch ({report.exporter} exporter) on "
            f"{len(report.checks)} input shapes (N x H x W: {shapes}): max |probability "
            f"difference| {report.max_abs_diff:.2g}, labels agree on at least "
            f"{100 * report.min_argmax_agreement:.4f} % of the pixels of each")


def int8_line(int8: Path | None, report: Any) -> str:
    """What ``--quantize int8`` gave, for the user: the INT8 model's path, else the agreement
    it missed or why the quantisation failed (``report``: :func:`export_trained`'s
    ``reports["int8"]``)."""
    if int8 is not None:
        return (f"int8 model: {int8} (label agreement with the float model "
                f"{100 * report.agreement:.2f} % on {report.validation_images} held-out "
                f"image(s))")
    if isinstance(report, str):  # "not kept: <the error>"
        return f"int8 model {report}"
    return (f"int8 model not kept: label agreement with the float model "
            f"{100 * report.agreement:.2f} % on {report.validation_images} held-out image(s), "
            f"below {100 * report.min_agreement:.2f} %")
