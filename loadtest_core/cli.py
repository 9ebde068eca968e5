"""The ``loadtest-core`` command: ``serve``, ``cert``, ``simulate`` and ``diagram``.

Each subcommand's flags live next to its code (``loadtest_core.server._cli``,
``loadtest_core.sim._cli``); those modules import their optional extras only
when the command runs, so ``loadtest-core diagram`` works with the core alone.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

_COMMANDS = {
    "serve": ("loadtest_core.server._cli", "run the control plane: gRPC and HTTP over one engine"),
    "cert": (
        "loadtest_core.server._cert",
        "write a self-signed certificate and key for serve --tls-cert/--tls-key",
    ),
    "simulate": ("loadtest_core.sim._cli", "run a deterministic simulation of agents and users"),
}


def _diagram(args: argparse.Namespace) -> int:
    from loadtest_core._diagram import render

    sys.stdout.write(render(args.format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loadtest-core", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in _COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:  # pragma: no cover - the module ships with the package
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(handler=mod.run)
    d = sub.add_parser("diagram", help="print the lifecycle state diagram")
    d.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    d.set_defaults(handler=_diagram)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
