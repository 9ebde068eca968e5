"""Testinium-style batch stop over HTTP (extra ``http``): ``create_app``, the plan resolver,
and the edge's limits (``HttpLimits``, enforced by ``uvicorn_config``'s protocol)."""

from __future__ import annotations

from loadtest_core.http._app import PlanResolver, TagPlanResolver, create_app
from loadtest_core.http._limits import HttpLimits, uvicorn_config

__all__ = ["HttpLimits", "PlanResolver", "TagPlanResolver", "create_app", "uvicorn_config"]
