"""Reaching a Dask cluster for ``nwwatch replay --dask ADDRESS``: what the request may ask
(:func:`check_cluster_request`, before anything is written), and the connection to a
scheduler at ``tcp://host:port`` or to a LocalCluster of ``local:N`` worker processes started
for the replay (:func:`connect`, :func:`close_connection`). The driver's work on the cluster is
:mod:`nwwatch.service.cluster`."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os

from nwwatch.service.childsignals import children_ignore_ctrl_c, ctrl_c_after_the_call

#: The optional dependency group that brings Dask distributed.
CLUSTER_EXTRA = "cluster"
#: Seconds to wait for a scheduler before giving up with :class:`ClusterUnreachableError`.
CONNECT_TIMEOUT_S = 5.0


class _NoCancelledTracebacks(logging.Filter):
    """Drops what distributed's client logs, traceback and all, about its own tasks being
    cancelled (its reconnection attempts once the scheduler is lost): the replay stops with
    its own `lost the Dask scheduler at ADDRESS` then. Other records pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] is asyncio.CancelledError)


_CLIENT_LOG = "distributed.client"
_QUIET_CLIENT = _NoCancelledTracebacks()
_open_connections = 0  # the filter is on while any connection of connect() is open
_level_before: int | None = None  # distributed's logger level before the first connection


def _client_log_quiet(on: bool) -> None:
    global _open_connections, _level_before
    _open_connections += 1 if on else -1
    distributed_log = logging.getLogger("distributed")
    if _open_connections > 0:
        logging.getLogger(_CLIENT_LOG).addFilter(_QUIET_CLIENT)  # once: a filter is a set
        if _level_before is None:
            # This process's own distributed records below ERROR (the scheduler of a local
            # cluster closing its comms: "Batched Comm Closed", traceback and all) are not
            # the replay's to print. LocalCluster's silence_logs sets its handlers' level, and
            # restores it when the cluster closes, before those records come.
            _level_before = distributed_log.level
            distributed_log.setLevel(logging.ERROR)
    else:
        _open_connections = 0
        logging.getLogger(_CLIENT_LOG).removeFilter(_QUIET_CLIENT)
        if _level_before is not None:
            distributed_log.setLevel(_level_before)
            _level_before = None


class ClusterUnavailableError(RuntimeError):
    """Dask distributed is not installed, or the request cannot run on a cluster."""


class ClusterStartError(ClusterUnavailableError):
    """A ``local:N`` LocalCluster did not start (raised before any file is processed)."""


class ClusterRequestError(ClusterUnavailableError):
    """``--dask`` with what it cannot take (a malformed ``local:N`` or scheduler address):
    a wrong command line (``nwwatch replay`` exit 2)."""


class InputNotSharedError(ClusterUnavailableError):
    """A worker does not find an input file that the driver sees: the input path is not
    shared under the same absolute path (docs/cluster.md, What must be shared)."""


class StagingUnwritableError(ClusterUnavailableError):
    """A worker cannot write its rows to ``RESULTS/.cluster``: the results folder is not
    shared with it under the same path, or not writable there. No file's fault."""


class WorkerCodeMismatchError(ClusterUnavailableError):
    """A worker that joined or restarted after the replay's start runs other nwwatch code
    than the driver (:func:`nwwatch.service.clustertask.code_identity`): its rows would claim
    the driver's versions. No file's fault."""


class ClusterUnreachableError(ConnectionError):
    """No Dask scheduler answered at the given address."""


class SchedulerLostError(ClusterUnreachableError):
    """The Dask scheduler was lost mid-run: the rows of the tasks committed before stay."""


