"""Command-line parameter types and checks shared by the ``nwwatch`` commands (how a command
stopped by a signal exits is :mod:`nwwatch.stopsignals`).

In the lowest layer (it needs only click and :mod:`nwwatch.atomic`) so that every command
module, whatever its layer, checks its arguments the same way.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from nwwatch.pathtext import path_text

#: ``--seed`` of the commands that draw (synth, demo, train): what NumPy's SeedSequence and
#: an int64 column take; checked with the options, before any file is written.
SEED = click.IntRange(0, 2**63 - 1)


class FiniteFloatRange(click.FloatRange):
    """:class:`click.FloatRange` that also refuses ``nan`` and ``inf``: click parses both,
    and a NaN passes every bound (each comparison with it is false)."""

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):  # before the bounds: inf is named as such
            self.fail(f"{number} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


class InputFile(click.Path):
    """An existing file (``click.Path(exists=True, dir_okay=False)``, as a Path) whose error
    for a name with ``*``, ``?`` or ``[`` says it is most likely a shell pattern that matched
    nothing (the shell then passes the pattern itself), and for a folder, how to give its
    files."""

    def __init__(self, *, dangling_links: bool = False) -> None:
        super().__init__(exists=True, dir_okay=False, path_type=Path)
        #: a symbolic link whose target is gone is passed on (the command refuses it and
        #: goes on with the other files) rather than stopping the command before it starts
        self.dangling_links = dangling_links

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            if os.path.islink(value) and not os.path.exists(value):
                if self.dangling_links:
                    return Path(os.fsdecode(value))
                self.fail(f"{exc.message.rstrip('.')}: it is a symbolic link to "
                          f"{os.fsdecode(os.readlink(value))!r}, which does not exist.",
                          param, ctx)
            if any(c in str(value) for c in "*?[") and not Path(value).exists():
                self.fail(f"{exc.message.rstrip('.')} (a shell pattern that matched no "
                          "file?).", param, ctx)
            if Path(value).is_dir():  # a folder is not read: its files are given one by one
                folder = os.fsdecode(value).rstrip("/" + os.sep) or os.sep
                self.fail(f"{exc.message.rstrip('.')}: give the files in it, e.g. "
                          f"{folder}/*.png or {folder}/*.tif.", param, ctx)
            raise


class OutputFile(click.Path):
    """A file to write (``click.Path(dir_okay=False)``, as a Path) that refuses a name ending
    in a path separator: ``--out results/`` means a folder, and :class:`~pathlib.Path` drops
    the separator, so a file named ``results`` was written where a folder was meant."""

    def __init__(self, example: str) -> None:
        super().__init__(dir_okay=False, path_type=Path)
        self.example = example

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        text = os.fsdecode(value) if isinstance(value, bytes) else str(value)
        seps = "/" + os.sep
        last = text.rstrip(seps)
        for sep in seps:
            last = last.rsplit(sep, 1)[-1]
        # 'out/.' too: Path drops the '.' as it drops the '/', and writes a file 'out'
        if text.endswith(tuple(seps)) or (last in (".", "..") and text.strip(seps)):
            ends = ("/" if text.endswith(tuple(seps))
                    else f"/{last}" if any(sep in text for sep in seps) else last)
            self.fail(f"{text} names a folder (it ends in '{ends}'); give the file to write "
                      f"in it, e.g. {Path(text.rstrip(seps)).as_posix().rstrip('/')}/"
                      f"{self.example}", param, ctx)
        stream = stream_problem(text)
        if stream:
            self.fail(f"{text} {stream}, not a file: the output is written beside it and "
                      f"renamed into place (it would replace it); give a file, e.g. "
                      f"{self.example}", param, ctx)
        return super().convert(value, param, ctx)


def stream_problem(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it is no file an output may be renamed over: a device or stream
    (under /dev or /proc, as named or as its links lead: /dev/null, /dev/stdout, which leads
    to /proc/self/fd/1), or a FIFO or socket; None for anything else."""
    for where in (os.path.abspath(path), os.path.realpath(path)):
        top = Path(where).parts[1:2]
        if top in (("dev",), ("proc",)):
            return f"lies in /{top[0]} (a device or a stream)"
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, a FIFO or a socket"
    return None


def results_mark(folder: Path) -> str | None:
    """The name of the file that makes ``folder`` a results folder (its ledger, or the record
    of a ledger kept elsewhere, or the lock), else None."""
    return next((name for name in _RESULTS_MARKS if (folder / name).exists()), None)


def results_dataset_of(path: Path, results: Path | None = None,
                       folder: bool = False) -> Path | None:
    """The ``frames/`` or ``volumes/`` folder of a results folder (``results``, or any with
    a ledger or the record of one kept elsewhere) that ``path`` would lie in (with
    ``folder``, ``path`` a folder to write into, or be), else None: every file there is read
    as the service's results, and a file written there replaces or adds to them, or breaks
    their readers (a page or a JSON file is no Parquet)."""
    top = None if results is None else results.resolve()
    resolved = path.resolve()
    for above in (resolved, *resolved.parents) if folder else resolved.parents:
        if above.name in ("frames", "volumes") and (
                above.parent == top or results_mark(above.parent) is not None):
            return above
    return None


#: What a results folder holds beside its datasets: its ledger, or, when the ledger is kept
#: elsewhere ([state] ledger, ``ledger rebuild --ledger``), the record of where and the lock.
_RESULTS_MARKS = ("ledger.sqlite", "ledger.sqlite.elsewhere", "ledger.sqlite.lock")


def refuse_inside_results(path: Path, param_hint: str, results: Path | None = None,
                          folder_example: str | None = None) -> None:
    """Raise :class:`click.BadParameter` when the output ``path`` would lie in a results
    folder's ``frames/`` or ``volumes/`` (:func:`results_dataset_of`), naming a place beside
    them. With ``folder_example`` (a name for the example given), ``path`` is a folder the
    command writes files into: refused too when it is such a folder, or a results folder
    itself (a reader of the whole folder, ``pandas.read_parquet(RESULTS)``, takes every
    Parquet file in it for results, and the files written mix with the service's own)."""
    option = param_hint.strip("'")
    if folder_example is not None:
        mark = results_mark(path)
        if mark is not None:
            raise click.BadParameter(
                f"{path} is a results folder of the service or replay (it holds {mark}): "
                f"what is written there would mix with its results; write into a folder of "
                f"its own, e.g. {option} "
                f"{path.resolve().parent / folder_example}", param_hint=param_hint)
    dataset = results_dataset_of(path, results, folder=folder_example is not None)
    if dataset is not None:
        where = (f"is the {dataset.name}/ folder of the results {dataset.parent}"
                 if path.resolve() == dataset else f"is inside {dataset}")
        # a folder of the command's own goes beside the results folder, not in it
        beside = (dataset.parent / path.name if folder_example is None
                  else dataset.parent.parent / folder_example)
        raise click.BadParameter(
            f"{path} {where}, where the service, status and every reader of the results "
            f"(pandas, pyarrow, polars, DuckDB) take each file for results; write it "
            f"elsewhere, e.g. {option} {beside}", param_hint=param_hint)


def require_writable(path: Path, param_hint: str, folder: bool = False) -> None:
    """Raise :class:`click.BadParameter` naming ``path`` when the output file ``path`` (the
    folder ``path`` when ``folder``) cannot be written; its folder is created if missing.
    Called before a command's work, so an unwritable output is not found after hours of it."""
    from nwwatch.atomic import probe_writable

    target = path if folder else path.parent
    try:
        probe_writable(target)
    except OSError as exc:
        raise click.BadParameter(f"{path}: cannot write to {target} "
                                 f"({exc.strerror or exc})", param_hint=param_hint) from None


def mask_warning(label_path: Path, class_names: Sequence[str]) -> str:
    """The warning line of ``train`` and ``evaluate`` for a label image holding only 0 and
    255 (:func:`nwwatch.io.dataset.mask_like_labels`), naming the class ids of its DATA
    folder (``class_names``: a tomogram's are 0 pore, 1 solid)."""
    ids = ", ".join(f"{i} {name}" for i, name in enumerate(class_names))
    # (a slice or frame where only class 0 was labeled holds the same values, rightly)
    return (f"warning: {label_path}: only 0 and 255 (unlabeled); a 0/255 mask? Its 255 pixels "
            f"are left out; label images hold class ids ({ids}). If only "
            f"{class_names[0]} was labeled there, it is read as meant")


def shipped_models() -> dict[str, Path]:
    """{name: path} of the ONNX models shipped with nwwatch (``insitu-default``)."""
    from nwwatch import DEFAULT_INSITU_MODEL

    return {path.stem: path for path in sorted(DEFAULT_INSITU_MODEL.parent.glob("*.onnx"))}


def model_name_problem(path: str | os.PathLike[str]) -> str | None:
    """What is wrong with a model file's path that is not UTF-8 text, for the user (None when
    it is): the results name their model by its path as text (Parquet, JSON, SQLite), and
    ONNX Runtime and the service's configuration (TOML) take no other. One check for every
    command's model (``--model``, ``evaluate MODEL``, a ``[[watch]]``'s ``model``)."""
    raw = os.fsencode(os.path.abspath(path))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"{path_text(raw)}: the model's path is not UTF-8 text (byte "
                f"{raw[exc.start]:#04x}); the results name the model by its path as text, and "
                f"ONNX Runtime and the service's configuration take no other: rename the file "
                f"(or its folder) to UTF-8 characters")
    return None


