"""A cluster replay left without workers says so, and says when one joins again
(nwwatch.service.clusterworkers), against a real Dask LocalCluster."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("distributed")


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def info(self, event: str, **fields) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields) -> None:
        self.lines.append(("warning", event, fields))


def _until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.timeout(120)
def test_every_worker_leaving_and_one_joining_are_said_once_each():
    """Was: with its only worker killed mid-run a tcp replay stalled without a word, even at a
    terminal (the bar stood still), until a worker joined."""
    from distributed import Client, LocalCluster

    from nwwatch.service.clusterworkers import WorkerWatch

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        address = cluster.scheduler_address
        quiet, said = Log(), []  # without a terminal / at a terminal
        with WorkerWatch(client, address, 1, quiet, poll_s=0.2) as batch_job, \
                WorkerWatch(client, address, 1, Log(), echo=said.append, poll_s=0.2) as tty:
            time.sleep(1.0)  # a worker present: nothing to say
            assert batch_job.changes == tty.changes == []
            cluster.scale(0)
            assert _until(lambda: batch_job.changes == tty.changes == ["gone"]), \
                (batch_job.changes, tty.changes)
            time.sleep(1.0)  # still none: said once
            cluster.scale(1)
            assert _until(lambda: batch_job.changes == tty.changes == ["gone", "back"])
    # both at warning without a terminal: a batch job's log kept at warning level showed
    # every loss of the workers and never their return (dask_workers_back was info)
    assert [(level, event) for level, event, _ in quiet.lines] == [
        ("warning", "dask_workers_gone"), ("warning", "dask_workers_back")]
    assert quiet.lines[0][2]["message"] == (
        f"every Dask worker at {address} left: the tasks wait for one to join (Ctrl-C stops "
        "the replay; what was written is kept)")
    assert quiet.lines[1][2]["message"] == f"1 Dask worker at {address}: going on"
    assert quiet.lines[1][2]["workers"] == 1
    assert said == [quiet.lines[0][2]["message"], quiet.lines[1][2]["message"]]


def test_a_replay_that_started_without_workers_hears_only_of_the_join():
    from distributed import Client, LocalCluster

    from nwwatch.service.clusterworkers import WorkerWatch

    with LocalCluster(n_workers=0, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        log = Log()
        with WorkerWatch(client, cluster.scheduler_address, 0, log, poll_s=0.2) as watch:
            time.sleep(0.6)
            assert watch.changes == []  # the replay's start said "no Dask worker yet"
            cluster.scale(1)
            assert _until(lambda: watch.changes == ["back"])
    # the end of the wait the replay's start logged as a dask_no_workers warning
    assert [(level, event) for level, event, _ in log.lines] == [
        ("warning", "dask_workers_back")]


@pytest.mark.timeout(120)
def test_a_lost_scheduler_is_not_said_to_have_lost_its_workers():
    """Was: with the scheduler killed, the watch thread sat in its look at the worker list
    past the replay's end of the watch (which waits 5 polls for it), and when the client
    closed (its copy of the list emptied) said 'every Dask worker … left: the tasks wait for
    one to join', after the replay had stopped on the lost scheduler."""
    import socket
    import subprocess
    import sys

    import dask
    from distributed import Client

    from nwwatch.service.clusterworkers import WorkerWatch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
            client = Client(address, timeout=30)
            worker = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                 "1", "--no-nanny", "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client.wait_for_workers(1, timeout=60)
            log, said = Log(), []
            with WorkerWatch(client, address, 1, log, echo=said.append, poll_s=0.2) as watch:
                time.sleep(0.5)
                scheduler.kill()
                scheduler.wait()
                time.sleep(1.0)  # the watch is now waiting for an answer
            client.close(timeout=5)
            assert _until(lambda: not watch._thread.is_alive(), timeout=30)
    finally:
        for proc in (scheduler, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert watch.changes == [] and said == [] and log.lines == [], (said, log.lines)


def test_a_note_to_a_terminal_that_is_gone_is_dropped(monkeypatch):
    """The worker watch writes from its own thread: a terminal hung up (EIO) killed the
    thread with a traceback."""
    import io
    import sys

    from nwwatch.service.replaysummary import Progress

    class Gone(io.StringIO):
        def write(self, text):
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(sys, "stderr", Gone())
    Progress(10, enabled=False).note("every Dask worker at tcp://x:1 left")


def test_a_progress_bar_whose_terminal_hangs_up_stops_drawing_without_an_error(monkeypatch):
    """The terminal of a replay closed: drawing the bar raised EIO in the replay's loop, an
    error that left its held rows unwritten before the SIGHUP on its way could stop it as
    one (exit 129, no rows)."""
    import io
    import sys

    from nwwatch.service.replaysummary import Progress

    class Terminal(io.StringIO):
        hung_up = False

        def isatty(self):
            return True

        def write(self, text):
            if self.hung_up:
                raise OSError(5, "Input/output error")
            return super().write(text)

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = Progress(10, enabled=True)
    bar.advance(1, 1)
    assert "replay" in term.getvalue()  # it drew
    term.hung_up = True
    bar.advance(1, 1)  # raised OSError
    bar.advance(1, 1)
    bar.note("every Dask worker left")
    bar.close()
    assert bar.frames == 3 and not bar.enabled


def test_a_local_cluster_left_without_workers_gives_up_after_its_wait():
    """A local:N cluster whose workers all died on a task at once, their nannies restarting
    none: the replay said "the tasks wait for one to join" and waited for ever (no worker
    ever joins a replay's own cluster). The watch gives up after its wait, once."""
    from distributed import Client, LocalCluster

    from nwwatch.service.clusterworkers import WorkerWatch

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        given_up = []
        with WorkerWatch(client, cluster.scheduler_address, 1, Log(), poll_s=0.1,
                         give_up_s=0.5, on_give_up=lambda: given_up.append(1)) as watch:
            time.sleep(0.8)
            assert not watch.gave_up  # a worker there: no wait, nothing given up
            cluster.scale(0)
            assert _until(lambda: watch.gave_up)
            time.sleep(0.5)
        assert given_up == [1]
