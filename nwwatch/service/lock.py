"""One writer per ledger: an advisory ``flock`` on ``<ledger>.lock``, beside the ledger.

The lock dies with the process (``kill -9`` included), so a crash never leaves a stale lock.
Deleting the folder that holds it releases it silently (the lock belongs to the unlinked file),
so :meth:`LedgerLock.lost` compares the device and inode of the open lock file with what the
path names now: the service checks it with the ledger's own identity and stops when either
changed (:class:`nwwatch.service.ledger.LedgerLostError`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

#: Tries to lock a lock file that is deleted each time between its opening and its locking.
_RETRIES = 10


class LedgerBusyError(RuntimeError):
    """Another process holds the ledger (a running service, a replay into the same folder).

    ``ledger`` is its path and ``holder`` the pid written in its lock file ("?" when none):
    a command that needs this very ledger (compaction, a rebuild) says to stop the holder
    with :meth:`stop_first`, where a replay or service may as well use another folder."""

    def __init__(self, message: str, ledger: Path | None = None, holder: str = "?") -> None:
        super().__init__(message)
        self.ledger = ledger
        self.holder = holder

    def stop_first(self, command: str) -> str:
        """The message for ``command`` (e.g. "nwwatch compact"), which needs this ledger."""
        if self.ledger is None:  # not held by a process: the message says what happened
            return str(self)
        return (f"{self.ledger}: in use by another nwwatch process (pid {self.holder}); stop "
                f"it first (a service: systemctl stop nwwatch), then run {command} again")


class LedgerLock:
    """Hold the exclusive lock of ``ledger_path`` until :meth:`close`.

    Raises
    ------
    LedgerBusyError
        Another process holds it; the message names that process's pid.
    """

    def __init__(self, ledger_path: str | os.PathLike[str]) -> None:
        ledger = Path(ledger_path)
        self.path = ledger.with_name(ledger.name + ".lock")
        for _ in range(_RETRIES):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a+")
            try:
                fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._handle.seek(0)
                holder = self._handle.read().strip() or "?"
                self._handle.close()
                raise LedgerBusyError(
                    f"{ledger}: in use by another nwwatch process (pid {holder}); stop it or "
                    "use another results folder", ledger, holder
                ) from None
            # The holder may have deleted the file between the open and the lock (a failed
            # start removes the files it created before releasing them, startundo): a lock
            # on a deleted file protects nothing, so the path is opened again.
            if self.lost() is None:
                break
            self._handle.close()
        else:
            raise LedgerBusyError(f"{ledger}: its lock file {self.path} was deleted "
                                  f"{_RETRIES} times while being locked; another process is "
                                  "removing it")
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(str(os.getpid()))
        self._handle.flush()

    def lost(self) -> str | None:
        """Why the lock no longer protects the ledger (its file was deleted or replaced), or
        None while it does."""
        mine = os.fstat(self._handle.fileno())
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return f"{self.path} was deleted"
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            return f"{self.path} was replaced by another file"
        return None

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()


#: Where the kernel lists the file locks held now (Linux).
PROC_LOCKS = "/proc/locks"


def lock_holder(ledger_path: str | os.PathLike[str]) -> int | None:
    """The pid of the process that holds the lock of ``ledger_path`` now, None when none
    does; read from ``/proc/locks`` (Linux), so the lock itself is never touched (taking it,
    even for an instant, could make a starting service fail as busy). Raises OSError when
    that cannot be known (no lock file is "none").

    A lock line names the file by device and inode. Some file systems (btrfs subvolumes,
    overlay mounts) report another device number to ``stat`` than the kernel prints there, so
    a line on the same inode whose pid is the one the holder wrote into the lock file counts
    too."""
    ledger = Path(ledger_path)
    lock = ledger.with_name(ledger.name + ".lock")
    try:
        st = os.stat(lock)
        written = lock.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    inode = f":{st.st_ino}"
    with open(PROC_LOCKS) as locks:
        for line in locks:
            # "1: FLOCK  ADVISORY  WRITE 4961 fe:00:16039990 0 EOF" (older kernels add "->")
            fields = line.split()
            if "FLOCK" not in fields:
                continue
            for i, field in enumerate(fields[1:], start=1):
                if field == device or (field.endswith(inode) and fields[i - 1] == written):
                    return int(fields[i - 1])
    return None
