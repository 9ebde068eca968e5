"""Testinium-style batch stop over HTTP (extra ``http``): ``create_app`` and the plan resolver."""

from __future__ import annotations

from loadtest_core.http._app import PlanResolver, TagPlanResolver, create_app

__all__ = ["PlanResolver", "TagPlanResolver", "create_app"]
