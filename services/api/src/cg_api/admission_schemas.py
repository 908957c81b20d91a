"""Request and answer of POST /budgets/admit and `cg.budget.admit` (contract section 9): the same JSON either way."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from cg_api.budget_schemas import Amount
from cg_api.schemas import StrictBody
from cg_api.usage_schemas import UtcDatetime
from cg_common.money import Money
from cg_common.usage_event import Attributes, KeyFingerprint, KeyId, Model, Provider

MAX_TTL_SECS = 86_400
TokenLimit = Annotated[int, Field(ge=0, le=10**9)]


class MaxTokens(StrictBody):
    input: TokenLimit = 0
    output: TokenLimit = 0


class AdmitRequest(StrictBody):
    """What the caller is about to spend on: described as its usage event will be, so that the same budgets cover
    both. The amount is `estimated_cost`, or `max_tokens` priced like an event of that model now."""

    source: Annotated[str, Field(min_length=1, max_length=512)]
    model: Model
    provider: Provider = "openai"
    key_id: KeyId | None = None
    key_fingerprint: KeyFingerprint | None = None
    attributes: Attributes = Field(default_factory=dict)
    estimated_cost: Amount | None = None
    max_tokens: MaxTokens | None = None
    ttl_secs: int = Field(default=300, ge=1, le=MAX_TTL_SECS, description="Released unsettled after this.")

    @model_validator(mode="after")
    def _one_amount(self) -> AdmitRequest:
        if (self.estimated_cost is None) == (self.max_tokens is None):
            raise ValueError("give estimated_cost or max_tokens, one of them")
        if self.key_id is not None and self.key_fingerprint is not None:
            raise ValueError("give key_id or key_fingerprint, not both")
        return self


class RefusingBudget(BaseModel):
    id: int
    name: str


class AdmitOut(BaseModel):
    """Admitted: the reservation to name in the usage event (`data.reservation_id`), what it holds and until when.
    Refused: the first hard budget that cannot take it, and what it has left."""

    admitted: bool
    reservation_id: str | None = None
    amount: Money | None = None
    expires_at: UtcDatetime | None = None
    budget: RefusingBudget | None = None
    remaining: Money | None = None
