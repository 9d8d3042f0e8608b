"""The model a replay runs: ``--model``; else, with ``--config``, the model of the
``[[watch]]`` folders that hold the replayed paths (the one the service would use); else the
shipped default of the kind."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nwwatch.paths import lies_inside
from nwwatch.service.config import (
    DEFAULT_MODELS,
    NO_DEFAULT_MODEL,
    ConfigError,
    ServiceConfig,
    WatchConfig,
)


def watch_holding(root: Path, cfg: ServiceConfig, kind: str) -> tuple[int, WatchConfig] | None:
    """(index, [[watch]]) of the watch of ``kind`` whose folder holds ``root`` (symlinks
    followed), or None: the watch whose model and file name patterns a replay of ``root``
    with this configuration takes."""
    for index, watch in enumerate(cfg.watches):
        if watch.kind == kind and lies_inside(root, watch.path):
            return index, watch
    return None


def _watch_of(root: Path, cfg: ServiceConfig, kind: str) -> WatchConfig | None:
    """The [[watch]] of ``kind`` whose folder holds ``root`` (symlinks followed), or None."""
    held = watch_holding(root, cfg, kind)
    return None if held is None else held[1]


def replay_model(kind: str, model: str | os.PathLike[str] | None, cfg: ServiceConfig | None,
                 roots: Sequence[Path]) -> Path:
    """The ONNX model file of a replay of ``roots``; :class:`ConfigError` naming the key when
    there is none, it is missing, or the configuration's watches give the roots two models."""
    if model is not None:
        chosen = Path(model)
        if not chosen.is_file():
            raise ConfigError(None, "model", f"file not found: {chosen}")
        return chosen
    watched = {}
    if cfg is not None:
        for root in roots:
            watch = _watch_of(root, cfg, kind)
            other = "tomogram" if kind == "insitu" else "insitu"
            if watch is None and _watch_of(root, cfg, other) is not None:
                # The service reads this folder as the other kind: the shipped frame model
                # on its volumes wrote one flagged row a slice (into, perhaps, its results).
                raise ConfigError(None, "--kind", f"{root} lies in the [[watch]] of kind "
                                                  f"{other!r} of the --config: give --kind "
                                                  f"{other} to process it as the service "
                                                  f"does, or --model to read it as {kind}")
            # A path no [[watch]] holds is what the service never processes: the default.
            watched.setdefault(watch.model if watch else DEFAULT_MODELS.get(kind), root)
    if len(watched) > 1:
        named = "; ".join(f"{root}: {m or 'none'}" for m, root in watched.items())
        raise ConfigError(None, "model", f"the --config [[watch]] folders give these paths "
                                         f"different models ({named}); give --model, or "
                                         f"replay them one model at a time")
    chosen = next(iter(watched), None) or DEFAULT_MODELS.get(kind)
    if chosen is None:
        raise ConfigError(None, "--model", NO_DEFAULT_MODEL[kind])
    if not chosen.is_file():
        raise ConfigError(None, "model", f"not given, and the shipped default {kind} model is "
                                         f"missing: {chosen}")
    return chosen
