"""Flags of ``loadtest-core serve``; imports no adapter until the command runs."""

from __future__ import annotations

import argparse
import os
import sys

ENV_USER = "LOADTEST_CORE_USER_TOKENS"
ENV_AGENT = "LOADTEST_CORE_AGENT_TOKENS"
ENV_TLS_CERT = "LOADTEST_CORE_TLS_CERT"
ENV_TLS_KEY = "LOADTEST_CORE_TLS_KEY"


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grpc",
        type=_address,
        default=("127.0.0.1", 50051),
        metavar="HOST:PORT",
        help="gRPC address (default 127.0.0.1:50051; port 0 picks a free one)",
    )
    p.add_argument(
        "--http",
        type=_address,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="HTTP address for POST /stop/execution (default 127.0.0.1:8080)",
    )
    p.add_argument("--no-http", action="store_true", help="do not serve HTTP")
    p.add_argument(
        "--db",
        default="./loadtest-core.db",
        help="SQLite file (default ./loadtest-core.db); ':memory:' keeps nothing",
    )
    p.add_argument(
        "--user-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help=f"a user bearer token (repeatable; also ${ENV_USER}, comma-separated)",
    )
    p.add_argument(
        "--agent-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help=f"an agent bearer token (repeatable; also ${ENV_AGENT})",
    )
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow every caller when no token is configured",
    )
    p.add_argument(
        "--tls-cert",
        default=None,
        metavar="FILE",
        help=f"PEM certificate: serve gRPC and HTTP over TLS (also ${ENV_TLS_CERT}; "
        "needs --tls-key; `loadtest-core cert` makes one for localhost)",
    )
    p.add_argument(
        "--tls-key",
        default=None,
        metavar="FILE",
        help=f"PEM private key of --tls-cert, unencrypted (also ${ENV_TLS_KEY})",
    )
    p.add_argument(
        "--lost-after",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="silence that makes an active test LOST (default 30)",
    )
    p.add_argument(
        "--lost-expiry",
        type=_positive,
        default=None,
        metavar="SECONDS",
        help="time in LOST before FAILED (default: never)",
    )
    p.add_argument(
        "--grace",
        type=_positive,
        default=5.0,
        metavar="SECONDS",
        help="time for in-flight calls at shutdown (default 5)",
    )


def _tokens(flags: list[str], env: str) -> list[str]:
    extra = [t.strip() for t in os.environ.get(env, "").split(",") if t.strip()]
    return [*flags, *extra]


def run(args: argparse.Namespace) -> int:
    users = _tokens(args.user_token, ENV_USER)
    agents = _tokens(args.agent_token, ENV_AGENT)
    if not users and not agents and not args.insecure_no_auth:
        print(
            "loadtest-core serve: no token configured; give --user-token and --agent-token "
            f"(or ${ENV_USER} / ${ENV_AGENT}), or --insecure-no-auth",
            file=sys.stderr,
        )
        return 2
    from loadtest_core.server._tls import TlsError, load_tls

    try:
        tls = load_tls(
            args.tls_cert or os.environ.get(ENV_TLS_CERT) or None,
            args.tls_key or os.environ.get(ENV_TLS_KEY) or None,
        )
    except TlsError as exc:
        print(f"loadtest-core serve: {exc}", file=sys.stderr)
        return 2
    try:
        from loadtest_core.server._serve import Options, serve
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        print(
            f"loadtest-core serve needs the grpc extra: pip install 'loadtest-core[grpc]' ({exc})",
            file=sys.stderr,
        )
        return 2
    options = Options(
        grpc=args.grpc,
        http=None if args.no_http else args.http,
        db=args.db,
        user_tokens=users,
        agent_tokens=agents,
        insecure=args.insecure_no_auth,
        lost_after=args.lost_after,
        lost_expiry=args.lost_expiry,
        grace=args.grace,
        tls=tls,
    )
    return serve(options)
