"""Settings of the dashboard: the ``[dashboard]`` table of the service configuration and the
``--listen`` option of ``nwwatch dashboard`` (no web dependency: the service validates it)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: One label of a host name (RFC 1123): letters, digits and '-', not first or last.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]+")
#: Sent with every answer of both local web servers (the dashboard, the labelling page): no
#: page of another site may show them in a frame, where it could steer the user's clicks
#: (clickjacking: the labelling page's Save); the older header and CSP's own, for every
#: browser.
NO_FRAMING_HEADERS = (("X-Frame-Options", "DENY"),
                      ("Content-Security-Policy", "frame-ancestors 'none'"))


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
    #: The service's ``[output] overlays`` ("none", "flagged" or "all"): the page says why
    #: the latest frame has no overlay picture (an ok frame under "flagged" gets none).
    #: None: not known (``nwwatch dashboard`` of a results folder).
    overlays: str | None = None


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (all of 127.0.0.0/8, ::1): reachable from this
    machine alone; names in any case, as resolvers and Host headers take them."""
    if host.lower().removesuffix(".") in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve anywhere
        return False


def remote_refusal(host: str, exposed: str, allow: str) -> str | None:
    """Why a server may not listen on ``host`` (unbracketed; "": every interface) without the
    operator's explicit choice, or None for a loopback host (:func:`is_loopback`): elsewhere
    it serves ``exposed`` to the network; ``allow`` says how to allow it."""
    if is_loopback(host):
        return None
    shown = repr(host) if host else "'' (every interface)"
    return (f"{shown} is not a loopback address; binding elsewhere exposes {exposed} to the "
            f"network: allow it explicitly ({allow})")


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


def _host_problem(host: str) -> str | None:
    """Why ``host`` (unbracketed) is neither an IP address nor a host name, or None."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if ":" in host:
        return "is not an IPv6 address"
    labels = host.removesuffix(".").split(".")
    if all(label.isdigit() for label in labels):  # "999.1.1.1", "127.1": a bind refuses it
        return "is not an IPv4 address (four numbers 0-255: 127.0.0.1)"
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return ("is neither an IP address nor a host name (letters, digits and '-' between "
                "dots)")
    return None


def parse_listen(text: str, allow_remote: bool = False) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:PORT"`` for IPv6) -> (host, port); port 0 picks a free one.

    HOST is an IP address or a host name; an IPv6 address is bracketed (its own colons would
    be read as the port's). A host other than the loopback (``localhost`` in any case,
    127.0.0.0/8, ``::1``) needs ``allow_remote`` (the operator's explicit choice).
    Raises ValueError with the reason.
    """
    example = "(e.g. \"127.0.0.1:8765\", \"[::1]:8765\")"
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        sep, port_text = rest[:1], rest[1:]
        if not close or sep != ":" or not host:
            raise ValueError(f"{text!r} is not HOST:PORT {example}")
        if ":" not in host:  # "[127.0.0.1]:80": brackets are for IPv6 addresses only
            raise ValueError(f"{text!r} is not HOST:PORT: brackets hold an IPv6 address only "
                             f"{example}")
    elif text.count(":") > 1:
        # "::1", "2001:db8::5", "::1:8765": an IPv6 address whose last group was read as a
        # port (host "2001:db8:" port 5, which no bind accepts)
        prefix, _, last = text.rpartition(":")
        meant = (f"[{prefix}]:{last}" if _is_ipv6(prefix) and _PORT.fullmatch(last)
                 else f"[{text}]:8765" if _is_ipv6(text) else "[::1]:8765")
        raise ValueError(f"{text!r} is not HOST:PORT: an IPv6 address is written in "
                         f"brackets, then its port: \"{meant}\"")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or "]" in host:
            raise ValueError(f"{text!r} is not HOST:PORT {example}")
    # ASCII digits only ("٣".isdigit() too)
    if not _PORT.fullmatch(port_text):
        raise ValueError(f"{text!r} is not HOST:PORT {example}: the port is a number")
    problem = _host_problem(host)
    if problem is not None:
        raise ValueError(f"{text!r} is not HOST:PORT: {host!r} {problem}")
    if int(port_text) > 65535:
        raise ValueError(f"{text!r}: port {int(port_text)} is out of range (0-65535; 0 picks "
                         "a free one)")
    refusal = None if allow_remote else remote_refusal(
        host, "the dashboard", "allow_remote = true in [dashboard], --allow-remote for nwwatch "
        "dashboard")
    if refusal is not None:
        raise ValueError(refusal)
    # "LOCALHOST" as the name the loopback checks and messages use
    return (host.lower() if host.lower() in LOOPBACK_HOSTS else host), int(port_text)


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False
