"""Every exception class of nwwatch with its own ``__init__`` pickles with its attributes.

The default pickling of an exception calls ``cls(*error.args)``, the message alone, which an
``__init__(path, reason)`` refuses: a worker process's error then never reaches the parent
(a ``multiprocessing.Pool`` waits for ever; ``concurrent.futures`` reports a broken pool).
"""

from __future__ import annotations

import ast
import io
import pickle
from pathlib import Path

import pytest

import nwwatch

PACKAGE = Path(nwwatch.__file__).parent


def _round_trip(error: BaseException) -> BaseException:
    """Pickled and read back without the exception pickling that importing Dask installs
    (tblib, through ``copyreg``): it would hide a class that cannot pickle on its own."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = {}
    pickler.dump(error)
    return pickle.loads(buffer.getvalue())


def _examples() -> dict[str, BaseException]:
    from nwwatch.io.dataset import DatasetLayoutError
    from nwwatch.io.errors import InputError, PageIndexError
    from nwwatch.label.store import SavedSinceError
    from nwwatch.measure.cli import LabelFileError
    from nwwatch.measure.result import refuse
    from nwwatch.service.configreader import ConfigError
    from nwwatch.service.flush import ResultsWriteError
    from nwwatch.service.inputs import ExternalSymlinkError
    from nwwatch.service.lock import (
        LedgerBusyError,
        LedgerElsewhereError,
        LedgerOfAnotherFolderError,
    )
    from nwwatch.service.stackmemory import StackTooLargeError
    from nwwatch.tomlfile import TomlFileError
    from nwwatch.volume.memory import TomogramTooLargeError

    errors = [
        DatasetLayoutError(Path("/d/labels/a.png"), "why"),
        InputError(Path("/d/a.tif"), "why"),
        PageIndexError(Path("/d/a.tif"), 5, 3),
        SavedSinceError("frame_00001", "token"),
        LabelFileError(Path("/d/a.png"), "why"),
        refuse("no_droplet", "no droplet in the labels"),
        ConfigError(Path("/etc/nwwatch.toml"), "watch.folder", "why"),
        ResultsWriteError("disk full", Path("/results")),
        ExternalSymlinkError(Path("/w/a.tif"), "why"),
        LedgerBusyError("busy", Path("/r/ledger.sqlite"), "123"),
        LedgerElsewhereError(Path("/r"), Path("/r/ledger.sqlite"), Path("/s/ledger.sqlite")),
        LedgerOfAnotherFolderError(Path("/r"), Path("/s/ledger.sqlite"), Path("/s")),
        StackTooLargeError(Path("/w/a.tif"), "why"),
        TomlFileError(Path("/d/dataset.toml"), "(syntax)", "why"),
        TomogramTooLargeError(Path("/w/v.mrc"), "why"),
    ]
    return {type(error).__name__: error for error in errors}


def _exception_classes_with_init() -> set[str]:
    """Names of the classes under nwwatch/ that define ``__init__`` and derive (by the name
    of a base) from an exception class, found in the source: a new one must be listed above."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [ast.unparse(base) for base in node.bases]
            exceptional = any(base.endswith(("Error", "Exception")) for base in bases)
            own_init = any(isinstance(item, ast.FunctionDef) and item.name == "__init__"
                           for item in node.body)
            if exceptional and own_init:
                found.add(node.name)
    return found


def test_every_exception_class_with_its_own_init_is_checked():
    assert _exception_classes_with_init() <= set(_examples())


@pytest.mark.parametrize("name", sorted(_examples()))
def test_exception_pickles_with_its_attributes(name):
    error = _examples()[name]
    again = _round_trip(error)
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert vars(again) == vars(error)
