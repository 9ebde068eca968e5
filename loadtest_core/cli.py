"""The ``loadtest-core`` command.

Each subcommand's flags live next to its code (``loadtest_core.server._cli``,
``loadtest_core.sim._cli``, ``loadtest_core.ctl``, ``loadtest_core.testing._cli``);
those modules import their optional extras only when the command runs, so
``loadtest-core diagram`` and ``export-log`` work with the core alone.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]

DESCRIPTION = (
    "The lifecycle of load tests: run the control plane (serve, cert), see and drive its "
    "tests (test, agent, config), simulate agents and users (simulate), check a server "
    "against the lifecycle contract (check, check-log, export-log), draw the lifecycle "
    "(diagram)."
)
EPILOG = "Run 'loadtest-core COMMAND --help' for a command's options."

# name -> (module with add_arguments/run, one-line help)
_COMMANDS = {
    "serve": ("loadtest_core.server._cli", "run the control plane: gRPC and HTTP over one engine"),
    "test": ("loadtest_core.ctl._test_cli", "list, show, stop, wait for or delete tests"),
    "agent": ("loadtest_core.ctl._agent_cli", "list or show registered agents"),
    "config": ("loadtest_core.ctl._config_cli", "manage load generator configs"),
    "cert": (
        "loadtest_core.server._cert",
        "write a self-signed certificate and key for serve --tls-cert/--tls-key",
    ),
    "simulate": ("loadtest_core.sim._cli", "run a deterministic simulation of agents and users"),
}


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors name the command that was given, with a short usage."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from loadtest_core import __version__

    return f"loadtest-core {__version__}"


def _diagram(args: argparse.Namespace) -> int:
    from loadtest_core._diagram import render

    text = render(args.format, simple=args.simple)
    if args.markdown:
        text = f"```{'mermaid' if args.format == 'mermaid' else 'dot'}\n{text}```\n"
    sys.stdout.write(text)
    return 0


# the invariant kit's commands: name -> (flags function, run function, one-line help)
_KIT = {
    "check": (
        "add_check_arguments",
        "run_check",
        "check a server speaking the Yandex API against the lifecycle contract",
    ),
    "check-log": (
        "add_check_log_arguments",
        "run_check_log",
        "check an exported event log (JSON lines) against the invariants and replay",
    ),
}


def _export_log(args: argparse.Namespace) -> int:
    """Write a SQLite store's event log as JSON lines (``LogRecord.to_data``), oldest first."""
    from loadtest_core import SqliteStore

    if not args.db.is_file():
        print(f"loadtest-core export-log: no database at {args.db}", file=sys.stderr)
        return 2
    store = SqliteStore(args.db)
    out = sys.stdout if args.out is None else args.out.open("w", encoding="utf-8")
    try:
        seq = 0
        while True:
            page = store.read_log(seq, 10_000)
            if not page:
                break
            for record in page:
                out.write(json.dumps(record.to_data(), separators=(",", ":")) + "\n")
            seq = page[-1].seq
    finally:
        store.close()
        if out is not sys.stdout:
            out.close()
    return 0


def _needs_testing(args: argparse.Namespace) -> int:
    print(
        f"loadtest-core {args.command} needs the testing extra: "
        "pip install 'loadtest-core[testing]'",
        file=sys.stderr,
    )
    return 2


def _add_kit(sub: Any) -> None:
    try:
        kit = importlib.import_module("loadtest_core.testing._cli")
    except ImportError:  # the testing extra is not installed
        kit = None
    for name, (add, run, help_text) in _KIT.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if kit is None:
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(handler=_needs_testing)
            continue
        getattr(kit, add)(p)
        p.set_defaults(handler=getattr(kit, run))
    e = sub.add_parser(
        "export-log",
        help="write a SQLite store's event log as JSON lines",
        description="Write a SQLite store's event log as JSON lines (for check-log).",
    )
    e.add_argument("--db", type=Path, required=True, help="the SQLite file serve uses")
    e.add_argument("--out", type=Path, help="output file (default: stdout)")
    e.set_defaults(handler=_export_log)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="loadtest-core", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in _COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name,
            help=help_text,
            description=getattr(mod, "DESCRIPTION", help_text),
            usage=f"loadtest-core {name} {getattr(mod, 'USAGE', '[options]')}",
        )
        mod.add_arguments(p)
        p.set_defaults(handler=mod.run)
    _add_kit(sub)
    d = sub.add_parser(
        "diagram",
        help="print the lifecycle state diagram",
        description="Print the lifecycle's state diagram, generated from the transition table: "
        "Mermaid (paste into GitHub or mermaid.live) or Graphviz dot (dot -Tsvg).",
        usage="loadtest-core diagram [--format mermaid|dot] [--simple] [--markdown]",
    )
    d.add_argument("--format", choices=("mermaid", "dot"), default="mermaid", help="the notation")
    d.add_argument(
        "--simple",
        action="store_true",
        help="statuses only, one unlabelled edge per pair, the execution stages in one box",
    )
    d.add_argument(
        "--markdown",
        action="store_true",
        help="wrap the diagram in a fenced code block, ready for a Markdown file",
    )
    d.set_defaults(handler=_diagram)
    return parser


def _subparser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The parser of the deepest subcommand given, so its usage is the one shown."""
    current: Any = parser
    for dest in ("command", "action"):
        name = getattr(args, dest, None)
        actions = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if name is None or not actions:
            break
        current = actions[0].choices[name]
    return current


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _subparser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code: int = args.handler(args)
    except BrokenPipeError:  # `loadtest-core ... | head`: the reader left; say nothing
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
