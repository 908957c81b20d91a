"""FastAPI dependency aliases, so routes name what they need instead of reaching into app state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from cg_api.resources import Resources
from cg_common.db import Connection


async def get_resources(request: Request) -> Resources:
    """Async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a hop per request."""
    resources: Resources = request.app.state.resources
    return resources


async def get_db(resources: Annotated[Resources, Depends(get_resources)]) -> AsyncIterator[Connection]:
    """One pooled connection per request, committed when the route returns."""
    async with resources.db.connection() as conn:
        yield conn


ResourcesDep = Annotated[Resources, Depends(get_resources)]
# scope="function": the transaction commits before the response leaves, not after (FastAPI's default for `yield`
# dependencies), so that a client reading right after a 2xx sees its own change (the dashboard does exactly that).
DbDep = Annotated[Connection, Depends(get_db, scope="function")]
