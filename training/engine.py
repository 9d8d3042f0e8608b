"""The training loop shared by every paradigm: data, optimiser, schedule, validation,
checkpoints, resume and export.

- SGD (lr 0.01, momentum 0.9, weight decay 1e-4 by default), poly learning rate stepped per
  ITERATION: ``lr_t = lr * (1 - t / T) ** 0.9``.
- Random crops with TEM augmentation (:mod:`training.augment`); labeled crops always contain
  labeled pixels. Made by the loop itself or by ``config.workers`` threads ahead of it
  (:mod:`training.sampler`): the same batches either way.
- Validation mIoU after every epoch on the saved validation split (or, without one, on the
  labeled pixels of the training images, reported under ``train_*`` keys); a fine-tune's
  (``--init``) starting weights are scored so before training ("epoch 0"), and a warning
  (:func:`starting_weights_warning`) says when the exported weights score no higher.
- A checkpoint ``MODEL.pt`` after every epoch; ``resume=True`` continues from its epoch with
  its settings, split and optimiser state. The exported weights are those of the best
  validation epoch (the last epoch when there is no validation split, and for ``contrastive``
  whose classifier is refit at the end).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from nwwatch import __version__
from nwwatch.filehash import file_sha256
from nwwatch.io.dataset import list_unlabeled
from nwwatch.segment.metrics import (
    InterfaceOffsets,
    SegmentationMetrics,
    confusion_matrix,
    interface_offsets_px,
    metrics_from_confusion,
)
from nwwatch.segment.scale import WorkingScale
from nwwatch.segment.session import pad_to_multiple
from training.augment import effective_crop
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import SELF_NEGATIVES, TrainConfig
from training.data import LabeledImage, TrainingData, load_folder, load_volume_slices, make_split
from training.modelfiles import checkpoint_path
from training.paradigms import PARADIGMS, Paradigm
from training.resume import resumed_config
from training.sampler import BatchSampler, BatchStream, run_batches
from training.weights import InitialWeights, load_initial_weights
from training.working_scale import to_working_scale

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """A training run that cannot start or continue; the message says why."""


def _one_value_per_channel(exc: ValueError, config: TrainConfig, crop_px: int,
                           multiple: int) -> TrainingError | None:
    """torch's refusal of a batch normalisation that sees one value per channel (a batch of
    one crop whose deepest features are 1 x 1, or PSPNet's 1 x 1 pyramid bin), said in the
    options that cause it; None for any other error."""
    if "Expected more than 1 value per channel" not in str(exc):
        return None
    advice = "give --batch-size 2 or more"
    if config.batch_size * (crop_px // max(multiple, 1)) ** 2 <= 1:
        advice += f", or --crop {2 * multiple} or more"
    return TrainingError(
        f"--batch-size {config.batch_size} with --crop {crop_px}: a batch-normalisation layer "
        f"of this {config.arch or 'model'} gets one value per channel ({exc}), which training "
        f"cannot normalise; {advice}")


@dataclass
class TrainResult:
    """What a run produced. ``metrics`` are those of the exported weights."""

    out: Path | None
    checkpoint: Path
    metrics: dict[str, float]
    epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)
    int8: Path | None = None
    reports: dict[str, Any] = field(default_factory=dict)
    #: the epoch whose weights were exported (the best validation epoch, else the last),
    #: and the stems of the held-out images that chose it (none: scored on training images)
    exported_epoch: int | None = None
    validation_images: list[str] = field(default_factory=list)
    #: a fine-tune's (``--init``) starting weights scored before training, on the images
    #: that score the epochs: {"epoch": 0, "weights": the --init value, "score": mIoU,
    #: "metrics": {prefix_key: value}}; None for a run from random weights
    start: dict[str, Any] | None = None


#: geometry files a training run names one by one (the rest are counted)
_SHAPES_NAMED = 5


def saved_shapes_warnings(root: Path, data: TrainingData) -> list[str]:
    """A warning for each labeled frame of the DATA folder ``root`` whose
    ``geometry/<stem>.json`` (``nwwatch label``'s saved shapes) cannot be its shapes: not
    JSON, not a geometry, an angle that is not one, or drawn on a frame of another size
    (:func:`nwwatch.label.store.saved_shapes_problem`, the check evaluate makes). Its label
    image is trained on as it is, but the labelling tool cannot open those shapes and
    ``nwwatch evaluate`` scores no human angle for the frame: said here rather than found at
    evaluation."""
    from nwwatch.label.store import saved_shapes_problem

    problems = [problem for item in data.labeled
                if (problem := saved_shapes_problem(root, item.stem, item.label.shape))]
    out = [f"{problem}: nwwatch label cannot open these saved shapes and nwwatch evaluate "
           f"scores no human angle for the frame (its label image is trained on as it is)"
           for problem in problems[:_SHAPES_NAMED]]
    if len(problems) > _SHAPES_NAMED:
        out.append(f"... and {len(problems) - _SHAPES_NAMED} more geometry files of "
                   f"{root / 'geometry'} like these")
    return out


def starting_weights_warning(result: TrainResult) -> str | None:
    """The warning for a fine-tune whose exported weights score no higher than the weights it
    started from (those weights are scored before training: :attr:`TrainResult.start`); None
    when they score higher, or for a run without ``--init``. The exported weights are
    :attr:`TrainResult.metrics`' (the best held-out epoch's, or the last epoch's when no image
    is held out): a better epoch that is not exported does not stop the warning."""
    start = result.start
    if start is None:
        return None
    key = next((k for k in ("val_mean_iou", "train_mean_iou") if k in result.metrics), None)
    if key is None:
        return None
    exported = result.metrics[key]
    if exported > start["score"]:
        return None
    held_out = result.validation_images
    where = (f"the {len(held_out)} held-out image{'' if len(held_out) == 1 else 's'}"
             if held_out else "the training images (no image held out)")
    which = ("the exported weights" if result.exported_epoch is None
             else f"the exported weights (epoch {result.exported_epoch})")
    # without a held-out split the last epoch is exported, whatever an earlier one scored
    best = max(result.history, key=lambda record: record.get(key, -1.0), default=None)
    earlier = (f"; epoch {best['epoch']} scored {best[key]:.4f}, but the last epoch is "
               f"exported when no image is held out"
               if not held_out and best is not None and key in best
               and best[key] > start["score"] and best["epoch"] != result.exported_epoch
               else "")
    return (f"warning: {which} score mIoU {exported:.4f} on {where}, no higher than the "
            f"weights this fine-tune started from (--init {start['weights']}): mIoU "
            f"{start['score']:.4f} before training (epoch 0){earlier}. Label more frames, "
            f"compare both models on labelled frames of your own with `nwwatch evaluate`, and "
            f"keep the model you started from if it stays ahead")


def _seen_by_starting_weights(config: TrainConfig,
                              initial: InitialWeights | None) -> frozenset[str]:
    """sha256 of the labeled images the weights a new run starts from were trained on: the
    ``--init`` weights' and the ``--frozen-encoder`` checkpoint's (its encoder is kept as
    trained on them)."""
    from training.weights import seen_images

    seen = set(initial.seen_images_sha256) if initial is not None else set()
    if config.frozen_encoder:
        frozen = Path(config.frozen_encoder)
        if frozen.suffix == ".onnx":  # its checkpoint beside it, as the paradigm reads it
            frozen = checkpoint_path(frozen)
        with contextlib.suppress(OSError, ValueError):  # its own checks say what is wrong
            seen |= seen_images(load_checkpoint(frozen))
    return frozenset(seen)


def _initial_weights(config: TrainConfig, num_classes: int, class_names) -> InitialWeights:
    """Load ``--init`` weights and make the run's architecture theirs (checked first)."""
    if config.paradigm == "contrastive":
        raise TrainingError("--init: the contrastive paradigm trains its own embedding network; "
                            "start it from random weights")
    initial = load_initial_weights(config.init)
    differing = sorted(k for k, v in config.model_options.items()
                       if initial.model_options.get(k) != v)
    if differing:
        raise TrainingError(f"--init {initial.path}: --model-options {differing} differ from "
                            f"the weights' {initial.model_options}; drop them")
    if config.arch and config.arch != initial.arch:  # "" = take the weights' architecture
        raise TrainingError(f"--init {initial.path}: the weights are a {initial.arch!r} model, "
                            f"not --arch {config.arch!r}")
    config.arch = initial.arch
    if initial.num_classes != num_classes:
        raise TrainingError(f"--init {initial.path}: the weights have {initial.num_classes} "
                            f"classes {initial.class_names or ''}, the data {num_classes} "
                            f"{list(class_names)}")
    if initial.class_names and list(initial.class_names) != list(class_names):
        # Same count, other meaning: class k of the weights would be trained as another class.
        raise TrainingError(f"--init {initial.path}: the weights' classes "
                            f"{list(initial.class_names)}, the data's {list(class_names)}: "
                            f"name and order them as the weights do (DATA/dataset.toml "
                            f"classes, labels to match)")
    config.model_options = dict(initial.model_options)
    return initial


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise the named torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: CUDA is not available on this machine")
    return device


