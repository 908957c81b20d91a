"""Usage in and out: POST /usage/events (HTTP ingest to JetStream) and GET /usage/summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from cg_api import dimension_params, source_patterns, summary_json, summary_repo, usage_ingest
from cg_api.auth import Authenticated, PrincipalDep
from cg_api.deps import DbDep, ResourcesDep
from cg_api.schemas import ErrorOut
from cg_api.unavailable import DependencyUnavailableError, UnavailableOut
from cg_api.usage_schemas import (
    DimensionsOut,
    GroupBy,
    IngestAccepted,
    RolledUpGrouping,
    TextFilter,
    UsageSummary,
    UtcDatetime,
    parse_group_by,
)
from cg_common.usage_event import UsageData

router = APIRouter(prefix="/usage", tags=["usage"], dependencies=[Authenticated])

DEFAULT_SUMMARY_DAYS = 30
Since = Annotated[UtcDatetime | None, Query(description="Inclusive start, with a time zone; default until − 30 days.")]
Until = Annotated[UtcDatetime | None, Query(description="Exclusive end, with a time zone; default now.")]


def _event_schema() -> dict[str, Any]:
    data = UsageData.model_json_schema()
    data.pop("additionalProperties", None)  # the OpenTelemetry GenAI names are accepted too
    return {
        "type": "object",
        "description": "A CloudEvents 1.0 usage event in structured JSON (see docs/usage-events.md).",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": {"type": "string", "enum": ["1.0"]},
            "id": {"type": "string", "maxLength": 256},
            "source": {"type": "string", "maxLength": 512},
            "type": {"type": "string", "enum": ["io.costguardian.usage.v1"]},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"type": "string", "enum": ["application/json"]},
            "data": data,
        },
    }


_EVENT = _event_schema()
_BATCH = {"type": "array", "items": _EVENT, "maxItems": usage_ingest.MAX_BATCH_EVENTS}
INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            usage_ingest.SINGLE: {"schema": _EVENT},
            usage_ingest.BATCH: {"schema": _BATCH},
            usage_ingest.PLAIN: {"schema": {"oneOf": [_EVENT, _BATCH]}},
        },
    }
}


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IngestAccepted,
    openapi_extra=INGEST_BODY,
    responses={
        413: {"model": ErrorOut, "description": "Over 1000 events or 5 MB."},
        403: {
            "description": "The token may not report for an event's source (each named by index); nothing published."
        },
        415: {"model": ErrorOut, "description": "Not a JSON or CloudEvents content type."},
        422: {"description": "Not JSON, or invalid events (each named by index); nothing was published."},
        503: {
            "model": UnavailableOut,
            "description": "NATS is away or did not ack in time; re-sending is safe.",
        },
    },
)
async def ingest_events(request: Request, resources: ResourcesDep, principal: PrincipalDep) -> IngestAccepted:
    """One CloudEvent or a batch; 202 once JetStream has acknowledged every event, nothing published if any is
    invalid. Re-sending is always safe: an event is identified by (source, id) and stored once."""
    body = await usage_ingest.read_body(request)
    events = usage_ingest.events_in(body, request.headers.get("content-type", ""))
    prepared = usage_ingest.prepare_all(events)
    source_patterns.require_allowed(prepared, principal.sources, principal.name)
    if prepared:
        if not resources.nats.is_connected:  # buffering for a reconnect would only wait out the timeout
            raise DependencyUnavailableError("nats", "NATS is not connected; nothing was published, re-send shortly")
        await usage_ingest.publish_all(resources.nats, prepared, timeout_secs=resources.settings.publish_timeout_secs)
    return IngestAccepted(accepted=len(prepared))


@router.get("/summary", response_model=UsageSummary)
async def summary(
    request: Request,
    db: DbDep,
    group_by: Annotated[
        GroupBy,
        Query(
            description="What to group by: key, model, source, provider, day (the UTC day) or a dimension "
            "`attributes.<name>`, or two of them comma-separated (`day,model`, `attributes.team,model`)."
        ),
    ] = "model",
    since: Annotated[
        UtcDatetime | None, Query(description="Inclusive start, with a time zone; default until − 30 days.")
    ] = None,
    until: Annotated[UtcDatetime | None, Query(description="Exclusive end, with a time zone; default now.")] = None,
    key_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only usage of this stored key.")] = None,
    model: TextFilter = None,
    source: TextFilter = None,
    provider: TextFilter = None,
) -> Response:
    """Events, requests, tokens and cost per group over [since, until), with totals; exact for any range. `key_id`,
    `model`, `source`, `provider` and `attributes.<dimension>=<value>` (e.g. `attributes.team=search`) narrow it to
    the usage they name (combined, all must match)."""
    until = until or datetime.now(UTC)
    since = since or _days_before(until, DEFAULT_SUMMARY_DAYS)
    if since > until:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "since"], "msg": "since must not be after until", "type": "value_error"}],
        )
    rolled = await summary_repo.rolled_up(db)
    groupings = parse_group_by(group_by)
    for grouping in groupings:
        dimension_params.require_dimension(grouping, rolled, parameter="group_by")
    filters = summary_repo.Filters(
        key_id=key_id,
        model=model,
        source=source,
        provider=provider,
        attributes=dimension_params.filters_of(request, rolled),
    )
    rows = await summary_repo.summarize(
        db, since=since, until=until, group_by=groupings, filters=filters, rolled=rolled
    )
    return Response(summary_json.encode(since, until, group_by, rows, groupings), media_type="application/json")


@router.get("/dimensions", response_model=DimensionsOut)
async def dimensions(db: DbDep) -> DimensionsOut:
    """The dimensions usable as `attributes.<name>` in group_by and filters, and the groupings the ledger rolls up
    for them; a grouping not `complete` yet is being rebuilt (queries on it are exact, read from the records)."""
    rolled = await summary_repo.rolled_up(db)
    return DimensionsOut(
        dimensions=list(rolled.dimensions),
        groupings=[
            RolledUpGrouping(name=g.name, members=list(g.members), complete=g.name in rolled.complete)
            for g in rolled.groupings
        ],
    )


def _days_before(moment: datetime, days: int) -> datetime:
    try:
        return moment - timedelta(days=days)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)
