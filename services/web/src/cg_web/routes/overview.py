"""The overview page, its live fragment, and the server-sent events that tell browsers to refresh it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from cg_web import overview_data
from cg_web.rendering import is_htmx, render
from cg_web.resources import ResourcesDep

router = APIRouter()

EVENTS_PATH = "/dashboard/events"


@router.get("/dashboard")
async def overview(request: Request, resources: ResourcesDep) -> Response:
    data = await overview_data.gather(resources.api_for(request), resources.day_cache)
    block = "live" if is_htmx(request) else None
    return render(request, "overview.html", {"o": data, "events_path": EVENTS_PATH}, block=block)


@router.get(EVENTS_PATH)
async def events(resources: ResourcesDep) -> StreamingResponse:
    return StreamingResponse(
        resources.feed.stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