def poly_lr(base_lr: float, iteration: int, total: int, power: float = 0.9) -> float:
    """Poly schedule: ``base_lr * (1 - iteration / total) ** power``."""
    return base_lr * (1.0 - min(iteration, total) / max(total, 1)) ** power


def seed_everything(seed: int) -> None:
    # Training draws from explicit generators; these cover library code that does not.
    random.seed(seed)
    torch.manual_seed(seed)


#: Paradigms that train on the unlabeled images (CCT, contrastive) or on their pseudo-labels.
UNLABELED_PARADIGMS = ("cct", "contrastive", "pseudo-label")


def _pixels_key(image: np.ndarray) -> tuple:
    return image.shape, hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()


def _without_held_out(data: TrainingData, val_items: list, echo,
                      train_items: list = ()) -> TrainingData:
    """``data`` without the unlabeled images that are held-out validation images (a volume
    in DATA/unlabeled/ holds every labeled slice): pseudo-labelled, or drawn as unlabeled
    crops, they were trained on while they picked the exported epoch and gave its ``val_*``
    scores. Compared by their normalised pixels. A labeled training image (``train_items``)
    that is a held-out image under another name is said in a note (kept: it is labeled)."""
    if not val_items:
        return data
    held = {_pixels_key(v.image): v.stem for v in val_items}
    copies = [f"{t.stem} ({held[_pixels_key(t.image)]})" for t in train_items
              if _pixels_key(t.image) in held]
    if copies:
        echo(f"note: {len(copies)} training image{'' if len(copies) == 1 else 's'} "
             f"{'is' if len(copies) == 1 else 'are'} a held-out image under another name "
             f"({', '.join(copies[:5])}): the validation scores, which choose the exported "
             "epoch, are then on an image it trains on; remove the copy")
    if not data.unlabeled:
        return data
    kept = [u for u in data.unlabeled if _pixels_key(u) not in held]
    if len(kept) == len(data.unlabeled):
        return data
    n = len(data.unlabeled) - len(kept)
    echo(f"note: {n} unlabeled image{'' if n == 1 else 's'} equal to held-out validation "
         f"image{'' if n == 1 else 's'} left out of training")
    return dataclasses.replace(data, unlabeled=kept)


