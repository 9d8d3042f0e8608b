"""The workers of ``replay --dask local:N`` say nothing once they are being closed.

Closing a worker races with its own heartbeat: distributed's ``Worker.close`` closes its
connection pool while a heartbeat to the scheduler may still be waiting for the answer, and
the worker then logs ``Failed to communicate with scheduler during heartbeat.`` at ERROR, with
a traceback (``distributed/worker.py``: ``heartbeat``, ``close``; ``distributed/core.py``:
``ConnectionPool.close`` closes the connections in use too). On a loaded machine the answer is
slow and the race is often lost, so a Ctrl-C or an ordinary end of a local replay could show a
worker traceback. Only this replay's own LocalCluster gets the plugin (``cluster.connect``);
the workers of a scheduler given as ``tcp://`` are never changed.
"""

from __future__ import annotations

import logging
import weakref

from distributed import WorkerPlugin
from distributed.core import Status

#: A worker in these states is on its way out: what it logs is about its own shutdown.
CLOSING = frozenset({Status.closing_gracefully, Status.closing, Status.closed})
#: The plugin's name on the cluster (registering it again replaces it).
PLUGIN_NAME = "nwwatch-quiet-close"


class QuietWhileClosing(WorkerPlugin):
    """Drop the worker process's ``distributed`` log records (tornado's too: distributed
    logs both through one handler) from the moment the worker starts closing. What it logged
    before is kept: a task's failure reaches the driver through its future, and a worker that
    fails (``Status.failed``) still says why."""

    name = PLUGIN_NAME

    def setup(self, worker) -> None:
        ref = weakref.ref(worker)

        def running(record: logging.LogRecord) -> bool:
            w = ref()
            return w is not None and w.status not in CLOSING

        # distributed's own handlers of this process (the ones `silence_logs` sets the level of)
        for handler in logging.getLogger("distributed").handlers:
            handler.addFilter(running)
