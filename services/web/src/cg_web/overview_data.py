"""What the overview shows, gathered from the api in one round of concurrent calls.

Each part stands alone: when one call fails, its part says so and the others still show. The chart needs cost per
model for each of the last 30 UTC days; days before today are cached (they change only when late usage arrives, and
then the ledger's notice for that batch drops the day from the cache), so a warm overview costs five api calls, not
thirty-five.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import Any, Generic, TypeVar

from cg_web.api_client import Api, ApiError
from cg_web.chart import Chart, stacked_by_model

DAYS = 30
TOP = 5
DAY_CACHE_SECS = 600.0

T = TypeVar("T")


@dataclass(frozen=True)
class Part(Generic[T]):
    """A value, or why it is missing."""

    value: T | None = None
    error: str | None = None


async def attempt(call: Awaitable[T]) -> Part[T]:
    try:
        return Part(value=await call)
    except ApiError as error:
        return Part(error=error.message)


class DayCache:
    """Cost per model of whole past days; a day is dropped when costs are recorded for it, or after ten minutes."""

    def __init__(self) -> None:
        self._days: dict[date, tuple[float, dict[str, Decimal]]] = {}

    def get(self, day: date) -> dict[str, Decimal] | None:
        entry = self._days.get(day)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, day: date, costs: dict[str, Decimal]) -> None:
        self._days[day] = (time.monotonic() + DAY_CACHE_SECS, costs)

    def forget(self, day: date) -> None:
        self._days.pop(day, None)


@dataclass(frozen=True)
class Spend:
    today: Decimal
    week: Decimal
    month: Decimal
    requests_month: int
    tokens_month: int


@dataclass(frozen=True)
class Overview:
    spend: Part[Spend]
    chart: Part[Chart]
    top_keys: Part[list[dict[str, Any]]]
    top_models: Part[list[dict[str, Any]]]
    pipeline: Part[dict[str, Any]]
    as_of: datetime


async def gather(api: Api, cache: DayCache, now: datetime | None = None) -> Overview:
    now = now or datetime.now(UTC)
    today = now.date()
    days = [today - timedelta(days=offset) for offset in range(DAYS - 1, -1, -1)]
    since, until = _iso(_midnight(days[0])), _iso(now)
    by_day, by_model, by_key, metrics, daily = await asyncio.gather(
        attempt(api.summary("day", since=since, until=until)),
        attempt(api.summary("model", since=since, until=until)),
        attempt(api.summary("key", since=since, until=until)),
        attempt(api.metrics()),
        attempt(_costs_per_day(api, cache, days, now)),
    )
    return Overview(
        spend=Part(_spend(by_day.value, today)) if by_day.value is not None else Part(error=by_day.error),
        chart=Part(stacked_by_model(days, daily.value)) if daily.value is not None else Part(error=daily.error),
        top_keys=Part(by_key.value["groups"][:TOP]) if by_key.value is not None else Part(error=by_key.error),
        top_models=Part(by_model.value["groups"][:TOP]) if by_model.value is not None else Part(error=by_model.error),
        pipeline=Part(pipeline_health(metrics.value)) if metrics.value is not None else Part(error=metrics.error),
        as_of=now,
    )


def _spend(summary: dict[str, Any], today: date) -> Spend:
    cost = {date.fromisoformat(group["group"]): Decimal(group["cost"]) for group in summary["groups"]}
    week_start = today - timedelta(days=6)
    totals = summary["totals"]
    return Spend(
        today=cost.get(today, Decimal(0)),
        week=sum((c for d, c in cost.items() if d >= week_start), Decimal(0)),
        month=Decimal(totals["cost"]),
        requests_month=int(totals["requests"]),
        tokens_month=int(totals["input_tokens"]) + int(totals["output_tokens"]),
    )


async def _costs_per_day(api: Api, cache: DayCache, days: list[date], now: datetime) -> dict[date, dict[str, Decimal]]:
    """Cost per model for each day: cached past days, the others asked for concurrently."""
    today = now.date()
    result: dict[date, dict[str, Decimal]] = {}
    missing = []
    for day in days:
        cached = cache.get(day) if day < today else None
        if cached is None:
            missing.append(day)
        else:
            result[day] = cached

    async def one(day: date) -> None:
        end = now if day == today else _midnight(day + timedelta(days=1))
        summary = await api.summary("model", since=_iso(_midnight(day)), until=_iso(end))
        costs = {str(group["group"]): Decimal(group["cost"]) for group in summary["groups"]}
        result[day] = costs
        if day < today:
            cache.put(day, costs)

    await asyncio.gather(*(one(day) for day in missing))
    return result


def pipeline_health(metrics: dict[str, Any]) -> dict[str, Any]:
    """Alive or not for each background service, and the DLQ depth; `None` where the api does not say (yet)."""
    pipeline = metrics.get("pipeline") or {}
    services = {}
    for name in ("scheduler", "prober", "ledger", "notifier"):
        entry = pipeline.get(name) or {}
        services[name] = {"alive": entry.get("alive"), "last_beat_at": entry.get("last_beat_at")}
    dlq = (pipeline.get("dlq") or {}).get("messages")
    db = metrics.get("db") or {}
    return {
        "services": services,
        "dlq": dlq,
        "usage_rows": db.get("usage_rows"),
        "active_keys": db.get("active_keys"),
        "last_usage_at": db.get("last_usage_at"),
    }


def _midnight(day: date) -> datetime:
    return datetime.combine(day, clock.min, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
