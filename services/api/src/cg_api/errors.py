"""Error responses: clear 4xx for bad input, never an echo of what was sent, never a stack trace."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from cg_api.unavailable import install_unavailable_handlers
from cg_common.logging import get_logger

log = get_logger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    install_unavailable_handlers(app)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming each bad field; the submitted values are left out, since one of them may be a key."""
    return JSONResponse(
        {"detail": [_describe(item) for item in error.errors()]}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )


def _describe(item: Any) -> dict[str, Any]:
    return {"loc": list(item.get("loc", ())), "msg": str(item.get("msg", "invalid")), "type": item.get("type")}


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error", path=request.url.path, method=request.method)
    return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)
