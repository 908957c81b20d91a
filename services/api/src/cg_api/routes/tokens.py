"""API tokens (admin only): made with their scopes and limits, listed without secrets, revoked."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status

from cg_api import tokens_repo
from cg_api.access_schemas import TokenCreate, TokenCreated, TokenOut
from cg_api.auth import PrincipalDep
from cg_api.deps import DbDep, ResourcesDep
from cg_api.schemas import ErrorOut

router = APIRouter(prefix="/tokens", tags=["access"])

TokenId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The token's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No live token with this id."}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
async def create_token(body: TokenCreate, db: DbDep, principal: PrincipalDep, request: Request) -> TokenCreated:
    """The token's secret is in this answer only: store it now."""
    row, secret = await tokens_repo.insert(db, body.new_token(principal.name))
    request.state.audit_target = row["id"]  # the audit log names what was created
    return TokenCreated.model_validate({**TokenOut.from_row(row).model_dump(), "token": secret})


@router.get("", response_model=list[TokenOut])
async def list_tokens(db: DbDep) -> list[TokenOut]:
    return [TokenOut.from_row(row) for row in await tokens_repo.list_all(db)]


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def revoke_token(token_id: TokenId, db: DbDep, resources: ResourcesDep) -> Response:
    """Refused at once by this replica and within a second by every other; its dashboard sessions end with it."""
    row = await tokens_repo.revoke(db, token_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no live token with id {token_id}")
    await db.commit()
    resources.credentials.forget_token(row["public_id"])
    return Response(status_code=status.HTTP_204_NO_CONTENT)
