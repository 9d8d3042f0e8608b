"""The settings of a resumed run (``nwwatch train --resume``): the checkpoint's own, but for
the few a resume may change; a setting given that differs from the checkpoint's is refused
instead of being ignored."""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from training.config import TrainConfig


class ResumeSettingError(ValueError):
    """A setting given with ``--resume`` that differs from the checkpoint's (a usage error)."""


#: Settings a resume takes from the command line; every other one is the checkpoint's.
CHANGEABLE = ("out", "epochs", "device", "threads", "workers", "quiet", "exporter", "quantize",
              "command")
#: Settings that name where the training data (or a teacher, a frozen encoder) lie: given
#: with a resume, they replace the checkpoint's (moved files; the data hash and the
#: teacher's sha256 refuse other files; a frozen encoder's weights come from the checkpoint).
_MOVABLE = ("data", "volume", "labels", "frozen_encoder", "teacher")
#: Of those, the files a run may not have had: given to a run without one, they are another
#: setting (a frozen encoder would change the trainable parameters under the optimizer).
_MOVABLE_IF_SET = ("frozen_encoder", "teacher")
#: Settings that are paths: compared as absolute paths.
_PATHS = ("data", "volume", "labels", "init", "frozen_encoder", "teacher")


def _option(name: str, value: Any) -> str:
    """The setting as it is written on the command line."""
    if name == "augment":
        return "augmentation on" if value else "--no-augment"
    if name == "data":
        return f"DATA {value}"
    option = "--slice" if name == "slice_index" else "--" + name.replace("_", "-")
    if value is None or value is False:  # an option left out, a flag not given
        return f"no {option}"
    if value is True:
        return option
    if name == "model_options":
        return f"{option} {json.dumps(value)}"
    if isinstance(value, list | tuple):
        return " ".join(f"{option} {v}" for v in value) if name in ("slice_index", "labels") \
            else f"{option} {','.join(map(str, value))}"
    return f"{option} {value}"


