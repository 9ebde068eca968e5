"""Reading agent uploads back: ``test uploads TEST_ID`` and ``agent events AGENT_ID``.

Pages through ``loadtest_core.v1.UploadService.List``. The default output is
one JSON line per item, ``{"seq", "received_at", "agent_id", "kind", "data"}``
(``data`` is the agent's ``Trail``, ``MetricChunk`` or ``EventLog`` as proto3
JSON), so it pipes into ``jq``; ``--format json`` / ``yaml`` print one list.
``--after SEQ`` resumes after the last item you have. For a test, a summary
line on stderr gives the items and bytes stored and the limit.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from loadtest_core.ctl._common import CliError, connect, emit

__all__ = ["add_upload_options", "print_uploads"]

KINDS = ("trails", "metrics", "events")


def add_upload_options(p: argparse.ArgumentParser, *, kinds: bool) -> None:
    if kinds:
        p.add_argument(
            "--kind",
            choices=KINDS,
            default="trails",
            help="trails (default): per-second results; metrics: monitoring; events: agent logs",
        )
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="only items after this seq")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="at most N items (0: all)")


def _line(item: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return {
        "seq": item.seq,
        "received_at": item.received_at.ToJsonString(),
        "agent_id": item.agent_id,
        "kind": item.kind,
        "data": json_format.MessageToDict(item.data),
    }


def print_uploads(
    args: argparse.Namespace, prog: str, *, kind: str, test_id: str = "", agent_id: str = ""
) -> int:
    from loadtest_core.grpc import ListUploadsRequest, UploadServiceStub

    if args.after < 0 or args.limit < 0:
        raise CliError("--after and --limit must be >= 0", 2)
    cli = connect(args, prog)
    stub = cli.stub(UploadServiceStub)
    items: list[dict[str, Any]] = []
    after = args.after
    reply = None
    streaming = cli.settings.format == "table"
    while not args.limit or len(items) < args.limit:
        want = 1000 if not args.limit else min(1000, args.limit - len(items))
        request = ListUploadsRequest(
            test_id=test_id, agent_id=agent_id, kind=kind, after=after, page_size=want
        )
        reply = cli.call(stub.List, request, "UploadService.List")
        page = [_line(item) for item in reply.uploads]
        if streaming:
            for line in page:
                sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        items += page
        if not page:
            break
        after = reply.next_after
    if not streaming:
        emit(cli.settings.format, items, lambda: "")
    if reply is not None and test_id:
        print(
            f"{kind}: {reply.stored_items} stored, {reply.stored_bytes} of "
            f"{reply.limit_bytes} bytes",
            file=sys.stderr,
        )
    return 0