def _check_resumed_inputs(ckpt_file: Path, payload: dict[str, Any], config: TrainConfig,
                          unlabeled_sha: str | None, export_only: bool) -> None:
    """TrainingError when a resume would train on other unlabeled images, or on the
    pseudo-labels of another teacher file, than the checkpoint's run (its record says which);
    checkpoints written before the record was kept are not checked."""
    saved = payload.get("unlabeled_sha256")
    # exporting trains nothing: the unlabeled images need not be those of the run (as the
    # teacher need not be its file)
    if not export_only and unlabeled_sha is not None and saved is not None \
            and saved != unlabeled_sha:
        where = Path(config.data) / "unlabeled" if config.data else config.volume
        # (the hash is of the images as normalised: a checkpoint of an nwwatch that sampled
        # a frame's percentiles otherwise reads as changed images too)
        raise TrainingError(f"{ckpt_file}: the unlabeled images ({where}) changed since this "
                            f"checkpoint was written, or their normalisation did (a "
                            f"checkpoint of another nwwatch version), and --paradigm "
                            f"{config.paradigm} trains on them; start a new run instead of "
                            f"--resume (--init {ckpt_file} starts it from these weights)")
    teacher_sha = (payload.get("provenance") or {}).get("teacher_sha256")
    if not export_only and config.teacher and teacher_sha is not None \
            and Path(config.teacher).is_file() \
            and file_sha256(config.teacher) != teacher_sha:
        raise TrainingError(f"{ckpt_file}: the teacher {config.teacher} changed since this "
                            f"checkpoint was written (sha256 {teacher_sha[:12]}... then), and "
                            f"the resumed run would train on its new pseudo-labels; start a "
                            f"new run instead of --resume")
    # the frozen weights come from the checkpoint, but the model's record names the file:
    # another file given for a moved one (the message of a missing one asks for its new
    # place) would make the record contradict its own provenance
    frozen_sha = (payload.get("provenance") or {}).get("frozen_encoder_sha256")
    if config.frozen_encoder and frozen_sha is not None:
        frozen = Path(config.frozen_encoder)
        frozen = checkpoint_path(frozen) if frozen.suffix == ".onnx" else frozen
        if frozen.is_file() and file_sha256(frozen) != frozen_sha:
            raise TrainingError(f"{ckpt_file}: --frozen-encoder {frozen} is not the checkpoint "
                                f"this run froze (sha256 {frozen_sha[:12]}... then): give that "
                                f"file, moved or copied")


def _labeled_sha256(data: TrainingData) -> dict[str, list[str]]:
    """{stem: [image sha256, label sha256]} of the labeled images: what the data hash covers,
    per image."""
    return {item.stem: [item.image_sha256, item.label_sha256] for item in data.labeled}


def _changed_images(payload: dict[str, Any], data: TrainingData) -> str:
    """Which labeled images differ from the checkpoint's run ("changed img01 (label); added
    img07; removed img03"), from its per-image record; a checkpoint without one (an older
    nwwatch) names the images added or removed (its split lists them all) and the training
    images whose pixels changed (``seen_images_sha256``). "" when none can be named."""
    from nwwatch.options import listed

    now = _labeled_sha256(data)
    then = payload.get("labeled_sha256")
    if then is None:
        split = payload.get("split") or {}
        stems = list(split.get("train") or ()) + list(split.get("val") or ())
        then = dict.fromkeys(stems)
    changed = []
    seen = set(payload.get("seen_images_sha256") or ())
    by_stem = {item.stem: item for item in data.labeled}
    for stem in sorted(set(now) & set(then)):
        if then[stem] is not None:
            parts = [part for part, a, b in zip(("image", "label"), then[stem], now[stem],
                                                strict=True) if a != b]
            if parts:
                changed.append(f"{stem} ({' and '.join(parts)})")
        elif seen and stem in (payload.get("split") or {}).get("train", ()) \
                and by_stem[stem].content_key not in seen:
            changed.append(f"{stem} (image)")
    added = sorted(set(now) - set(then))
    removed = sorted(set(then) - set(now))

    def named(what: str, stems: list[str]) -> str:
        return f"{what} {listed(stems)}" if len(stems) <= 5 \
            else f"{len(stems)} {what}: {listed(stems)}"

    return "; ".join(named(what, stems) for what, stems in
                     (("changed", changed), ("added", added), ("removed", removed)) if stems)