def unreadable_checkpoint(path: str | os.PathLike[str], why: str) -> str:
    """That ``path`` is not a checkpoint ``nwwatch train`` wrote, and ``why``: the one way
    ``nwwatch train`` (``--init``, ``--resume``) and the commands that take a model say it."""
    return f"{path_text(path)}: not a readable checkpoint ({why})"


#: The first bytes of a file :func:`torch.save` writes: a zip archive (what ``nwwatch train``
#: writes), or a pickle (torch's legacy format).
_TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")


def written_by_torch(path: Path) -> bool:
    """Whether ``path`` starts as a file :func:`torch.save` writes (True when it cannot be
    read: the model's loader then says why)."""
    try:
        with path.open("rb") as handle:
            return handle.read(4).startswith(_TORCH_FILE_STARTS)
    except OSError:
        return True


def model_file(ctx: click.Context | None, param: click.Parameter | None,
               value: str | None) -> Path | None:
    """Click callback of a model argument or ``--model``: an ONNX file, or the name of a
    shipped model (``insitu-default``); None stays None. A MODEL.pt checkpoint is a usage error
    naming the MODEL.onnx ``nwwatch train`` wrote beside it (ONNX Runtime would say only
    "Protobuf parsing failed"), a ``.pt`` file that is no torch file one that says it is no
    checkpoint (:func:`unreadable_checkpoint`), and so are the model's card MODEL.json beside
    its MODEL.onnx, a folder, a missing file and a path that is not UTF-8 text
    (:func:`model_name_problem`)."""

    if value is None:
        return None
    path, shipped = Path(value), shipped_models()
    if path.is_file():
        problem = model_name_problem(path)
        if problem:
            raise click.BadParameter(problem, ctx, param)
        if path.suffix.lower() == ".pt" and not written_by_torch(path):
            # e.g. a text file: no training checkpoint, whatever its name
            raise click.BadParameter(
                f"{unreadable_checkpoint(path, 'not a file torch.save writes')}: not the "
                f"MODEL.pt that nwwatch train wrote; give an ONNX model, or the name of a "
                f"shipped one ({', '.join(shipped)})", ctx, param)
        if path.suffix.lower() == ".pt":
            exported = path.with_suffix(".onnx")
            if not exported.exists() and path.stem in shipped:
                # training/pretrained/<name>.pt: the shipped model is nwwatch/models/<name>.onnx
                hint = (f"give the shipped model by its name, {path.stem} "
                        f"({shipped[path.stem]})")
            else:
                hint = f"give the model `nwwatch train` exported with it, {exported}"
                if not exported.exists():  # moved or renamed: the name alone would mislead
                    hint += (" (not there: find the .onnx file the run wrote beside its "
                             f"{path.name})")
            raise click.BadParameter(f"{path} is a training checkpoint, not an ONNX model: "
                                     f"{hint}", ctx, param)
        if path.suffix.lower() == ".json" and path.with_suffix(".onnx").is_file():
            # MODEL.json, the card `nwwatch train` writes beside the model
            raise click.BadParameter(f"{path} is the model's card, not the model: give "
                                     f"{path.with_suffix('.onnx')}", ctx, param)
        return path
    if value in shipped and not path.exists():
        return shipped[value]
    what = "a folder, not an ONNX model file" if path.is_dir() else "no such file"
    raise click.BadParameter(f"{value}: {what}; give an ONNX model, or the name of a shipped "
                             f"one ({', '.join(shipped)})", ctx, param)


