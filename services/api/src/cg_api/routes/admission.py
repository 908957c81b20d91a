"""Admission over HTTP (`admit` or `admin`): reserve before a call, release when the call is not made. The usage
event that names the reservation settles it (the ledger, in the transaction that records the event)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response, status

from cg_api import admission, admission_repo
from cg_api.admission_schemas import AdmitOut, AdmitRequest
from cg_api.deps import DbDep, ResourcesDep
from cg_api.dimension_params import unprocessable
from cg_api.schemas import ErrorOut

router = APIRouter(prefix="/budgets", tags=["admission"])

ReservationId = Annotated[uuid.UUID, Path(description="The reservation's id, as POST /budgets/admit gave it.")]
RELEASE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No reservation with this id."},
    409: {"model": ErrorOut, "description": "Settled already: its usage event has counted as spent."},
}


@router.post("/admit", response_model=AdmitOut, response_model_exclude_none=True)
async def admit(body: AdmitRequest, resources: ResourcesDep) -> AdmitOut:
    """Admitted: name `reservation_id` in the usage event (`data.reservation_id`) or release it. Refused: the first
    hard budget that cannot take the amount, with what it has left. Only `hard` budgets refuse."""
    try:
        return await admission.admit(resources.admissions, body)
    except admission.UnpricedError as error:
        raise unprocessable("max_tokens", str(error), where="body") from None


@router.delete("/reservations/{reservation_id}", status_code=status.HTTP_204_NO_CONTENT, responses=RELEASE_RESPONSES)
async def release(reservation_id: ReservationId, db: DbDep) -> Response:
    """The call was not made: what it held goes back to its budgets at once. Releasing one that was released or
    has expired changes nothing (204)."""
    ended = await admission_repo.release(db, reservation_id)
    if ended is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no reservation {reservation_id}")
    if ended == "settled":
        raise HTTPException(status.HTTP_409_CONFLICT, detail="the reservation was settled by its usage event")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
