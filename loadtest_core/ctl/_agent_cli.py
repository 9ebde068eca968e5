"""``loadtest-core agent list|get|events`` over the Yandex ``api.v1.AgentService``.

``events`` reads an agent's own event logs (those that named no test it held)
through serve's ``loadtest_core.v1.UploadService`` (docs/grpc.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from loadtest_core.ctl._common import (
    CliError,
    add_common,
    connect,
    emit,
    fields,
    proto_data,
    run_command,
    table,
)
from loadtest_core.ctl._uploads import add_upload_options, print_uploads

DESCRIPTION = "List or show the agents registered with a running loadtest-core serve."
USAGE = "{list,get,events} [options]"
PROG = "loadtest-core agent"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION", prog=PROG)
    ls = add_common(sub, "list", "list registered agents by id")
    ls.add_argument("--folder-id", default="", help="only agents of this folder")
    ls.add_argument(
        "--limit", type=int, default=100, help="at most this many agents (default 100; 0: all)"
    )
    get = add_common(sub, "get", "show one agent", "AGENT_ID")
    get.add_argument("agent_id", metavar="AGENT_ID")
    events = add_common(
        sub, "events", "print an agent's event logs that named no test it held", "AGENT_ID"
    )
    events.add_argument("agent_id", metavar="AGENT_ID")
    add_upload_options(events, kinds=False)
    for child in (ls, get, events):
        child.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return run_command(f"{PROG} {args.action}", _ACTIONS[args.action], args)


def _labels(agent: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(agent.labels.items()))


def _list(args: argparse.Namespace) -> int:
    from yandex.cloud.loadtesting.api.v1 import agent_service_pb2, agent_service_pb2_grpc

    if args.limit < 0:
        raise CliError("--limit must be >= 0", 2)
    cli = connect(args, f"{PROG} list")
    stub = cli.stub(agent_service_pb2_grpc.AgentServiceStub)
    agents: list[Any] = []
    token = ""
    while True:
        want = 1000 if args.limit == 0 else min(1000, args.limit - len(agents))
        request = agent_service_pb2.ListAgentsRequest(
            folder_id=args.folder_id, page_size=want, page_token=token
        )
        reply = cli.call(stub.List, request, "AgentService.List")
        agents.extend(reply.agents)
        token = reply.next_page_token
        if not token or (args.limit and len(agents) >= args.limit):
            break
    emit(
        cli.settings.format,
        [proto_data(a) for a in agents],
        lambda: (
            table(
                ["ID", "NAME", "FOLDER", "LABELS"],
                [[a.id, a.name, a.folder_id, _labels(a)] for a in agents],
            )
            if agents
            else "no agents"
        ),
    )
    return 0


def _get(args: argparse.Namespace) -> int:
    from yandex.cloud.loadtesting.api.v1 import agent_service_pb2, agent_service_pb2_grpc

    cli = connect(args, f"{PROG} get")
    stub = cli.stub(agent_service_pb2_grpc.AgentServiceStub)
    request = agent_service_pb2.GetAgentRequest(agent_id=args.agent_id)
    agent = cli.call(stub.Get, request, "AgentService.Get")
    pairs = [("id", agent.id), ("name", agent.name), ("folder_id", agent.folder_id)]
    pairs.append(("labels", _labels(agent)))
    emit(cli.settings.format, proto_data(agent), lambda: fields(pairs))
    return 0


def _events(args: argparse.Namespace) -> int:
    return print_uploads(args, f"{PROG} events", agent_id=args.agent_id, kind="events")


_ACTIONS = {"list": _list, "get": _get, "events": _events}