def check_cluster_request(address: str, kind: str) -> None:
    """Refuse early what cannot run: no ``nwwatch[cluster]`` extra, a bad address."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ClusterUnavailableError(
            f"--dask needs Dask distributed: pip install 'nwwatch[{CLUSTER_EXTRA}]'") from None
    if local_workers(address) is None:
        _check_scheduler_address(address)
    elif getattr(multiprocessing.current_process(), "_inheriting", False):
        # A LocalCluster's worker process imports the driver's main script again as it
        # starts: a replay there would wait for the ledger the driver holds, and the
        # driver's only word would be "Nanny failed to start".
        raise ClusterUnavailableError(
            f"replay(dask={address!r}) was called while a LocalCluster worker process started "
            "(they import the main script again): call it under "
            "`if __name__ == \"__main__\":` in that script")


def _check_scheduler_address(address: str) -> None:
    """A scheme Dask knows and, for TCP or TLS, a host and a numeric port (Dask's parser and
    registry fail at once; the dashboard's ``http://`` link is the likely mistake)."""
    from distributed.comm.addressing import get_address_host_port, parse_address
    from distributed.comm.registry import get_backend
    scheme = parse_address(address)[0]
    try:
        try:
            backend = get_backend(scheme)
        except ValueError:  # Dask's text lists its registry, ucx too, which it cannot use
            raise ValueError(f"unknown address scheme {scheme!r}; a scheduler's is tcp://, "
                             f"tls://, ws:// or wss://") from None
        try:
            backend.get_connector()
        except TypeError:  # abstract: a scheme Dask dropped (ucx), else the probe's TypeError
            raise ValueError(f"this Dask installation cannot connect over {scheme}://: "
                             "its connector is not implemented here") from None
        if scheme in ("tcp", "tls"):
            port = get_address_host_port(address)[1]
            if not 0 < port < 65536:  # else: 5 s of "no scheduler reachable" for a typo
                raise ValueError(f"port {port} out of range")
    except ValueError as exc:
        hint = "; the dashboard's http:// link is not it" if scheme.startswith("http") else ""
        raise ClusterRequestError(f"--dask {address!r}: expected a scheduler address "
                                  f"(tcp://host:port) or local:N ({exc}){hint}") from None


def _client_connection_args(address: str) -> dict:
    """What a Dask ``Client`` connects with (its ``Security`` from Dask's configuration: the
    ``distributed.comm.tls`` settings of a ``tls://`` scheduler). Raises
    :class:`ClusterUnavailableError` for a ``tls://`` address without a client certificate
    configured, or with one that does not load: Dask's own error names no setting."""
    import dask.config
    from distributed.security import Security

    try:
        args = Security().get_connection_args("client")
    except (OSError, ValueError) as exc:  # a certificate file missing or not PEM
        # ssl's error names no file: the settings do
        files = ", ".join(f"{key} = {dask.config.get(f'distributed.comm.tls.{key}', None)}"
                          for key in ("ca-file", "client.cert", "client.key"))
        raise ClusterUnavailableError(
            f"--dask {address}: Dask's TLS settings do not load ({exc}): "
            f"distributed.comm.tls {files}") from None
    tls = address.lower().startswith("tls://")
    if args.get("require_encryption") and not tls:  # Dask's refusal reads as no scheduler
        raise ClusterUnavailableError(
            f"--dask {address}: Dask's configuration requires encryption "
            "(distributed.comm.require-encryption): give the scheduler's tls:// address")
    if tls and args.get("ssl_context") is None:
        raise ClusterUnavailableError(
            f"--dask {address}: a tls:// scheduler needs a client certificate in Dask's "
            "configuration: distributed.comm.tls.ca-file, .client.cert and .client.key (or "
            "the environment variables DASK_DISTRIBUTED__COMM__TLS__CA_FILE, "
            "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT, DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY)")
    return args


def local_workers(address: str) -> int | None:
    """N of a ``local:N`` address (``LOCAL:N`` too: no scheduler host is named ``local``,
    and ``LOCAL:2`` was taken for one, refused as unreachable after 5 s), None for any other
    address."""
    if not address.lower().startswith("local:"):
        return None
    n = address.partition(":")[2]
    # ASCII digits: str.isdigit also takes "²", which int() refuses with a traceback
    if not (n.isascii() and n.isdigit()) or int(n) < 1:
        raise ClusterRequestError(f"--dask {address!r}: expected local:N with N >= 1")
    # A scheduler's port written after local: (local:8786) started thousands of worker
    # processes: the start never ended and held the stop signals meanwhile (only SIGKILL
    # ended it).
    most = local_workers_max()
    if int(n) > most:
        raise ClusterRequestError(
            f"--dask {address!r}: {int(n)} local workers is more than {most} (4 per CPU core "
            f"of this machine, at least 8); a scheduler's address is tcp://HOST:PORT")
    return int(n)


def local_workers_max() -> int:
    """The most workers ``local:N`` starts: 4 per CPU core, at least 8."""
    return max(8, 4 * (os.cpu_count() or 1))


def connect(address: str):
    """A ``(Client, LocalCluster or None)`` for ``address`` (``tcp://host:port`` or
    ``local:N``). Raises :class:`ClusterUnreachableError` naming the address when no
    scheduler answers within :data:`CONNECT_TIMEOUT_S`."""
    from distributed import Client, LocalCluster

    n = local_workers(address)
    if n is not None:
        from nwwatch.service.quietclose import QuietWhileClosing

        client = cluster = None
        try:
            # Any free port: several replays (or tests) may run on one machine.
            with children_ignore_ctrl_c():  # a Ctrl-C meanwhile is raised at its end
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address="127.0.0.1:0",
                                       silence_logs=logging.ERROR)
                client = Client(cluster)
                _client_log_quiet(True)
                # no worker traceback when they are closed (a Ctrl-C, or the end)
                client.register_plugin(QuietWhileClosing())
        except BaseException as exc:
            close_connection((client, cluster))
            if cluster is None and isinstance(exc, RuntimeError):  # "Nanny failed to start"
                raise ClusterStartError(
                    f"--dask {address}: the LocalCluster did not start ({exc}); "
                    "its worker processes' own errors are above") from exc
            raise
        return client, cluster
    _probe(address)
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S)
        _client_log_quiet(True)
        return client, None
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterUnreachableError(
            f"no Dask scheduler reachable at {address} within {CONNECT_TIMEOUT_S:g} s "
            f"({type(exc).__name__}: {str(exc) or 'no answer in time'})") from None


