"""`cg.cost.batch.recorded`: what one committed ledger batch recorded, per UTC day, for whoever only needs to know
which figures changed (the dashboard's live feed) and would otherwise read every `cg.cost.recorded`.

Core NATS, not a stream: a hint to refresh, published once after each commit that recorded new usage and never
again; a subscriber that misses one (disconnected, or not running) loses nothing but a refresh. JSON, money as
decimal strings (USD); documented in docs/ledger.md.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from cg_common.money import Money

# A newer ledger may add fields; readers ignore what they do not know rather than drop the notice.
_NOTICE = ConfigDict(extra="ignore", frozen=True)


class DayCost(BaseModel):
    """The usage a batch recorded on one UTC day: events (priced or not) and the cost of the priced ones."""

    model_config = _NOTICE

    day: date
    events: int = Field(ge=1)
    cost: Money


class CostBatchRecorded(BaseModel):
    """One committed batch: the days it touched, oldest first, and its totals (the sums over those days)."""

    model_config = _NOTICE

    days: tuple[DayCost, ...] = Field(min_length=1)
    events: int = Field(ge=1)
    cost: Money
