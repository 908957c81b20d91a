"""Whatever goes wrong, the person sees a page (or, for htmx, a message) that says what and what to do next:
never a stack trace, never a blank page."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from cg_common.logging import get_logger
from cg_web.access import LOGIN_PATH, CsrfError, ReadOnlyError, SignInRequiredError, sign_out
from cg_web.api_client import ApiError, SessionEndedError
from cg_web.rendering import is_htmx, render

log = get_logger(__name__)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SignInRequiredError, _sign_in_required)
    app.add_exception_handler(CsrfError, _csrf_failed)
    app.add_exception_handler(ReadOnlyError, _read_only)
    app.add_exception_handler(SessionEndedError, _session_ended)
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected)


def problem(request: Request, status_code: int, title: str, message: str) -> Response:
    """The error page, or for htmx the message alone, shown in the page's message area."""
    if is_htmx(request):
        return render(
            request,
            "error.html",
            {"title": title, "message": message},
            block="message",
            status_code=status_code,
            headers={"HX-Retarget": "#messages", "HX-Reswap": "innerHTML"},
        )
    return render(request, "error.html", {"title": title, "message": message}, status_code=status_code)


async def _sign_in_required(request: Request, _error: Exception) -> Response:
    if is_htmx(request):
        return Response(status_code=status.HTTP_401_UNAUTHORIZED, headers={"HX-Redirect": LOGIN_PATH})
    target = LOGIN_PATH if request.method != "GET" else f"{LOGIN_PATH}?next={request.url.path}"
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


async def _csrf_failed(request: Request, _error: Exception) -> Response:
    return problem(
        request,
        status.HTTP_403_FORBIDDEN,
        "This form has expired",
        "The request did not carry this session's security token. Reload the page and try again.",
    )


async def _session_ended(request: Request, error: Exception) -> Response:
    sign_out(request)
    return await _sign_in_required(request, error)


async def _read_only(request: Request, _error: Exception) -> Response:
    return problem(
        request,
        status.HTTP_403_FORBIDDEN,
        "This sign-in can only look",
        "You signed in with a read-only token. Sign in with the admin key or an admin token to make changes.",
    )


async def _api_error(request: Request, error: ApiError) -> Response:
    status_code = error.status if 400 <= error.status < 600 else status.HTTP_502_BAD_GATEWAY
    if status_code in (502, 503, 504):  # something behind the dashboard is away: it passes, nothing to fix here
        message = f"{error.message.rstrip('.')}. This page works again by itself once it is back."
        return problem(request, status_code, "Temporarily unavailable", message)
    return problem(request, status_code, "The api could not help", error.message)


async def _http_error(request: Request, error: HTTPException) -> Response:
    if error.status_code == status.HTTP_404_NOT_FOUND:
        return problem(request, 404, "Not found", "There is no page here. Use the menu above.")
    return problem(request, error.status_code, "Request refused", str(error.detail))


async def _invalid_request(request: Request, _error: Exception) -> Response:
    """A hand-made URL or form (an id that is not a number, a field far too long): a page, not FastAPI's JSON."""
    return problem(
        request, 422, "That request was not valid", "Something in the address or the form was not understood."
    )


async def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path, method=request.method)
    return problem(request, 500, "Something went wrong", "The dashboard hit an unexpected error; it has been logged.")