def _check_resumed_dataset(ckpt_file: Path, payload: dict[str, Any],
                           data: TrainingData) -> None:
    """TrainingError when DATA's ``dataset.toml`` now says another kind, other class names or
    another normalisation scope than the checkpoint's run (the data hash covers the pixels,
    not these: a resume trained on, and exported, a model relabelled and normalised
    otherwise)."""
    for key, now in (("kind", data.kind), ("class_names", list(data.class_names)),
                     ("normalization_scope", data.normalization_scope)):
        then = payload.get(key)
        if then is not None and then != now:
            raise TrainingError(f"{ckpt_file}: {key} is {now!r} now (dataset.toml), "
                                f"{then!r} when this checkpoint was written; put it back, or "
                                f"start a new run instead of --resume (--init {ckpt_file} "
                                "starts it from these weights)")


def load_training_data(config: TrainConfig) -> TrainingData:
    """The DATA folder, or the tomogram workflow's volume + labeled slice."""
    if config.volume is not None:
        if config.slice_index is None or config.labels is None:
            raise TrainingError("--volume needs --slice INDEX and --labels LABELS.png")
        indices = config.slice_index if isinstance(config.slice_index, list) \
            else [config.slice_index]
        labels = config.labels if isinstance(config.labels, list) else [config.labels]
        if len(indices) != len(labels):
            raise TrainingError(f"{len(indices)} --slice but {len(labels)} --labels: give one "
                                f"labels file per labeled slice, in the same order")
        return load_volume_slices(config.volume, list(zip(indices, labels, strict=True)))
    if config.data is None:
        raise TrainingError("give a DATA folder, or --volume with --slice and --labels")
    # DATA/unlabeled/ is read by the paradigms that train on it (read, and counted in the
    # model, by a supervised run it was time spent for nothing)
    return load_folder(config.data, load_unlabeled=config.paradigm in UNLABELED_PARADIGMS)


def predict_labels(model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """uint8 (H, W) argmax of a logits model on one normalised image (padded, then cropped)."""
    height, width = image.shape
    padded = pad_to_multiple(image[None], int(getattr(model, "size_multiple", 1)))
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(padded))[:, None].to(device))
    return logits[0, :, :height, :width].argmax(dim=0).to(torch.uint8).cpu().numpy()


def validate(model: torch.nn.Module, items: list[LabeledImage], num_classes: int,
             device: torch.device,
             interface: list[np.ndarray] | None = None) -> SegmentationMetrics:
    """Dataset-level metrics of ``model`` (eval mode) on full images (255 ignored).

    ``interface``: a list that receives, per image of an in-situ (3-class) model, the
    signed offsets (px) of the predicted wire/droplet interface from the labelled one
    (:func:`nwwatch.segment.metrics.interface_offsets_px`)."""
    was_training = model.training
    model.eval()
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for item in items:
        predicted = predict_labels(model, item.image, device)
        confusion += confusion_matrix(item.label, predicted, num_classes)
        if interface is not None and num_classes == 3:
            interface.append(interface_offsets_px(item.label, predicted))
    model.train(was_training)
    return metrics_from_confusion(confusion)


