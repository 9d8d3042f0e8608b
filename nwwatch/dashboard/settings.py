"""Settings of the dashboard: the ``[dashboard]`` table of the service configuration and the
``--listen`` option of ``nwwatch dashboard`` (no web dependency: the service validates it)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_HOST = re.compile(r"[A-Za-z0-9._:%-]+")
_PORT = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class DashboardConfig:
    """Where the dashboard listens and when it warns; see docs/service.md, "Dashboard"."""

    host: str = "127.0.0.1"
    port: int = 8765
    #: Seconds without a new row after which an acquisition that was receiving frames is flagged.
    stale_after_s: float = 120.0
    #: The longest a processed row waits before it is written (``[output] flush_seconds``):
    #: a row stamped ``processed_at`` t is seen by t + this at the latest, so the stale
    #: warning waits that much longer (held rows are no silence of the microscope).
    rows_held_s: float = 0.0


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (all of 127.0.0.0/8, ::1): reachable from this
    machine alone."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve anywhere
        return False


def url_host(host: str) -> str:
    """``host`` as a URL or a message writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def host_of_header(header: str) -> str | None:
    """The host of an HTTP ``Host`` header, without its port and a trailing dot:
    ``[::1]:8765`` -> ``::1``, ``localhost.:9000`` -> ``localhost``; None for a header that
    is no host and port (a port of other characters than digits)."""
    if header.startswith("["):  # an IPv6 address, bracketed
        end = header.find("]")
        host, rest = (header[1:end], header[end + 1:]) if end > 0 else (header, "")
        port = rest.removeprefix(":") if rest.startswith(":") or not rest else None
    elif header.count(":") == 1:
        host, port = header.split(":")
    else:
        host, port = header, ""
    if port is None or not (port == "" or (port.isascii() and port.isdigit())):
        return None
    return host.removesuffix(".")


def foreign_host(header: str | None) -> str | None:
    """Why a server listening on the loopback alone refuses a request whose ``Host`` header
    is ``header`` (None: no header), or None. A page of another site that makes its own name
    resolve to 127.0.0.1 (DNS rebinding) reaches such a server with that name as its Host,
    and could then read what it serves; a browser on this machine, an SSH tunnel
    (``ssh -L``) or a reverse proxy that keeps the upstream's name send a loopback one."""
    if header is None:
        return None
    host = host_of_header(header)
    if host is not None and is_loopback(host.lower()):
        return None
    return (f"Host {header!r} is not this machine's loopback name: this server listens on "
            f"the loopback and answers requests for localhost, 127.0.0.1 or [::1] only")


def parse_listen(text: str, allow_remote: bool = False) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6) -> (host, port); port 0 picks a free one.

    A host other than the loopback needs ``allow_remote`` (the operator's explicit choice).
    Raises ValueError with the reason.
    """
    host, sep, port_text = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    # ASCII digits only ("٣".isdigit() too), and a host name or address without brackets,
    # spaces or other characters no bind accepts (a lone "[" came from a typo)
    if not sep or not _HOST.fullmatch(host) or not _PORT.fullmatch(port_text):
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. \"127.0.0.1:8765\")")
    if int(port_text) > 65535:
        raise ValueError(f"{text!r}: port {int(port_text)} is out of range (0-65535; 0 picks "
                         "a free one)")
    if not is_loopback(host) and not allow_remote:
        raise ValueError(f"{host!r} is not a loopback address; binding elsewhere exposes the "
                         "dashboard to the network: allow it explicitly (allow_remote = true "
                         "in [dashboard], --allow-remote for nwwatch dashboard)")
    return host, int(port_text)
