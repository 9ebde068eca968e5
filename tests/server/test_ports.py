"""Listening addresses: strict parsing, plain-words descriptions, and refusals with the fix."""

from __future__ import annotations

import socket

import pytest

from loadtest_core.server._ports import (
    ALL,
    AddressError,
    bind,
    describe,
    grpc_target,
    parse_address,
)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:50051", ("127.0.0.1", 50051)),
        (":50052", (ALL, 50052)),
        ("[::1]:80", ("::1", 80)),
        ("localhost:0", ("localhost", 0)),
        ("my-host.example.org:8080", ("my-host.example.org", 8080)),
    ],
)
def test_addresses_that_parse(text: str, parsed: tuple[str, int]) -> None:
    """HOST:PORT, [IPV6]:PORT, :PORT and host names parse to (host, port)."""
    assert parse_address(text) == parsed


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("999.1.1.1:5000", "is not an IPv4 address"),
        ("::1:80", "[::1]:80"),
        ("[nope]:80", "is not an IPv6 address"),
        ("a b:1", "is not a host name"),
        ("host:http", "must be a number"),
        ("50051", "has no port"),
        ("-bad-:1", "is not a host name"),
    ],
)
def test_addresses_that_are_refused_say_how_to_write_them(text: str, fix: str) -> None:
    """Each malformed address raises AddressError with the shape to use instead."""
    with pytest.raises(AddressError, match=r"e\.g\.|brackets") as info:
        parse_address(text)
    assert fix in str(info.value)


def test_descriptions_and_grpc_targets() -> None:
    """Every-interface addresses read as words; IPv6 hosts get brackets for gRPC."""
    assert describe(ALL, 80) == "all interfaces, port 80"
    assert describe("::1", 80) == "[::1]:80"
    assert grpc_target(ALL, 80) == "[::]:80"
    assert grpc_target("::1", 80) == "[::1]:80"
    assert grpc_target("127.0.0.1", 80) == "127.0.0.1:80"


def test_bind_refuses_a_port_someone_listens_on() -> None:
    """bind raises AddressError naming the flag and the fix when the port is taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AddressError, match="already in use") as info:
            bind("127.0.0.1", port, "--http")
        assert "--http HOST:PORT" in str(info.value)


def test_bind_leaves_the_socket_bound_but_not_listening() -> None:
    """A bound socket holds its port and accepts no connection until someone listens."""
    sock = bind("127.0.0.1", 0, "--http")
    try:
        port = sock.getsockname()[1]
        with socket.socket() as client:
            assert client.connect_ex(("127.0.0.1", port)) != 0
    finally:
        sock.close()