def _resolve(address: str) -> None:
    """Raise :class:`ClusterUnreachableError` when the host of a ``tcp://`` or ``tls://``
    address does not resolve: Dask's connect retries a failed lookup until its timeout,
    which then read as a scheduler that did not answer (a typo in the host name)."""
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return
        host, port = parse_host_port(location)
    except ValueError:  # Dask's connect says what is wrong with the address
        return
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ClusterUnreachableError(
            f"no Dask scheduler reachable at {address}: its host name {host!r} does not "
            f"resolve ({exc.strerror}): a typo in the address, or a name this machine's "
            "DNS does not know (give the scheduler's IP address)") from None


def _probe(address: str) -> None:
    """Connect to ``address`` and complete Dask's handshake within :data:`CONNECT_TIMEOUT_S`,
    or raise :class:`ClusterUnreachableError`. ``Client(address, timeout=…)`` bounds the
    connection only, not the handshake read after it: a port where something else listens
    (the scheduler's dashboard port, say) kept the replay waiting without end, and one
    that answered other bytes ended in a MemoryError traceback."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect as comm_connect

    _resolve(address)
    # the Client's own TLS context and settings: a tls:// scheduler speaks only TLS
    connection_args = _client_connection_args(address)

    async def handshake() -> None:
        comm = await comm_connect(address, timeout=CONNECT_TIMEOUT_S, **connection_args)
        await comm.close()

    # a thread of its own: the caller may be running an event loop (a notebook)
    with ThreadPoolExecutor(1) as pool:
        attempt = pool.submit(asyncio.run, asyncio.wait_for(handshake(), CONNECT_TIMEOUT_S))
    try:
        attempt.result()
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterUnreachableError(
            f"no Dask scheduler reachable at {address} within {CONNECT_TIMEOUT_S:g} s "
            # a timeout's message is empty
            f"({type(exc).__name__}: {str(exc) or 'no connection and handshake in time'})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever answered, it is not a scheduler
        # Dask reads another server's first bytes as a message length, so a MemoryError
        # here is that, not this machine short of memory: only the kind of answer is said
        raise ClusterUnreachableError(
            f"{address} answered, but not as a Dask scheduler (is it the scheduler's "
            f"address, not its dashboard's port?): its first bytes are no Dask handshake"
            f"{'' if isinstance(exc, MemoryError) else f' ({type(exc).__name__})'}") from None


def close_connection(connection) -> None:
    """Close a ``(Client, LocalCluster or None)`` of :func:`connect` (a Ctrl-C meanwhile
    acts once both are closed)."""
    with ctrl_c_after_the_call():
        try:
            for part in connection:
                if part is not None:
                    part.close()
        finally:
            if connection[0] is not None:
                _client_log_quiet(False)
