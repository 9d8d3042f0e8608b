"""Checks of a ``nwwatch train`` command line before any data are read: its inputs, which
``--out`` it may write (and the folders made for it, removed when nothing was written there),
the ``--teacher`` it names, the settings given (which ``--resume`` compares with the
checkpoint's), options of another paradigm; and what a run stopped by Ctrl-C or SIGTERM tells
the user."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

import click
from click.core import ParameterSource

from nwwatch.atomic import probe_leftovers
from nwwatch.pathtext import path_text
from nwwatch.stopsignals import interrupt_exit_status, interrupt_name, sigterm_as_interrupt
from training.config import OPTION_PARADIGMS, VOLUME_CANDIDATES, TrainConfig
from training.modelfiles import checkpoint_path, int8_path


def absolute(path: str | os.PathLike[str] | None) -> str | None:
    """An input path as the run records it: absolute, so that a ``--resume`` started in
    another folder reads the same files (a relative one would be looked up from wherever the
    resume runs). None stays None."""
    return os.path.abspath(path) if path else None


def resolve_teacher(teacher: str | None) -> str | None:
    """``--teacher``: a MODEL.pt or MODEL.onnx file, or the name of shipped weights
    (``insitu-default``), read as ``--init`` reads a name
    (:func:`training.weights.resolve_weights`); absolute, as :func:`absolute`. A usage error
    names the value and the shipped names."""
    from training.checkpoint import CheckpointError
    from training.weights import resolve_weights

    if teacher is None:
        return None
    try:
        return absolute(resolve_weights(teacher, "--teacher"))
    except CheckpointError as exc:
        raise click.UsageError(str(exc)) from None


def check_init(init: str | None) -> None:
    """``--init``: a usage error naming the value and the shipped names when it is neither a
    checkpoint (nor an ONNX model with one beside it) nor shipped weights, before any data are
    read, as ``--teacher`` (:func:`resolve_teacher`)."""
    from training.checkpoint import CheckpointError
    from training.weights import resolve_init

    if init is None:
        return
    try:
        resolve_init(init)
    except CheckpointError as exc:
        raise click.UsageError(str(exc)) from None


def series_note(volume: Path) -> str | None:
    """A warning when the ``--volume`` file declares its pages time frames (an in-situ
    series: :func:`nwwatch.io.layout.declares_time_frames`), as replay and the service warn
    of one in a tomogram folder; it is trained on as one volume all the same. None
    otherwise, and for a file whose check fails (the run names it)."""
    from nwwatch.io import InputError, inspect_tiff
    from nwwatch.io.layout import T_DECLARATIONS, declares_time_frames

    try:
        info = inspect_tiff(volume)
    except (InputError, OSError):
        return None
    if not declares_time_frames(info):
        return None
    return (f"warning: {volume} declares its {info.n_pages} pages as time frames "
            f"({T_DECLARATIONS}), as an in-situ series does: trained on as one tomogram "
            "(Z, Y, X); frames of a series are labelled as a DATA folder for `nwwatch train "
            "DATA` (docs/training.md)")


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) that are empty, or hold only the probe file of a
    write check that a signal cut short; keep any with another file."""
    for folder in folders:
        for leftover in probe_leftovers(folder):
            with contextlib.suppress(OSError):
                leftover.unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()


def check_inputs(data: Path | None, volume: Path | None, slice_index: tuple[int, ...],
                 labels: tuple[Path, ...], resume: bool, export_only: bool) -> None:
    """Usage errors for a command line that names no input, two inputs (DATA was ignored
    without a word when --volume was given), --volume without its labeled slices or those
    without --volume, and ``--export-only`` without ``--resume``."""
    if export_only and not resume:  # not taken as --resume --export-only without a word
        raise click.UsageError("--export-only exports the checkpoint of an earlier run: give "
                               "it with --resume (nwwatch train --resume --export-only --out "
                               "MODEL.onnx)")
    if volume is None and data is None and not resume:
        raise click.UsageError("give DATA, or --volume with --slice and --labels")
    if volume is not None and data is not None:
        raise click.UsageError("give DATA (a folder of labeled images) or --volume (a "
                               "tomogram, with --slice and --labels), not both")
    if volume is not None and (not slice_index or not labels):
        raise click.UsageError("--volume needs --slice and --labels")
    if (slice_index or labels) and volume is None:
        raise click.UsageError("--slice and --labels belong to --volume")
    if len(slice_index) != len(labels):
        raise click.UsageError(f"{len(slice_index)} --slice but {len(labels)} --labels: give "
                               f"one labels file per labeled slice, in the same order")


