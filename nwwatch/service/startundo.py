"""A replay that fails to start (a model that does not load or cannot segment tomograms,
a wrong kind of model, a ledger it may not use) leaves the results folder as it was: what it
created on the way (the folder, the ledger and its lock and journal files) is removed, and
nothing that was there before.

Paths are compared as the system will resolve them once the folders exist: ``new/../res``
names ``res`` (and creates ``new`` on the way), whatever the path's text says now."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from nwwatch.service.lock import (
    LedgerBusyError,
    LedgerElsewhereError,
    LedgerLock,
    elsewhere_path,
    results_lock_path,
)

#: Files SQLite and :class:`nwwatch.service.lock.LedgerLock` put beside a ledger.
LEDGER_SIDE_SUFFIXES = ("", "-wal", "-shm", "-journal", ".lock")


def ledger_files(ledger_path: Path, results_dir: Path | None = None) -> list[Path]:
    """The ledger and the files that may appear beside it, its lock last; beside a ledger
    that exists already only its lock: SQLite removes its own journal files when the ledger
    is closed, and those of a ledger another process reads may still be in use. With
    ``results_dir``, a ledger kept elsewhere adds the results folder's lock
    (:func:`~nwwatch.service.lock.results_lock_path`), which its :class:`LedgerLock` takes."""
    ledger_path = _resolved(ledger_path)
    suffixes = (".lock",) if os.path.lexists(ledger_path) else LEDGER_SIDE_SUFFIXES
    files = [ledger_path.with_name(ledger_path.name + s) for s in suffixes]
    if results_dir is not None:
        shared = _resolved(results_lock_path(results_dir))
        if shared not in files:  # a ledger elsewhere: its record in the folder, its lock
            files[-1:-1] = [_resolved(elsewhere_path(results_dir))]
            files.append(shared)
    return files


def _resolved(path: Path) -> Path:
    """``path`` with its folder as the system will resolve it once it exists (symbolic links
    followed; ``..`` after a folder not made yet cancels that folder), its last part kept (a
    link there is the file, as unlink sees it). Tested for existence unresolved, ``new/../x``
    would be missing before ``new`` is made and the ``x`` that was there removed after."""
    path = Path(path).absolute()
    return Path(os.path.realpath(path.parent)) / path.name


class CreatedPaths:
    """Which of ``folders`` (with their parents) and ``files`` do not exist yet; :meth:`undo`
    removes those that exist by then: the files, then the folders deepest first, each only
    when empty (anything else put there stays, and so does the folder)."""

    def __init__(self, folders: Iterable[Path], files: Iterable[Path]) -> None:
        new_folders: set[Path] = set()
        for folder in folders:
            # Every folder mkdir(parents=True) may make: each ancestor as written, resolved
            # (``new/../res`` makes ``new``, which is not an ancestor of ``res``).
            folder = Path(folder).absolute()
            for f in (folder, *folder.parents):
                real = _resolved(f)
                if f.name != ".." and not os.path.lexists(real):  # "..": a folder that exists
                    new_folders.add(real)
        self.folders = sorted(new_folders, key=lambda p: len(p.parts), reverse=True)
        self.files = [f for f in map(_resolved, files) if not os.path.lexists(f)]

    def made(self, folder: Path) -> bool:
        """Whether ``folder`` did not exist when these paths were looked at."""
        return _resolved(Path(folder).absolute()) in self.folders

    def undo(self, error: BaseException | None = None, lock: LedgerLock | None = None
             ) -> None:
        """``error``: why the start failed. A busy ledger was taken by another process after
        these paths were looked at: its files are that process's, not this one's.

        ``lock``: the ledger's lock, held by the start that failed; released once everything
        is removed, so that no other process can have opened the ledger removed here (it
        would stop at its first batch, the ledger lost). The lock file goes last, and a
        process that opened it before locks it again (:class:`LedgerLock`)."""
        try:
            self._remove(error)
        finally:
            if lock is not None:
                lock.close()

    def _remove(self, error: BaseException | None) -> None:
        # busy: another process's files (a ledger kept elsewhere: none of them is)
        theirs = isinstance(error, LedgerBusyError) and not isinstance(error,
                                                                        LedgerElsewhereError)
        for f in [] if theirs else self.files:
            try:
                f.unlink()
            except OSError:  # gone already; the error being raised matters more
                pass
        for folder in self.folders:
            try:
                folder.rmdir()
            except OSError:  # not empty (something else was put there), or already gone
                pass
