"""Key management: store encrypted, list masked, toggle, delete, probe now."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response, status
from nats.errors import Error as NatsError

from cg_api import keys_repo
from cg_api.auth import Authenticated
from cg_api.deps import DbDep, ResourcesDep
from cg_api.probing import NoResultError, PipelineUnavailableError, probe_now
from cg_api.schemas import ErrorOut, KeyActive, KeyCreate, KeyOut
from cg_api.unavailable import DependencyUnavailableError, UnavailableOut
from cg_common.crypto import fingerprint, prefix_of
from cg_common.logging import get_logger
from cg_common.probes import ProbeResult, probe_request_subject
from cg_common.subjects import PROBE_REQUEST_STREAM

router = APIRouter(prefix="/keys", tags=["keys"], dependencies=[Authenticated])

KeyId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The key's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No live key with this id."}}
PROBE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    503: {"model": UnavailableOut, "description": "NATS does not answer; no probe could be requested."},
    504: {"model": ErrorOut, "description": "No probe result within PROBE_WAIT_SECS (is the prober running?)."},
}
PURGE_TIMEOUT_SECS = 1.0

log = get_logger(__name__)


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
async def delete_key(key_id: KeyId, db: DbDep, resources: ResourcesDep) -> Response:
    """The key's pending probe requests are purged too, after the deletion is committed (so the scheduler, which
    reads committed keys, cannot queue a new one behind the purge); best effort, as the prober skips deleted keys."""
    if not await keys_repo.soft_delete(db, key_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no key with id {key_id}")
    await db.commit()
    if not resources.nats.is_connected:
        log.warning("pending probe requests not purged: NATS is not connected", key_id=key_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    try:
        async with asyncio.timeout(PURGE_TIMEOUT_SECS):
            await resources.js.purge_stream(PROBE_REQUEST_STREAM.name, subject=probe_request_subject(key_id))
    except (NatsError, TimeoutError) as error:
        log.warning("pending probe requests not purged", key_id=key_id, error=type(error).__name__)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{key_id}/probe", response_model=ProbeResult, responses=PROBE_RESPONSES)
async def probe_key(key_id: KeyId, resources: ResourcesDep) -> ProbeResult:
    """Ask the pipeline for a probe of this key now and answer with its result (ok or not) within PROBE_WAIT_SECS."""
    async with resources.db.connection() as conn:  # released before the wait, which may last seconds
        if await keys_repo.get_live(conn, key_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no key with id {key_id}")
    wait = resources.settings.probe_wait_secs
    try:
        return await probe_now(resources.nats, key_id, wait_secs=wait)
    except PipelineUnavailableError:
        raise DependencyUnavailableError("nats", "NATS does not answer; no probe could be requested") from None
    except NoResultError:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT, detail=f"no probe result within {wait:g} s; is the prober running?"
        ) from None