def check_out(out: Path, resume: bool, quantize: str | None = None) -> None:
    """Usage errors for an ``--out`` whose checkpoint would be the model itself; resuming, for
    a model fitted without a checkpoint (:func:`training.checkpoint.not_a_network`); unless
    resuming, for the files of an earlier run (or any model) that the run would replace:
    with ``quantize``, ``MODEL-int8.onnx`` too (it would be replaced when the new INT8 model
    is kept, and left beside a model it is not the INT8 copy of when it is not)."""
    if out.suffix.lower() != ".onnx":  # MODEL.pt would be overwritten by the export
        raise click.BadParameter(f"{out}: give a MODEL.onnx file (its checkpoint goes to "
                                 f"{checkpoint_path(out.with_suffix('.onnx')).name} next to it)",
                                 param_hint="'--out'")
    try:
        os.path.abspath(out).encode("utf-8")
    except UnicodeEncodeError:
        # Found here, not by the export after the whole training: the torch exporter and
        # ONNX Runtime take only UTF-8 paths, and the service's configuration (TOML) is UTF-8.
        raise click.BadParameter(f"{path_text(os.path.abspath(out))}: the path is not UTF-8 "
                                 f"text; the ONNX exporter, ONNX Runtime and the service's "
                                 f"configuration cannot name such a file: give a path of "
                                 f"UTF-8 characters",
                                 param_hint="'--out'") from None
    from training.checkpoint import not_a_network  # torch: after the interrupt handler is set

    checkpoint = checkpoint_path(out)
    if resume:
        why = "" if checkpoint.is_file() else not_a_network(checkpoint, "--resume")
        if why:  # not "checkpoint not found", as if it had been moved
            raise click.BadParameter(f"{checkpoint}: nothing to resume: {why}",
                                     param_hint="'--out'")
        return
    mine = (out, checkpoint, *((int8_path(out),) if quantize else ()))
    there = [p for p in mine if p.exists()]
    if there:
        # --resume needs the checkpoint: the threshold and the forest of --volume (and a model
        # copied there) have none, and --resume then stopped with "checkpoint not found".
        advice = ("give --resume to continue that run, or another --out" if checkpoint.exists()
                  else f"there is no checkpoint ({checkpoint.name}) to resume from: give "
                       f"another --out, or remove {out.name} to train again")
        raise click.BadParameter(f"{' and '.join(map(str, there))} already there (an earlier "
                                 f"run?); nothing is overwritten: {advice}",
                                 param_hint="'--out'")


#: Command-line parameters of ``nwwatch train`` whose TrainConfig field has another name.
_FIELD_OF_PARAMETER = {"init_weights": "init", "no_augment": "augment"}


def given_settings(ctx: click.Context) -> tuple[str, ...]:
    """TrainConfig fields set on the command line (``--resume`` refuses those that differ from
    the checkpoint's, instead of ignoring them)."""
    known = {f.name for f in fields(TrainConfig)}
    given = []
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
            name = _FIELD_OF_PARAMETER.get(param.name, param.name)
            if name in known:
                given.append(name)
    return tuple(given)


#: TrainConfig fields that only a network's training reads (the threshold and the forest of
#: ``--volume`` are fitted without epochs, batches or an optimiser).
NETWORK_SETTINGS = frozenset({
    "arch", "model_options", "epochs", "steps_per_epoch", "batch_size", "optimizer", "lr",
    "momentum", "weight_decay", "crop", "val_fraction", "workers", "augment"})


def _flag(ctx: click.Context, name: str) -> str:
    """The command-line option of TrainConfig field ``name`` (``augment``: --no-augment)."""
    for param in ctx.command.params:
        if _FIELD_OF_PARAMETER.get(param.name, param.name) == name and param.opts:
            return param.opts[0]
    return f"--{name.replace('_', '-')}"


def check_paradigm_options(ctx: click.Context, selects: bool, candidates: str) -> None:
    """Usage error for an option given that the run's paradigm does not read (``--teacher``
    without ``--paradigm pseudo-label`` would train plain supervised). ``selects``:
    ``--volume`` choosing among ``candidates`` (its networks are supervised, contrastive)."""
    if selects and ctx.get_parameter_source("paradigm") is not ParameterSource.COMMANDLINE:
        if (ctx.get_parameter_source("quantize") is ParameterSource.COMMANDLINE
                and ctx.params.get("quantize") == "int8"):
            # else accepted, and no INT8 model written nor a word said
            raise click.UsageError("--quantize belongs to a network trained with --paradigm; "
                                   "the method --volume selects is exported without an INT8 "
                                   "copy")
        names = [c.strip() for c in candidates.split(",") if c.strip()]
        # Named first: a misspelt network ("--candidates unte --epochs 5") would otherwise be
        # told that its candidates hold no network.
        if not names:
            raise click.BadParameter(f"no candidate given; choose one or more of "
                                     f"{VOLUME_CANDIDATES}", param_hint="--candidates")
        unknown = [c for c in dict.fromkeys(names) if c not in VOLUME_CANDIDATES]
        if unknown:
            raise click.BadParameter(f"unknown candidates {unknown}; choose from "
                                     f"{VOLUME_CANDIDATES}", param_hint="--candidates")
        networks = {"unet": "supervised", "contrastive": "contrastive"}
        running = {networks[c.strip()] for c in candidates.split(",") if c.strip() in networks}
        what = f"the --volume candidates {candidates}"
        if not running:  # the threshold and the forest are fitted in one go, without a network
            for name in given_settings(ctx):
                if name in NETWORK_SETTINGS:
                    raise click.UsageError(
                        f"{_flag(ctx, name)} sets the training of a network; {what} hold none "
                        "and would not use it: add unet or contrastive to --candidates, or "
                        "train one network with --paradigm")
    else:
        running = {ctx.params["paradigm"]}
        what = f"--paradigm {ctx.params['paradigm']}"
    for name in given_settings(ctx):
        owners = OPTION_PARADIGMS.get(name, ())
        if owners and not running & set(owners):
            raise click.UsageError(f"--{name.replace('_', '-')} belongs to --paradigm "
                                   f"{' or '.join(owners)}; {what} would not use it")


