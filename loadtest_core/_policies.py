"""Every tunable of the engine, validated once (docs/embedding.md lists them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Policies"]


class Policies(BaseModel):
    """Every tunable of the engine, validated once. Times are seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lost_after: float = Field(30.0, gt=0, description="silence that makes an active test LOST")
    lost_expiry: float | None = Field(
        None, gt=0, description="time in LOST before FAILED; None keeps LOST forever"
    )
    lease: float | None = Field(
        None,
        gt=0,
        description="a hand-out lapses after this long with no sign of its agent; None: lost_after",
    )
    contact_every: float | None = Field(
        None,
        ge=0,
        description="a contact is written when the stored one is this old; None: lost_after / 10",
    )
    deletion_delay: float = Field(0.0, ge=0, description="DELETING to removed, at a tick")
    run_in: float = Field(0.0, ge=0, le=1.0, description="RUN_IN delay given to a WAITING agent")
    signal_wait: float = Field(1.0, gt=0, description="poll interval suggested to agents")
    cas_retries: int = Field(8, ge=1, le=1000)
    default_page_size: int = Field(100, ge=1, le=1000)
    max_page_size: int = Field(1000, ge=1, le=10000)
    log_rejections: bool = Field(True, description="record stale/conflict events in the log")
    ready_keeps_jobs: bool = Field(
        False,
        description="a READY_FOR_TEST heartbeat keeps the agent's active tests alive until it "
        "asks JobService.Get for a new job (the real agent's post-run upload drain)",
    )
    upload_limit: int = Field(
        64 << 20, ge=0, description="bytes of uploads stored per test and kind; more is refused"
    )
    agent_events_kept: int = Field(
        10_000, ge=0, description="event logs naming no held test: the newest kept per agent"
    )
    config_limit: int = Field(1 << 20, ge=1, description="bytes of YAML in one config")

    @model_validator(mode="after")
    def _consistent(self) -> Policies:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size exceeds max_page_size")
        if self.contact_every is not None and self.contact_every >= self.lost_after:
            raise ValueError("contact_every must be shorter than lost_after")
        return self

    @property
    def lease_after(self) -> float:
        return self.lost_after if self.lease is None else self.lease

    @property
    def contact_interval(self) -> float:
        """``contact_every``, defaulting to a tenth of ``lost_after``."""
        return self.lost_after / 10 if self.contact_every is None else self.contact_every
