"""Admission (contract section 9): the amount a request may cost, the key it names, and the decision, shared by
POST /budgets/admit and the `cg.budget.admit` request-reply."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache

from cg_api.admission_batcher import AdmissionBatcher
from cg_api.admission_schemas import AdmitOut, AdmitRequest
from cg_common.pricing import Pricer

STORED_PLACES = Decimal("1e-12")  # numeric(30, 12): what is held is what was said


class UnpricedError(ValueError):
    """`max_tokens` given for a model the price data does not know: the caller must say what it may cost."""


@cache
def _pricer() -> Pricer:
    return Pricer()


def amount_of(request: AdmitRequest, now: datetime) -> Decimal:
    if request.estimated_cost is not None:
        return request.estimated_cost
    assert request.max_tokens is not None  # noqa: S101 - AdmitRequest holds one of the two
    price = _pricer().price(
        request.provider,
        request.model,
        now,
        input_tokens=request.max_tokens.input,
        cached_input_tokens=0,
        output_tokens=request.max_tokens.output,
        requests=1,
    )
    if price.cost is None:
        raise UnpricedError(
            f"no price is known for {request.provider} model {request.model!r}; give estimated_cost instead"
        )
    return price.cost.quantize(STORED_PLACES)


async def admit(batcher: AdmissionBatcher, request: AdmitRequest) -> AdmitOut:
    """Reserve the request's amount in every hard budget covering it, or refuse, atomically (PostgreSQL decides)."""
    amount = amount_of(request, datetime.now(UTC))
    reservation_id = str(uuid.uuid4())
    row = await batcher.admit(
        {
            "id": reservation_id,
            "key_id": request.key_id,
            "key_fingerprint": request.key_fingerprint,
            "source": request.source,
            "provider": request.provider,
            "model": request.model,
            "attributes": dict(request.attributes),
            "amount": str(amount),
            "ttl_secs": request.ttl_secs,
            "request": request.model_dump(mode="json", exclude_none=True),
        }
    )
    if not row["admitted"]:
        return AdmitOut(
            admitted=False,
            budget={"id": row["budget_id"], "name": row["budget_name"]},
            remaining=row["remaining"],
        )
    return AdmitOut(admitted=True, reservation_id=reservation_id, amount=amount, expires_at=row["expires_at"])
