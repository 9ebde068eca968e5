"""What the ``test``, ``agent`` and ``config`` commands share: options, output, errors."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from loadtest_core.ctl._settings import (
    ENV_ENDPOINT,
    ENV_PROFILE,
    ENV_TOKEN,
    FORMATS,
    Settings,
    SettingsError,
    config_path,
    resolve,
)

__all__ = [
    "Cli",
    "CliError",
    "add_common",
    "common_parent",
    "connect",
    "emit",
    "fail",
    "proto_data",
    "spinner",
    "table",
]

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as one line; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def common_parent() -> argparse.ArgumentParser:
    """The connection and output options every client subcommand takes."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection and output")
    g.add_argument(
        "--endpoint",
        metavar="HOST:PORT",
        help=f"the serve gRPC address (${ENV_ENDPOINT}, profile; default 127.0.0.1:50051)",
    )
    g.add_argument("--token", help=f"a user token (${ENV_TOKEN}, profile)")
    g.add_argument(
        "--profile",
        help=f"a profile of the config file (${ENV_PROFILE}; file: {_shown_config()})",
    )
    g.add_argument("--format", choices=FORMATS, help="output format (default table)")
    g.add_argument("--tls", action="store_true", default=None, help="connect with TLS")
    g.add_argument("--ca-file", metavar="PEM", help="TLS with this CA certificate")
    g.add_argument(
        "--rpc-timeout", type=float, default=10.0, metavar="SECONDS", help="per call (default 10)"
    )
    return p


def _shown_config() -> str:
    try:
        return str(config_path()).replace(str(config_path().home()), "~")
    except RuntimeError:  # no home directory
        return "$LOADTEST_CORE_CONFIG"


def add_common(sub: Any, name: str, help_text: str, args: str = "") -> argparse.ArgumentParser:
    """A leaf command (``test list``) with the common options and a one-line usage."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text[0].upper() + help_text[1:] + ".",
        parents=[common_parent()],
        usage=f"{sub._prog_prefix} {name} {args + ' ' if args else ''}[options]",
    )
    return parser


@dataclass
class Cli:
    """A connected command: settings, the channel and the generated stubs it needs."""

    settings: Settings
    channel: Any
    timeout: float
    prog: str

    def stub(self, cls: Any) -> Any:
        return cls(self.channel)

    def call(self, method: Any, request: Any, what: str) -> Any:
        """One RPC with the per-call timeout; a gRPC error becomes a one-line CliError."""
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self.explain(exc, what) from None

    def explain(self, exc: Any, what: str) -> CliError:
        import grpc

        code, details = exc.code(), exc.details() or ""
        where = self.settings.endpoint
        if code is grpc.StatusCode.UNAVAILABLE:
            return CliError(
                f"cannot reach {where} ({details}); is loadtest-core serve running there? "
                f"Set --endpoint or ${ENV_ENDPOINT}"
            )
        if code is grpc.StatusCode.UNAUTHENTICATED:
            return CliError(
                f"{where} refused the token ({details}); give a user token with --token "
                f"or ${ENV_TOKEN}"
            )
        if code is grpc.StatusCode.PERMISSION_DENIED:
            return CliError(f"{where}: {details}; use a user token, not an agent token")
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return CliError(f"{where} did not answer {what} within {self.timeout:g} s")
        if code is grpc.StatusCode.UNIMPLEMENTED:
            return CliError(f"{where} does not offer {what} (UNIMPLEMENTED)")
        return CliError(f"{what}: {code.name}: {details}")


def connect(args: argparse.Namespace, prog: str) -> Cli:
    try:
        settings = resolve(
            endpoint=args.endpoint,
            token=args.token,
            profile=args.profile,
            format=args.format,
            tls=args.tls,
            ca_file=args.ca_file,
        )
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if not args.rpc_timeout > 0:
        raise CliError("--rpc-timeout must be > 0", EXIT_USAGE)
    try:
        from loadtest_core.client._connect import channel
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise CliError(
            f"{prog} needs the grpc extra: pip install 'loadtest-core[grpc]' ({exc})", EXIT_USAGE
        ) from None
    try:
        chan = channel(
            settings.endpoint, settings.token, tls=settings.tls, ca_file=settings.ca_file
        )
    except OSError as exc:
        raise CliError(f"--ca-file {settings.ca_file}: {exc.strerror}", EXIT_USAGE) from None
    return Cli(settings, chan, args.rpc_timeout, prog)


def run_command(prog: str, body: Callable[[argparse.Namespace], int], args: Any) -> int:
    """Run a command body; a CliError is printed as one line and becomes the exit code."""
    try:
        return body(args)
    except CliError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return exc.code


def fail(message: str, code: int = EXIT_ERROR) -> CliError:
    return CliError(message, code)


def proto_data(message: Any) -> dict[str, Any]:
    """proto3 JSON with field names as in the .proto files (what ``yc --format json`` prints)."""
    from google.protobuf import empty_pb2, json_format  # noqa: F401  (Empty inside an Any)

    data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return data


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k + ':':<{width + 1}} {v}".rstrip() for k, v in pairs)


def emit(fmt: str, data: Any, text: Callable[[], str]) -> None:
    """Print ``data`` as JSON or YAML, or ``text()`` for the table format."""
    if fmt == "json":
        out = json.dumps(data, indent=2, ensure_ascii=False)
    elif fmt == "yaml":
        try:
            import yaml
        except ImportError:
            raise CliError("--format yaml needs PyYAML: pip install pyyaml", EXIT_USAGE) from None
        out = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")
    else:
        out = text()
    sys.stdout.write(out + "\n")
    sys.stdout.flush()


@contextmanager
def spinner(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A ``show(text)`` that redraws one status line on stderr (only on a terminal)."""
    frames = itertools.cycle("|/-\\")
    started = time.monotonic()
    shown = enabled and sys.stderr.isatty()

    def show(text: str) -> None:
        if shown:
            elapsed = int(time.monotonic() - started)
            sys.stderr.write(f"\r{next(frames)} {text} ({elapsed}s)\033[K")
            sys.stderr.flush()

    try:
        yield show
    finally:
        if shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
