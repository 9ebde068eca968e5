"""``loadtest-core cert``: a self-signed certificate for ``serve --tls-cert/--tls-key``.

Made with ``cryptography``, which the grpc extra already brings (the
``yandexcloud`` SDK depends on it), so there is no new dependency and no need
for an ``openssl`` binary. One certificate is both the server's and the trust
anchor its clients are given (gRPC ``root_certificates``, the agent's
``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``, ``httpx``'s ``verify``).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import sys
from pathlib import Path

__all__ = ["add_arguments", "make_certificate", "run"]

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def make_certificate(
    hosts: tuple[str, ...] | list[str] = DEFAULT_HOSTS,
    days: int = 365,
    *,
    now: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """(certificate PEM, unencrypted private key PEM) for ``hosts`` (DNS names or IPs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise ValueError("at least one host name or address is needed")
    if days < 1:
        raise ValueError("days must be >= 1")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cert",
        default="loadtest-core-cert.pem",
        metavar="FILE",
        help="where to write the certificate (default ./loadtest-core-cert.pem)",
    )
    p.add_argument(
        "--key",
        default="loadtest-core-key.pem",
        metavar="FILE",
        help="where to write the private key, mode 0600 (default ./loadtest-core-key.pem)",
    )
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name or IP address the certificate is for (repeatable; "
        "default localhost, 127.0.0.1 and ::1)",
    )
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def run(args: argparse.Namespace) -> int:
    cert_path, key_path = Path(args.cert), Path(args.key)
    hosts = tuple(args.host) or DEFAULT_HOSTS
    if not args.force:
        for path in (cert_path, key_path):
            if path.exists():
                message = f"loadtest-core cert: {path} exists; use --force to replace it"
                print(message, file=sys.stderr)
                return 2
    try:
        cert, key = make_certificate(hosts, args.days)
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        print(f"loadtest-core cert needs the grpc extra ({exc})", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"loadtest-core cert: {exc}", file=sys.stderr)
        return 2
    try:
        _write(key_path, key, 0o600)
        _write(cert_path, cert, 0o644)
    except OSError as exc:
        print(f"loadtest-core cert: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    print(json.dumps({"cert": str(cert_path), "key": str(key_path), "hosts": list(hosts)}))
    return 0
