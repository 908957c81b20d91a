"""The ledger's settings: the shared ones plus its health port and consumer tuning."""

from __future__ import annotations

from pydantic import Field

from cg_common.settings import CommonSettings


class LedgerSettings(CommonSettings):
    ledger_port: int = Field(default=5003, ge=1, le=65535)  # health and Prometheus metrics
    ledger_batch_size: int = Field(default=1000, ge=1, le=10_000)
    # How long a delivered message may stay unacknowledged before JetStream gives it to another replica.
    ledger_ack_wait_secs: float = Field(default=30.0, ge=1, le=3600)
    ledger_consumer: str = Field(default="ledger", pattern=r"^[A-Za-z0-9_-]{1,64}$")
