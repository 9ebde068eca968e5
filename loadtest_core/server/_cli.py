"""Flags of ``loadtest-core serve``; imports no adapter until the command runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

ENV_USER = "LOADTEST_CORE_USER_TOKENS"
ENV_AGENT = "LOADTEST_CORE_AGENT_TOKENS"
ENV_TLS_CERT = "LOADTEST_CORE_TLS_CERT"
ENV_TLS_KEY = "LOADTEST_CORE_TLS_KEY"
ENV_DB = "LOADTEST_CORE_DB"


def _address(text: str) -> tuple[str, int]:
    from loadtest_core.server._ports import AddressError, parse_address

    try:
        return parse_address(text)
    except AddressError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


_Limit = tuple[str, str, Callable[[str], Any], object, str]
# (flag, HttpLimits/GrpcLimits field, parser, default shown in --help, what it limits).
# The defaults live in the limit classes; tests check that these agree with them.
HTTP_LIMITS: list[_Limit] = [
    ("--http-max-header-bytes", "max_header_bytes", _count, 16384, "request line + headers, bytes"),
    ("--http-max-headers", "max_headers", _count, 64, "header fields a request"),
    ("--http-header-timeout", "header_timeout", _positive, 10.0, "seconds to send the headers"),
    ("--http-body-timeout", "body_timeout", _positive, 10.0, "seconds to send the body"),
    ("--http-keep-alive", "keep_alive", _positive, 5.0, "seconds an idle connection stays open"),
    ("--http-max-connections", "max_connections", _count, 256, "open connections"),
    ("--http-max-body", "max_body", _count, 65536, "request body, bytes"),
]
GRPC_LIMITS: list[_Limit] = [
    ("--grpc-max-message", "max_message", _count, 4128768, "request message, bytes"),
    ("--grpc-max-metadata", "max_metadata", _count, 8 << 10, "request metadata, bytes"),
    ("--grpc-max-streams", "max_streams", _count, 64, "concurrent calls a connection"),
    ("--grpc-max-rpcs", "max_rpcs", _count, 64, "concurrent calls in all"),
    ("--grpc-max-connections", "max_connections", _count, 256, "open connections"),
    ("--grpc-idle", "idle", _positive, 300.0, "seconds a connection with no call stays open"),
    ("--grpc-handshake", "handshake", _positive, 10.0, "seconds to complete a handshake"),
]


def _limit_values(args: argparse.Namespace, table: list[_Limit]) -> dict[str, Any]:
    """The limits given on the command line, by field name (the rest keep their defaults)."""
    out = {}
    for flag, field, _, _, _ in table:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            out[field] = value
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grpc",
        type=_address,
        default=("127.0.0.1", 50051),
        metavar="HOST:PORT",
        help="gRPC address (default 127.0.0.1:50051; :PORT for every interface; "
        "port 0 picks a free one)",
    )
    p.add_argument(
        "--http",
        type=_address,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="HTTP address of the status page, /metrics and POST /stop/execution "
        "(default 127.0.0.1:8080)",
    )
    p.add_argument("--no-http", action="store_true", help="do not serve HTTP")
    p.add_argument(
        "--db",
        default=None,
        help=(
            "the store: a SQLite file (default ./loadtest-core.db), a postgresql:// DSN "
            f"(needs the postgres extra), or ':memory:' to keep nothing; also ${ENV_DB}"
        ),
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
        "--ready-heartbeats-keep-jobs",
        action="store_true",
        help="a READY_FOR_TEST heartbeat keeps the agent's running tests alive until it asks "
        "for a new job: the real agent drains its uploads that way after a run (docs/agents.md)",
    )
    p.add_argument(
        "--upload-limit",
        type=_count,
        default=None,
        metavar="BYTES",
        help="agent uploads kept per test and kind (events, trails, metrics); more are "
        "refused with RESOURCE_EXHAUSTED (default 67108864)",
    )
    p.add_argument(
        "--grace",
        type=_positive,
        default=5.0,
        metavar="SECONDS",
        help="time for in-flight calls at shutdown (default 5)",
    )
    for title, table in (("HTTP limits", HTTP_LIMITS), ("gRPC limits", GRPC_LIMITS)):
        group = p.add_argument_group(title)
        for flag, _, parse, default, what in table:
            metavar = "SECONDS" if parse is _positive else "N"
            group.add_argument(
                flag, type=parse, default=None, metavar=metavar, help=f"{what} (default {default})"
            )


def _tokens(flags: list[str], env: str) -> list[str]:
    extra = [t.strip() for t in os.environ.get(env, "").split(",") if t.strip()]
    return [*flags, *extra]


def _fail(message: str) -> int:
    print(f"loadtest-core serve: error: {message}", file=sys.stderr)
    return 2


def _warn(message: str) -> None:
    print(f"loadtest-core serve: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from loadtest_core import InvalidArgument, TokenAuth

    for flag, given in (("--user-token", args.user_token), ("--agent-token", args.agent_token)):
        for token in given:
            if not token or token != token.strip() or not token.isprintable():
                return _fail(
                    f"{flag} {token!r}: a token must be non-empty printable text without "
                    f'surrounding spaces, e.g. {flag} "$(openssl rand -hex 16)"'
                )
    users = _tokens(args.user_token, ENV_USER)
    agents = _tokens(args.agent_token, ENV_AGENT)
    if not users and not agents and not args.insecure_no_auth:
        return _fail(
            "no token configured; give --user-token and --agent-token "
            f"(or ${ENV_USER} / ${ENV_AGENT}), or --insecure-no-auth"
        )
    try:
        auth = TokenAuth(users, agents, insecure=args.insecure_no_auth)
    except InvalidArgument as exc:
        env = f"${ENV_USER} / ${ENV_AGENT}"
        return _fail(f"{exc.message} (check {env}: comma-separated tokens)")
    http = None if args.no_http else args.http
    if http is not None and http[1] == args.grpc[1] != 0:
        return _fail(f"--grpc and --http both use port {http[1]}; give them different ports")
    if auth.has_shared_tokens():
        _warn(
            "a token is both a --user-token and an --agent-token: it acts as a user token, so "
            "agents using it are refused (PERMISSION_DENIED); give each role its own token"
        )
    if args.insecure_no_auth and (users or agents):
        _warn("--insecure-no-auth is ignored: tokens are configured, so every call needs one")
    elif args.insecure_no_auth:
        everyone = "" in (args.grpc[0], "" if http is None else http[0])
        reach = "anyone on the network" if everyone else "any program that can connect to it"
        _warn(
            f"--insecure-no-auth: no token is checked; {reach} can create and stop tests "
            "and act as an agent"
        )
    from loadtest_core.server._tls import TlsError, load_tls

    try:
        tls = load_tls(
            args.tls_cert or os.environ.get(ENV_TLS_CERT) or None,
            args.tls_key or os.environ.get(ENV_TLS_KEY) or None,
        )
    except TlsError as exc:
        return _fail(str(exc))
    try:
        from loadtest_core.grpc import GrpcLimits
        from loadtest_core.server._serve import Options, serve
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        print(
            f"loadtest-core serve needs the grpc extra: pip install 'loadtest-core[grpc]' ({exc})",
            file=sys.stderr,
        )
        return 2
    options = Options(
        grpc=args.grpc,
        http=http,
        db=args.db or os.environ.get(ENV_DB) or "./loadtest-core.db",
        user_tokens=users,
        agent_tokens=agents,
        insecure=args.insecure_no_auth,
        lost_after=args.lost_after,
        lost_expiry=args.lost_expiry,
        grace=args.grace,
        tls=tls,
        ready_keeps_jobs=args.ready_heartbeats_keep_jobs,
        upload_limit=args.upload_limit,
        grpc_limits=GrpcLimits(**_limit_values(args, GRPC_LIMITS)),
        http_limits=_limit_values(args, HTTP_LIMITS),
    )
    return serve(options)
