"""Checkpoints: everything needed to resume a run or to reuse its model.

A checkpoint (``MODEL.pt`` next to ``MODEL.onnx``) is a dict saved with :func:`torch.save`::

    format, config (TrainConfig.to_dict()), split {"train": [...], "val": [...]}, epoch (number
    of completed epochs), iteration, state (all trained modules), optimizer, history (per-epoch
    logs), best {"epoch", "metrics"}, inference (spec to rebuild the logits model),
    inference_state (its weights at the best validation epoch), class_names, kind,
    normalization_scope, training_data_sha256, labeled_sha256 ({stem: [image sha256, label
    sha256]}), provenance, start (a fine-tune's starting weights scored before training:
    {"epoch": 0, "weights", "score", "metrics"}; None without --init).

Writes are atomic (``nwwatch.atomic.atomic_write``) so a crash never leaves half a file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nwwatch.atomic import atomic_write
from nwwatch.options import unreadable_checkpoint, written_by_torch
from training.paradigms.base import build_inference_model

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` with nwwatch's atomic writer: a Ctrl-C or a failure while
    it is written leaves the previous checkpoint whole and no temporary file; an ``OSError``
    (a full disk) is raised as
    :class:`CheckpointError` naming ``path``."""
    # Serialised in memory first: torch's zip writer, given the file itself, turned a Ctrl-C
    # landing between two of its records into a RuntimeError ("unexpected pos"), or aborted
    # the process when its destructor wrote to the file already closed.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buffer)
    try:
        with atomic_write(path) as handle:
            handle.write(buffer.getbuffer())
    except OSError as exc:  # e.g. a full disk: named as the checkpoint, not its temporary file
        kept = " (the one written before is kept)" if path.is_file() else ""
        raise CheckpointError(f"{path}: cannot write the checkpoint: "
                              f"{exc.strerror or exc}{kept}") from exc


#: Why a model fitted without a network cannot serve each option that reads a checkpoint.
_NEEDS_A_NETWORK = {
    "--init": "fine-tuning starts from a network's trained weights",
    "--frozen-encoder": "it has no encoder to freeze",
    "--resume": "it is fitted in one go, with no epochs to continue",
}


def not_a_network(checkpoint: str | os.PathLike[str], use: str) -> str:
    """Why there is no ``checkpoint`` (``MODEL.pt``) for ``use`` (``--init``,
    ``--frozen-encoder`` or ``--resume``) when the ``MODEL.onnx`` beside it is a method that
    ``nwwatch train --volume`` kept and that is not a network (the smoothed threshold, the
    feature forest: fitted whole, no checkpoint); "" for any other case (no such model, a
    network's, an unreadable file), where "MODEL.pt not found" says all there is."""
    from training.config import PARADIGM_NAMES

    model = Path(checkpoint).with_suffix(".onnx")
    if not model.is_file():
        return ""
    try:
        from training.modelmeta import model_file_metadata

        meta = model_file_metadata(model)
    except (OSError, ValueError):  # not an nwwatch model: nothing more to say than "not found"
        return ""
    if meta.paradigm in PARADIGM_NAMES:  # a network whose checkpoint was moved or removed
        return ""
    return (f"{model} is the {meta.arch} model that `nwwatch train --volume` kept (method "
            f"{meta.paradigm}), not a network: it has no checkpoint, and "
            f"{_NEEDS_A_NETWORK.get(use, 'it has no weights to read')}; for a network on that "
            f"volume, train with --paradigm supervised (or contrastive), or --candidates "
            f"unet,contrastive")


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not written_by_torch(path):  # a text file, an empty one: said as the commands say it
        raise CheckpointError(f"{unreadable_checkpoint(path, 'not a file torch.save writes')}"
                              f": give the MODEL.pt that nwwatch train wrote")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for corrupt files
        raise CheckpointError(f"{unreadable_checkpoint(path, str(exc))}: give the MODEL.pt "
                              f"that nwwatch train wrote") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an nwwatch training checkpoint (a torch file "
                              f"without the 'format': {FORMAT} entry nwwatch train writes: a "
                              f"plain state_dict or another program's weights?): give the "
                              f"MODEL.pt that nwwatch train wrote")
    return payload


def load_inference_state(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict]:
    """(spec, state_dict) of the logits model stored in a checkpoint."""
    payload = load_checkpoint(path)
    return payload["inference"], payload["inference_state"]


def load_inference_model(path: str | os.PathLike[str]) -> nn.Module:
    """The trained logits model of a checkpoint (CPU, eval mode)."""
    spec, state = load_inference_state(path)
    model = build_inference_model(spec)
    model.load_state_dict(state)
    return model.eval()
