"""Key management: store encrypted, list masked, toggle, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response, status

from cg_api import keys_repo
from cg_api.auth import AdminAuth
from cg_api.deps import DbDep, ResourcesDep
from cg_api.schemas import ErrorOut, KeyActive, KeyCreate, KeyOut
from cg_common.crypto import fingerprint, prefix_of

router = APIRouter(prefix="/keys", tags=["keys"], dependencies=[AdminAuth])

KeyId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The key's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No live key with this id."}}


@router.get("", response_model=list[KeyOut])
async def list_keys(db: DbDep) -> list[KeyOut]:
    return [KeyOut.from_row(row) for row in await keys_repo.list_live(db)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyOut,
    responses={409: {"model": ErrorOut, "description": "This key is already stored."}},
)
async def add_key(body: KeyCreate, db: DbDep, resources: ResourcesDep) -> KeyOut:
    new_key = keys_repo.NewKey(
        label=body.label,
        kind=body.kind,
        ciphertext=resources.cipher.encrypt(body.api_key),
        fingerprint=fingerprint(body.api_key),
        prefix=prefix_of(body.api_key),
        last4=body.api_key[-4:],
    )
    try:
        row = await keys_repo.insert(db, new_key)
    except keys_repo.DuplicateKeyError:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="this key is already stored") from None
    return KeyOut.from_row(row)


@router.patch("/{key_id}/active", response_model=KeyOut, responses=NOT_FOUND)
async def set_active(key_id: KeyId, body: KeyActive, db: DbDep) -> KeyOut:
    row = await keys_repo.set_active(db, key_id, body.active)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no key with id {key_id}")
    return KeyOut.from_row(row)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_key(key_id: KeyId, db: DbDep) -> Response:
    if not await keys_repo.soft_delete(db, key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no key with id {key_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
