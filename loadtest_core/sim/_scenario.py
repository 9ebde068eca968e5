"""Scenarios: what to simulate, validated by pydantic, from a YAML/TOML file or flags."""

from __future__ import annotations

import math
import random
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loadtest_core import InvalidArgument

__all__ = ["Distribution", "Faults", "Scenario", "load_scenario"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Distribution(_Strict):
    """A duration in seconds: fixed, uniform(low, high), exponential(mean), lognormal."""

    kind: Literal["fixed", "uniform", "exponential", "lognormal"] = "fixed"
    value: float = Field(1.0, ge=0)
    low: float = Field(0.0, ge=0)
    high: float = Field(1.0, ge=0)
    mean: float = Field(1.0, gt=0)
    sigma: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _range(self) -> Distribution:
        if self.kind == "uniform" and self.high < self.low:
            raise ValueError("uniform needs low <= high")
        return self

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.value
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "exponential":
            return rng.expovariate(1.0 / self.mean)
        mu = math.log(self.mean) - self.sigma**2 / 2
        return rng.lognormvariate(mu, self.sigma)


def _fixed(v: float) -> Distribution:
    return Distribution(kind="fixed", value=v)


class Stages(_Strict):
    initiated: Distribution = _fixed(2.0)
    preparing: Distribution = _fixed(5.0)
    waiting: Distribution = _fixed(0.0)
    running: Distribution = Distribution(kind="uniform", low=30.0, high=120.0)
    finishing: Distribution = _fixed(2.0)
    post_processing: Distribution = _fixed(3.0)
    shutdown: Distribution = Distribution(kind="uniform", low=1.0, high=20.0)


class Faults(_Strict):
    """Per-test probabilities of each fault, and how long partitions last."""

    crash: float = Field(0.0, ge=0, le=1)
    partition: float = Field(0.0, ge=0, le=1)
    partition_duration: Distribution = Distribution(kind="uniform", low=5.0, high=90.0)
    slow: float = Field(0.0, ge=0, le=1)
    slow_factor: float = Field(3.0, ge=1)
    duplicate: float = Field(0.0, ge=0, le=1)
    reorder: float = Field(0.0, ge=0, le=1)
    failure: float = Field(0.0, ge=0, le=1)


class Scenario(_Strict):
    """Everything a run depends on; the same scenario and seed give the same event log."""

    tests: int = Field(100, ge=1, le=100_000_000)
    agents: int = Field(10, ge=1, le=10_000_000)
    seed: int = 0
    arrival_rate: float | None = Field(
        None, gt=0, description="tests created per second; None creates all at t=0"
    )
    time_limit: float = Field(90.0, gt=0, description="RUNNING longer than this AUTOSTOPs")
    stop_probability: float = Field(0.1, ge=0, le=1, description="share of tests a user stops")
    stop_after: Distribution = Distribution(kind="uniform", low=0.0, high=60.0)
    stop_at: tuple[tuple[float, int], ...] = Field(
        (), description="explicit (time, test index) stops, on top of stop_probability"
    )
    request_interval: float = Field(1.0, gt=0)
    reporter_interval: float = Field(10.0, gt=0)
    lost_after: float = Field(30.0, gt=0)
    lost_expiry: float | None = Field(None, gt=0)
    contact_every: float = Field(
        0.0,
        ge=0,
        description="engine contact_every: 0 (the default here) records every poll, so "
        "LOST comes exactly lost_after after the last contact the simulated agent made",
    )
    tick_interval: float | None = Field(
        None,
        ge=0,
        description="engine ticker period; None: lost_after / 4 as `serve`; 0: exact deadlines",
    )
    horizon: float = Field(7 * 86400.0, gt=0, description="simulated seconds before giving up")
    full_polling: bool = Field(False, description="simulate every poll (slow; for checks)")
    shard_size: int = Field(
        1000,
        ge=1,
        description="tests per shard: an independent engine with its share of the agents",
    )
    stages: Stages = Stages()
    faults: Faults = Faults()

    def with_overrides(self, **changes: Any) -> Scenario:
        data = self.model_dump()
        data.update(changes)
        return Scenario.model_validate(data)


def _field_path(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"])
    return path, err["msg"].removeprefix("Value error, ")


def load_scenario(path: str | Path) -> Scenario:
    """Read a ``.yaml``/``.yml`` or ``.toml`` scenario; InvalidArgument names the bad field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(
            f"scenario: cannot read {p}: {exc.strerror}", field="scenario"
        ) from None
    try:
        if p.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise InvalidArgument(
                f"scenario: {p.name} is neither .toml nor .yaml", field="scenario"
            )
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise InvalidArgument(
            f"scenario: {p.name} does not parse: {exc}", field="scenario"
        ) from None
    except Exception as exc:  # yaml.YAMLError without importing yaml at module level
        if type(exc).__module__.startswith("yaml"):
            raise InvalidArgument(
                f"scenario: {p.name} does not parse: {exc}", field="scenario"
            ) from None
        raise
    if not isinstance(data, dict):
        raise InvalidArgument("scenario: the file must hold a mapping of fields", field="scenario")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        where, message = _field_path(exc)
        raise InvalidArgument(f"scenario: {where}: {message}", field=where) from None
