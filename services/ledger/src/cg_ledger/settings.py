"""The ledger's settings: the shared ones plus its health port, consumer tuning and the dimensions it rolls up."""

from __future__ import annotations

from pydantic import Field

from cg_common.dimensions import DimensionSettings
from cg_common.settings import CommonSettings


class LedgerSettings(CommonSettings, DimensionSettings):
    ledger_port: int = Field(default=5003, ge=1, le=65535)  # health and Prometheus metrics
    ledger_batch_size: int = Field(default=2000, ge=1, le=10_000)
    # Batches one replica handles at once: while one waits for PostgreSQL or JetStream, another is parsed.
    ledger_max_in_flight: int = Field(default=4, ge=1, le=16)
    # How often pending roll-up sums are folded into the roll-ups (summaries are exact either way).
    ledger_fold_interval_secs: float = Field(default=1.0, gt=0, le=300)
