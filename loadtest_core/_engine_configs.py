"""Load generator configs (``ConfigService``) and the config a job's test names."""

from __future__ import annotations

import hashlib
from typing import Any

from loadtest_core._configs import ConfigRecord, check_name, parse_config
from loadtest_core._engine_core import EngineCore
from loadtest_core._errors import Aborted, InvalidArgument, NotFound
from loadtest_core._jobs import Job, check_id
from loadtest_core._models import TestSpec, check_text
from loadtest_core._paging import decode_token, encode_token
from loadtest_core._store import Store, VersionConflict


class ConfigCommands(EngineCore):
    """Configs live in the store beside the tests that name them."""

    def create_config(
        self, yaml_string: str, *, name: str = "", folder_id: str = "", principal: str = ""
    ) -> ConfigRecord:
        """Store a load generator config (YAML); ``InvalidArgument`` names the line of a bad one."""
        check_name(name, "name")
        check_text(principal, "principal")
        check_name(folder_id, "folder_id", 128)
        _, body = parse_config(yaml_string, limit=self.policies.config_limit)
        config = ConfigRecord(
            self._ids("config"), folder_id, name, yaml_string, body, self.now(), principal
        )
        try:
            self.store.put_config(config)
        except VersionConflict:
            raise Aborted(f"config {config.id}: the id is already taken") from None
        return config

    def get_config(self, config_id: str) -> ConfigRecord:
        check_id(config_id, "config_id")
        config = self.store.get_config(config_id)
        if config is None or config.deleted_at is not None:
            raise NotFound(f"config {config_id} not found")
        return config

    def list_configs(
        self, *, folder_id: str | None = None, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[ConfigRecord], str]:
        """One page of configs, newest first, and the next page's token ("" at the end)."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 0:
            raise InvalidArgument("page_size: must be a non-negative integer", field="page_size")
        size = min(page_size or self.policies.default_page_size, self.policies.max_page_size)
        fingerprint = hashlib.sha256(f"configs\x00{folder_id}".encode()).hexdigest()[:16]
        after = decode_token(page_token, fingerprint) if page_token else None
        page = self.store.list_configs(folder_id, after, size + 1)
        more = len(page) > size
        page = page[:size]
        token = encode_token((page[-1].created_at, page[-1].id), fingerprint) if more else ""
        return page, token

    def delete_config(self, config_id: str) -> ConfigRecord:
        """Hide a config from Get, List and new tests; tests that named it still get it."""
        config = self.get_config(config_id)
        if not self.store.delete_config(config_id, self.now()):
            raise NotFound(f"config {config_id} not found")
        return config

    def job_config(self, job: Job) -> dict[str, Any]:
        """The config a job's test names, as the agent's generator receives it ({} for none)."""
        configurations = job.test.configurations
        config_id = configurations[0].config_id if configurations else ""
        found = self.store.get_config(config_id) if config_id else None
        return {} if found is None else found.mapping()


def check_config(store: Store, spec: TestSpec) -> None:
    """A new test may name only a config that exists and is not deleted."""
    config_id = spec.configurations[0].config_id
    if config_id:
        found = store.get_config(config_id)
        if found is None or found.deleted_at is not None:
            raise NotFound(f"configurations[0].config_id: config {config_id} not found")
