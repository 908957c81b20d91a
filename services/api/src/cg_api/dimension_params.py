"""The `attributes.<name>=<value>` filters and `attributes.<name>` groupings of /data and /usage/summary, checked
against the dimensions the ledger rolls up: 422 naming the parameter for anything else."""

from __future__ import annotations

from fastapi import HTTPException, Request, status

from cg_api.summary_repo import RolledUp
from cg_api.usage_schemas import attribute_filters
from cg_common.dimensions import attribute_of, is_dimension_member


def unprocessable(parameter: str, message: str, *, where: str = "query") -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, naming the parameter (or body field)."""
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[
            {
                "loc": [where, *(parameter.split(".") if where == "body" else [parameter])],
                "msg": message,
                "type": "value_error",
            }
        ],
    )


def filters_of(request: Request, rolled: RolledUp) -> tuple[tuple[str, str], ...]:
    """The request's dimension filters as (name, value) pairs."""
    try:
        found = attribute_filters(request.query_params, request.query_params.getlist)
    except ValueError as error:
        raise unprocessable("attributes", str(error)) from None
    for name, _ in found:
        require_dimension(f"attributes.{name}", rolled, parameter=f"attributes.{name}")
    return found


def require_dimension(member: str, rolled: RolledUp, *, parameter: str, where: str = "query") -> None:
    """A member that names an attribute must name a dimension (DIMENSIONS, as the ledger rolls them up)."""
    if is_dimension_member(member) and attribute_of(member) not in rolled.dimensions:
        known = ", ".join(rolled.dimensions) or "none"
        message = f"{attribute_of(member)!r} is not a dimension (DIMENSIONS: {known})"
        raise unprocessable(parameter, message, where=where)