def _comparable(name: str, value: Any) -> Any:
    if name in _PATHS and value is not None:
        if isinstance(value, list | tuple):
            return [os.path.abspath(v) for v in value]
        return os.path.abspath(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _ends_with(chain: str, command: str) -> bool:
    """Whether the recorded ``chain`` of commands (joined by `` && ``) ends with ``command``."""
    return chain == command or chain.endswith(f" && {command}")


def resumed_config(config: TrainConfig, saved: TrainConfig, checkpoint: Path,
                   given: Collection[str] = ()) -> TrainConfig:
    """``saved`` (the checkpoint's settings) with :data:`CHANGEABLE` taken from ``config``:
    ``out``, ``device`` and ``command`` always; ``epochs`` when larger; ``threads``,
    ``exporter``, ``workers``, ``quiet`` and ``quantize`` when ``given`` (left out, the run's
    own).

    ``given``: the fields set on the command line. One of them that differs from the
    checkpoint's raises :class:`ResumeSettingError` naming the option, both values and the
    checkpoint, except ``data``: a DATA folder given replaces the checkpoint's (a moved folder;
    the caller's data hash check refuses other data). ``epochs`` only lengthens a run: a
    smaller count given is refused.
    """
    if "epochs" in given and config.epochs < saved.epochs:
        # not dropped without a word: the run would go on to the checkpoint's own count (a
        # --resume --epochs 40 of a 500-epoch run would train 500)
        raise ResumeSettingError(
            f"--epochs {config.epochs}: {checkpoint} is a run of {saved.epochs} epochs, and "
            f"--resume only lengthens a run (give --epochs {saved.epochs} or more, or leave it "
            f"out); to stop it where it is, --resume --export-only exports its best weights")
    for name in given:
        if name in CHANGEABLE or (name in _MOVABLE and (
                name not in _MOVABLE_IF_SET or getattr(saved, name))):
            continue
        mine, theirs = getattr(config, name), getattr(saved, name)
        if name == "model_options":  # the checkpoint's hold every option of the model
            differs = any(theirs.get(k) != v for k, v in mine.items())
        else:
            differs = _comparable(name, mine) != _comparable(name, theirs)
        if differs:
            raise ResumeSettingError(
                f"{_option(name, mine)}: {checkpoint} was trained with "
                f"{_option(name, theirs)}, and --resume continues a run with its own settings "
                f"(only DATA, --volume, --labels, --frozen-encoder or --teacher moved, --epochs to "
                f"more, --device, --threads, "
                f"--workers, "
                f"--quiet, --exporter and --quantize may change); for a new run give another --out")
    if "data" in given and config.data is not None:
        saved.data = config.data
    elif saved.data is not None and not Path(saved.data).is_dir():
        # named as the checkpoint's DATA, not as a folder the user gave
        relative = "" if os.path.isabs(saved.data) else (
            " (a path relative to the folder that run was started in)")
        raise ResumeSettingError(
            f"{saved.data}: the DATA folder {checkpoint} was trained on is not there"
            f"{relative}; moved? give its new place as DATA with --resume (the data hash "
            f"checks it is the same)")
    # A tomogram's volume and labeled slices move as DATA does (refused as other settings,
    # a run could be neither resumed nor exported once they had moved).
    for name, what in (("volume", "volume"), ("labels", "labeled slice")):
        if name in given and getattr(config, name):
            setattr(saved, name, getattr(config, name))
            continue
        value = getattr(saved, name)
        paths = value if isinstance(value, list | tuple) else [value] if value else []
        gone = [v for v in paths if not Path(v).is_file()]
        if gone:
            # The whole tomogram input: the CLI takes --volume, --slice and --labels together
            # only (--labels alone is refused as belonging to --volume).
            # Every input path that is not there is NEW (a folder moved whole takes the
            # volume and the labels with it): none is shown at a place that is gone.
            shown = {n: getattr(saved, n) for n in ("volume", "slice_index", "labels")}
            for n in ("volume", "labels"):
                shown[n] = ([v if Path(v).is_file() else "NEW" for v in shown[n]]
                            if isinstance(shown[n], list | tuple)
                            else shown[n] if not shown[n] or Path(shown[n]).is_file()
                            else "NEW")
            option = " ".join(_option(n, v) for n, v in shown.items())
            raise ResumeSettingError(
                f"{gone[0]}: the {what} {checkpoint} was trained on is not there; moved? give "
                f"{'its' if len(paths) == 1 else 'their'} new place with --resume "
                f"({option}; the data hash checks "
                f"{'it is' if len(paths) == 1 else 'they are'} the same)")
    for name in _MOVABLE_IF_SET:  # both are checked by their recorded sha256 (the engine's
        # _check_resumed_inputs); a frozen encoder's weights come from the checkpoint
        if name in given and getattr(config, name) and getattr(saved, name):
            setattr(saved, name, getattr(config, name))
    saved.epochs = max(saved.epochs, config.epochs)
    saved.device, saved.out = config.device, config.out
    # Left out, the run's own: `nwwatch train --resume --out M.onnx` (what a Ctrl-C says to
    # run) of a --threads 1 --exporter legacy run would otherwise go on with torch's threads
    # (on a shared machine up to 100x slower) and export with the other exporter, and a
    # --quiet run (a batch job's log) would fill its log with progress bars; --progress given
    # shows them again.
    for name in ("threads", "exporter", "workers", "quiet"):  # batches do not depend on workers
        if name in given:
            setattr(saved, name, getattr(config, name))
    if config.command and not _ends_with(saved.command, config.command):
        # The model's recorded command must reproduce it: the first run, then the resume. The
        # same command again (a second `--resume --export-only` of one checkpoint) adds nothing
        # to what reproduces the weights: recorded once, so re-exporting gives the same files.
        saved.command = f"{saved.command} && {config.command}"
    # --quantize given (int8, or none: the CLI's None) decides; left out, the run's own
    if "quantize" in given:
        saved.quantize = config.quantize
    return saved
