"""Admin keys: the organization's real usage, pulled from `/organization/usage/completions` and emitted as usage
events the ledger records like any other.

Stable ids make pulling a bucket twice harmless: an event is `<bucket start>:<model>:<project>:<api key id>` under the
source `//openai.com/organization/<admin key fingerprint>`, and the ledger counts each (source, id) once. Only whole
hours are pulled (the hour in progress would be recorded early and incomplete). Where to start is read from what the
ledger recorded for that source: the newest bucket, and at least the last LATE_USAGE_HOURS, are pulled again, since
OpenAI may add usage to an hour after it ended. What a bucket holds beyond what was recorded goes out as a late
addition, `<id>|after:<requests>:<input>:<cached>:<output>` (the recorded figures it adds to): the same id from every
prober that saw the same record, so it too is counted once. A first pull reaches back `ORG_USAGE_LOOKBACK_HOURS`.

Billed costs come from `/organization/costs` (whole UTC days, per project and line item) the same way, resumed from
the newest day the ledger stored in `billed_costs`, and go out as `BilledCost` messages on `cg.billing.openai.costs`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from psycopg import Error as PsycopgError
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from cg_common.billing import OPENAI_BILLED_COSTS, BilledCost
from cg_common.db import Connection
from cg_common.logging import get_logger
from cg_common.publishing import Outgoing
from cg_common.usage_event import USAGE_EVENT_TYPE, InvalidEventError
from cg_common.usage_publisher import prepare_usage
from cg_prober import metrics, upstream
from cg_prober.keys_repo import StoredKey, UsageFigures, last_billed_day, last_recorded_hour, recorded_usage

log = get_logger(__name__)

HOUR = 3600
DAY = 86_400
ORG_USAGE_SUBJECT = "cg.usage.openai.organization"
GROUP_BY = ("model", "project_id", "api_key_id")
LATE_USAGE_HOURS = 3  # whole hours pulled again on every probe: OpenAI may still add to them
MAX_PAGES = 100  # a week of hours is 7 pages of 24: far more means something is wrong upstream
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,199}$")


def organization_source(key_fingerprint: str) -> str:
    return f"//openai.com/organization/{key_fingerprint}"


class OrganizationPuller:
    def __init__(self, db: AsyncConnectionPool[Connection], client: httpx.AsyncClient, *, lookback_hours: int) -> None:
        self._db = db
        self._client = client
        self._lookback_hours = lookback_hours

    async def pull(self, key: StoredKey, api_key: str) -> tuple[upstream.Attempt, tuple[Outgoing, ...]]:
        """Pull every whole hour since the last recorded one; the first failing call is the probe's outcome."""
        source = organization_source(key.fingerprint)
        end = _floor_hour(datetime.now(UTC).timestamp())
        start = await self._start(source, end)
        params = {"start_time": start, "end_time": end, "bucket_width": "1h", "group_by": list(GROUP_BY), "limit": 24}
        first, buckets = await self._all_pages(api_key, "/organization/usage/completions", params)
        if not first.ok:
            return first, ()
        events = self._events(source, buckets, await self._recorded(source, start))
        costs = await self._costs(source, api_key)
        if isinstance(costs, upstream.Attempt):
            return costs, ()
        metrics.ORG_EVENTS.inc(len(events))
        return first, (*events, *costs)

    async def _costs(self, source: str, api_key: str) -> list[Outgoing] | upstream.Attempt:
        """Billed costs of every whole UTC day since the last one recorded (again: a recent day may be revised)."""
        today = _floor_day(datetime.now(UTC).timestamp())
        try:
            async with self._db.connection() as conn:
                last = await last_billed_day(conn, source)
        except PsycopgError as error:
            log.warning("could not read the last billed day; pulling the whole look-back", error=type(error).__name__)
            last = None
        if last is None:
            start = today - max(1, -(-self._lookback_hours // 24)) * DAY
        else:
            start = int(datetime(last.year, last.month, last.day, tzinfo=UTC).timestamp())
        if start >= today:
            return []
        pulled_at = datetime.now(UTC)
        params = {
            "start_time": start,
            "end_time": today,
            "bucket_width": "1d",
            "group_by": ["project_id", "line_item"],
            "limit": 31,
        }
        attempt, buckets = await self._all_pages(api_key, "/organization/costs", params)
        if not attempt.ok:
            return attempt
        return _billed(source, buckets, pulled_at)

    async def _all_pages(self, api_key: str, path: str, params: dict[str, Any]) -> tuple[upstream.Attempt, list[Any]]:
        """The `data` of every page, following `next_page`, with the first call (the probe's outcome); or the first
        call that failed, with nothing."""
        first: upstream.Attempt | None = None
        data: list[Any] = []
        page: str | None = None
        for _ in range(MAX_PAGES):
            attempt = await upstream.call(
                self._client, api_key, "GET", path, params={**params, "page": page} if page else params
            )
            first = first or attempt
            if not attempt.ok:
                return attempt, []
            body = attempt.body if isinstance(attempt.body, dict) else {}
            data.extend(body.get("data") or [])
            page = body.get("next_page") if body.get("has_more") else None
            if not page:
                break
        assert first is not None  # noqa: S101 - the loop ran at least once
        return first, data

    async def _start(self, source: str, end: int) -> int:
        try:
            async with self._db.connection() as conn:
                last = await last_recorded_hour(conn, source)
        except PsycopgError as error:
            log.warning(
                "could not read the last pulled bucket; pulling the whole look-back", error=type(error).__name__
            )
            last = None
        if last is None:
            return end - self._lookback_hours * HOUR
        # The newest recorded hour and the last few again (OpenAI may still add to them); this also makes every probe
        # of an admin key a call that proves the key.
        return min(last, end - LATE_USAGE_HOURS * HOUR)

    async def _recorded(self, source: str, start: int) -> dict[str, UsageFigures]:
        try:
            async with self._db.connection() as conn:
                return await recorded_usage(conn, source, since=start)
        except PsycopgError as error:
            # Every bucket then goes out under its plain id: the ledger keeps what it had, only late additions wait.
            log.warning("could not read the recorded usage; no late additions this time", error=type(error).__name__)
            return {}

    @staticmethod
    def _events(source: str, buckets: Sequence[Any], recorded: dict[str, UsageFigures]) -> list[Outgoing]:
        events = []
        for bucket in buckets:
            if not isinstance(bucket, dict):
                continue
            start = int(bucket.get("start_time") or 0)
            for result in bucket.get("results") or []:
                event = _usage_event(source, start, result)
                if event is not None and event["id"] in recorded:
                    event = late_addition(event, recorded[event["id"]])
                if event is None:
                    continue
                try:
                    events.append(prepare_usage(event, subject=ORG_USAGE_SUBJECT).outgoing())
                except InvalidEventError as error:
                    log.warning("organization usage result skipped", reason=str(error)[:200])
        return events


def _usage_event(source: str, start: int, result: Any) -> dict[str, Any] | None:
    if not isinstance(result, dict) or result.get("object") != "organization.usage.completions.result":
        return None
    if not result.get("num_model_requests") and not result.get("input_tokens") and not result.get("output_tokens"):
        return None
    model = result.get("model")
    model = model if isinstance(model, str) and _MODEL.match(model) else "unknown"
    project = str(result.get("project_id") or "-")
    openai_key_id = str(result.get("api_key_id") or "-")
    attributes = {"bucket_width": "1h", "project_id": project, "openai_api_key_id": openai_key_id}
    return {
        "specversion": "1.0",
        "id": f"{start}:{model}:{project}:{openai_key_id}",
        "source": source,
        "type": USAGE_EVENT_TYPE,
        "time": datetime.fromtimestamp(start, UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {
            "provider": "openai",
            "model": model,
            "input_tokens": int(result.get("input_tokens") or 0),
            "output_tokens": int(result.get("output_tokens") or 0),
            "cached_input_tokens": int(result.get("input_cached_tokens") or 0),
            "requests": int(result.get("num_model_requests") or 0),
            "attributes": attributes,
        },
    }


def late_addition(event: dict[str, Any], recorded: UsageFigures) -> dict[str, Any] | None:
    """The part of a bucket's usage the ledger has not recorded yet, as an event of its own; None when there is none.
    A bucket OpenAI lowered after it was recorded keeps the recorded figures: usage cannot be negative."""
    data = event["data"]
    added = {
        "requests": data["requests"] - recorded.requests,
        "input_tokens": data["input_tokens"] - recorded.input_tokens,
        "cached_input_tokens": data["cached_input_tokens"] - recorded.cached_input_tokens,
        "output_tokens": data["output_tokens"] - recorded.output_tokens,
    }
    if any(value < 0 for value in added.values()):
        log.warning("organization usage lowered after it was recorded; the recorded figures stay", event_id=event["id"])
        return None
    if not any(added.values()):
        return None
    after = (recorded.requests, recorded.input_tokens, recorded.cached_input_tokens, recorded.output_tokens)
    return {
        **event,
        "id": f"{event['id']}|after:{':'.join(str(figure) for figure in after)}",
        "data": {**data, **added},
    }


def _billed(source: str, buckets: Sequence[Any], pulled_at: datetime) -> list[Outgoing]:
    found = []
    for bucket in buckets:
        if not isinstance(bucket, dict):
            continue
        day = datetime.fromtimestamp(int(bucket.get("start_time") or 0), UTC).date()
        for result in bucket.get("results") or []:
            amount = result.get("amount") if isinstance(result, dict) else None
            if not isinstance(amount, dict) or amount.get("value") is None:
                continue
            try:
                cost = BilledCost(
                    source=source,
                    day=day,
                    project_id=str(result.get("project_id") or ""),
                    line_item=str(result.get("line_item") or ""),
                    # JSON numbers arrive as floats: their shortest repr is the figure OpenAI wrote.
                    amount=Decimal(repr(float(amount["value"]))).quantize(Decimal("1e-12")),
                    currency=str(amount.get("currency") or "usd").lower(),
                    pulled_at=pulled_at,
                )
            except (ValidationError, ValueError, TypeError, ArithmeticError) as error:
                log.warning("billed cost skipped", reason=str(error)[:200])
                continue
            found.append(Outgoing(OPENAI_BILLED_COSTS, cost.model_dump_json().encode(), cost.msg_id()))
    return found


def _floor_day(moment: float) -> int:
    return int(moment) - int(moment) % DAY


def _floor_hour(moment: float) -> int:
    return int(moment) - int(moment) % HOUR