def _state_on_cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          echo: Callable[[str], None] | None = None, export_only: bool = False,
          given: Collection[str] = (), progress_file: TextIO | None = None,
          selection: dict[str, Any] | None = None) -> TrainResult:
    """Run one training (or continue it with ``resume``) and export the model.

    Parameters
    ----------
    config : the run's settings; with ``resume`` only ``out``, ``epochs`` (when larger),
        ``device``, and when in ``given`` ``threads``, ``workers``, ``exporter`` and
        ``quantize`` are taken from it, the rest comes from the checkpoint
        (``out.with_suffix(".pt")``; :func:`training.resume.resumed_config`).
    given : the fields of ``config`` set on the command line: with ``resume`` one that differs
        from the checkpoint's is refused, ``data`` replaces its folder (``resumed_config``).
    selection : how ``nwwatch train --volume`` chose this network
        (:meth:`training.volume_select.Selection.as_dict`): exported as ``extra["selection"]``
        and kept in the checkpoint, whose record a resume exports.
    progress : show a tqdm progress bar (loss, validation mIoU), unless ``config.quiet`` (a
        resume's, the checkpoint's unless given).
    progress_file : the bar's stream (default: standard error).
    export_only : with ``resume``: train nothing, export the checkpoint's best weights now
        (e.g. after interrupting a run).
    echo : called with each line for the user, one per epoch and the notes (default: nothing).

    Raises
    ------
    TrainingError, DatasetLayoutError, CheckpointError; ResumeSettingError (``given``).
    """
    echo = echo or (lambda line: None)
    ckpt_file = checkpoint_path(config.out)
    payload: dict[str, Any] | None = None
    if export_only and not resume:
        raise TrainingError("export_only needs resume (an existing checkpoint)")
    if resume:
        payload = load_checkpoint(ckpt_file)
        if "config" not in payload:  # training.weights.write_slim_weights: no run to go on
            raise TrainingError(f"{ckpt_file}: weights without a training run (slim weights, "
                                f"as shipped for --init): nothing to resume; start a new run "
                                f"with --init {ckpt_file}")
        config = resumed_config(config, TrainConfig.from_dict(payload["config"]), ckpt_file,
                                given)
        selection = payload.get("selection")
    progress = progress and not config.quiet
    if config.paradigm not in PARADIGMS:
        raise TrainingError(f"unknown paradigm {config.paradigm!r}; choose from "
                            f"{sorted(PARADIGMS)}")
    if config.self_negatives not in SELF_NEGATIVES:
        raise TrainingError(f"unknown self_negatives {config.self_negatives!r}; choose from "
                            f"{list(SELF_NEGATIVES)}")
    if config.crop < 8 or config.batch_size < 1 or config.epochs < 1 or config.workers < 0:
        raise TrainingError("crop must be >= 8, batch size and epochs >= 1, workers >= 0")
    device = resolve_device(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed)

    data = load_training_data(config)
    unread = (Path(config.data) / "unlabeled" if config.data is not None
              and config.paradigm not in UNLABELED_PARADIGMS else None)
    if unread is not None and unread.is_dir() and any(list_unlabeled(unread)):
        echo(f"note: {unread} is not read: the {config.paradigm} paradigm trains on the "
             f"labeled images alone ({', '.join(UNLABELED_PARADIGMS)} use unlabeled ones)")
    if data.kind == "tomogram" and payload is None:
        # Every mask of a model trained on too few pixels of a class is flagged at run time
        # (the counts go into the model): say so now, whichever way the data came.
        from training.data import label_warnings

        for warning in label_warnings(data):
            echo(f"warning: {warning}")
    elif payload is None:
        from training.data import classes_labeled_nowhere

        for name in classes_labeled_nowhere(data):
            echo(f"warning: no {name} pixel is labeled in {data.source}: the model gets no "
                 f"example of {name}")
        if config.data is not None:
            from nwwatch.io.dataset import loose_images_warning, nested_images_warning

            loose = loose_images_warning(Path(config.data))
            if loose:  # read from DATA/images/ only: said, not trained on without a word
                echo(f"warning: {loose}")
            nested = nested_images_warning(Path(config.data))
            if nested:  # a DATA folder is flat: said, not left out without a word
                echo(f"warning: {nested}")
            for problem in saved_shapes_warnings(Path(config.data), data):
                echo(f"warning: {problem}")
        if data.kind == "insitu":
            from training.data import labels_exchanged

            measured, exchanged = labels_exchanged(data)
            if exchanged:
                echo(f"warning: {len(exchanged)} of {measured} label images measured give a "
                     f"contact angle only with 1 and 2 exchanged (1 droplet, 2 nanowire; "
                     f"{exchanged[0]}{', ...' if len(exchanged) > 1 else ''}): in-situ "
                     f"labels are read as 1 nanowire, 2 droplet, and a model trained on "
                     f"exchanged ones gives frames the measurement refuses; if your tool "
                     f"numbers them the other way, renumber the masks (docs/measurement.md, "
                     f"'Masks from other tools')")
    num_classes = data.num_classes
    initial = None
    if config.init and payload is None:  # a resumed run already holds its weights
        initial = _initial_weights(config, num_classes, data.class_names)
        if data.kind == "insitu" and initial.working_scale is not None:
            config.working_scale = dict(initial.working_scale)
            kept = WorkingScale.from_metadata("insitu", {"working_scale": initial.working_scale})
            echo(f"working scale of {initial.working_scale_source.name} kept: "
                 f"{kept.describe()}")
    elif config.frozen_encoder and payload is None and data.kind == "insitu":
        # a frozen encoder cannot adapt to objects of another size: its model's scale too
        from training.weights import init_working_scale

        frozen = Path(config.frozen_encoder)
        scale, source = init_working_scale(checkpoint_path(frozen)
                                           if frozen.suffix == ".onnx" else frozen)
        if scale is not None:
            config.working_scale = dict(scale)
            kept = WorkingScale.from_metadata("insitu", {"working_scale": scale})
            echo(f"working scale of {source.name} (the frozen encoder's) kept: "
                 f"{kept.describe()}")
    if data.kind == "insitu" and config.working_scale is None and payload is None \
            and data.labeled:
        from nwwatch.segment.scale import working_frame_px

        sides = sorted(max(item.label.shape) for item in data.labeled)
        # what the export records (scale_from_labels)
        frame_px = working_frame_px([item.label.shape for item in data.labeled])
        if sides[0] * 2 < frame_px or sides[-1] > 2 * frame_px:
            # frames far from it train at their own size but are resized to it at run
            # time, and its droplet radii mix theirs
            echo(f"warning: the labeled frames are {sides[0]} to {sides[-1]} px long: the "
                 f"model's working scale will be {frame_px} px (their median long side), to "
                 f"which the service resizes frames, while each trains at its own size; "
                 f"bring them to one size first (a fine-tune, --init, brings them into its "
                 f"model's scale)")
    if data.kind == "insitu" and config.working_scale is not None:  # a resume: the same
        data, note = to_working_scale(data, config.working_scale)
        if note:
            echo(note)
    data_sha = data.sha256()
    # the unlabeled images are training data of these paradigms; a resume must see the same
    unlabeled_sha = data.unlabeled_sha256() if config.paradigm in UNLABELED_PARADIGMS else None
    # a volume's slices are normalised with the range of the whole volume: another volume in
    # DATA/unlabeled/ normalises the same files otherwise, which the data hash does not see
    normalised_sha = data.normalised_sha256() if data.normalization_scope == "volume" else None
    by_stem = {item.stem: item for item in data.labeled}
    # per image, so that a resume refused for changed data names the images
    labeled_sha = _labeled_sha256(data)
    # images the weights this run starts from were trained on (a resume holds its own list)
    seen_before = (frozenset((payload or {}).get("seen_images_sha256") or ())
                   if payload is not None else _seen_by_starting_weights(config, initial))
    if payload is not None:
        if payload["training_data_sha256"] != data_sha:
            source = config.data or config.volume
            which = _changed_images(payload, data)
            raise TrainingError(f"{ckpt_file}: the training data changed since this "
                                f"checkpoint was written ({source}{': ' if which else ''}"
                                f"{which}); start a new run instead of --resume (--init "
                                f"{ckpt_file} starts it from these weights)")
        _check_resumed_inputs(ckpt_file, payload, config, unlabeled_sha, export_only)
        saved_normalised = payload.get("normalised_sha256")
        if not export_only and None not in (saved_normalised, normalised_sha) \
                and saved_normalised != normalised_sha:
            raise TrainingError(f"{ckpt_file}: the labeled images are normalised otherwise "
                                f"than when this checkpoint was written (the volume that sets "
                                f"their intensity range changed); start a new run instead of "
                                f"--resume (--init {ckpt_file} starts it from these weights)")
        _check_resumed_dataset(ckpt_file, payload, data)
        split_train, split_val = payload["split"]["train"], payload["split"]["val"]
    else:
        trained_on = sorted(s for s, item in by_stem.items()
                            if item.content_key and item.content_key in seen_before)
        split = make_split(list(by_stem), config.val_fraction, config.seed,
                           config.val_min_images, keep_training=trained_on)
        split_train, split_val = list(split.train), list(split.val)
        if trained_on and config.val_fraction > 0:
            n = len(trained_on)
            echo(f"note: {n} of the {len(by_stem)} labeled images ({trained_on[0]}"
                 f"{', ...' if n > 1 else ''}) were trained on by the starting weights "
                 f"(--init, --frozen-encoder): they train again and are not held out, so that "
                 f"the validation scores are those of images the model has not seen"
                 + ("" if split_val else "; none of the others is left to hold out, so the "
                    "metrics are on the training images"))
        elif config.val_fraction > 0 and not split_val:
            # asked for a validation split that the data cannot give: the run's metrics are
            # its training images' (train_*), which should not read as validation
            n = len(split_train)
            echo(f"note: no image held out for validation ({n} labeled image"
                 f"{'' if n == 1 else 's'}, fewer than the "
                 f"{max(2, config.val_min_images)} a split needs): the metrics are on the "
                 "training images")
    train_items = [by_stem[s] for s in split_train]
    val_items = [by_stem[s] for s in split_val]
    # what these weights will have been trained on, carried to the runs that start from them
    seen_all = sorted(seen_before | {i.content_key for i in train_items if i.content_key})
    if payload is None and val_items and data.kind == "insitu":
        from training.data import classes_labeled_nowhere

        nowhere = set(classes_labeled_nowhere(data))  # said above
        for name in classes_labeled_nowhere(data, train_items):
            if name not in nowhere:  # labelled in the held-out images alone: those named
                holding = [v.stem for v in val_items
                           if name not in classes_labeled_nowhere(data, [v])]
                echo(f"warning: no {name} pixel is labeled in the training images, only in "
                     f"the held-out {', '.join(holding[:5])}{', …' if len(holding) > 5 else ''}"
                     f": the model gets no example of {name}; label it in another frame too")
    data = _without_held_out(data, val_items, echo, train_items)

    # a resume holds the frozen encoder's weights: its file is not read again
    options = {"frozen_from_checkpoint": True} if payload is not None \
        and config.frozen_encoder else {}
    paradigm: Paradigm = PARADIGMS[config.paradigm](config, num_classes, **options)
    if initial is not None:
        paradigm.inference_model().load_state_dict(initial.state)
        # the exact weights started from: --init names a file that may be retrained later
        paradigm.provenance["init"] = {"weights": os.path.abspath(initial.path),
                                       "sha256": file_sha256(initial.path)}
        from training.weights import shipped_weights

        shipped = {p.resolve() for p in shipped_weights().values()}
        if initial.working_scale_source is not None and initial.path.resolve() in shipped:
            # the shipped model these weights are (kept in step with it): its sha256 is the
            # model_sha256 of its rows, which the weights' own is not. A checkpoint's ONNX
            # beside it is its last export, which an interrupted later run to the same --out
            # leaves behind its weights: not claimed as their model by its hash
            paradigm.provenance["init"].update(
                model=os.path.abspath(initial.working_scale_source),
                model_sha256=file_sha256(initial.working_scale_source))
    paradigm.to(device)
    # --resume --export-only trains nothing: the teacher is not run again (nor needed), its
    # record is the checkpoint's, and its images count for the crop as in training
    skip_teacher = export_only and config.paradigm == "pseudo-label"
    pool = train_items + ([] if skip_teacher else paradigm.extra_labeled(data, device, echo))
    if payload is not None:
        # what the run started from (--init, the frozen encoder, the teacher) is the
        # checkpoint's record: a resume does not reload it
        paradigm.provenance = {**paradigm.provenance, **(payload.get("provenance") or {})}
    unlabeled = data.unlabeled
    if paradigm.uses_unlabeled and not unlabeled:
        # CCT / contrastive without unlabeled images: the training images serve as unlabeled.
        unlabeled = [item.image for item in train_items]

    params = paradigm.trainable_parameters()
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    elif config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        raise TrainingError(f"unknown optimizer {config.optimizer!r}; choose sgd or adamw")
    steps = config.steps_per_epoch or max(1, math.ceil(len(train_items) / config.batch_size))
    total_iterations = steps * config.epochs
    start_epoch, iteration, history = 0, 0, []
    best: dict[str, Any] = {"epoch": -1, "score": -1.0, "metrics": {}}
    best_state: dict[str, torch.Tensor] | None = None
    if payload is not None:
        paradigm.modules.load_state_dict(payload["state"])
        paradigm.set_rng_state(payload.get("paradigm_rng"))
        optimizer.load_state_dict(payload["optimizer"])
        start_epoch, iteration = payload["epoch"], payload["iteration"]
        history, best = payload["history"], payload["best"]
        best_state = payload.get("inference_state")
        if start_epoch >= config.epochs:
            plural = "" if start_epoch == 1 else "s"
            echo(f"checkpoint already has {start_epoch} epoch{plural}; nothing to train")
            out = Path(config.out)
            # --quantize or --exporter given: an export asked for (an INT8 model added)
            if (not export_only and config.export and out.is_file()
                    and out.stat().st_mtime_ns >= ckpt_file.stat().st_mtime_ns
                    and not {"quantize", "exporter"} & set(given)):
                # its export, written after the checkpoint's last save: writing it again
                # changed its sha256 (a teacher's, a frozen encoder's: the runs that name it
                # could not be resumed) and refit a contrastive classifier once more
                echo(f"{out} is its export already and is left as it is (--export-only "
                     f"writes it again, and its INT8 model with --quantize int8)")
                return TrainResult(None, ckpt_file, {}, start_epoch, history)

    end_epoch = start_epoch if export_only else config.epochs
    eval_items = val_items or train_items
    prefix = "val" if val_items else "train"
    inference = paradigm.inference_model()

    refit_done = bool((payload or {}).get("refit_done"))
    # a fine-tune's score before training: its run's record on a resume, else scored below
    # once the settings are checked
    start: dict[str, Any] | None = (payload or {}).get("start")

    def checkpoint(epoch: int, state: dict | None = None) -> None:
        """``state``: the training modules' weights to save (default: as they are now)."""
        save_checkpoint(ckpt_file, {
            "config": config.to_dict(), "split": {"train": split_train, "val": split_val},
            "epoch": epoch, "iteration": iteration,
            "state": paradigm.modules.state_dict() if state is None else state,
            "optimizer": optimizer.state_dict(), "history": history, "best": best,
            "inference": paradigm.inference_spec(),
            "inference_state": best_state if best_state is not None else _state_on_cpu(inference),
            "class_names": list(data.class_names), "kind": data.kind,
            "normalization_scope": data.normalization_scope,
            "training_data_sha256": data_sha, "unlabeled_sha256": unlabeled_sha,
            "normalised_sha256": normalised_sha,
            "provenance": paradigm.provenance, "paradigm_rng": paradigm.rng_state(),
            "refit_done": refit_done, "seen_images_sha256": seen_all,
            "labeled_sha256": labeled_sha, "start": start,
            # how `train --volume` chose this network: its resumes' exports say it too
            **({"selection": selection} if selection is not None else {}),
        })

    sampled = unlabeled if paradigm.uses_unlabeled else []
    multiple = int(getattr(inference, "size_multiple", 1))
    crop = effective_crop(config.crop, [item.image for item in pool] + list(sampled)
                          + (list(data.unlabeled) if skip_teacher else []), multiple)
    if crop % multiple:  # else torch fails in the first step, on mismatched skip shapes
        raise TrainingError(f"--crop {crop} is not a multiple of {multiple}, the size multiple "
                            f"of this {config.arch or 'model'}: try "
                            f"{-(-crop // multiple) * multiple}")
    if crop != config.crop:
        echo(f"crop {crop} px: every training image is smaller than --crop {config.crop}")
    # A fine-tune's starting weights, scored before any step on the images that score the
    # epochs: the trained epochs may all score below them. Scored after the checks above (a
    # refused --crop costs no pass over the images) and before the first checkpoint, which
    # records it. A resume keeps its run's record (its weights are no longer the starting
    # ones).
    if payload is None and initial is not None:
        scores = validate(inference, eval_items, num_classes, device)
        start = {"epoch": 0, "weights": str(config.init), "score": scores.mean_iou,
                 "metrics": {f"{prefix}_{k}": v
                             for k, v in scores.as_dict(data.class_names).items()}}
        echo(f"epoch 0/{config.epochs} (the --init weights, before training) {prefix} mIoU "
             f"{scores.mean_iou:.4f}")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps * end_epoch, initial=iteration, desc=config.paradigm,
                   file=progress_file or sys.stderr, dynamic_ncols=True, mininterval=1.0)
    sampler = BatchSampler(pool, sampled, crop, config.batch_size, config.unlabeled_batch_size,
                           config.augment)
    # The contrastive classifier is refit once, after the last epoch (refit_done in the
    # checkpoint): a resume with nothing to train refit the refit classifier again.
    refit = BatchSampler(pool, [], crop, config.batch_size, augmented=config.augment) \
        if (config.paradigm == "contrastive" and not export_only
            and (end_epoch > start_epoch or not refit_done)) else None
    if end_epoch > start_epoch:  # the epochs train the classifier again
        refit_done = False
    # Drawn from one generator per epoch (training.sampler.run_batches): a resumed run draws
    # the same crops as an uninterrupted one.
    batches = BatchStream(run_batches(sampler, config.seed, range(start_epoch, end_epoch), steps,
                                      refit), config.workers)
    # The bar is closed however the loop ends: left open, its last line would be drawn
    # again at exit, after the line that says why the run stopped.
    with batches, contextlib.closing(bar) if bar is not None else contextlib.nullcontext():
        for epoch in range(start_epoch, end_epoch):
            torch.manual_seed(config.seed * 1009 + epoch)
            paradigm.train_mode()
            started, losses = time.monotonic(), []
            for step in range(steps):
                lr = poly_lr(config.lr, iteration, total_iterations, config.poly_power)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images, labels, extra_images = next(batches)
                try:
                    loss, logs = paradigm.training_loss(
                        images.to(device), labels.to(device).long(),
                        None if extra_images is None else extra_images.to(device),
                        epoch + step / steps)
                except ValueError as exc:
                    explained = _one_value_per_channel(exc, config, crop, multiple)
                    if explained is None:
                        raise
                    raise explained from exc
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                iteration += 1
                losses.append(logs["loss"])
                if bar is not None:
                    bar.update(1)
                    # the best mIoU so far; none before the first validation (it read 0.000,
                    # a collapsed model, during the whole first epoch)
                    scored = ({f"{prefix}_mIoU": f"{best['metrics']['mean_iou']:.3f}"}
                              if "mean_iou" in best["metrics"] else {})
                    bar.set_postfix(epoch=epoch + 1, loss=f"{logs['loss']:.4f}", **scored)
            offsets: list[np.ndarray] = []
            scores = validate(inference, eval_items, num_classes, device, offsets)
            metrics = {f"{prefix}_{k}": v for k, v in scores.as_dict(data.class_names).items()}
            found = InterfaceOffsets.from_frames(offsets)
            facet = {f"{prefix}_interface_bias_px": found.bias_px,
                     f"{prefix}_interface_abs_px": found.mean_abs_px} if found.frames else {}
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": lr,
                      "seconds": time.monotonic() - started, **metrics, **facet}
            history.append(record)
            if val_items and scores.mean_iou > best["score"]:
                best = {"epoch": epoch + 1, "score": scores.mean_iou, "metrics": scores.as_dict()}
                best_state = _state_on_cpu(inference)
            elif not val_items:
                best = {"epoch": epoch + 1, "score": scores.mean_iou, "metrics": scores.as_dict()}
                best_state = None
            if bar is not None:
                bar.set_postfix(epoch=epoch + 1, loss=f"{record['loss']:.4f}",
                                **{f"{prefix}_mIoU": f"{scores.mean_iou:.4f}"})
            interface_note = (f" interface {facet[f'{prefix}_interface_bias_px']:+.2f} px"
                              if facet else "")
            # saved before it is said: a Ctrl-C right after the line keeps that epoch
            checkpoint(epoch + 1)
            echo(f"epoch {epoch + 1}/{config.epochs} loss {record['loss']:.4f} "
                 f"{prefix} mIoU {scores.mean_iou:.4f}{interface_note} ({record['seconds']:.0f} s)")
        if bar is not None:
            bar.close()
        # The weights to export: best validation epoch, or the final ones (contrastive refit).
        if refit is not None:
            paradigm.finish(batches.labeled, device)
            best_state = None
            refit_done = True
    final_epoch = max(start_epoch, end_epoch)
    # the last epoch's weights without a validation split and after a contrastive refit (in
    # this run or the resumed one: its checkpoint's weights are the refit's)
    exported_epoch = (best["epoch"] if best_state is not None and best["epoch"] > 0
                      and not refit_done else final_epoch)
    # The checkpoint keeps the last epoch's training weights beside its optimizer state and
    # epoch count, so that --resume goes on from there; the best epoch's weights (which the
    # inference model shares with the training modules) are loaded for the export only.
    last_state = None
    if best_state is not None:
        last_state = {k: v.detach().to("cpu", copy=True)
                      for k, v in paradigm.modules.state_dict().items()}
        inference.load_state_dict(best_state)
    final = validate(inference, eval_items, num_classes, device)
    metrics = {f"{prefix}_{k}": v for k, v in final.as_dict(data.class_names).items()}
    best_state = _state_on_cpu(inference)
    checkpoint(max(start_epoch, end_epoch), last_state)

    result = TrainResult(None, ckpt_file, metrics, final_epoch, history,
                         exported_epoch=exported_epoch, validation_images=list(split_val),
                         start=start)
    if config.export:
        from training.exporting import export_trained

        result.out, result.int8, result.reports = export_trained(
            inference, config, data, metrics, paradigm.provenance, data_sha,
            [item.image for item in train_items], __version__,
            [item.image for item in val_items], crop_px=crop,
            exported=(exported_epoch, list(split_val)),
            start_metrics=None if start is None else start["metrics"], selection=selection)
    return result

