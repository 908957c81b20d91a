"""Admin authentication by `X-API-Key`, compared in constant time."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The admin key (API_KEY).")


def is_admin_key(candidate: str | None, admin_key: str) -> bool:
    return candidate is not None and hmac.compare_digest(candidate.encode(), admin_key.encode())


async def require_admin(request: Request, api_key: Annotated[str | None, Depends(_header)]) -> None:
    if not is_admin_key(api_key, request.app.state.resources.settings.api_key):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing or wrong {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )


AdminAuth = Depends(require_admin)
