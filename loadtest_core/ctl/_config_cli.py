"""``loadtest-core config create|get|list|delete`` over the Yandex ``api.v1.ConfigService``.

Configs are the load generator configurations a test names by ``config_id``
(spec §8); the server side is ``ConfigService`` (Create from ``yaml_string``,
Get, List, Delete).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
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

DESCRIPTION = "Manage the load generator configs of a running loadtest-core serve."
USAGE = "{create,get,list,delete} [options]"
PROG = "loadtest-core config"
MAX_CONFIG = 1 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION", prog=PROG)
    create = add_common(sub, "create", "store a load generator config from a YAML file", "FILE")
    create.add_argument("file", metavar="FILE", help="the YAML config ('-' reads stdin)")
    create.add_argument("--name", default="", help="a name for the config (default: the file's)")
    create.add_argument("--folder-id", default="", help="the folder to store it in")
    get = add_common(sub, "get", "show one config, its YAML included", "CONFIG_ID")
    get.add_argument("config_id", metavar="CONFIG_ID")
    ls = add_common(sub, "list", "list stored configs")
    ls.add_argument("--folder-id", default="", help="only configs of this folder")
    ls.add_argument(
        "--limit", type=int, default=100, help="at most this many configs (default 100; 0: all)"
    )
    delete = add_common(sub, "delete", "delete a config", "CONFIG_ID")
    delete.add_argument("config_id", metavar="CONFIG_ID")
    for child in (create, get, ls, delete):
        child.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return run_command(f"{PROG} {args.action}", _ACTIONS[args.action], args)


def _when(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return ""
    return datetime.fromtimestamp(ts.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(path: str) -> str:
    import sys

    try:
        raw = sys.stdin.buffer.read(MAX_CONFIG + 1) if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}", 2) from None
    if len(raw) > MAX_CONFIG:
        raise CliError(f"{path}: larger than {MAX_CONFIG} bytes", 2)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text", 2) from None
    if not text.strip():
        raise CliError(f"{path}: the file is empty", 2)
    return text


def _create(args: argparse.Namespace) -> int:
    from yandex.cloud.loadtesting.api.v1 import config_service_pb2, config_service_pb2_grpc
    from yandex.cloud.loadtesting.api.v1.config import config_pb2

    text = _read(args.file)
    name = args.name or ("" if args.file == "-" else Path(args.file).stem)
    cli = connect(args, f"{PROG} create")
    stub = cli.stub(config_service_pb2_grpc.ConfigServiceStub)
    request = config_service_pb2.CreateConfigRequest(
        folder_id=args.folder_id, yaml_string=text, name=name
    )
    op = cli.call(stub.Create, request, "ConfigService.Create")
    if op.HasField("error"):
        raise CliError(f"create failed: {op.error.message}")
    meta = config_service_pb2.CreateConfigMetadata()
    op.metadata.Unpack(meta)
    config = config_pb2.Config()
    if op.HasField("response"):
        op.response.Unpack(config)
    data = proto_data(config) if config.id else {"id": meta.config_id}
    emit(cli.settings.format, data, lambda: meta.config_id or config.id)
    return 0


def _get(args: argparse.Namespace) -> int:
    from yandex.cloud.loadtesting.api.v1 import config_service_pb2, config_service_pb2_grpc

    cli = connect(args, f"{PROG} get")
    stub = cli.stub(config_service_pb2_grpc.ConfigServiceStub)
    request = config_service_pb2.GetConfigRequest(config_id=args.config_id)
    config = cli.call(stub.Get, request, "ConfigService.Get")
    pairs = [
        ("id", config.id),
        ("name", config.name),
        ("folder_id", config.folder_id),
        ("created_at", _when(config.created_at)),
        ("created_by", config.created_by),
    ]
    emit(
        cli.settings.format,
        proto_data(config),
        lambda: fields(pairs) + "\n---\n" + config.yaml_string.rstrip("\n"),
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    from yandex.cloud.loadtesting.api.v1 import config_service_pb2, config_service_pb2_grpc

    if args.limit < 0:
        raise CliError("--limit must be >= 0", 2)
    cli = connect(args, f"{PROG} list")
    stub = cli.stub(config_service_pb2_grpc.ConfigServiceStub)
    configs: list[Any] = []
    token = ""
    while True:
        want = 1000 if args.limit == 0 else min(1000, args.limit - len(configs))
        request = config_service_pb2.ListConfigsRequest(
            folder_id=args.folder_id, page_size=want, page_token=token
        )
        reply = cli.call(stub.List, request, "ConfigService.List")
        configs.extend(reply.configs)
        token = reply.next_page_token
        if not token or (args.limit and len(configs) >= args.limit):
            break
    emit(
        cli.settings.format,
        [proto_data(c) for c in configs],
        lambda: (
            table(
                ["ID", "NAME", "CREATED", "CREATED BY"],
                [[c.id, c.name, _when(c.created_at), c.created_by] for c in configs],
            )
            if configs
            else "no configs"
        ),
    )
    return 0


def _delete(args: argparse.Namespace) -> int:
    from yandex.cloud.loadtesting.api.v1 import config_service_pb2, config_service_pb2_grpc

    cli = connect(args, f"{PROG} delete")
    stub = cli.stub(config_service_pb2_grpc.ConfigServiceStub)
    request = config_service_pb2.DeleteConfigRequest(config_id=args.config_id)
    op = cli.call(stub.Delete, request, "ConfigService.Delete")
    if op.HasField("error"):
        raise CliError(f"delete failed: {op.error.message}")
    emit(cli.settings.format, proto_data(op), lambda: f"deleted {args.config_id}")
    return 0


_ACTIONS = {"create": _create, "get": _get, "list": _list, "delete": _delete}
