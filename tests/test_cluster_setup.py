"""``nwwatch replay --dask`` set up as a facility would: a scheduler address that is not a
scheduler, workers started in another directory, an input the workers do not see. One real
LocalCluster for the module (starting one costs seconds)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from servicekit import WORKER, assert_ledger_closed, assert_names_a_worker, model, paint_insitu

from nwwatch.io import write_frame_tiff
from nwwatch.service.replay import replay

pytest.importorskip("distributed")

N_FRAMES = 6


@pytest.fixture(scope="module")
def client():
    """A Client of a LocalCluster of 2 worker processes, 1 thread each."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0") as lc, Client(lc) as c:
        yield c


@pytest.fixture
def acq(tmp_path):
    folder = tmp_path / "acq"
    folder.mkdir()
    for i in range(N_FRAMES):
        write_frame_tiff(folder / f"f{i:03d}.tif", paint_insitu(95 + 3 * i, size=64))
    return folder, model(tmp_path)


def test_a_relative_input_path_reaches_workers_started_in_another_directory(
        client, acq, tmp_path, monkeypatch):
    """Was: the driver sent the paths as given (``nwwatch replay acq …``); a worker started
    elsewhere (`dask worker` in its own directory) found none of them, every file counted as
    vanished, and the replay exited 0 with no rows."""
    folder, onnx = acq
    elsewhere = tmp_path / "worker-home"
    elsewhere.mkdir()
    before = client.run(os.getcwd)
    client.run(os.chdir, str(elsewhere))
    try:
        monkeypatch.chdir(tmp_path)
        s = replay(Path("acq"), Path("res"), model=onnx, dask=client.scheduler.address)
    finally:
        for worker, cwd in before.items():
            client.run(os.chdir, cwd, workers=[worker])
    assert (s.done, s.frames, s.vanished) == (N_FRAMES, N_FRAMES, 0)


def _hide_from_workers(prefix: str) -> None:
    """On a worker: its file system does not hold ``prefix`` (an unshared mount)."""
    import nwwatch.service.inputs as inputs

    real = inputs.check_regular

    def check_regular(path, *a, **kw):
        if str(path).startswith(prefix):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path, *a, **kw)

    inputs._real_check_regular = real
    inputs.check_regular = check_regular


def _unhide() -> None:
    import nwwatch.service.inputs as inputs

    inputs.check_regular = getattr(inputs, "_real_check_regular", inputs.check_regular)


def test_an_input_the_workers_do_not_see_stops_the_replay_naming_it(client, acq, tmp_path):
    """Was: every file counted as vanished, `replay complete`, exit 0, no rows. Then: the
    stop said `a Dask worker does not find this file`: on a cluster of many nodes, not
    which one lacks the mount."""
    from nwwatch.service.clusterconnect import InputNotSharedError

    folder, onnx = acq
    client.run(_hide_from_workers, str(folder))
    try:
        with pytest.raises(InputNotSharedError,
                           match=rf"f00\d\.tif: {WORKER} does not find this file") as caught:
            replay(folder, tmp_path / "res", model=onnx, dask=client.scheduler.address)
    finally:
        client.run(_unhide)
    assert_names_a_worker(client, str(caught.value))
    assert_ledger_closed(tmp_path / "res")


