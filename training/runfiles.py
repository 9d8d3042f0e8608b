"""The files of a ``nwwatch train`` run: which ``--out`` it may write, and the folders made
for it that a run ending with nothing written leaves as they were."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from training.checkpoint import checkpoint_path


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) that are empty; keep any with a file."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def check_out(out: Path, resume: bool) -> None:
    """Usage errors for an ``--out`` whose checkpoint would be the model itself, and, unless
    resuming, for the files of an earlier run (or any model) that the run would replace."""
    if out.suffix.lower() != ".onnx":  # MODEL.pt would be overwritten by the export
        raise click.BadParameter(f"{out}: give a MODEL.onnx file (its checkpoint goes to "
                                 f"{checkpoint_path(out.with_suffix('.onnx')).name} next to it)",
                                 param_hint="'--out'")
    if resume:
        return
    there = [p for p in (out, checkpoint_path(out)) if p.exists()]
    if there:
        raise click.BadParameter(f"{' and '.join(map(str, there))} already there (an earlier "
                                 f"run?); nothing is overwritten: give --resume to continue "
                                 f"that run, or another --out", param_hint="'--out'")
