"""A small client for admission (docs/admission.md), for the systems that spend: ask Cost Guardian before a call,
then report the call's usage naming the reservation (which settles it), or release the reservation when the call
was not made.

    guard = AdmissionClient("http://cost-guardian:5001", token, source="//checkout/prod", unreachable="closed")
    async with guard.reserved(model="gpt-4o-mini", max_tokens={"input": 2000, "output": 500}) as reservation:
        response = await openai.chat.completions.create(...)       # raises: the reservation is released
        await guard.report_openai(reservation, response)            # settles it with what the call used

`unreachable` is the caller's choice when Cost Guardian does not answer: "closed" refuses the call (AdmissionError),
"open" lets it go ahead unguarded (a reservation without an id, whose report is an ordinary usage event).
The token needs the `admit` scope, and `ingest` to report.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import httpx

from cg_common.usage_event import USAGE_EVENT_TYPE

UNREACHABLE_STATUSES = (502, 503, 504)


class AdmissionError(Exception):
    """No admission: refused by a budget (`budget` and `remaining` say which and what it has left) or, with
    unreachable="closed", because Cost Guardian did not answer (`budget` is None)."""

    def __init__(self, message: str, *, budget: Mapping[str, Any] | None = None, remaining: str | None = None):
        super().__init__(message)
        self.budget = budget
        self.remaining = Decimal(remaining) if remaining is not None else None


@dataclass(frozen=True)
class Reservation:
    """What was admitted; `id` is None when the call went ahead unguarded (unreachable="open")."""

    id: str | None
    model: str
    provider: str
    amount: Decimal | None = None
    expires_at: str | None = None


class AdmissionClient:
    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        source: str,
        unreachable: Literal["open", "closed"] = "closed",
        timeout_secs: float = 2.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._source = source
        self._unreachable = unreachable
        self._http = client or httpx.AsyncClient(base_url=api_url, timeout=timeout_secs)
        self._headers = {"X-API-Key": token}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def admit(
        self,
        *,
        model: str,
        provider: str = "openai",
        estimated_cost: Decimal | str | None = None,
        max_tokens: Mapping[str, int] | None = None,
        attributes: Mapping[str, Any] | None = None,
        key_fingerprint: str | None = None,
        ttl_secs: int = 300,
    ) -> Reservation:
        """A reservation, or AdmissionError. Give `estimated_cost`, or `max_tokens` ({"input", "output"}) for
        Cost Guardian to price."""
        body: dict[str, Any] = {"source": self._source, "model": model, "provider": provider, "ttl_secs": ttl_secs}
        if estimated_cost is not None:
            body["estimated_cost"] = str(estimated_cost)
        if max_tokens is not None:
            body["max_tokens"] = dict(max_tokens)
        if attributes:
            body["attributes"] = dict(attributes)
        if key_fingerprint:
            body["key_fingerprint"] = key_fingerprint
        try:
            answer = await self._http.post("/budgets/admit", json=body, headers=self._headers)
        except httpx.TransportError as error:
            return self._unanswered(f"Cost Guardian did not answer: {type(error).__name__}", model, provider)
        if answer.status_code in UNREACHABLE_STATUSES:
            return self._unanswered(f"Cost Guardian answered {answer.status_code}", model, provider)
        answer.raise_for_status()  # a 4xx is a mistake in the request: never silently admitted
        decided = answer.json()
        if not decided["admitted"]:
            budget = decided["budget"]
            raise AdmissionError(
                f"refused by budget {budget['name']!r}: {decided['remaining']} left",
                budget=budget,
                remaining=decided["remaining"],
            )
        return Reservation(
            decided["reservation_id"], model, provider, Decimal(decided["amount"]), decided["expires_at"]
        )

    async def release(self, reservation: Reservation) -> None:
        """The call was not made: what it held goes back at once (else it would at its ttl)."""
        if reservation.id is None:
            return
        answer = await self._http.delete(f"/budgets/reservations/{reservation.id}", headers=self._headers)
        if answer.status_code not in (204, 404, 409):
            answer.raise_for_status()

    async def report(
        self,
        reservation: Reservation,
        *,
        event_id: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        model: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """The call's usage event (POST /usage/events), naming the reservation: the ledger settles it when it
        records the event. `event_id` must be the same on a retry (the provider's response id fits)."""
        data: dict[str, Any] = {
            "provider": reservation.provider,
            "model": model or reservation.model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": cached_input_tokens,
            "requests": 1,
            "attributes": dict(attributes or {}),
        }
        if reservation.id is not None:
            data["reservation_id"] = reservation.id
        event = {
            "specversion": "1.0",
            "id": event_id,
            "source": self._source,
            "type": USAGE_EVENT_TYPE,
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": data,
        }
        answer = await self._http.post("/usage/events", json=event, headers=self._headers)
        answer.raise_for_status()

    async def report_openai(self, reservation: Reservation, response: Any, **extra: Any) -> None:
        """`report` from an `openai` SDK response (chat completions or responses): its id, model and usage."""
        usage = response.usage
        input_tokens: int = getattr(usage, "prompt_tokens", None) or getattr(usage, "input_tokens", 0) or 0
        output_tokens: int = getattr(usage, "completion_tokens", None) or getattr(usage, "output_tokens", 0) or 0
        details = getattr(usage, "prompt_tokens_details", None) or getattr(usage, "input_tokens_details", None)
        cached = int(getattr(details, "cached_tokens", 0) or 0)
        await self.report(
            reservation,
            event_id=response.id or str(uuid.uuid4()),
            model=response.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached,
            **extra,
        )

    @asynccontextmanager
    async def reserved(self, **admit: Any) -> AsyncIterator[Reservation]:
        """Admitted for the block; released if the block raises (the call failed, nothing to report)."""
        reservation = await self.admit(**admit)
        try:
            yield reservation
        except BaseException:
            await self.release(reservation)
            raise

    def _unanswered(self, why: str, model: str, provider: str) -> Reservation:
        if self._unreachable == "closed":
            raise AdmissionError(f"{why}; failing closed")
        return Reservation(None, model, provider)
