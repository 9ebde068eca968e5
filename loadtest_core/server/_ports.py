"""Listening addresses of ``serve``: parsed strictly, bound before anything is announced.

``HOST:PORT``, ``[IPV6]:PORT`` and ``:PORT`` (every interface, as Go and
Docker read it). A port already taken is an error: nothing here shares a port
(no ``SO_REUSEPORT``), so a second ``serve`` can never split a port's
connections with the first.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from typing import Any

__all__ = ["ALL", "AddressError", "bind", "describe", "grpc_target", "parse_address", "probe"]

ALL = ""
"""The host of ``:PORT``: every interface."""

_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)
_DOTTED = re.compile(r"[0-9.]+\Z")


class AddressError(ValueError):
    """A listening address that cannot be used; the message says what to do instead."""


def parse_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (host ``ALL``)."""
    example = "e.g. 127.0.0.1:50051, or :50051 for every interface"
    host, sep, port = text.rpartition(":")
    if not sep:
        raise AddressError(f"{text!r} has no port: give HOST:PORT ({example})")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise AddressError(f"port {port!r} must be a number in 0..65535 ({example})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"{host!r} is not an IPv6 address ({example})") from None
    elif ":" in host:
        raise AddressError(f"write an IPv6 address in brackets: [{host}]:{port}")
    elif _DOTTED.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise AddressError(f"{host!r} is not an IPv4 address ({example})") from None
    elif host and not _HOSTNAME.match(host):
        raise AddressError(f"{host!r} is not a host name or IP address ({example})")
    return host, int(port)


def describe(host: str, port: int) -> str:
    """An address as a person reads it: ``[::1]:80``, ``all interfaces, port 80``."""
    if host == ALL:
        return f"all interfaces, port {port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def grpc_target(host: str, port: int) -> str:
    """The address string gRPC binds (``[::]`` listens on IPv4 too where IPv6 exists)."""
    if host == ALL:
        return f"[::]:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _why(exc: OSError, flag: str, host: str, port: int) -> AddressError:
    where = describe(host, port)
    if isinstance(exc, socket.gaierror):
        return AddressError(f"{flag} {where}: cannot resolve {host!r}; give an IP address")
    if exc.errno == errno.EADDRINUSE:
        return AddressError(
            f"{flag} {where}: the port is already in use (another loadtest-core serve?); "
            f"stop that process or choose another port with {flag} HOST:PORT"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return AddressError(
            f"{flag} {where}: {host} is not an address of this machine; "
            "use 127.0.0.1, or :PORT for every interface"
        )
    if exc.errno == errno.EACCES:
        return AddressError(f"{flag} {where}: permission denied; use a port above 1023")
    return AddressError(f"{flag} {where}: {exc.strerror or exc}")


def bind(host: str, port: int, flag: str) -> socket.socket:
    """A TCP socket bound to the address, not yet listening; AddressError says why not.

    ``SO_REUSEADDR`` (as every server sets, so a restart is not refused while
    old connections linger) still refuses a port another socket listens on.
    """
    try:
        if host == ALL:
            dual = socket.has_dualstack_ipv6()
            family = socket.AF_INET6 if dual else socket.AF_INET
            address: Any = ("::" if dual else "", port)
        else:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
            family, address = info[0], info[4]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if host == ALL and family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
        return sock
    except OSError as exc:
        raise _why(exc, flag, host, port) from None


def probe(host: str, port: int, flag: str) -> None:
    """Raise AddressError if ``bind`` would fail now (gRPC refuses without saying why)."""
    bind(host, port, flag).close()