def listed(names: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` of ``names``, comma-separated, then "and N more" for the rest:
    how a message names a list of files or images."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def say(text: str = "", err: bool = False) -> None:
    """``click.echo(text, err=err)`` for a command whose products are files: when the reader
    has gone (a closed pipe, ``nwwatch measure ... | head -1``: EPIPE; a terminal hung up:
    EIO) this line and the later ones of that stream are dropped and the work goes on,
    where the error would end the command with its rows unwritten."""
    try:
        click.echo(text, err=err)
    except OSError as exc:
        # A reader gone is no fault. Another error (a full disk: > report.txt) is kept and
        # said when the command ends (nwwatch.cli), which then exits 1; the work goes on:
        # its files may lie on another disk.
        if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EIO and not _unwritten:
            name = "standard error" if err else "standard output"
            _unwritten.append(f"{name} could not be written ({exc.strerror or exc}): the "
                              "lines from then on were dropped; the rest of the work was done")
        stream_dropped(err)


#: Why a command's lines could not be written (:func:`say`), for its end to say: the first.
_unwritten: list[str] = []


def unwritten_output() -> str | None:
    """Why lines of the command could not be written (not a reader gone), once; then None."""
    return _unwritten.pop() if _unwritten else None


def stream_dropped(err: bool = False) -> None:
    """Point stdout (stderr with ``err``) at the null device, once its reader has gone: the
    text still buffered for it then does not fail again as the process exits (Python would
    print "Exception ignored" and exit 120)."""
    stream = sys.stderr if err else sys.stdout
    with contextlib.suppress(OSError, ValueError):  # no descriptor (a test's capture)
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, stream.fileno())
        finally:
            os.close(null)
