"""Recorded usage: GET /data (newest first, filtered, cursor-paginated) and DELETE /reset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from psycopg.errors import LockNotAvailable

from cg_api import dimension_params, summary_repo, usage_repo
from cg_api.auth import Authenticated
from cg_api.cursor import MAX_CURSOR_CHARS, BadCursorError, decode_cursor, encode_cursor
from cg_api.deps import DbDep
from cg_api.schemas import ErrorOut
from cg_api.usage_schemas import TextFilter, UsagePage, UsageRecordOut, UtcDatetime

router = APIRouter(tags=["usage"], dependencies=[Authenticated])

Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, description="next_cursor of the page before.")]


@router.get("/data", response_model=UsagePage)
async def list_usage(
    request: Request,
    db: DbDep,
    key_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only this stored key's usage.")] = None,
    model: TextFilter = None,
    source: TextFilter = None,
    provider: TextFilter = None,
    since: Annotated[UtcDatetime | None, Query(description="Inclusive, with a time zone.")] = None,
    until: Annotated[UtcDatetime | None, Query(description="Exclusive, with a time zone.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=MAX_CURSOR_CHARS, description="next_cursor of the page before.")
    ] = None,
) -> UsagePage:
    """Usage records newest first (occurred_at, then id, descending); follow `next_cursor` until it is null.
    `attributes.<dimension>=<value>` (e.g. `attributes.team=search`) narrows them like the other filters."""
    try:
        after = decode_cursor(cursor) if cursor is not None else None
    except BadCursorError as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=[{"loc": ["query", "cursor"], "msg": str(error), "type": "value_error"}],
        ) from None
    rolled = await summary_repo.rolled_up(db)
    where = usage_repo.UsageFilter(
        key_id=key_id,
        model=model,
        source=source,
        provider=provider,
        since=since,
        until=until,
        attributes=dimension_params.filters_of(request, rolled),
    )
    rows = await usage_repo.page(db, where, after=after, limit=limit + 1, complete=rolled.hourly)
    items = [UsageRecordOut.from_row(row) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(items[-1].occurred_at, items[-1].id) if more else None
    return UsagePage(items=items, next_cursor=next_cursor)


@router.delete(
    "/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={503: {"model": ErrorOut, "description": "The usage tables stayed busy; retry."}},
)
async def reset(db: DbDep) -> Response:
    """Clears all recorded usage and its roll-ups in one transaction; keys stay."""
    try:
        await usage_repo.clear(db)
    except LockNotAvailable:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="usage data is being written or read at length; retry shortly",
            headers={"Retry-After": "1"},
        ) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
