"""``loadtest-core check`` and ``loadtest-core check-log``: the kit from the command line.

Flags are declared here without importing hypothesis or gRPC; they are imported
when the command runs (``pip install 'loadtest-core[testing]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ENV_USER = "LOADTEST_CORE_USER_TOKENS"
ENV_AGENT = "LOADTEST_CORE_AGENT_TOKENS"


def _address(text: str) -> str:
    text = text.removeprefix("grpc://")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("endpoint", type=_address, metavar="HOST:PORT", help="the gRPC endpoint")
    p.add_argument("--http", metavar="HOST:PORT", help="its POST /stop/execution endpoint")
    p.add_argument("--user-token", help=f"a user token (default: first of ${ENV_USER})")
    p.add_argument("--agent-token", help=f"an agent token (default: first of ${ENV_AGENT})")
    p.add_argument(
        "--lost-after",
        type=_seconds,
        required=True,
        metavar="SECONDS",
        help="the server's lost_after (start it small, e.g. 1, so checks take seconds)",
    )
    p.add_argument(
        "--contact-every", type=_seconds, metavar="SECONDS", help="default lost_after/10"
    )
    p.add_argument("--lost-expiry", type=_seconds, metavar="SECONDS", help="if the server has one")
    p.add_argument(
        "--tick-every", type=_seconds, metavar="SECONDS", help="its ticker period (lost_after/4)"
    )
    p.add_argument(
        "--deletion-delay",
        type=_seconds,
        metavar="SECONDS",
        help="when DELETING tests are removed (default: no promise)",
    )
    p.add_argument("--lateness", type=_seconds, default=0.5, help="slack for a busy machine (0.5)")
    p.add_argument(
        "--oldest-first",
        action="store_true",
        help="the server promises to hand out the oldest matching test",
    )
    p.add_argument(
        "--connect-timeout", type=_seconds, default=5.0, help="to reach the endpoint (5)"
    )
    p.add_argument("--examples", type=_count, default=25, help="hypothesis examples (25)")
    p.add_argument("--steps", type=_count, default=25, help="steps per example (25)")
    p.add_argument("--derandomize", action="store_true", help="the same examples every run")
    p.add_argument("--no-shrink", action="store_true", help="report the first failure as found")
    p.add_argument(
        "--shrink-seconds",
        type=_seconds,
        default=60.0,
        help="stop shrinking a failure after this long (60)",
    )
    p.add_argument("--script", type=Path, help="write the counterexample script here too")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def add_check_log_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="JSON lines (loadtest-core export-log); - for stdin")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _token(flag: str | None, env: str) -> str | None:
    if flag:
        return flag
    tokens = [t.strip() for t in os.environ.get(env, "").split(",") if t.strip()]
    return tokens[0] if tokens else None


def run_check(args: argparse.Namespace) -> int:
    user = _token(args.user_token, ENV_USER)
    agent = _token(args.agent_token, ENV_AGENT)
    if user is None or agent is None:
        print(
            f"loadtest-core check: give --user-token and --agent-token (or ${ENV_USER} / "
            f"${ENV_AGENT})",
            file=sys.stderr,
        )
        return 2
    try:
        from loadtest_core.testing._grpc_target import GrpcTarget
        from loadtest_core.testing._run import check_target, counterexample_script
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        print(f"loadtest-core check needs: pip install 'loadtest-core[testing]' ({exc})")
        return 2
    options = {
        "http": args.http,
        "lost_after": args.lost_after,
        "contact_every": args.contact_every,
        "lost_expiry": args.lost_expiry,
        "tick_every": args.tick_every,
        "deletion_delay": args.deletion_delay,
        "lateness": args.lateness,
        "oldest_first": args.oldest_first,
    }

    def factory() -> GrpcTarget:
        return GrpcTarget(args.endpoint, user_token=user, agent_token=agent, **options)

    import grpc

    probe = factory()
    try:
        grpc.channel_ready_future(probe.channel).result(timeout=args.connect_timeout)
    except grpc.FutureTimeoutError:
        print(
            f"loadtest-core check: cannot reach {args.endpoint} "
            f"(no connection within {args.connect_timeout:g} s)",
            file=sys.stderr,
        )
        return 2
    finally:
        probe.close()
    outcome = check_target(
        factory,
        examples=args.examples,
        steps=args.steps,
        derandomize=args.derandomize,
        progress=sys.stderr if sys.stderr.isatty() and not args.json else None,
        shrink=not args.no_shrink,
        shrink_seconds=args.shrink_seconds,
    )
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items() if v not in (None, False))
    source = (
        f"GrpcTarget({args.endpoint!r}, user_token=os.environ[{ENV_USER!r}].split(',')[0], "
        f"agent_token=os.environ[{ENV_AGENT!r}].split(',')[0], {shown})"
    )
    script = None
    if not outcome.ok:
        script = counterexample_script(
            outcome, source, "from loadtest_core.testing import GrpcTarget"
        )
        if args.script is not None:
            args.script.write_text(script)
    if args.json:
        data = outcome.to_data()
        data["script"] = script
        print(json.dumps(data, indent=2))
    else:
        print(outcome.summary())
        if script is not None:
            print("\nThe shortest failing run, as a script:\n")
            print(script)
    return 0 if outcome.ok else 1


def run_check_log(args: argparse.Namespace) -> int:
    from loadtest_core.testing._log import read_log, replay_log

    try:
        if str(args.file) == "-":
            report = replay_log(read_log(sys.stdin))
        else:
            with args.file.open(encoding="utf-8") as f:
                report = replay_log(read_log(f))
    except (OSError, ValueError) as exc:
        print(f"loadtest-core check-log: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "tests": len(report.tests),
                    "operations": len(report.operations),
                    "outcomes": dict(report.outcomes),
                    "checked": dict(report.checked),
                    "violations": [
                        {"clause": c, "seq": s, "message": m} for c, s, m in report.violations
                    ],
                },
                indent=2,
            )
        )
    else:
        print(report.summary())
    return 0 if report.ok else 1
