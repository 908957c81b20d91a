"""Budgets (contract section 8): made and changed by admins, read with `read`, each shown with its current period."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from psycopg.errors import UniqueViolation

from cg_api import budgets_repo, dimension_params, summary_repo
from cg_api.budget_schemas import BudgetCreate, BudgetOut, BudgetPatch, BudgetScope
from cg_api.budget_status import current_period, opening
from cg_api.deps import DbDep
from cg_api.schemas import ErrorOut

router = APIRouter(prefix="/budgets", tags=["budgets"])
T = TypeVar("T")

BudgetId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The budget's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No live budget with this id."}}
TAKEN: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "A live budget has this name."}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BudgetOut, responses=TAKEN)
async def create_budget(body: BudgetCreate, db: DbDep, request: Request) -> BudgetOut:
    rolled = await summary_repo.rolled_up(db, one_snapshot=False)
    await _check_scope(db, body.scope, rolled)
    values = body.model_dump(exclude={"scope"}) | {"scope": body.scope.stored()}
    await budgets_repo.lock(db)
    values |= await opening(db, values, rolled)
    row = await _named_uniquely(budgets_repo.insert(db, values), body.name)
    request.state.audit_target = row["id"]
    return await _out(db, row, rolled)


@router.get("", response_model=list[BudgetOut])
async def list_budgets(db: DbDep) -> list[BudgetOut]:
    """Every live budget with its current period (spent over the period so far, forecast at its end)."""
    rolled = await summary_repo.rolled_up(db)
    return [await _out(db, row, rolled) for row in await budgets_repo.live(db)]


@router.get("/{budget_id}", response_model=BudgetOut, responses=NOT_FOUND)
async def get_budget(budget_id: BudgetId, db: DbDep) -> BudgetOut:
    rolled = await summary_repo.rolled_up(db)
    rows = await budgets_repo.live(db, budget_id)
    if not rows:
        raise _not_found(budget_id)
    return await _out(db, rows[0], rolled)


@router.patch("/{budget_id}", response_model=BudgetOut, responses={**NOT_FOUND, **TAKEN})
async def change_budget(budget_id: BudgetId, body: BudgetPatch, db: DbDep) -> BudgetOut:
    """Only the fields given change; the current period is judged by the new definition at once."""
    rolled = await summary_repo.rolled_up(db, one_snapshot=False)
    changes = body.model_dump(exclude_unset=True, exclude={"scope"})
    if body.scope is not None:
        await _check_scope(db, body.scope, rolled)
        changes["scope"] = body.scope.stored()
    if any(value is None for value in changes.values()):
        raise dimension_params.unprocessable(
            next(name for name, value in changes.items() if value is None),
            "a field given must have a value (leave it out to keep it)",
            where="body",
        )
    if any(name in changes for name in budgets_repo.COUNTED_UNDER):
        await budgets_repo.lock(db)
        rows = await budgets_repo.live(db, budget_id)
        if not rows:
            raise _not_found(budget_id)
        changes |= await opening(db, {**rows[0], **changes}, rolled)
    row = await _named_uniquely(budgets_repo.update(db, budget_id, changes), body.name or "")
    if row is None:
        raise _not_found(budget_id)
    return await _out(db, row, rolled)


@router.delete("/{budget_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_budget(budget_id: BudgetId, db: DbDep) -> Response:
    if not await budgets_repo.delete(db, budget_id):
        raise _not_found(budget_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _out(db: DbDep, row: dict[str, Any], rolled: summary_repo.RolledUp) -> BudgetOut:
    return BudgetOut.model_validate({**row, "current": await current_period(db, row, rolled)})


async def _check_scope(db: DbDep, scope: BudgetScope, rolled: summary_repo.RolledUp) -> None:
    """A scope names what exists: a stored key, dimensions (what the roll-ups can sum)."""
    for name in scope.attributes:
        dimension_params.require_dimension(
            f"attributes.{name}", rolled, parameter=f"scope.attributes.{name}", where="body"
        )
    if scope.key_id is not None:
        cursor = await db.execute("SELECT 1 FROM api_keys WHERE id = %s AND deleted_at IS NULL", (scope.key_id,))
        if await cursor.fetchone() is None:
            raise dimension_params.unprocessable("scope.key_id", f"no stored key has id {scope.key_id}", where="body")


async def _named_uniquely(write: Awaitable[T], name: str) -> T:
    try:
        return await write
    except UniqueViolation:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"a live budget is already named {name!r}") from None


def _not_found(budget_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no live budget with id {budget_id}")
