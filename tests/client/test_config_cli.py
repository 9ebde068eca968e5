"""``loadtest-core config ...``: the wire calls it makes, and a round trip against serve.

The first tests run against a minimal in-test servicer of the generated
``ConfigService`` on a real loopback gRPC server: they check the requests the
CLI sends and how it prints the replies. The last ones run against a real
``serve`` process, whose ``ConfigService`` validates and stores the configs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from yandex.cloud.loadtesting.api.v1 import config_service_pb2, config_service_pb2_grpc
from yandex.cloud.loadtesting.api.v1.config import config_pb2
from yandex.cloud.operation import operation_pb2

from loadtest_core.cli import main
from tests.client.conftest import World
from tests.serving import USER


class Configs(config_service_pb2_grpc.ConfigServiceServicer):
    """Configs in a dict; records the authorization each call carried."""

    def __init__(self) -> None:
        self.configs: dict[str, Any] = {}
        self.tokens: list[str] = []

    def _seen(self, context: Any) -> None:
        self.tokens.append(dict(context.invocation_metadata()).get("authorization", ""))

    def Create(self, request: Any, context: Any) -> Any:
        self._seen(context)
        config = config_pb2.Config(
            id=f"cfg-{len(self.configs) + 1}",
            name=request.name,
            folder_id=request.folder_id,
            yaml_string=request.yaml_string,
            created_by="token:test",
        )
        self.configs[config.id] = config
        op = operation_pb2.Operation(id="op-1", done=True)
        op.metadata.Pack(config_service_pb2.CreateConfigMetadata(config_id=config.id))
        op.response.Pack(config)
        return op

    def Get(self, request: Any, context: Any) -> Any:
        self._seen(context)
        if request.config_id not in self.configs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"config {request.config_id} not found")
        return self.configs[request.config_id]

    def List(self, request: Any, context: Any) -> Any:
        self._seen(context)
        ids = sorted(self.configs)
        start = int(request.page_token or 0)
        page = ids[start : start + request.page_size]
        token = str(start + len(page)) if start + len(page) < len(ids) else ""
        return config_service_pb2.ListConfigsResponse(
            configs=[self.configs[i] for i in page], next_page_token=token
        )

    def Delete(self, request: Any, context: Any) -> Any:
        self._seen(context)
        self.configs.pop(request.config_id)
        op = operation_pb2.Operation(id="op-2", done=True)
        op.metadata.Pack(config_service_pb2.DeleteConfigMetadata(config_id=request.config_id))
        op.response.Pack(empty_pb2.Empty())
        return op


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Configs]:
    service = Configs()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    config_service_pb2_grpc.add_ConfigServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("LOADTEST_CORE_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("LOADTEST_CORE_TOKEN", USER)
    monkeypatch.setenv("LOADTEST_CORE_CONFIG", str(tmp_path / "absent.toml"))
    try:
        yield service
    finally:
        server.stop(None)


def test_create_get_list_delete(
    configs: Configs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """create sends the file's YAML and name; get prints it; list pages; delete removes it."""
    source = tmp_path / "pandora.yaml"
    source.write_text("pools:\n  - id: main\n")
    assert main(["config", "create", str(source)]) == 0
    config_id = capsys.readouterr().out.strip()
    assert configs.configs[config_id].yaml_string == "pools:\n  - id: main\n"
    assert configs.configs[config_id].name == "pandora"
    assert main(["config", "create", str(source), "--name", "second", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "second"
    assert main(["config", "get", config_id]) == 0
    out = capsys.readouterr().out
    assert f"id:         {config_id}" in out and out.endswith("---\npools:\n  - id: main\n")
    assert main(["config", "list", "--limit", "0"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[0] for r in rows] == ["ID", "cfg-1", "cfg-2"]
    assert main(["config", "list", "--limit", "1", "--format", "json"]) == 0
    assert [c["id"] for c in json.loads(capsys.readouterr().out)] == ["cfg-1"]
    assert main(["config", "delete", config_id]) == 0
    assert capsys.readouterr().out.strip() == f"deleted {config_id}"
    assert main(["config", "get", config_id]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
    assert set(configs.tokens) == {f"Bearer {USER}"}


def test_unreadable_files_are_usage_errors(
    configs: Configs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing, empty or binary file exits 2 before any call."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("  \n")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe")
    for path, message in (
        (tmp_path / "missing.yaml", "No such file"),
        (empty, "the file is empty"),
        (binary, "not UTF-8"),
    ):
        assert main(["config", "create", str(path)]) == 2
        assert message in capsys.readouterr().err
    assert configs.tokens == []


def test_a_round_trip_against_serve(
    world: World, cli: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """serve stores the config, lists and shows it, refuses bad YAML by line, deletes it."""
    source = tmp_path / "bfg.yaml"
    source.write_text("bfg:\n  enabled: true\nconsole: {enabled: false}\n")
    assert cli("config", "create", str(source)) == 0
    config_id = capsys.readouterr().out.strip()
    assert cli("config", "get", config_id) == 0
    out = capsys.readouterr().out
    assert (
        "name:" in out
        and "bfg" in out
        and out.endswith("---\nbfg:\n  enabled: true\nconsole: {enabled: false}\n")
    )
    assert cli("config", "list", "--limit", "0", "--format", "json") == 0
    assert config_id in [c["id"] for c in json.loads(capsys.readouterr().out)]
    bad = tmp_path / "bad.yaml"
    bad.write_text("bfg: {}\nconsole: off\n")
    assert cli("config", "create", str(bad)) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "line 2" in err
    assert cli("config", "delete", config_id) == 0
    assert capsys.readouterr().out.strip() == f"deleted {config_id}"
    assert cli("config", "get", config_id) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
