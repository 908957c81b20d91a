"""The organization the fake serves to admin keys: its projects and a fixed, deterministic dataset of usage and
costs, bucketed, grouped and paginated as OpenAI's `/organization/usage/completions`, `/organization/costs` and
`/organization/projects` do."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

HOUR = 3600
DAY = 86_400
MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06")


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    created_at: int
    archived_at: int | None = None


PROJECTS = (
    Project("proj_alpha", "Search", 1_711_471_533),
    Project("proj_beta", "Checkout", 1_714_000_000),
    Project("proj_gamma", "Pilot 2024", 1_717_000_000, archived_at=1_735_689_600),  # listed with include_archived
)
PROJECT_IDS = tuple(project.id for project in PROJECTS)
# Who used what: (api key id, project, user). A key belongs to one user or to a service account (no user); usage
# without an API key (the Playground) has none, and there several users share one (model, project, key) group.
USAGE_OWNERS: tuple[tuple[str | None, str, str | None], ...] = (
    ("key_aaaa", "proj_alpha", "user-alice"),
    ("key_bbbb", "proj_alpha", None),
    ("key_cccc", "proj_beta", "user-bob"),
    ("key_dddd", "proj_beta", "user-alice"),
    ("key_eeee", "proj_gamma", "user-bob"),
    (None, "proj_alpha", "user-alice"),
    (None, "proj_alpha", "user-carol"),
)
# Fields usage can be grouped by (OpenAI's `group_by` values for completions).
USAGE_GROUPINGS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")
# Buckets per page when the caller gives no `limit`, as OpenAI documents them.
DEFAULT_LIMITS = {"1m": 60, "1h": 24, "1d": 7}
MAX_LIMITS = {"1m": 1440, "1h": 168, "1d": 31}
MAX_COST_LIMIT = 180
DEFAULT_PROJECTS_LIMIT = 20
MAX_PROJECTS_LIMIT = 100


@dataclass(frozen=True)
class UsageRecord:
    """One hour's completions usage of one (model, project, api key, user)."""

    hour: int  # bucket start, Unix seconds
    model: str
    project_id: str
    api_key_id: str | None
    user_id: str | None
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    requests: int
    batch: bool = False
    service_tier: str = "default"


