"""`serve --tls-cert/--tls-key` and `loadtest-core cert`: real TLS on 127.0.0.1, every refusal."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
from yandex.cloud.loadtesting.api.v1.test import agent_selector_pb2, single_agent_configuration_pb2

from loadtest_core.cli import main
from loadtest_core.server._cert import make_certificate
from loadtest_core.server._tls import TlsError, load_tls

MD = (("authorization", "Bearer u1"),)


def write_pair(tmp_path: Path, name: str = "a") -> tuple[Path, Path]:
    cert, key = make_certificate()
    cert_path, key_path = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    return cert_path, key_path


def serve_tls(
    extra: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtest_core.cli",
            "serve",
            "--db",
            ":memory:",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--user-token",
            "u1",
            "--agent-token",
            "a1",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    seen: dict[str, Any] = {}
    assert proc.stdout is not None
    while "grpc" not in seen or "http" not in seen:
        line = proc.stdout.readline()
        assert line, "serve exited early"
        event = json.loads(line)
        if event["event"] in ("grpc_listening", "http_listening"):
            seen[event["event"].split("_")[0]] = event
    return proc, seen


@pytest.fixture
def tls_serve(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    cert, key = write_pair(tmp_path)
    proc, seen = serve_tls(["--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        yield cert, seen
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def create_test(channel: grpc.Channel) -> str:
    tests = test_service_pb2_grpc.TestServiceStub(channel)
    op = tests.Create(
        test_service_pb2.CreateTestRequest(
            configurations=[
                single_agent_configuration_pb2.SingleAgentConfiguration(
                    agent_selector=agent_selector_pb2.AgentSelector(agent_id="tank")
                )
            ]
        ),
        metadata=MD,
        timeout=10,
    )
    meta = test_service_pb2.CreateTestMetadata()
    op.metadata.Unpack(meta)
    got = tests.Get(test_service_pb2.GetTestRequest(test_id=meta.test_id), metadata=MD, timeout=10)
    assert got.id == meta.test_id
    return str(meta.test_id)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_grpc_over_tls_with_the_certificate_as_root(
    tls_serve: tuple[Path, dict[str, Any]], host: str
) -> None:
    """The official stubs reach serve over TLS by name and by address, trusting its certificate."""
    cert, seen = tls_serve
    assert seen["grpc"]["tls"] is True
    port = seen["grpc"]["address"].rsplit(":", 1)[1]
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"{host}:{port}", creds) as channel:
        assert create_test(channel).startswith("test")


def test_tls_port_refuses_plaintext_and_unknown_roots(
    tls_serve: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """A plaintext client, or one trusting another certificate, cannot call the TLS port."""
    _, seen = tls_serve
    port = seen["grpc"]["address"].rsplit(":", 1)[1]
    plain_channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    with plain_channel, pytest.raises(grpc.RpcError) as plain:
        create_test(plain_channel)
    assert plain.value.code() is grpc.StatusCode.UNAVAILABLE
    other, _ = write_pair(tmp_path, "other")
    creds = grpc.ssl_channel_credentials(root_certificates=other.read_bytes())
    other_channel = grpc.secure_channel(f"localhost:{port}", creds)
    with other_channel, pytest.raises(grpc.RpcError) as bad:
        create_test(other_channel)
    assert bad.value.code() is grpc.StatusCode.UNAVAILABLE


def test_https_with_the_certificate_as_ca(tls_serve: tuple[Path, dict[str, Any]]) -> None:
    """HTTP is served over TLS too: httpx verifying against the certificate gets /healthz."""
    cert, seen = tls_serve
    assert seen["http"]["tls"] is True
    port = seen["http"]["address"].rsplit(":", 1)[1]
    context = ssl.create_default_context(cafile=str(cert))
    assert httpx.get(f"https://localhost:{port}/healthz", verify=context).json() == {"status": "ok"}
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"https://localhost:{port}/healthz")  # the system roots do not know it


def test_env_vars_turn_tls_on(tmp_path: Path) -> None:
    """LOADTEST_CORE_TLS_CERT / LOADTEST_CORE_TLS_KEY give the same TLS server as the flags."""
    cert, key = write_pair(tmp_path)
    env = {"LOADTEST_CORE_TLS_CERT": str(cert), "LOADTEST_CORE_TLS_KEY": str(key)}
    proc, seen = serve_tls([], env)
    try:
        assert seen["grpc"]["tls"] is True and seen["http"]["tls"] is True
        port = seen["grpc"]["address"].rsplit(":", 1)[1]
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", creds) as channel:
            create_test(channel)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_without_tls_flags_serve_stays_plaintext(tmp_path: Path) -> None:
    """No TLS flag and no TLS env var: serve listens in plaintext as before."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_CORE_TLS")}
    proc, seen = serve_tls([], {**env, "LOADTEST_CORE_TLS_CERT": "", "LOADTEST_CORE_TLS_KEY": ""})
    try:
        assert seen["grpc"]["tls"] is False and seen["http"]["tls"] is False
        with grpc.insecure_channel(seen["grpc"]["address"]) as channel:
            create_test(channel)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def encrypted_key(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = write_pair(tmp_path, "enc")
    loaded = serialization.load_pem_private_key(key.read_bytes(), password=None)
    key.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return cert, key


def _case(tmp_path: Path, case: str) -> tuple[list[str], str]:
    cert, key = write_pair(tmp_path)
    other_cert, other_key = write_pair(tmp_path, "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    if case == "missing cert":
        return ["--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key)], "cannot read"
    if case == "unreadable key":
        return ["--tls-cert", str(cert), "--tls-key", str(tmp_path)], "cannot read --tls-key"
    if case == "not pem":
        return ["--tls-cert", str(junk), "--tls-key", str(key)], "is not a PEM file"
    if case == "key of another cert":
        return ["--tls-cert", str(cert), "--tls-key", str(other_key)], "does not belong to"
    if case == "key instead of cert":
        return ["--tls-cert", str(other_key), "--tls-key", str(key)], "holds no PEM certificate"
    if case == "cert instead of key":
        return ["--tls-cert", str(cert), "--tls-key", str(cert)], "holds no PEM private key"
    if case == "broken cert":
        broken = tmp_path / "broken.pem"
        broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        return ["--tls-cert", str(broken), "--tls-key", str(key)], "not a usable"
    if case == "cert alone":
        return ["--tls-cert", str(cert)], "--tls-cert needs --tls-key"
    if case == "key alone":
        return ["--tls-key", str(other_cert)], "--tls-key needs --tls-cert"
    enc_cert, enc_key = encrypted_key(tmp_path)
    return ["--tls-cert", str(enc_cert), "--tls-key", str(enc_key)], "is encrypted"


CASES = [
    "missing cert",
    "unreadable key",
    "not pem",
    "key of another cert",
    "key instead of cert",
    "cert instead of key",
    "broken cert",
    "cert alone",
    "key alone",
    "encrypted key",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_tls_files_refuse_with_one_line(
    tmp_path: Path, case: str, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing, unreadable, non-PEM, mismatched or encrypted file: exit 2, one clear line."""
    monkeypatch.delenv("LOADTEST_CORE_TLS_CERT", raising=False)
    monkeypatch.delenv("LOADTEST_CORE_TLS_KEY", raising=False)
    flags, expected = _case(tmp_path, case)
    code = main(["serve", "--db", ":memory:", "--user-token", "u", "--agent-token", "a", *flags])
    out = capsys.readouterr()
    assert code == 2
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("loadtest-core serve: ")
    assert expected in lines[0]


def test_refusal_happens_before_listening(tmp_path: Path) -> None:
    """As a process, a bad key exits 2 before any listening event, naming the file."""
    cert, _ = write_pair(tmp_path)
    _, other_key = write_pair(tmp_path, "other")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest_core.cli",
            "serve",
            "--db",
            str(tmp_path / "never.db"),
            "--user-token",
            "u",
            "--agent-token",
            "a",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(other_key),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LOADTEST_CORE_TLS")},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert str(other_key) in done.stderr
    assert not (tmp_path / "never.db").exists()


def test_load_tls_reads_both_files(tmp_path: Path) -> None:
    """A good pair comes back with its bytes; giving neither file means plaintext (None)."""
    cert, key = write_pair(tmp_path)
    files = load_tls(str(cert), str(key))
    assert files is not None
    assert files.cert == cert.read_bytes() and files.key == key.read_bytes()
    assert load_tls(None, None) is None
    with pytest.raises(TlsError):
        load_tls(str(cert), None)


def test_certificate_names_localhost_and_loopback() -> None:
    """The default certificate is for localhost, 127.0.0.1 and ::1, and signs for TLS servers."""
    cert_pem, _ = make_certificate()
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage


def test_certificate_rejects_bad_input() -> None:
    """No host or a validity under a day is a ValueError, not a certificate."""
    with pytest.raises(ValueError):
        make_certificate([])
    with pytest.raises(ValueError):
        make_certificate(days=0)


def test_cert_command_writes_a_private_key_and_refuses_to_overwrite(
    tmp_path: Path, capsys: Any
) -> None:
    """`loadtest-core cert` writes the pair (key 0600) for the hosts asked; it never overwrites."""
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    args = ["cert", "--cert", str(cert), "--key", str(key), "--host", "tank.local"]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["hosts"] == ["tank.local"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions
    names = san.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["tank.local"]
    assert load_tls(str(cert), str(key)) is not None
    before = cert.read_bytes()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert cert.read_bytes() == before
    assert main([*args, "--force"]) == 0
    assert cert.read_bytes() != before


def test_cert_command_reports_an_unwritable_place(tmp_path: Path, capsys: Any) -> None:
    """A key path in a missing directory is exit 2 with one line, and no certificate is left."""
    cert = tmp_path / "c.pem"
    code = main(["cert", "--cert", str(cert), "--key", str(tmp_path / "no" / "k.pem")])
    assert code == 2
    assert "cannot write" in capsys.readouterr().err
    assert not cert.exists()


AGENT_LIKE_CLIENT = """
import sys
import grpc
from yandex.cloud.loadtesting.agent.v1 import (
    agent_registration_service_pb2 as r,
    agent_registration_service_pb2_grpc as rg,
)

channel = grpc.secure_channel(sys.argv[1], grpc.ssl_channel_credentials())
op = rg.AgentRegistrationServiceStub(channel).ExternalAgentRegister(
    r.ExternalAgentRegisterRequest(folder_id="f", name="tank", agent_version="1.1.11"),
    metadata=(("authorization", "Bearer a1"),),
    timeout=20,
)
meta = r.ExternalAgentRegisterMetadata()
op.metadata.Unpack(meta)
print(meta.agent_instance_id)
"""


def test_default_roots_from_grpc_env_var_trust_serve(
    tls_serve: tuple[Path, dict[str, Any]],
) -> None:
    """A client with gRPC's default roots, as the agent builds it, trusts serve via
    GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, and cannot connect without it."""
    cert, seen = tls_serve
    port = seen["grpc"]["address"].rsplit(":", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}
    command = [sys.executable, "-c", AGENT_LIKE_CLIENT, f"localhost:{port}"]
    trusted = subprocess.run(
        command,
        env={**env, "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(cert)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.strip().startswith("agent")
    untrusted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert untrusted.returncode != 0
    assert "UNAVAILABLE" in untrusted.stderr
