"""The usage log: filters, cursor pagination, and streamed CSV / JSON exports of everything the filters match."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from cg_web.api_client import Api, ApiError
from cg_web.rendering import render
from cg_web.resources import ResourcesDep

router = APIRouter(prefix="/dashboard/usage")

PAGE_SIZE = "50"
# The totals' range when the filters name no bound: every record the log lists, whenever it happened.
ALL_SINCE = "1970-01-01T00:00:00+00:00"
ALL_UNTIL = "9999-01-01T00:00:00+00:00"
EXPORT_PAGE_SIZE = "1000"
FILTERS = ("key_id", "model", "source", "provider", "since", "until")
COLUMNS = (
    "id",
    "occurred_at",
    "recorded_at",
    "provider",
    "model",
    "key_id",
    "key_fingerprint",
    "source",
    "event_id",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "requests",
    "cost",
    "priced",
    "price_source",
    "attributes",
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class FilterError(ValueError):
    pass


def filters_of(request: Request, dimensions: list[str]) -> dict[str, str]:
    """The filters as typed in the form (times as `YYYY-MM-DDTHH:MM`, read as UTC), dimension values as
    `attributes.<name>`, as the api names them."""
    names = [*FILTERS, *(f"attributes.{name}" for name in dimensions)]
    return {name: value.strip() for name in names if (value := request.query_params.get(name, "")).strip()}


async def dimensions_of(api: Api) -> list[str]:
    """The dimensions to offer as filters; none when the api cannot say (the page still works without them)."""
    try:
        return await api.dimensions()
    except ApiError:
        return []


def api_params(filters: dict[str, str]) -> dict[str, str]:
    params = dict(filters)
    for name in ("since", "until"):
        if name in params:
            try:
                moment = datetime.fromisoformat(params[name])
            except ValueError:
                raise FilterError(f"{name}: not a date and time (YYYY-MM-DD HH:MM, UTC)") from None
            params[name] = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
    if "key_id" in params and not params["key_id"].isdigit():
        raise FilterError("key: choose a stored key")
    return params


@router.get("")
async def usage_page(request: Request, resources: ResourcesDep) -> Response:
    dimensions = await dimensions_of(resources.api_for(request))
    filters = filters_of(request, dimensions)
    cursor = request.query_params.get("cursor")
    context: dict[str, Any] = {
        "filters": filters,
        "dimensions": dimensions,
        "items": [],
        "next_url": None,
        "error": None,
        "first_url": None,
    }
    try:
        keys = await resources.api_for(request).keys()
    except ApiError:
        keys = []
    context["keys"] = keys
    context["labels"] = {key["id"]: key["label"] for key in keys}
    try:
        params = api_params(filters)
        page = await resources.api_for(request).usage_page(
            {**params, "limit": PAGE_SIZE, **({"cursor": cursor} if cursor else {})}
        )
    except (FilterError, ApiError) as error:
        context["error"] = str(error)
        return render(request, "usage.html", context, status_code=422 if isinstance(error, FilterError) else 200)
    context["items"] = page["items"]
    context["totals"], context["totals_error"] = await _totals(resources.api_for(request), params)
    if page.get("next_cursor"):
        context["next_url"] = "?" + urlencode({**filters, "cursor": page["next_cursor"]})
    if cursor:
        context["first_url"] = "?" + urlencode(filters)
    context["export_query"] = urlencode(filters)
    return render(request, "usage.html", context)


async def _totals(api: Api, params: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """The whole selection's figures (not just this page's), from the summary the api keeps exact for any range."""
    filters = {name: value for name, value in params.items() if name not in ("since", "until")}
    try:
        summary = await api.summary(
            "provider", since=params.get("since", ALL_SINCE), until=params.get("until", ALL_UNTIL), filters=filters
        )
    except ApiError as error:
        return None, error.message
    totals: dict[str, Any] = summary["totals"]
    return {**totals, "tokens": int(totals["input_tokens"]) + int(totals["output_tokens"])}, None


@router.get("/export.csv")
async def export_csv(request: Request, resources: ResourcesDep) -> Response:
    return await _export(request, resources.api_for(request), "csv")


@router.get("/export.json")
async def export_json(request: Request, resources: ResourcesDep) -> Response:
    return await _export(request, resources.api_for(request), "json")


async def _export(request: Request, api: Api, kind: str) -> Response:
    """The first page is fetched before answering, so that a bad filter or a missing api is a clear error page;
    the rest streams, one api page at a time."""
    try:
        params = {**api_params(filters_of(request, await dimensions_of(api))), "limit": EXPORT_PAGE_SIZE}
    except FilterError as error:
        raise ApiError(422, str(error)) from None
    first = await api.usage_page(params)
    records = _records(api, params, first)
    body = _csv(records) if kind == "csv" else _json(records)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        body,
        media_type="text/csv; charset=utf-8" if kind == "csv" else "application/json",
        headers={"Content-Disposition": f'attachment; filename="cost-guardian-usage-{stamp}.{kind}"'},
    )


async def _records(api: Api, params: dict[str, str], page: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    while True:
        for record in page["items"]:
            yield record
        if not page.get("next_cursor"):
            return
        page = await api.usage_page({**params, "cursor": page["next_cursor"]})


async def _csv(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    async for record in records:
        writer.writerow([_cell(record.get(column)) for column in COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value: object) -> object:
    """Text that a spreadsheet would run as a formula is quoted (CSV injection), e.g. a source named `=cmd|…`;
    the attributes are one cell of JSON."""
    if isinstance(value, dict):
        value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return "" if value is None else value


async def _json(records: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    yield b"["
    first = True
    async for record in records:
        yield (b"\n" if first else b",\n") + orjson.dumps(record)
        first = False
    yield b"\n]\n"
