"""Deterministic simulation of agents and users over the real engine (extra ``sim``)."""

from __future__ import annotations

from loadtest_core.sim._scenario import Distribution, Faults, Scenario, load_scenario
from loadtest_core.sim._sim import Metrics, Simulator, simulate

__all__ = [
    "Distribution",
    "Faults",
    "Metrics",
    "Scenario",
    "Simulator",
    "load_scenario",
    "simulate",
]
