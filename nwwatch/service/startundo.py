"""A replay that fails to start (a model that does not load or cannot segment tomograms,
a wrong kind of model, a ledger it may not use) leaves the results folder as it was: what it
created on the way (the folder, the ledger and its lock and journal files) is removed, and
nothing that was there before."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

#: Files SQLite and :class:`nwwatch.service.lock.LedgerLock` put beside a ledger.
LEDGER_SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal", ".lock")


def ledger_files(ledger_path: Path) -> list[Path]:
    """The ledger and the files that may appear beside it; beside a ledger that exists
    already only its lock: SQLite removes its own journal files when the ledger is closed,
    and those of a ledger another process reads may still be in use."""
    suffixes = (".lock",) if os.path.lexists(ledger_path) else LEDGER_SIDE_SUFFIXES
    return [ledger_path.with_name(ledger_path.name + s) for s in suffixes]


class CreatedPaths:
    """Which of ``folders`` (with their parents) and ``files`` do not exist yet; :meth:`undo`
    removes those that exist by then: the files, then the folders deepest first, each only
    when empty (anything else put there stays, and so does the folder)."""

    def __init__(self, folders: Iterable[Path], files: Iterable[Path]) -> None:
        new_folders: set[Path] = set()
        for folder in folders:
            folder = Path(os.path.abspath(folder))
            for f in (folder, *folder.parents):
                if os.path.lexists(f):
                    break
                new_folders.add(f)
        self.folders = sorted(new_folders, key=lambda p: len(p.parts), reverse=True)
        self.files = [Path(f) for f in files if not os.path.lexists(f)]

    def undo(self) -> None:
        for f in self.files:
            try:
                f.unlink()
            except OSError:  # gone already; the error being raised matters more
                pass
        for folder in self.folders:
            try:
                folder.rmdir()
            except OSError:  # not empty (something else was put there), or already gone
                pass
