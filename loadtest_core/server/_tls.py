"""TLS files for ``serve``: read and checked once, before anything listens.

Only the standard library: ``ssl.SSLContext.load_cert_chain`` is the check
that a certificate and key are PEM and belong together, the same check
uvicorn makes for HTTPS; gRPC gets the bytes read here.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV_CERT", "ENV_KEY", "TlsError", "TlsFiles", "load_tls"]

ENV_CERT = "LOADTEST_CORE_TLS_CERT"
ENV_KEY = "LOADTEST_CORE_TLS_KEY"


class TlsError(Exception):
    """A TLS file that cannot serve: its message is the one line ``serve`` prints."""


@dataclass(frozen=True)
class TlsFiles:
    cert_path: str
    key_path: str
    cert: bytes
    key: bytes


def _read(path: str, what: str, marker: bytes, kind: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TlsError(f"{what} {path} is not a PEM file")
    if marker not in data:
        raise TlsError(f"{what} {path} holds no PEM {kind}")
    return data


def load_tls(cert_path: str | None, key_path: str | None) -> TlsFiles | None:
    """Both files read and checked, or None when neither is given; ``TlsError`` otherwise."""
    if not cert_path and not key_path:
        return None
    if not cert_path or not key_path:
        given, missing = ("--tls-cert", "--tls-key") if cert_path else ("--tls-key", "--tls-cert")
        raise TlsError(f"{given} needs {missing} too (or ${ENV_CERT} and ${ENV_KEY})")
    cert = _read(cert_path, "--tls-cert", b"-----BEGIN CERTIFICATE-----", "certificate")
    key = _read(key_path, "--tls-key", b"PRIVATE KEY-----", "private key")
    asked: list[bool] = []

    def no_password() -> bytes:
        asked.append(True)
        return b""

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path, password=no_password)
    except ssl.SSLError as exc:
        if asked:
            raise TlsError(f"--tls-key {key_path} is encrypted; give an unencrypted key") from None
        reason = exc.reason or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            raise TlsError(
                f"--tls-key {key_path} does not belong to --tls-cert {cert_path}"
            ) from None
        raise TlsError(
            f"--tls-cert {cert_path} / --tls-key {key_path}: not a usable certificate and key "
            f"({reason})"
        ) from None
    return TlsFiles(cert_path, key_path, cert, key)
