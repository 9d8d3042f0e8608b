"""Pseudo-labeling (seed 000's model F): a teacher labels the unlabeled set, the student
trains with CE + Dice on labeled U pseudo-labeled images.

Pixels whose teacher confidence (max softmax probability) is below ``confidence`` become 255
and are ignored. Provenance (the teacher's absolute path and sha256, threshold, kept fraction,
image count) goes into the exported model's metadata.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from nwwatch.classes import UNLABELED
from nwwatch.filehash import file_sha256
from training.data import LabeledImage, TrainingData
from training.paradigms.supervised import SupervisedParadigm


def _pad_to(image: np.ndarray, multiple: int) -> np.ndarray:
    pad_h, pad_w = (-image.shape[0]) % multiple, (-image.shape[1]) % multiple
    if not (pad_h or pad_w):
        return image
    mode = "reflect" if pad_h < image.shape[0] and pad_w < image.shape[1] else "edge"
    return np.pad(image, ((0, pad_h), (0, pad_w)), mode=mode)


def _check_classes(teacher: Path, theirs, class_names) -> None:
    if theirs is not None and list(theirs) != list(class_names):
        # the count alone let a teacher label the data's droplets as its nanowire
        raise ValueError(f"{teacher}: the teacher's classes {list(theirs)}, the data's "
                         f"{list(class_names)}: where they mean the same classes in the same "
                         f"order, name them as the teacher does in DATA/dataset.toml (classes "
                         f"= {list(theirs)}); otherwise the teacher labels other classes "
                         f"than the data's")


def teacher_probabilities(teacher: Path, images: list[np.ndarray], class_names: Sequence[str],
                          device: torch.device) -> list[np.ndarray]:
    """Softmax (C, H, W) float32 of a teacher (.pt checkpoint or .onnx model) on each image;
    ValueError naming the teacher when its classes are not ``class_names`` (names, order)."""
    if teacher.suffix == ".onnx":
        from nwwatch.segment.session import Segmenter

        segmenter = Segmenter(teacher, providers=("cpu",))
        _check_classes(teacher, segmenter.metadata.class_names, class_names)
        return [segmenter.segment(image).probabilities[0] for image in images]
    from training.checkpoint import load_checkpoint
    from training.paradigms.base import build_inference_model

    payload = load_checkpoint(teacher)
    _check_classes(teacher, payload.get("class_names"), class_names)
    model = build_inference_model(payload["inference"])
    model.load_state_dict(payload["inference_state"])
    model = model.to(device).eval()
    out = []
    with torch.no_grad():
        for image in images:
            padded = _pad_to(image, model.size_multiple)
            logits = model(torch.from_numpy(padded)[None, None].to(device))
            if logits.shape[1] != len(class_names):
                raise ValueError(f"{teacher}: teacher has {logits.shape[1]} classes, the data "
                                 f"{len(class_names)}")
            probs = logits.softmax(dim=1)[0, :, : image.shape[0], : image.shape[1]]
            out.append(probs.cpu().numpy())
    return out


def pseudo_label(probabilities: np.ndarray, confidence: float) -> np.ndarray:
    """uint8 (H, W) argmax of (C, H, W) probabilities, 255 where max probability < confidence."""
    labels = probabilities.argmax(axis=0).astype(np.uint8)
    labels[probabilities.max(axis=0) < confidence] = UNLABELED
    return labels


class PseudoLabelParadigm(SupervisedParadigm):
    name = "pseudo-label"

    def extra_labeled(self, data: TrainingData, device: torch.device,
                      echo: Callable[[str], None]) -> list[LabeledImage]:
        if not self.config.teacher:
            raise ValueError("--paradigm pseudo-label needs --teacher MODEL.pt|MODEL.onnx")
        teacher = Path(self.config.teacher)
        if not teacher.is_file():
            raise FileNotFoundError(f"{teacher}: teacher model not found (a resumed run's "
                                    f"teacher moved? give its new place with --teacher; its "
                                    f"sha256 checks it is the same file)")
        if not data.unlabeled:
            raise ValueError(f"{data.source}: pseudo-labeling needs unlabeled images "
                             f"(DATA/unlabeled/)")
        probabilities = teacher_probabilities(teacher, data.unlabeled, data.class_names,
                                              device)
        items, kept, total = [], 0, 0
        for k, (image, probs) in enumerate(zip(data.unlabeled, probabilities, strict=True)):
            labels = pseudo_label(probs, self.config.confidence)
            n = int((labels != UNLABELED).sum())
            kept += n
            total += labels.size
            if n:  # an image of no kept pixel would only dilute the batches with empty crops
                items.append(LabeledImage(f"pseudo_{k:05d}", image, labels))
        self.provenance.update(
            teacher=os.path.abspath(teacher),  # as --init's and --frozen-encoder's
            teacher_sha256=file_sha256(teacher),
            confidence=self.config.confidence,
            kept_fraction=kept / max(total, 1),
            pseudo_labeled_images=len(items),
        )
        echo(kept_summary(teacher, self.config.confidence, kept, total, len(data.unlabeled),
                          len(data.unlabeled) - len(items)))
        return items


def kept_summary(teacher: Path, confidence: float, kept: int, total: int, images: int,
                 empty: int = 0) -> str:
    """The line that says how much the teacher labeled; a warning when it kept no pixel (the
    student then trains on DATA's labels alone, which only ``extra.provenance`` would say);
    ``empty`` of the ``images`` kept none and are left out of training."""
    if kept == 0:
        return (f"warning: the teacher {teacher} is below --confidence {confidence:g} on every "
                f"pixel of the {images} unlabeled image(s): no pseudo-label is kept and the "
                f"student trains on DATA's labels alone (lower --confidence, or give a teacher "
                f"trained longer)")
    return (f"pseudo-labels: the teacher {teacher} labeled {100 * kept / total:.1f} % of the "
            f"pixels of {images} unlabeled image(s) at --confidence {confidence:g}"
            + (f"; {empty} of them with no pixel kept are left out" if empty else ""))
