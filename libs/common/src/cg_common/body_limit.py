"""Request bodies bounded before they are read: the outermost layer of the api and of the dashboard.

A declared `Content-Length` over the path's limit is answered 413 at once, before authentication, routing or any
read; a body sent without one (chunked) is counted as it arrives and cut off with 413 the moment it passes the
limit. So a client that announces a gigabyte costs the server one look at its headers, and one that streams it
costs at most the limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LimitFor = Callable[[str, str], int]  # (method, path) → the largest body accepted, in bytes


class BodyTooLargeError(HTTPException):
    """Raised from `receive` when a streamed body passes its limit; an HTTPException, so that the frameworks'
    body readers pass it on as the 413 it is instead of wrapping it as a parse error."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"the request body is over {limit} bytes, the limit for this path")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit_for: LimitFor, json_errors: bool = True) -> None:
        self.app = app
        self.limit_for = limit_for
        self.json_errors = json_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _declared_length(scope)
        if declared == -1:
            await self._answer(send, 400, "Content-Length is not a number")
            return
        if declared is not None and declared > limit:
            await self._answer(send, 413, f"the request body is {declared} bytes; the limit for this path is {limit}")
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, noting_start)
        except BodyTooLargeError as error:
            if started:
                raise
            await self._answer(send, 413, str(error.detail))

    async def _answer(self, send: Send, status: int, detail: str) -> None:
        if self.json_errors:
            body, content_type = json.dumps({"detail": detail}).encode(), b"application/json"
        else:
            body, content_type = f"{detail[0].upper()}{detail[1:]}.\n".encode(), b"text/plain; charset=utf-8"
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        # The unread rest of the body is not waited for: the connection is closed after this answer.
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    """The declared length; None when none is declared, -1 when it is not a number."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None
