"""One writer per ledger: an advisory ``flock`` on ``<ledger>.lock``, beside the ledger.

The lock dies with the process (``kill -9`` included), so a crash never leaves a stale lock.
Deleting the folder that holds it releases it silently (the lock belongs to the unlinked file),
so :meth:`LedgerLock.lost` compares the device and inode of the open lock file with what the
path names now: the service checks it with the ledger's own identity and stops when either
changed (:class:`nwwatch.service.ledger.LedgerLostError`).

A ledger configured outside its results folder (``[state] ledger``) also takes the lock of
the results folder's own ledger, ``RESULTS/ledger.sqlite.lock`` (:func:`results_lock_path`):
the ledger is what keeps rows from being written twice, and two processes with two ledgers
over one results folder (a service whose ledger lies in /var/lib, a replay into its results
without ``--config``) would each process the same files into it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from nwwatch.atomic import atomic_write
from nwwatch.paths import default_ledger

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


class LedgerElsewhereError(LedgerBusyError):
    """The results folder is kept by another ledger, outside it, that still exists
    (:func:`ledger_kept_elsewhere`): a ledger here would process files into it again."""

    def __init__(self, results_dir: Path, ledger: Path, other: Path) -> None:
        # (not .ledger: LedgerBusyError's holds the busy ledger, which none is here)
        self.results_dir, self.own_ledger, self.other = results_dir, ledger, other
        marker = elsewhere_path(results_dir)
        super().__init__(
            f"{results_dir}: its ledger is {other} ([state] ledger of the service that "
            f"writes here, recorded in {marker}), not {ledger}; a second ledger would process "
            f"files into these results again. Use that one (nwwatch replay --config with the "
            f"service's configuration; nwwatch compact / ledger rebuild --ledger {other}), "
            f"or move it to {ledger} and delete {marker}")

    def __reduce__(self):  # else unpickling calls __init__(message) and fails
        return (type(self), (self.results_dir, self.own_ledger, self.other))


class LedgerOfAnotherFolderError(LedgerElsewhereError):
    """The ledger given is the own ledger (``ledger.sqlite``) of another results folder
    (:func:`another_folders_ledger`): opened for these results, it would be tied to them and
    record or move rows that are not its folder's."""

    def __init__(self, results_dir: Path, ledger: Path, owner: Path) -> None:
        # (the arguments under LedgerElsewhereError's names: its __reduce__ pickles them)
        self.results_dir, self.own_ledger, self.other = results_dir, ledger, owner
        LedgerBusyError.__init__(
            self, f"{ledger}: the ledger of the results folder {owner}, not of {results_dir}; "
                  f"used for {results_dir} it would name files {owner} does not hold (a "
                  f"copy of a results folder keeps the ledger copied with it: give that one, "
                  f"or none, for {results_dir})")


def another_folders_ledger(results_dir: str | os.PathLike[str],
                           ledger_path: str | os.PathLike[str]) -> Path | None:
    """The results folder whose own ledger ``ledger_path`` is, when that is another folder
    than ``results_dir`` (a ``ledger.sqlite`` beside results: a ``frames/`` or ``volumes/``
    folder holding partitions or Parquet files), else None. A ``[state] ledger`` kept
    outside any results folder (/var/lib/nwwatch), or beside a watched folder that happens
    to be named ``frames``, is no such ledger."""
    ledger = Path(ledger_path).absolute()
    owner = ledger.parent
    if ledger.name != default_ledger(owner).name or _same_place(
            ledger, default_ledger(Path(results_dir).absolute())):
        return None
    for sub in ("frames", "volumes"):
        # a folder that cannot be listed holds no evidence
        with contextlib.suppress(OSError), os.scandir(owner / sub) as entries:
            if any(entry.name.startswith("acquisition=") or entry.name.endswith(".parquet")
                   for entry in entries):
                return owner
    return None