def usage_records(hour: int, late: int = 0) -> list[UsageRecord]:
    """What happened in one hour: the same numbers for the same hour, every time it is asked, plus `late` requests
    per record that OpenAI reported after the hour ended."""
    records = []
    for m, model in enumerate(MODELS):
        for o, (api_key_id, project, user) in enumerate(USAGE_OWNERS):
            seed = (hour // HOUR) % 97 + 10 * m + 3 * o + 1
            if seed % 5 == 0:  # some are idle in some hours, as real ones are
                continue
            seed += late
            records.append(
                UsageRecord(
                    hour=hour,
                    model=model,
                    project_id=project,
                    api_key_id=api_key_id,
                    user_id=user,
                    input_tokens=1000 * seed,
                    cached_tokens=100 * seed,
                    output_tokens=250 * seed,
                    requests=seed,
                )
            )
    return records


def daily_cost(day: int, project_id: str) -> Decimal:
    """Billed USD of one project on one day."""
    return Decimal((day // DAY) % 31 + 1 + PROJECT_IDS.index(project_id)) / 100


def encode_page(start: int) -> str:
    return base64.urlsafe_b64encode(f"page_{start}".encode()).decode()


def decode_page(page: str) -> int:
    return int(base64.urlsafe_b64decode(page.encode()).decode().removeprefix("page_"))


def floor_to(moment: int, width: int) -> int:
    return moment - moment % width


def usage_page(
    *,
    start_time: int,
    end_time: int,
    bucket_width: str,
    group_by: Sequence[str],
    limit: int | None,
    page: str | None,
    late: Mapping[int, int],
) -> dict[str, Any]:
    """A page of `organization.usage.completions.result` buckets (empty buckets included, as OpenAI sends them);
    `late` adds requests per group to some hours (hour start → requests), as reports arriving after the hour."""
    width = {"1m": 60, "1h": HOUR, "1d": DAY}[bucket_width]
    size = min(limit or DEFAULT_LIMITS[bucket_width], MAX_LIMITS[bucket_width])
    first = decode_page(page) if page else floor_to(start_time, width)
    buckets: list[dict[str, Any]] = []
    start = first
    while start < end_time and len(buckets) < size:
        hours = range(floor_to(start, HOUR), start + width, HOUR)
        records = [r for hour in hours for r in usage_records(hour, late.get(hour, 0))]
        records = [r for r in records if start <= r.hour < start + width]
        buckets.append(
            {"object": "bucket", "start_time": start, "end_time": start + width, "results": _group(records, group_by)}
        )
        start += width
    return _page(buckets, next_start=start if start < end_time else None)


def _group(records: Sequence[UsageRecord], group_by: Sequence[str]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        key = tuple(getattr(record, field) for field in group_by)
        result = groups.setdefault(
            key,
            {
                "object": "organization.usage.completions.result",
                "input_tokens": 0,
                "output_tokens": 0,
                "input_cached_tokens": 0,
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "num_model_requests": 0,
                "project_id": None,
                "user_id": None,
                "api_key_id": None,
                "model": None,
                "batch": None,
                "service_tier": None,
            },
        )
        result["input_tokens"] += record.input_tokens
        result["output_tokens"] += record.output_tokens
        result["input_cached_tokens"] += record.cached_tokens
        result["num_model_requests"] += record.requests
        for field, value in zip(group_by, key, strict=True):
            result[field] = value
    return list(groups.values())


def costs_page(
    *, start_time: int, end_time: int, group_by: Sequence[str], limit: int | None, page: str | None
) -> dict[str, Any]:
    """A page of daily `organization.costs.result` buckets."""
    size = min(limit or DEFAULT_LIMITS["1d"], MAX_COST_LIMIT)
    start = decode_page(page) if page else floor_to(start_time, DAY)
    buckets: list[dict[str, Any]] = []
    while start < end_time and len(buckets) < size:
        results = []
        per_project = "project_id" in group_by
        for project in PROJECT_IDS if per_project else (None,):
            projects = [project] if project else list(PROJECT_IDS)
            value = sum((daily_cost(start, p) for p in projects), Decimal(0))
            results.append(
                {
                    "object": "organization.costs.result",
                    "amount": {"value": float(value), "currency": "usd"},
                    "line_item": None,
                    "project_id": project,
                }
            )
        buckets.append({"object": "bucket", "start_time": start, "end_time": start + DAY, "results": results})
        start += DAY
    return _page(buckets, next_start=start if start < end_time else None)


def projects_page(*, after: str | None, limit: int, include_archived: bool) -> dict[str, Any]:
    """A page of the organization's projects in creation order, from the one after `after` (an id; an unknown one
    leaves nothing after it), as OpenAI's cursor lists answer: `first_id`, `last_id`, `has_more`."""
    listed = [project for project in PROJECTS if include_archived or project.archived_at is None]
    ids = [project.id for project in listed]
    first = 0 if after is None else ids.index(after) + 1 if after in ids else len(ids)
    data = [
        {
            "object": "organization.project",
            "id": project.id,
            "name": project.name,
            "created_at": project.created_at,
            "archived_at": project.archived_at,
            "status": "archived" if project.archived_at else "active",
        }
        for project in listed[first : first + limit]
    ]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": first + limit < len(listed),
    }


def _page(buckets: list[dict[str, Any]], *, next_start: int | None) -> dict[str, Any]:
    return {
        "object": "page",
        "data": buckets,
        "has_more": next_start is not None,
        "next_page": encode_page(next_start) if next_start is not None else None,
    }
