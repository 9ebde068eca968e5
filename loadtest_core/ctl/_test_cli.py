"""``loadtest-core test list|get|stop|wait|delete|uploads`` over the Yandex ``TestService``.

``wait`` (and ``stop`` without ``--async``) exit with a code saying how the
test ended, so scripts can branch on it: see ``EXIT`` and docs/operating.md.
``uploads`` reads what the test's agent uploaded through serve's own
``loadtest_core.v1.UploadService`` (docs/grpc.md).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from loadtest_core.ctl._common import (
    EXIT_ERROR,
    CliError,
    add_common,
    connect,
    emit,
    fields,
    proto_data,
    run_command,
    spinner,
    table,
)
from loadtest_core.ctl._uploads import add_upload_options, print_uploads

DESCRIPTION = (
    "See and drive the tests of a running loadtest-core serve, as 'yc loadtesting test' does."
)
USAGE = "{list,get,stop,wait,delete,uploads} [options]"
PROG = "loadtest-core test"

EXIT = {
    "DONE": 0,
    "FAILED": 3,
    "STOPPED": 4,
    "AUTOSTOPPED": 5,
    "CANCELLED": 6,
    "DELETING": 7,
    "GONE": 7,
}
EXIT_TIMEOUT = 124
FINAL = frozenset({"DONE", "FAILED", "STOPPED", "AUTOSTOPPED", "CANCELLED", "DELETING"})


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION", prog=PROG)
    ls = add_common(sub, "list", "list tests, newest first")
    ls.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="STATUS",
        help="only tests in this status (repeatable), e.g. RUNNING or LOST",
    )
    ls.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="only tests with this tag"
    )
    ls.add_argument(
        "--filter", default="", metavar="EXPR", help='a raw filter, e.g. details.name CONTAINS "x"'
    )
    ls.add_argument("--folder-id", default="", help="only tests of this folder")
    ls.add_argument(
        "--limit", type=int, default=100, help="at most this many tests (default 100; 0: all)"
    )
    get = add_common(sub, "get", "show one test", "TEST_ID")
    get.add_argument("test_id", metavar="TEST_ID")
    stop = add_common(sub, "stop", "stop a test and wait until it has stopped", "TEST_ID")
    stop.add_argument("test_id", metavar="TEST_ID")
    stop.add_argument(
        "--async", dest="no_wait", action="store_true", help="print the operation and return"
    )
    stop.add_argument(
        "--timeout", type=float, default=600.0, metavar="SECONDS", help="wait at most (default 600)"
    )
    wait = add_common(
        sub, "wait", "wait until a test is finished; the exit code says how", "TEST_ID"
    )
    wait.epilog = "exit codes: " + ", ".join(
        f"{code} {name}" for name, code in EXIT.items() if name != "GONE"
    )
    wait.epilog += f" or deleted, {EXIT_TIMEOUT} timeout, 1 error, 2 usage"
    wait.add_argument("test_id", metavar="TEST_ID")
    wait.add_argument(
        "--timeout", type=float, default=3600.0, metavar="SECONDS", help="default 3600"
    )
    wait.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="poll every (default 2)"
    )
    delete = add_common(sub, "delete", "delete a finished (or CREATED or LOST) test", "TEST_ID")
    delete.add_argument("test_id", metavar="TEST_ID")
    uploads = add_common(
        sub, "uploads", "print what the test's agent uploaded, one JSON line an item", "TEST_ID"
    )
    uploads.add_argument("test_id", metavar="TEST_ID")
    add_upload_options(uploads, kinds=True)
    for child in (ls, get, stop, wait, delete, uploads):
        child.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return run_command(f"{PROG} {args.action}", _ACTIONS[args.action], args)


def _when(ts: Any) -> str:
    if ts is None or (not ts.seconds and not ts.nanos):
        return ""
    return datetime.fromtimestamp(ts.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(test: Any) -> list[str]:
    tags = " ".join(f"{t.key}={t.value}" for t in test.details.tags)
    return [
        test.id,
        test.details.name,
        _status(test),
        test.summary.assigned_agent_id,
        _when(test.summary.created_at),
        tags,
    ]


def _status(test: Any) -> str:
    from yandex.cloud.loadtesting.api.v1.test import status_pb2

    return str(status_pb2.Status.Name(test.summary.status))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _filter(args: argparse.Namespace) -> str:
    clauses = []
    if args.status:
        names = [s.strip().upper() for s in args.status]
        clauses.append(f"summary.status IN ({', '.join(_quoted(n) for n in names)})")
    for tag in args.tag:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise CliError(f"--tag {tag!r}: write KEY=VALUE, e.g. --tag plan_id=42", 2)
        clauses.append(f"details.tags.{key}:{_quoted(value)}")
    if args.filter:
        clauses.append(args.filter)
    return " AND ".join(clauses)


def _list(args: argparse.Namespace) -> int:
    from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

    if args.limit < 0:
        raise CliError("--limit must be >= 0", 2)
    cli = connect(args, f"{PROG} list")
    stub = cli.stub(test_service_pb2_grpc.TestServiceStub)
    query = _filter(args)
    tests: list[Any] = []
    token = ""
    while True:
        want = 1000 if args.limit == 0 else min(1000, args.limit - len(tests))
        request = test_service_pb2.ListTestsRequest(
            folder_id=args.folder_id, filter=query, page_size=want, page_token=token
        )
        reply = cli.call(stub.List, request, "TestService.List")
        tests.extend(reply.tests)
        token = reply.next_page_token
        if not token or (args.limit and len(tests) >= args.limit):
            break
    emit(
        cli.settings.format,
        [proto_data(t) for t in tests],
        lambda: (
            table(["ID", "NAME", "STATUS", "AGENT", "CREATED", "TAGS"], [_row(t) for t in tests])
            if tests
            else "no tests"
        ),
    )
    return 0


def _describe(test: Any) -> str:
    summary = test.summary
    pairs = [
        ("id", test.id),
        ("name", test.details.name),
        ("status", _status(test)),
        ("agent", summary.assigned_agent_id),
        ("created_at", _when(summary.created_at)),
        ("created_by", summary.created_by),
        ("started_at", _when(summary.started_at)),
        ("finished_at", _when(summary.finished_at)),
        ("tags", " ".join(f"{t.key}={t.value}" for t in test.details.tags)),
    ]
    if test.folder_id:
        pairs.append(("folder_id", test.folder_id))
    if summary.error:
        pairs.append(("error", summary.error))
    if summary.HasField("imbalance_point"):
        point = summary.imbalance_point
        pairs.append(("imbalance", f"{point.rps} rps at {_when(point.at)} {point.comment}"))
    return fields(pairs)


def _get_test(cli: Any, test_id: str) -> Any:
    from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

    stub = cli.stub(test_service_pb2_grpc.TestServiceStub)
    request = test_service_pb2.GetTestRequest(test_id=test_id)
    return cli.call(stub.Get, request, "TestService.Get")


def _get(args: argparse.Namespace) -> int:
    cli = connect(args, f"{PROG} get")
    test = _get_test(cli, args.test_id)
    emit(cli.settings.format, proto_data(test), lambda: _describe(test))
    return 0


def _operation(op: Any) -> dict[str, Any]:
    return proto_data(op)


def _stop(args: argparse.Namespace) -> int:
    import grpc
    from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc
    from yandex.cloud.loadtesting.api.v1.test import test_pb2
    from yandex.cloud.operation import operation_service_pb2_grpc

    from loadtest_core.client._connect import OperationTimeout, wait_operation

    if not args.timeout > 0:
        raise CliError("--timeout must be > 0", 2)
    cli = connect(args, f"{PROG} stop")
    stub = cli.stub(test_service_pb2_grpc.TestServiceStub)
    op = cli.call(
        stub.Stop, test_service_pb2.StopTestRequest(test_id=args.test_id), "TestService.Stop"
    )
    if args.no_wait:
        state = "done" if op.done else "pending"
        emit(
            cli.settings.format,
            _operation(op),
            lambda: fields([("operation", op.id), ("test", args.test_id), ("state", state)]),
        )
        return 0
    operations = cli.stub(operation_service_pb2_grpc.OperationServiceStub)
    with spinner(True) as show:
        show(f"stopping {args.test_id}")
        try:
            op = wait_operation(
                operations,
                op,
                timeout=args.timeout,
                interval=0.5,
                on_poll=lambda _: show(f"stopping {args.test_id}"),
                rpc_timeout=cli.timeout,
            )
        except grpc.RpcError as exc:
            raise cli.explain(exc, "OperationService.Get") from None
        except OperationTimeout as exc:
            raise CliError(
                f"{args.test_id} is still stopping after {args.timeout:g} s (operation "
                f"{exc.operation.id}); the agent stops it at its next poll. "
                f"Check with: loadtest-core test get {args.test_id}",
                EXIT_TIMEOUT,
            ) from None
    if op.HasField("error"):
        raise CliError(f"stop of {args.test_id} failed: {op.error.message}", EXIT_ERROR)
    test = test_pb2.Test()
    op.response.Unpack(test)
    emit(cli.settings.format, proto_data(test), lambda: _describe(test))
    return 0


def _wait(args: argparse.Namespace) -> int:
    import grpc
    from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

    if not args.timeout > 0 or not args.interval > 0:
        raise CliError("--timeout and --interval must be > 0", 2)
    cli = connect(args, f"{PROG} wait")
    stub = cli.stub(test_service_pb2_grpc.TestServiceStub)
    request = test_service_pb2.GetTestRequest(test_id=args.test_id)
    deadline = time.monotonic() + args.timeout
    test = None
    status = "unknown"
    with spinner(True) as show:
        while True:
            try:
                test = stub.Get(request, timeout=cli.timeout)
                status = _status(test)
            except grpc.RpcError as exc:
                code = exc.code()
                if test is not None and code is grpc.StatusCode.NOT_FOUND:
                    status = "GONE"  # deleted while we waited
                    break
                if test is None or code is not grpc.StatusCode.UNAVAILABLE:
                    raise cli.explain(exc, "TestService.Get") from None
                status = "unreachable"  # a restart of serve: keep waiting until the deadline
            show(f"{args.test_id}: {status}")
            if status in FINAL:
                break
            if time.monotonic() >= deadline:
                raise CliError(
                    f"{args.test_id} is still {status} after {args.timeout:g} s", EXIT_TIMEOUT
                )
            time.sleep(max(0.0, min(args.interval, deadline - time.monotonic())))
    if status == "GONE":
        emit(
            cli.settings.format,
            {"id": args.test_id, "deleted": True},
            lambda: f"{args.test_id} was deleted",
        )
    else:
        emit(cli.settings.format, proto_data(test), lambda: _describe(test))
    return EXIT[status]


def _delete(args: argparse.Namespace) -> int:
    from yandex.cloud.loadtesting.api.v1 import test_service_pb2, test_service_pb2_grpc

    cli = connect(args, f"{PROG} delete")
    stub = cli.stub(test_service_pb2_grpc.TestServiceStub)
    op = cli.call(
        stub.Delete, test_service_pb2.DeleteTestRequest(test_id=args.test_id), "TestService.Delete"
    )
    emit(cli.settings.format, _operation(op), lambda: f"deleted {args.test_id}")
    return 0


def _uploads(args: argparse.Namespace) -> int:
    return print_uploads(args, f"{PROG} uploads", test_id=args.test_id, kind=args.kind)


_ACTIONS = {
    "list": _list,
    "get": _get,
    "stop": _stop,
    "wait": _wait,
    "delete": _delete,
    "uploads": _uploads,
}
