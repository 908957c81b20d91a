"""GET /audit (admin): every change made through the api, newest first, a page at a time."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from cg_api import audit_repo
from cg_api.access_schemas import AuditEntryOut, AuditPage
from cg_api.auth import Authenticated
from cg_api.deps import DbDep

router = APIRouter(tags=["access"], dependencies=[Authenticated])

MAX_ID = 2**63 - 1


@router.get("/audit", response_model=AuditPage)
async def audit_log(
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page.")] = None,
) -> AuditPage:
    before = _decode(cursor) if cursor else None
    rows = await audit_repo.page(db, before_id=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        entries=[AuditEntryOut.model_validate(row) for row in rows],
        next_cursor=_encode(rows[-1]["id"]) if more else None,
    )


def _encode(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{entry_id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        text = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        kind, _, number = text.partition(":")
        entry_id = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        entry_id = 0
        kind = ""
    if kind != "audit" or not 1 <= entry_id <= MAX_ID:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="cursor is malformed: start again without one")
    return entry_id
