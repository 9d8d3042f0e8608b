"""Initial weights for fine-tuning (``nwwatch train --init``).

``--init`` takes a training checkpoint (``MODEL.pt``, or ``MODEL.onnx`` whose checkpoint lies
next to it) or the name of weights shipped in ``training/pretrained/`` (``insitu-default``: the
weights of ``nwwatch/models/insitu-default.onnx``). The run's architecture is taken from the
weights; the optimiser, the learning-rate schedule and the data split start fresh. The working
scale of the in-situ model exported from the weights (:func:`init_working_scale`) is the
fine-tune's: its frames are brought into it (``training.working_scale``).

Shipped weights are slim checkpoints: ``format``, ``inference`` (spec), ``inference_state``,
``class_names``, ``kind`` and ``source`` (which run produced them) — no optimiser state.
"""

from __future__ import annotations

import filecmp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nwwatch import DEFAULT_INSITU_MODEL
from training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    not_a_network,
    save_checkpoint,
)
from training.modelfiles import checkpoint_path
from training.models import check_options

SHIPPED_DIR = Path(__file__).resolve().parent / "pretrained"


def shipped_weights() -> dict[str, Path]:
    """{name: path} of the weights shipped with nwwatch."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.pt"))}


@dataclass(frozen=True)
class InitialWeights:
    """Weights to start a run from: ``arch`` and ``model_options`` rebuild the model."""

    path: Path
    arch: str
    model_options: dict[str, Any]
    num_classes: int
    class_names: list[str] | None
    state: dict[str, torch.Tensor]
    #: ``extra.working_scale`` of the in-situ model exported from these weights
    #: (:func:`init_working_scale`), and that model's file; None: no such model
    working_scale: dict[str, Any] | None = None
    working_scale_source: Path | None = None
    #: sha256 of every labeled image these weights were trained on (their run's training
    #: images and those of the weights it started from); empty when not recorded
    seen_images_sha256: frozenset[str] = frozenset()


def resolve_init(name_or_path: str) -> Path:
    """Path of ``--init`` weights: a checkpoint (``MODEL.onnx``: the ``MODEL.pt`` beside
    it), or a shipped name (:func:`resolve_weights`).

    Raises CheckpointError naming the value and the shipped choices when neither exists.
    """
    path = Path(name_or_path)
    if path.suffix == ".onnx":
        shipped = shipped_weights()
        model, path = path, checkpoint_path(path)
        if not path.is_file() and not model.is_file():  # a mistyped path, not a lost checkpoint
            raise CheckpointError(f"--init {name_or_path}: no such file (nor {path}, the "
                                  f"checkpoint `nwwatch train` writes beside its model); "
                                  f"shipped weights: {sorted(shipped)}")
        if not path.is_file():
            # The shipped models' weights are shipped under the model's name.
            name = _shipped_model_name(model, shipped)
            hint = f"; its weights are --init {name}" if name else ""
            why = not_a_network(path, "--init")
            if why:
                raise CheckpointError(f"--init {name_or_path}: {why}")
            raise CheckpointError(f"--init {name_or_path}: {path} (the checkpoint next to this "
                                  f"ONNX model) not found: an exported model holds no training "
                                  f"weights{hint}")
        return path
    return resolve_weights(name_or_path, "--init")


def _shipped_model_name(model: Path, shipped: dict[str, Path]) -> str | None:
    """The name of the shipped weights whose model ``model`` is: ``nwwatch/models/NAME.onnx``
    itself or a copy of it under any name or folder (the same bytes), else None."""
    folder = DEFAULT_INSITU_MODEL.resolve().parent
    for name in shipped:
        exported = folder / f"{name}.onnx"
        try:
            if model.resolve() == exported.resolve() or filecmp.cmp(model, exported,
                                                                    shallow=False):
                return name
        except OSError:  # either file unreadable: no hint
            continue
    return None


def resolve_weights(name_or_path: str, option: str) -> Path:
    """The weights a training option names: an existing file, else the shipped weights of
    that name (``insitu-default``); the one way ``--init`` and ``--teacher`` read a name.

    Raises CheckpointError naming ``option``, the value and the shipped choices when neither
    exists.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_weights()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise CheckpointError(f"{option} {name_or_path}: no such checkpoint file, and not shipped "
                          f"weights; shipped: {sorted(shipped)}")