class LedgerLock:
    """Hold the exclusive lock of ``ledger_path`` until :meth:`close`; with ``results_dir``
    also that of the results folder's own ledger when ``ledger_path`` is another file (see
    the module docstring).

    Raises
    ------
    LedgerBusyError
        Another process holds either; the message names that process's pid.
    """

    def __init__(self, ledger_path: str | os.PathLike[str],
                 results_dir: str | os.PathLike[str] | None = None) -> None:
        ledger = Path(ledger_path)
        self.path = ledger.with_name(ledger.name + ".lock")
        self._handle = _take(self.path, lambda holder: LedgerBusyError(
            f"{ledger}: in use by another nwwatch process (pid {holder}); stop it or "
            "use another results folder", ledger, holder))
        #: The results folder's lock, held besides when the ledger lies elsewhere.
        self.results_path: Path | None = None
        self._results_handle = None
        if results_dir is None:
            return
        shared = results_lock_path(results_dir)
        if _same_place(shared, self.path):
            return
        results = Path(results_dir)
        try:
            self._results_handle = _take(shared, lambda holder: LedgerBusyError(
                f"{results}: results folder in use by another nwwatch process (pid {holder}) "
                f"that keeps another ledger than {ledger}; two ledgers over one results "
                "folder would write rows twice: stop it, give this command the same "
                "configuration (--config) or ledger, or use another results folder",
                results, holder))
        except BaseException:
            self._handle.close()
            raise
        self.results_path = shared

    def lost(self) -> str | None:
        """Why the lock no longer protects the ledger (its file, or the results folder's,
        was deleted or replaced), or None while it does."""
        held = [(self.path, self._handle)]
        if self._results_handle is not None:
            held.append((self.results_path, self._results_handle))
        for path, handle in held:
            why = _lost(path, handle)
            if why is not None:
                return why
        return None

    def close(self) -> None:
        for handle in (self._results_handle, self._handle):
            if handle is not None and not handle.closed:
                handle.close()


def results_lock_path(results_dir: str | os.PathLike[str]) -> Path:
    """The lock file every writer of ``results_dir`` holds: its own ledger's."""
    return Path(results_dir) / "ledger.sqlite.lock"


def elsewhere_path(results_dir: str | os.PathLike[str]) -> Path:
    """``RESULTS/ledger.sqlite.elsewhere``: the path of the ledger kept outside the results
    folder (``[state] ledger``) by the last process that wrote into it with one."""
    return Path(results_dir) / "ledger.sqlite.elsewhere"


def record_ledger_elsewhere(ledger_path: str | os.PathLike[str],
                            results_dir: str | os.PathLike[str]) -> None:
    """Record in ``results_dir`` that ``ledger_path``, a file outside it, is its ledger
    (nothing when it is the folder's own ``ledger.sqlite``)."""
    ledger = Path(ledger_path).absolute()
    own = default_ledger(results_dir)
    if _same_place(ledger, own):
        return
    marker = elsewhere_path(results_dir)
    text = f"{ledger}\n"
    try:
        if marker.read_text(encoding="utf-8", errors="replace") == text:
            return
    except OSError:
        pass
    with atomic_write(marker) as handle:  # never half a path: a reader would trust it
        handle.write(text.encode("utf-8"))


def ledger_to_read(results_dir: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """The ledger a reader of ``results_dir`` (``status --out``, ``dashboard``) opens: the
    one recorded as keeping it (:func:`ledger_kept_elsewhere`, a service's ``[state]
    ledger``), else its own ``ledger.sqlite``; and, for the former, a line that says so."""
    own = default_ledger(results_dir)
    other = ledger_kept_elsewhere(results_dir, own)
    if other is None:
        return own, None
    # the folder's own ledger, left behind when the service's ledger moved, stopped counting
    return other, (f"the results are kept by the ledger {other} (recorded in "
                   f"{elsewhere_path(results_dir)}): reading that one")


def ledger_kept_elsewhere(results_dir: str | os.PathLike[str],
                          ledger_path: str | os.PathLike[str]) -> Path | None:
    """The ledger recorded for ``results_dir`` (:func:`record_ledger_elsewhere`) when it is
    another file than ``ledger_path`` and still exists, else None: a second ledger made
    from the same results would know none of the files that ledger processes later, and
    processing them into the results again would write their rows twice."""
    try:
        text = elsewhere_path(results_dir).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text:
        return None
    other = Path(text)
    try:
        if not other.is_file():
            return None  # moved (into the results folder, say) or lost: nothing to protect
        if os.path.lexists(ledger_path) and os.path.samefile(other, ledger_path):
            return None
    except OSError:
        return None
    if _same_place(other.absolute(), Path(ledger_path).absolute()):
        return None
    return other


def _same_place(a: Path, b: Path) -> bool:
    """Whether two file paths name one file, their folders' symbolic links followed (the
    files need not exist)."""
    return (os.path.realpath(a.parent), a.name) == (os.path.realpath(b.parent), b.name)


def _lost(path: Path, handle) -> str | None:
    mine = os.fstat(handle.fileno())
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return f"{path} was deleted"
    if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
        return f"{path} was replaced by another file"
    return None


def _take(path: Path, busy):
    """Open ``path`` (made with its folder), lock it exclusively and write this pid into it;
    ``busy(holder)``: the error raised when another process holds it."""
    for _ in range(_RETRIES):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise busy(holder) from None
        # The holder may have deleted the file between the open and the lock (a failed
        # start removes the files it created before releasing them, startundo): a lock
        # on a deleted file protects nothing, so the path is opened again.
        if _lost(path, handle) is None:
            break
        handle.close()
    else:
        raise LedgerBusyError(f"{path}: this lock file was deleted {_RETRIES} times while "
                              "being locked; another process is removing it")
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


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
