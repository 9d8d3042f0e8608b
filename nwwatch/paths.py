"""Paths, below every layer (standard library only): whether a path lies inside a folder,
symbolic links resolved (the checks that keep outputs out of acquisition folders, inputs out
of results folders and QA pictures inside them), and which acquisition an input file belongs
to (its results partition, batch, dashboard page and label queue); where a results folder
keeps its ledger by default."""

from __future__ import annotations

import os
import re
from pathlib import Path


def lies_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``folder`` or lies below it, both resolved (:meth:`Path.resolve`:
    symbolic links followed in the part that exists, ``..`` taken from there; a symbolic link
    loop raises RuntimeError, the folder's first)."""
    top = Path(folder).resolve()
    return Path(path).resolve().is_relative_to(top)


#: The ledger's file name in a results folder (``[state] ledger`` may put it elsewhere).
LEDGER_NAME = "ledger.sqlite"


def default_ledger(results: str | os.PathLike[str]) -> Path:
    """The ledger of the results folder ``results`` where no other is given."""
    return Path(results) / LEDGER_NAME


#: Gatan's In-Situ recorder stores a recording as one file per frame in a time tree,
#: ``NAME/Hour_00/Minute_00/Second_00/NAME_Hour_00_Minute_00_Second_00_Frame_0000.dm4``:
#: the three levels below NAME only split one acquisition by the second.
_TIME_TREE_LEVELS = (re.compile(r"Second_\d+"), re.compile(r"Minute_\d+"),
                     re.compile(r"Hour_\d+"))


def is_time_tree_folder(name: str) -> bool:
    """Whether the folder name ``name`` is one of the levels of Gatan's time tree
    (``Hour_NN``, ``Minute_NN``, ``Second_NN``)."""
    return any(level.fullmatch(name) for level in _TIME_TREE_LEVELS)


def acquisition_of(source: str) -> str:
    """The acquisition an input file belongs to, as a path string: the folder ``source`` lies
    in, or, for a frame in the Hour_NN/Minute_NN/Second_NN folders of Gatan's In-Situ
    recorder, the recording's folder above ``Hour_NN`` (so a recording is one acquisition,
    not one per second). Works on the string alone; nothing is read from the disk."""
    folder = os.path.dirname(source)
    top = folder
    for level in _TIME_TREE_LEVELS:
        if not level.fullmatch(os.path.basename(top)):
            return folder
        top = os.path.dirname(top)
    return top


def acquisition_named(folder: str) -> str:
    """The acquisition a folder names when a person gives it (``compact --acquisition``):
    the folder itself, or for a folder of a Gatan In-Situ recording's time tree (``Hour_NN``,
    ``Hour_NN/Minute_NN`` or ``Hour_NN/Minute_NN/Second_NN``), the recording's folder, as
    :func:`acquisition_of` names it for the files there."""
    for start in range(len(_TIME_TREE_LEVELS)):  # the folder is a Second, Minute or Hour one
        top = folder
        for level in _TIME_TREE_LEVELS[start:]:
            if not level.fullmatch(os.path.basename(top)):
                break
            top = os.path.dirname(top)
        else:
            return top
    return folder