def load_initial_weights(name_or_path: str) -> InitialWeights:
    """Read ``--init`` weights; only segmentation models (not contrastive) can seed a run."""
    path = resolve_init(name_or_path)
    payload = load_checkpoint(path)
    spec = payload.get("inference")
    if not isinstance(spec, dict) or spec.get("type") != "segmentation":
        kind = spec.get("type") if isinstance(spec, dict) else None
        raise CheckpointError(f"{path}: --init needs a segmentation model's weights, this "
                              f"checkpoint holds a {kind!r} model")
    config = dict(spec["config"])
    arch = config.pop("arch")
    config.pop("in_channels", None)
    num_classes = int(config.pop("num_classes"))
    try:  # weights of another version: say so before any data are read
        check_options(arch, config)
    except KeyError as exc:
        raise CheckpointError(f"{path}: {exc.args[0]}") from None
    scale, source = init_working_scale(path)
    _check_exported_from(path, payload, source)
    return InitialWeights(path=path, arch=arch, model_options=config, num_classes=num_classes,
                          class_names=payload.get("class_names"),
                          state=payload["inference_state"], working_scale=scale,
                          working_scale_source=source,
                          seen_images_sha256=seen_images(payload))


def _check_exported_from(checkpoint: Path, payload: dict[str, Any],
                         model: Path | None) -> None:
    """CheckpointError when ``model`` (the ONNX file beside ``checkpoint``, whose working
    scale and name the run takes) records other training data than the checkpoint: a model
    copied over ``MODEL.onnx`` (a redeploy) leaves the ``MODEL.pt`` of an earlier run beside
    it, and ``--init MODEL.onnx`` fine-tuned those earlier weights under the new model's
    scale without a word. Files that record no data hash (shipped weights) are not
    compared."""
    from training.modelmeta import model_file_metadata

    theirs = payload.get("training_data_sha256")
    if model is None or theirs is None:
        return
    try:
        recorded = model_file_metadata(model).training_data_sha256
    except (OSError, ValueError):
        return
    if recorded and recorded != theirs:
        raise CheckpointError(
            f"--init: {checkpoint} is not the checkpoint {model.name} was exported from "
            f"(they record other training data: {theirs[:12]}… against {recorded[:12]}…; "
            f"a model copied over {model.name} leaves an earlier run's weights beside it): "
            f"give the checkpoint of {model.name}'s own run (--init THAT_RUN.pt), or copy "
            f"it beside {model.name}")


def seen_images(payload: dict[str, Any]) -> frozenset[str]:
    """The sha256 of every labeled image the weights of checkpoint ``payload`` were trained
    on (``seen_images_sha256``, written by this version's runs; empty for others)."""
    return frozenset(payload.get("seen_images_sha256") or ())


def init_working_scale(checkpoint: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """(working scale, model file) of the in-situ ONNX model exported from the weights in
    ``checkpoint``: ``MODEL.onnx`` beside ``MODEL.pt``, the shipped model of the same name for
    shipped weights. The scale is the runtime's reading of the model's metadata
    (:meth:`nwwatch.segment.scale.WorkingScale.from_metadata`: the default for a model that
    records none). (None, None) when there is no such model, it is not in-situ, or it cannot
    be read: the fine-tune then reads its scale from its own labels."""
    from nwwatch.options import shipped_models
    from nwwatch.segment.scale import WorkingScale
    from training.modelmeta import model_file_metadata

    shipped = {p.resolve(): name for name, p in shipped_weights().items()}
    name = shipped.get(checkpoint.resolve())
    model = (shipped_models().get(name) if name is not None
             else checkpoint.with_suffix(".onnx"))
    if model is None or not model.is_file():
        return None, None
    try:
        meta = model_file_metadata(model)
        if meta.kind != "insitu":
            return None, None
        return WorkingScale.from_metadata(meta.kind, meta.extra).to_dict(), model
    except (OSError, ValueError):  # not an nwwatch model, a broken file: nothing to inherit
        return None, None


def write_slim_weights(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str],
                       source: str) -> Path:
    """Write the best weights of a training checkpoint as shippable ``--init`` weights."""
    payload = load_checkpoint(checkpoint)
    out = Path(out)
    save_checkpoint(out, {"inference": payload["inference"],
                          "inference_state": payload["inference_state"],
                          "class_names": payload.get("class_names"), "kind": payload.get("kind"),
                          "source": source,
                          "seen_images_sha256": sorted(seen_images(payload))})
    return out
