"""Dashboard sessions, for the dashboard's own credential only: it trades what a person signs in with (the admin
key, or an admin or read token) for a session, and ends it on sign-out. The api keeps the session, so that it can
end it when the token is revoked or API_KEY changes."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, HTTPException, Request, Response, status

from cg_api import sessions_repo, tokens_repo
from cg_api.access_schemas import SessionCreate, SessionOut
from cg_api.auth import Authenticated, PrincipalDep
from cg_api.credentials import DASHBOARD_SCOPES, SESSION_HEADER, SessionEndedError, same
from cg_api.deps import DbDep, ResourcesDep
from cg_api.principal import DASHBOARD
from cg_api.schemas import ErrorOut

router = APIRouter(prefix="/sessions", tags=["access"], dependencies=[Authenticated])

REFUSED = "not the admin key, nor a live token with the 'admin' or 'read' scope"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionOut,
    responses={401: {"model": ErrorOut, "description": REFUSED}},
)
async def open_session(body: SessionCreate, db: DbDep, resources: ResourcesDep, request: Request) -> SessionOut:
    settings = resources.settings
    lifetime = timedelta(hours=settings.dashboard_session_hours)
    if same(body.credential, settings.api_key):
        secret = await sessions_repo.open_session(db, lifetime=lifetime, admin_key=settings.api_key)
    else:
        parts = tokens_repo.TokenSecret.parse(body.credential)
        row = await tokens_repo.find(db, parts.public_id) if parts else None
        if (
            parts is None
            or row is None
            or not tokens_repo.matches(row, parts.secret)
            or row["revoked_at"] is not None
            or not DASHBOARD_SCOPES & set(row["scopes"])
        ):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=REFUSED)
        secret = await sessions_repo.open_session(db, lifetime=lifetime, token_id=row["id"])
    session = await sessions_repo.find(db, secret)
    if session is None:  # an expired token: the session rests on nothing live
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=REFUSED)
    try:
        principal = resources.credentials.session_principal(session)
    except SessionEndedError:
        await sessions_repo.end(db, secret)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=REFUSED) from None
    request.state.audit_target = principal.name.removeprefix("dashboard: ")  # who signed in
    return SessionOut(
        session=secret,
        name=principal.name,
        scopes=sorted(principal.scopes - {DASHBOARD}),
        expires_at=session["expires_at"],
    )


@router.delete("/current", status_code=status.HTTP_204_NO_CONTENT)
async def end_session(request: Request, db: DbDep, resources: ResourcesDep, principal: PrincipalDep) -> Response:
    """Signing out: the session is gone for every replica; a copy of the dashboard's cookie is worth nothing."""
    secret = request.headers.get(SESSION_HEADER)
    if secret is None or principal.scopes == {DASHBOARD}:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"no session named in {SESSION_HEADER}")
    await sessions_repo.end(db, secret)
    await db.commit()
    resources.credentials.forget_session(secret)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
