"""The scheduler's settings: the shared ones plus its health port."""

from __future__ import annotations

from pydantic import Field

from cg_common.settings import CommonSettings


class SchedulerSettings(CommonSettings):
    scheduler_port: int = Field(default=5004, ge=1, le=65535)  # health and Prometheus metrics
