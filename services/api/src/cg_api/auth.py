"""What routes see of authentication, which `AccessMiddleware` has done before any body was read: the acting
`Principal`, and the security schemes the OpenAPI document shows."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cg_api.access_middleware import principal_of
from cg_api.credentials import API_KEY_HEADER
from cg_api.principal import Principal

_api_key = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="An API token (cg_…) or the admin key (API_KEY)."
)
_bearer = HTTPBearer(auto_error=False, description="The same credential as `Authorization: Bearer …`.")


async def current_principal(
    request: Request,
    _key: Annotated[str | None, Depends(_api_key)],
    _token: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    principal = principal_of(request.scope)
    if principal is None:  # only on a path RATE_LIMIT_EXEMPT lets through, which no authenticated route is
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="this path needs a credential")
    return principal


Authenticated = Depends(current_principal)
PrincipalDep = Annotated[Principal, Depends(current_principal)]
