"""The edges, over real sockets against real `cg-api serve` and `cg-web serve` processes: a body declared or streamed
over its limit is refused before it is read, and at once; no header byte and no crafted cursor or time is a 5xx."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_KEY, web_env_for
from tests.support.processes import ServiceProcess, running_api, running_web

GIB = 1024**3


@pytest.fixture
def api_and_web(api_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    with (
        running_api(api_env, tmp_path / "api.log") as api,
        running_web(web_env_for(api_env, api.url), tmp_path / "web.log") as web,
    ):
        yield api, web


async def raw_request(url: str, head: bytes, body_chunks: list[bytes] | None = None) -> tuple[int, float]:
    """Sends `head` (and the chunks, if any) on a fresh connection; returns the status and how long it took."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        for chunk in body_chunks or []:
            writer.write(chunk)
            await writer.drain()
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()
    return int(status_line.split()[1]), time.monotonic() - started


def head(method: str, path: str, *headers: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", *headers, b"", b""]
    return b"\r\n".join(lines)


async def test_a_declared_gigabyte_is_refused_at_once_on_the_api_and_the_sign_in(
    api_and_web: tuple[ServiceProcess, ServiceProcess],
) -> None:
    api, web = api_and_web
    declared = f"Content-Length: {GIB}".encode()
    for url, path, kind in (
        (api.url, "/keys", b"Content-Type: application/json"),
        (api.url, "/usage/events", b"Content-Type: application/json"),
        (web.url, "/dashboard/login", b"Content-Type: application/x-www-form-urlencoded"),
    ):
        status, took = await raw_request(url, head("POST", path, declared, kind))
        assert status == 413 and took < 1.0, (path, status, took)


async def test_a_streamed_body_is_cut_off_at_its_limit(api_and_web: tuple[ServiceProcess, ServiceProcess]) -> None:
    api, web = api_and_web
    chunk = b"x" * 16384
    chunked = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(8)]  # 128 KiB, over 64 KiB
    for url, path, extra in (
        (api.url, "/tokens", f"X-API-Key: {ADMIN_KEY}".encode()),
        (web.url, "/dashboard/login", b"Content-Type: application/x-www-form-urlencoded"),
    ):
        status, took = await raw_request(url, head("POST", path, b"Transfer-Encoding: chunked", extra), chunked)
        assert status == 413 and took < 1.0, (path, status)


async def test_without_a_credential_the_body_is_never_read(api_and_web: tuple[ServiceProcess, ServiceProcess]) -> None:
    api, _web = api_and_web
    # 10 KB declared (under the limit) and never sent: a 401 must come without waiting for it.
    status, took = await raw_request(api.url, head("POST", "/keys", b"Content-Length: 10000"))
    assert status == 401 and took < 1.0


async def test_no_header_byte_is_a_server_error(api_and_web: tuple[ServiceProcess, ServiceProcess]) -> None:
    api, web = api_and_web
    async with httpx.AsyncClient() as client:
        static_path = next(
            part.split('"')[0]
            for part in (await client.get(web.url + "/dashboard/login")).text.split('href="')[1:]
            if part.startswith("/static/")
        )
    targets = [(web.url, static_path), (web.url, "/dashboard/login"), (web.url, "/dashboard"), (api.url, "/keys")]
    for byte in range(0x80, 0x100):
        for url, path in targets:
            for header in (
                b"X-Odd: a" + bytes([byte]) + b"b",
                b"Accept-Encoding: gzip" + bytes([byte]),
                b'If-None-Match: "' + bytes([byte]) + b'"',
                b"Cookie: cg_session=" + bytes([byte]),
                b"X-API-Key: " + bytes([byte]) * 3,
            ):
                status, _took = await raw_request(url, head("GET", path, header))
                assert status < 500, (hex(byte), path, header, status)


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


CRAFTED_CURSORS = [
    _cursor("0001-01-01T00:00:00+14:00|1"),
    _cursor("9999-12-31T23:59:59-14:00|1"),
    _cursor("0001-01-01T00:00:00+00:00|1"),
    _cursor("2026-01-01T00:00:00+00:00|99999999999999999999999"),
    _cursor("2026-01-01T00:00:00|1"),
    _cursor("2026-01-01T00:00:00+00:00|-5"),
    _cursor("x|y|z"),
    _cursor("\u0000"),
    "%%%",
    "a" * 500,
]
ODD_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]


async def test_no_crafted_cursor_or_time_is_a_server_error(api: httpx.AsyncClient) -> None:
    for cursor in CRAFTED_CURSORS:
        for params in ({"cursor": cursor}, {"cursor": cursor, "model": "x"}):
            response = await api.get("/data", params=params)
            # A well-made cursor at the edge of time is an empty page or a 400; never a 5xx.
            assert response.status_code in (200, 400, 422), (cursor, response.status_code, response.text)
    for moment in ODD_TIMES:
        for path in ("/data", "/usage/summary", "/usage/billed"):
            for name in ("since", "until"):
                response = await api.get(path, params={name: moment})
                assert response.status_code < 500, (path, name, moment, response.status_code, response.text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cursor=st.one_of(st.text(max_size=300), st.binary(max_size=200).map(lambda b: _cursor(b.decode("latin-1")))))
async def test_any_cursor_is_a_page_or_a_4xx(api: httpx.AsyncClient, cursor: str) -> None:
    response = await api.get("/data", params={"cursor": cursor})
    assert response.status_code in (200, 400, 422), (cursor, response.status_code, response.text)