def check_momentum(ctx: click.Context, optimizer: str) -> None:
    """Usage error for ``--momentum`` given with AdamW, which has none (it would be ignored;
    ``--init``'s optimiser is AdamW unless ``--optimizer sgd``)."""
    if (ctx.get_parameter_source("momentum") is ParameterSource.COMMANDLINE
            and optimizer == "adamw"):
        raise click.UsageError("--momentum belongs to --optimizer sgd; AdamW would not use it "
                               "(the default with --init: give --optimizer sgd to use it)")


def check_init_and_frozen_encoder(init: str | None, frozen_encoder: Path | None) -> None:
    """Usage error when ``--init`` and ``--frozen-encoder`` name different weights: the
    ``--init`` model is loaded whole after the encoder is frozen, so the "frozen" encoder
    would hold the ``--init`` weights. The same weights for both freeze that model's encoder."""
    from training.checkpoint import CheckpointError
    from training.weights import resolve_init

    if init is None or frozen_encoder is None:
        return
    try:
        weights = resolve_init(init).resolve()
    except CheckpointError:
        return  # the run names the bad --init
    frozen = checkpoint_path(frozen_encoder) if frozen_encoder.suffix == ".onnx" \
        else frozen_encoder
    if frozen.resolve() != weights and not _same_content(frozen, weights):
        raise click.UsageError(f"--init {weights} and --frozen-encoder {frozen} are different "
                               f"weights, and --init would replace the frozen encoder: give "
                               f"the same weights to both, or only one of them")


def _same_content(a: Path, b: Path) -> bool:
    """True when the files ``a`` and ``b`` hold the same bytes (a copy of the weights under
    another name); False when either cannot be read (the run names that)."""
    from nwwatch.filehash import file_sha256

    try:
        return a.stat().st_size == b.stat().st_size and file_sha256(a) == file_sha256(b)
    except OSError:
        return False


@contextlib.contextmanager
def interrupt_explained(out: Path, epochs: bool = True, before_run: bool = False
                        ) -> Iterator[None]:
    """Ctrl-C or SIGTERM during a run: say what is kept and how to go on, exit 130 (Ctrl-C)
    or 143 (SIGTERM, raised as :class:`Terminated` so that it unwinds as Ctrl-C does: the
    selection's temporary folder and the empty folders made for ``--out`` are removed).
    The model is written under a temporary name and renamed once verified, so ``out`` is
    never left half-written; the checkpoint is rewritten atomically after every epoch.
    ``epochs`` False: the method selection of ``--volume``, whose folds keep no checkpoint.
    ``before_run``: the whole command, from its first line (the torch import and the checks
    take seconds); a run's own block inside it says what the run kept."""
    try:
        with sigterm_as_interrupt():
            try:
                yield
            except KeyboardInterrupt as stop:
                _say_what_is_kept(stop, out, epochs, before_run)
            except ImportError as exc:
                _say_what_is_kept(_interrupt_behind(exc), out, epochs, before_run)
    except KeyboardInterrupt as stop:
        # one recorded while the command's modules were imported, raised as the block opens
        _say_what_is_kept(stop, out, epochs, before_run)


def _interrupt_behind(exc: ImportError) -> KeyboardInterrupt:
    """The interrupt an ImportError stands for: onnxruntime, imported lazily during the
    run, turns a Ctrl-C or SIGTERM that lands in its native start-up into "ImportError:
    initialization failed" (a traceback and exit 1, where 130 or 143 is due); any other
    ImportError is raised again."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    raise exc


def _say_what_is_kept(stop: KeyboardInterrupt, out: Path, epochs: bool, before_run: bool
                      ) -> NoReturn:
    # A second Ctrl-C while the process exits (torch's teardown takes a second) ends it at
    # once: raised, it would be click's "Aborted!" (exit 1), this line again, or an exit
    # handler's traceback below it. Ignored while the line is written, so it is written whole.
    interruptible = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if interruptible:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    checkpoint = checkpoint_path(out)
    if checkpoint.is_file():
        what = (f"{checkpoint} holds the run up to its last finished epoch: `nwwatch "
                f"train --resume --out {out}` continues it, `nwwatch train --resume "
                f"--export-only --out {out}` exports its best weights now")
    elif before_run:
        what = "nothing was written: run the command again"
    elif epochs:
        what = "no checkpoint was saved (no epoch had finished)"
    else:
        what = "nothing was saved: run the command again"
    click.echo(f"train interrupted ({interrupt_name(stop)}): {what}; a model file is "
               f"only ever written whole, after its verification", err=True)
    if interruptible:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(interrupt_exit_status(stop))
