"""Admin keys: the organization's real usage, pulled from `/organization/usage/completions` per model, project, user
and API key, and emitted as usage events the ledger records like any other, with the project's name from
`/organization/projects`.

Stable ids make pulling a bucket twice harmless (`cg_prober.org_usage`: `<bucket start>:<model>:<project>:<api key
id>:<user>` under the source `organization_source(<admin key fingerprint>)`), and the ledger counts each (source, id)
once. Only whole hours are pulled (the hour in progress would be recorded early and incomplete). What was emitted is
the prober's own record (`org_state`, never the ledger's tables): each pull starts LATE_USAGE_HOURS before the end of
the last one, since OpenAI may add usage to an hour after it ended, and what a bucket holds beyond what was emitted
for it goes out as a late addition. A first pull reaches back `ORG_USAGE_LOOKBACK_HOURS`.

Billed costs come from `/organization/costs` (whole UTC days, per project and line item), from the last day of the
previous pull on (a recent day may be revised), and go out as `BilledCost` messages on `cg.billing.openai.costs`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from nats.aio.client import Client as NATS
from pydantic import ValidationError

from cg_common.billing import OPENAI_BILLED_COSTS, BilledCost
from cg_common.consumer import TransientError
from cg_common.logging import get_logger
from cg_common.organization import ORGANIZATION_USAGE_SUBJECT, organization_source
from cg_common.publishing import Outgoing, PublishError, publish_all
from cg_common.usage_publisher import prepare_usage
from cg_prober import metrics, upstream
from cg_prober.keys_repo import StoredKey
from cg_prober.org_state import HourState, OrganizationState
from cg_prober.org_usage import new_events

log = get_logger(__name__)

HOUR = 3600
DAY = 86_400
GROUP_BY = ("model", "project_id", "user_id", "api_key_id")
LATE_USAGE_HOURS = 3  # whole hours pulled again on every probe: OpenAI may still add to them
MAX_PAGES = 100  # a week of hours is 7 pages of 24: far more means something is wrong upstream
PROJECTS_PAGE = 100  # the most OpenAI lists at once
STATE_ATTEMPTS = 5  # compare-and-set rounds on one hour's record before the probe is handed back


class OrganizationPuller:
    def __init__(self, nc: NATS, state: OrganizationState, client: httpx.AsyncClient, *, lookback_hours: int) -> None:
        self._nc = nc
        self._state = state
        self._client = client
        self._lookback_hours = lookback_hours

    async def pull(self, key: StoredKey, api_key: str) -> upstream.Attempt:
        """Pull and emit every whole hour since the last pull, then the billed costs; the first failing call is the
        probe's outcome. Raises TransientError when NATS cannot store or take what was pulled (tried again later)."""
        source = organization_source(key.fingerprint)
        end = _floor_hour(datetime.now(UTC).timestamp())
        until = await self._state.usage_until(key.fingerprint)
        start = end - self._lookback_hours * HOUR if until is None else min(until, end) - LATE_USAGE_HOURS * HOUR
        params = {"start_time": start, "end_time": end, "bucket_width": "1h", "group_by": list(GROUP_BY), "limit": 24}
        first, buckets = await self._all_pages(api_key, "/organization/usage/completions", params)
        if not first.ok:
            return first
        names = await self._project_names(api_key)
        emitted = await self._emit_usage(key.fingerprint, source, buckets, names)
        await self._state.set_usage_until(key.fingerprint, end)
        metrics.ORG_EVENTS.inc(emitted)
        costs = await self._costs(key.fingerprint, source, api_key)
        return costs if costs is not None else first

    async def _emit_usage(
        self, fingerprint: str, source: str, buckets: Sequence[Any], project_names: Mapping[str, str]
    ) -> int:
        """Record each hour's new events in the prober's state, publish them, then mark them published; returns
        how many events went out."""
        by_hour: dict[int, list[Any]] = defaultdict(list)
        for bucket in buckets:
            if isinstance(bucket, dict):
                by_hour[int(bucket.get("start_time") or 0)].extend(bucket.get("results") or [])
        changed = [
            await self._record_hour(fingerprint, source, hour, results, project_names)
            for hour, results in by_hour.items()
        ]
        to_publish = [(hour, state) for hour, state in zip(by_hour, changed, strict=True) if state is not None]
        events = [event for _, state in to_publish for event in state.pending]
        await self._publish([prepare_usage(event, subject=ORGANIZATION_USAGE_SUBJECT).outgoing() for event in events])
        for hour, state in to_publish:  # a lost race here only means the next pull publishes them again
            await self._state.replace_hour(fingerprint, hour, HourState(state.figures, (), state.revision))
        return len(events)

    async def _record_hour(
        self, fingerprint: str, source: str, hour: int, results: list[Any], project_names: Mapping[str, str]
    ) -> HourState | None:
        """The hour's record with this pull's events stored as pending; None when there is nothing to publish."""
        for _ in range(STATE_ATTEMPTS):
            state = await self._state.hour(fingerprint, hour)
            events = new_events(source, hour, results, state.figures, project_names)
            if not events and not state.pending:
                return None
            stored = await self._state.replace_hour(fingerprint, hour, state.with_emitted(events))
            if stored is not None:
                return stored
        raise TransientError(f"another prober kept changing the record of hour {hour}; handed back")

    async def _project_names(self, api_key: str) -> dict[str, str]:
        """Each project's name, archived ones included (their past usage is still theirs), read once a pull. A key
        OpenAI will not list them for (no permission, an outage) gets the names it got: its usage goes out all the
        same, only without them."""
        names: dict[str, str] = {}
        params: dict[str, Any] = {"limit": PROJECTS_PAGE, "include_archived": "true"}
        for _ in range(MAX_PAGES):
            attempt = await upstream.call(self._client, api_key, "GET", "/organization/projects", params=params)
            if not attempt.ok:
                log.warning(
                    "organization projects not listed; usage goes out without their names",
                    outcome=attempt.outcome,
                    http_status=attempt.http_status,
                )
                break
            body = attempt.body if isinstance(attempt.body, dict) else {}
            names.update(_names(body.get("data")))
            if not body.get("has_more") or not body.get("last_id"):
                break
            params = {**params, "after": body["last_id"]}
        return names

    async def _costs(self, fingerprint: str, source: str, api_key: str) -> upstream.Attempt | None:
        """Billed costs of every whole UTC day since the last pull's last day; the failed call, if one failed."""
        today = _floor_day(datetime.now(UTC).timestamp())
        until = await self._state.costs_until(fingerprint)
        # After a first pull, its last day again: OpenAI may still revise it.
        start = today - max(1, -(-self._lookback_hours // 24)) * DAY if until is None else min(until, today) - DAY
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
        await self._publish(_billed(source, buckets, pulled_at))  # a day's newest figure wins: no record needed
        await self._state.set_costs_until(fingerprint, today)
        return None

    async def _publish(self, messages: list[Outgoing]) -> None:
        try:
            await publish_all(self._nc, messages)
        except PublishError as error:
            raise TransientError(f"organization usage not acknowledged: {error}") from error

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


def _names(projects: Any) -> dict[str, str]:
    if not isinstance(projects, list):
        return {}
    return {
        str(project["id"]): project["name"]
        for project in projects
        if isinstance(project, dict) and project.get("id") and isinstance(project.get("name"), str) and project["name"]
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
