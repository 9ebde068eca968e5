"""loadtest_core.client: bearer interceptor, TLS channels and the operation waiter."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
from yandex.cloud.operation import operation_service_pb2_grpc

from loadtest_core import Engine, Status, TokenAuth
from loadtest_core.cli import main
from loadtest_core.client import OperationTimeout, bearer, channel, wait_operation
from loadtest_core.grpc import add_servicers
from tests.engine.conftest import spec

USER = "tls-user"


def _self_signed(tmp_path: Path) -> tuple[bytes, bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "ca.pem"
    path.write_bytes(pem)
    return pem, key_pem, path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path, Engine]]:
    """A TLS gRPC server with the Yandex servicers on localhost; yields its address and CA."""
    pem, key, ca = _self_signed(tmp_path)
    engine = Engine()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    add_servicers(server, engine, TokenAuth([USER], ["agent"]))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, pem)]))
    server.start()
    try:
        yield f"localhost:{port}", ca, engine
    finally:
        server.stop(None)


def test_a_tls_channel_with_the_ca_reaches_the_server(
    tls_server: tuple[str, Path, Engine],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """channel(ca_file=...) and the CLI's --ca-file talk TLS; without the CA the call fails."""
    address, ca, engine = tls_server
    test_id = engine.create(spec()).id
    with channel(address, USER, ca_file=str(ca)) as ch:
        stub = test_service_pb2_grpc.TestServiceStub(ch)
        reply = stub.List(test_service_pb2.ListTestsRequest(), timeout=10)
        assert [t.id for t in reply.tests] == [test_id]
    with channel(address, USER, tls=True) as ch, pytest.raises(grpc.RpcError) as info:
        test_service_pb2_grpc.TestServiceStub(ch).List(
            test_service_pb2.ListTestsRequest(), timeout=10
        )
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE  # an unknown CA
    monkeypatch.setenv("LOADTEST_CORE_CONFIG", str(tmp_path / "absent.toml"))
    argv = ["test", "get", test_id, "--endpoint", address, "--token", USER]
    assert main([*argv, "--ca-file", str(ca)]) == 0
    assert test_id in capsys.readouterr().out
    assert main([*argv, "--ca-file", str(tmp_path / "missing.pem")]) == 2
    assert "missing.pem" in capsys.readouterr().err


def test_bearer_refuses_an_empty_token() -> None:
    """An empty or padded token is a ValueError, not a silently unauthenticated channel."""
    for token in ("", " x"):
        with pytest.raises(ValueError, match="token"):
            bearer(token)


def test_wait_operation_polls_until_done_or_times_out(
    tls_server: tuple[str, Path, Engine],
) -> None:
    """The waiter returns the done operation (by id too) and raises OperationTimeout in time."""
    address, ca, engine = tls_server
    test_id = engine.create(spec()).id
    engine.next_job("agent-1")
    engine.claim(test_id, "agent-1", Status.RUNNING)
    with channel(address, USER, ca_file=str(ca)) as ch:
        stop = test_service_pb2_grpc.TestServiceStub(ch).Stop(
            test_service_pb2.StopTestRequest(test_id=test_id), timeout=10
        )
        operations = operation_service_pb2_grpc.OperationServiceStub(ch)
        polls: list[Any] = []
        with pytest.raises(OperationTimeout) as info:
            wait_operation(operations, stop, timeout=0.3, interval=0.05, on_poll=polls.append)
        assert not info.value.operation.done and polls
        engine.claim(test_id, "agent-1", Status.STOPPED)
        done = wait_operation(operations, stop.id, timeout=10, interval=0.05)
        assert done.done and done.id == stop.id
        assert wait_operation(operations, done) is done  # already done: no call
