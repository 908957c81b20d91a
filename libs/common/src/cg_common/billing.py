"""Billed costs: what a provider says it charged, per day (and project, line item), beside what the ledger computed
from usage. The prober pulls them from OpenAI's `/organization/costs` with admin keys; the ledger stores them.

One `BilledCost` per message on `cg.billing.openai.costs` (stream `CG_BILLING`). A day's figure may still be revised by
the provider, so the newest message for (source, day, project, line item) wins; the same message twice changes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cg_common.subjects import BILLING

OPENAI_BILLED_COSTS = f"{BILLING}.openai.costs"


class BilledCost(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, max_length=512)  # //openai.com/organization/<admin key fingerprint>
    day: date  # the UTC day billed
    project_id: str = Field(default="", max_length=200)  # "" when the report is not per project
    line_item: str = Field(default="", max_length=200)
    amount: Decimal = Field(max_digits=30, decimal_places=12)
    currency: str = Field(pattern=r"^[a-z]{3}$")
    pulled_at: AwareDatetime

    def msg_id(self) -> str:
        """The same for every pull of the same figure, so JetStream drops a quick re-send."""
        identity = "\x00".join([self.source, self.day.isoformat(), self.project_id, self.line_item, str(self.amount)])
        return "billed:" + hashlib.sha256(identity.encode()).hexdigest()
