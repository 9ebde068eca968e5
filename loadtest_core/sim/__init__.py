"""Deterministic simulation of agents and users over the real engine (extra ``sim``)."""

from __future__ import annotations

from loadtest_core.sim._scenario import Distribution, Faults, Scenario, load_scenario
from loadtest_core.sim._sim import (
    Interrupted,
    Metrics,
    Shard,
    Simulator,
    plan_shards,
    simulate,
)

__all__ = [
    "Distribution",
    "Faults",
    "Interrupted",
    "Metrics",
    "Scenario",
    "Shard",
    "Simulator",
    "load_scenario",
    "plan_shards",
    "simulate",
]
