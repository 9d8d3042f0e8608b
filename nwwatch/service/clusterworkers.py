"""Say so when a cluster replay is left without workers, and when one joins again.

A replay waits for its tasks; with every worker gone (killed, its Slurm job ended) the tasks
wait for one to join, and the replay looked hung: the bar stood still, the log said nothing.
:class:`WorkerWatch` asks for the scheduler's worker list (``Client.scheduler_info``: a short
message to the scheduler, once a second) in a thread of its own while the driver waits, and
says each change between "no worker" and "some" once: a line at a terminal, else a log line.
A client that is not running (reconnecting to a lost scheduler, closing: its copy of the list
emptied) tells nothing about the workers, and a look answered once the watch is told to stop
is not said: the driver reports a lost scheduler itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: How often the worker list is asked for (seconds).
POLL_S = 1.0


class WorkerWatch:
    """While entered, says when ``client``'s cluster at ``address`` loses its last worker
    (``dask_workers_gone``) and when one joins again (``dask_workers_back``).

    ``workers``: how many there were when the replay started (none: the replay has said so
    already, and only a join is news). ``echo``: where a terminal's line goes (None: the log
    line alone, a warning for either change, so that a log kept at warning level shows the
    end of every wait it shows the start of, ``dask_no_workers``'s too).
    """

    def __init__(self, client, address: str, workers: int, log,
                 echo: Callable[[str], None] | None = None, poll_s: float = POLL_S,
                 give_up_s: float | None = None,
                 on_give_up: Callable[[], None] | None = None) -> None:
        self.client, self.address, self.log, self.echo = client, address, log, echo
        self.poll_s = poll_s
        self.present = workers > 0
        #: ``on_give_up`` is called once when no worker has been there for ``give_up_s``
        #: (a ``local:N`` cluster, which no worker will join: its nannies did not restart
        #: workers that died); ``gave_up`` is then True
        self.give_up_s, self.on_give_up, self.gave_up = give_up_s, on_give_up, False
        self._gone_since: float | None = None
        self.changes: list[str] = []  # "gone" / "back", in order (for tests and the summary)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nwwatch-dask-workers",
                                        daemon=True)

    def count(self) -> int | None:
        """Workers in the client's latest copy of the scheduler's list; None when it cannot
        be read (a client reconnecting or closing)."""
        try:
            if self.client.status != "running":
                return None
            # the count alone: a list of every worker's details, each second, is a large
            # message on a large cluster
            info = self.client.scheduler_info(n_workers=0)
            return int(info.get("n_workers", len(info.get("workers", {}))))
        except Exception:  # noqa: BLE001 - a closing client: the driver reports that itself
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            n = self.count()  # a message to the scheduler: it may answer after a stop
            if self._stop.is_set():
                break
            if n is None:
                continue
            if n == 0 and self._gone_since is None:
                self._gone_since = time.monotonic()
            elif n > 0:
                self._gone_since = None
            if (n == 0 and self.give_up_s is not None and not self.gave_up
                    and time.monotonic() - self._gone_since >= self.give_up_s):
                self.gave_up = True
                if self.on_give_up is not None:
                    try:
                        self.on_give_up()
                    except Exception as exc:  # noqa: BLE001 - a closing client: logged
                        self.log.warning("dask_give_up_failed", address=self.address,
                                         error=repr(exc))
            if self.present and n == 0:
                self.present = False
                self.changes.append("gone")
                text = (f"every Dask worker at {self.address} left: the tasks wait for one "
                        "to join (Ctrl-C stops the replay; what was written is kept)"
                        if self.give_up_s is None else
                        f"every Dask worker of {self.address} left: the replay stops if none "
                        f"is back within {self.give_up_s:g} s (what was written is kept)")
                if self.echo is not None:
                    self.log.info("dask_workers_gone", address=self.address)
                    self.echo(text)
                else:
                    self.log.warning("dask_workers_gone", address=self.address, message=text)
            elif not self.present and n > 0:
                self.present = True
                self.changes.append("back")
                text = f"{n} Dask worker{'s' if n > 1 else ''} at {self.address}: going on"
                if self.echo is not None:
                    self.log.info("dask_workers_back", address=self.address, workers=n)
                    self.echo(text)
                else:  # at the warning's level: a log read at warning sees the wait end
                    self.log.warning("dask_workers_back", address=self.address, workers=n,
                                     message=text)

    def __enter__(self) -> WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5 * self.poll_s)