def _server(answer: bytes | None) -> tuple[str, threading.Event]:
    """A TCP port that accepts and then sends ``answer`` (None: says nothing, as an HTTP
    server waiting for a request does)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    stop = threading.Event()

    def serve() -> None:
        conns = []
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            if answer is not None:
                conn.sendall(answer)
        for c in conns:
            c.close()
        sock.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{sock.getsockname()[1]}", stop


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n" * 4])
def test_an_address_that_is_not_a_scheduler_fails_within_the_timeout(answer, monkeypatch):
    """Was: a port that accepts but is no scheduler (the dashboard's port given as
    tcp://host:8787) kept the replay waiting without end (Dask's handshake read has no
    timeout); one that answered other bytes ended in a MemoryError traceback."""
    import nwwatch.service.clusterconnect as connect_module

    monkeypatch.setattr(connect_module, "CONNECT_TIMEOUT_S", 1.0)
    address, stop = _server(answer)
    outcome: list[BaseException | object] = []

    def attempt() -> None:
        try:
            outcome.append(connect_module.connect(address))
        except BaseException as exc:  # noqa: BLE001 - the test looks at what came out
            outcome.append(exc)

    t0 = time.monotonic()
    th = threading.Thread(target=attempt, daemon=True)
    th.start()
    th.join(20)
    stop.set()
    assert not th.is_alive(), "still waiting for the address after 20 s"
    assert time.monotonic() - t0 < 10
    (exc,) = outcome
    assert isinstance(exc, connect_module.ClusterUnreachableError), repr(exc)
    assert address in str(exc)
    if answer is not None:
        # Dask read the bytes as a message length: "(MemoryError)" read as this machine
        # short of memory
        assert "no Dask handshake" in str(exc) and "MemoryError" not in str(exc), str(exc)


def test_a_host_name_that_does_not_resolve_is_said_at_once(monkeypatch):
    """Was: a misspelt scheduler host waited Dask's whole connect timeout and was reported
    as "no connection and handshake in time"; the lookup's own failure is what to say."""
    import socket

    import nwwatch.service.clusterconnect as connect_module

    def no_such_name(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    t0 = time.monotonic()
    with pytest.raises(connect_module.ClusterUnreachableError) as caught:
        connect_module.connect("tcp://shced.invalid:8786")
    assert time.monotonic() - t0 < 2
    assert ("its host name 'shced.invalid' does not resolve (Name or service not known)"
            in str(caught.value)), str(caught.value)


def _results_unwritable_on_workers() -> None:
    """On a worker: writing a Parquet file is refused (the results folder is read-only
    there, or owned by another user)."""
    import nwwatch.results.parquet as parquet

    def refuse(table, path):
        raise PermissionError(13, "Permission denied", str(path))

    parquet._real_write_table_atomic = parquet.write_table_atomic
    parquet.write_table_atomic = refuse


def _results_writable_again() -> None:
    import nwwatch.results.parquet as parquet

    parquet.write_table_atomic = getattr(parquet, "_real_write_table_atomic",
                                         parquet.write_table_atomic)


def test_a_results_folder_the_workers_cannot_write_stops_the_replay_charging_no_file(
        client, acq, tmp_path):
    """Was: every task failed, was retried file by file, and each file was counted as
    failed (exit 3) and quarantined after max_attempts runs: the whole archive charged
    for the results folder's permissions."""
    import sqlite3

    from nwwatch.service.clusterconnect import StagingUnwritableError

    folder, onnx = acq
    results = tmp_path / "res"
    client.run(_results_unwritable_on_workers)
    try:
        with pytest.raises(StagingUnwritableError, match=rf"{WORKER} cannot write here"
                           ) as caught:
            replay(folder, results, model=onnx, dask=client.scheduler.address)
    finally:
        client.run(_results_writable_again)
    assert_names_a_worker(client, str(caught.value))
    db = sqlite3.connect(f"file:{results / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        charged = db.execute("SELECT source, state FROM items WHERE state != 'pending'"
                             ).fetchall()
        quarantined = db.execute("SELECT path FROM quarantine").fetchall()
    finally:
        db.close()
    assert charged == [] and quarantined == []


def test_a_model_that_does_not_load_on_a_worker_says_it_is_the_worker(client, acq, tmp_path,
                                                                      monkeypatch):
    """Was: `Error: MODEL: ONNX Runtime cannot load it (…)`, read as the driver's model being
    broken, though the driver had loaded it: the worker's copy (another file at that path)
    did not load."""
    import dataclasses

    import nwwatch.service.cluster as cluster_module
    from nwwatch.segment.session import ModelLoadError
    from nwwatch.service.clustertask import TaskSpec

    folder, onnx = acq
    broken = tmp_path / "worker-copy.onnx"
    broken.write_bytes(b"not a model")
    monkeypatch.setattr(cluster_module, "TaskSpec", lambda **kw: dataclasses.replace(
        TaskSpec(**kw), model=str(broken)))  # what a worker with another file loads
    with pytest.raises(ModelLoadError, match=rf"^on {WORKER}: .*worker-copy\.onnx"
                       ) as caught:
        replay(folder, tmp_path / "res", model=onnx, dask=client.scheduler.address)
    assert_names_a_worker(client, str(caught.value))


def test_a_scheduler_address_connects_from_inside_a_running_event_loop(client):
    """``replay(…, dask=ADDRESS)`` from a notebook, whose event loop runs: the address check
    must not need the caller's thread to be free of one."""
    import asyncio

    from nwwatch.service.clusterconnect import _probe

    async def inside() -> None:
        _probe(client.scheduler.address)

    asyncio.run(inside())


def _block_module(name: str) -> None:
    """On a worker: ``import name`` fails, as in a Python environment without nwwatch."""
    import sys

    sys.modules["_saved_" + name] = sys.modules.get(name)
    sys.modules[name] = None  # import raises ModuleNotFoundError


def _unblock_module(name: str) -> None:
    import sys

    saved = sys.modules.pop("_saved_" + name, None)
    if saved is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = saved


def test_workers_without_nwwatch_stop_the_replay_naming_it(client, acq, tmp_path):
    """Was: the task could not be unpickled on the worker, distributed dropped it and the
    replay waited without end."""
    from nwwatch.service.clusterconnect import ClusterUnavailableError

    folder, onnx = acq
    name = "nwwatch.service.clustertask"
    outcome: list[BaseException | object] = []

    def attempt() -> None:
        try:
            outcome.append(replay(folder, tmp_path / "res", model=onnx,
                                  dask=client.scheduler.address))
        except BaseException as exc:  # noqa: BLE001 - the test looks at what came out
            outcome.append(exc)

    client.run(_block_module, name)
    try:
        th = threading.Thread(target=attempt, daemon=True)
        th.start()
        th.join(60)
    finally:
        client.run(_unblock_module, name)
    assert not th.is_alive(), "the replay still waits after 60 s"
    (exc,) = outcome
    assert isinstance(exc, ClusterUnavailableError), repr(exc)
    assert "cannot import nwwatch" in str(exc)
    address = str(exc).split("the Dask worker ")[1].split(" cannot import")[0]
    assert address in client.scheduler_info()["workers"]  # the one to mend, named
