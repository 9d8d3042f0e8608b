"""Checkpoints: everything needed to resume a run or to reuse its model.

A checkpoint (``MODEL.pt`` next to ``MODEL.onnx``) is a dict saved with :func:`torch.save`::

    format, config (TrainConfig.to_dict()), split {"train": [...], "val": [...]}, epoch (number
    of completed epochs), iteration, state (all trained modules), optimizer, history (per-epoch
    logs), best {"epoch", "metrics"}, inference (spec to rebuild the logits model),
    inference_state (its weights at the best validation epoch), class_names, kind,
    normalization_scope, training_data_sha256, provenance.

Writes are atomic (``nwwatch.atomic.atomic_write``) so a crash never leaves half a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nwwatch.atomic import atomic_write
from training.paradigms.base import build_inference_model

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file."""


def checkpoint_path(out: str | os.PathLike[str]) -> Path:
    """``MODEL.onnx`` -> ``MODEL.pt`` (same folder)."""
    return Path(out).with_suffix(".pt")


def int8_path(out: str | os.PathLike[str]) -> Path:
    """``MODEL.onnx`` -> ``MODEL-int8.onnx``, where ``--quantize int8`` writes (same folder)."""
    return Path(out).with_name(f"{Path(out).stem}-int8.onnx")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` with nwwatch's atomic writer: a Ctrl-C or a failure while
    it is written leaves the previous checkpoint whole and no temporary file (before: a
    hidden ``.MODEL.pt.tmp`` was left behind); an ``OSError`` (a full disk) is raised as
    :class:`CheckpointError` naming ``path``."""
    try:
        with atomic_write(path) as handle:
            torch.save({"format": FORMAT, **payload}, handle)
    except OSError as exc:  # e.g. a full disk: was a traceback naming the temporary file
        kept = " (the one written before is kept)" if path.is_file() else ""
        raise CheckpointError(f"{path}: cannot write the checkpoint: "
                              f"{exc.strerror or exc}{kept}") from exc


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an nwwatch training checkpoint (format {FORMAT})")
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
