"""Static files through WhiteNoise: fingerprinted at start-up (a content hash in each name, so they can be cached for
a year), precompressed with brotli and gzip, and served by an ASGI adapter around WhiteNoise's own file responses
(WhiteNoise itself speaks WSGI; its file finding, content negotiation, ETags and cache headers are what we reuse)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send
from whitenoise import WhiteNoise
from whitenoise.compress import Compressor

SOURCE = Path(__file__).parent / "static"
URL_PREFIX = "/static/"
SERVED_SUFFIXES = frozenset({".js", ".css", ".svg", ".ico"})
HASH_CHARS = 12
FINGERPRINTED = re.compile(rf"\.[0-9a-f]{{{HASH_CHARS}}}\.\w+$")
ONE_YEAR = 365 * 24 * 3600
CHUNK = 64 * 1024


def fingerprint_all(source: Path, target: Path) -> dict[str, str]:
    """Copy each asset to `name.<hash>.ext` under `target`, compress it, and return {"css/app.css": its URL}."""
    compressor = Compressor(quiet=True)
    manifest = {}
    for path in sorted(_assets(source)):
        relative = path.relative_to(source)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:HASH_CHARS]
        hashed = relative.with_name(f"{path.stem}.{digest}{path.suffix}")
        destination = target / hashed
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        compressor.compress(str(destination))
        manifest[relative.as_posix()] = URL_PREFIX + hashed.as_posix()
    return manifest


def _assets(source: Path) -> Iterable[Path]:
    return (path for path in source.rglob("*") if path.is_file() and path.suffix in SERVED_SUFFIXES)


def whitenoise_for(root: Path) -> WhiteNoise:
    return WhiteNoise(
        None,
        root=str(root),
        prefix=URL_PREFIX,
        max_age=ONE_YEAR,
        allow_all_origins=False,
        immutable_file_test=lambda _path, url: bool(FINGERPRINTED.search(url)),
    )


class StaticFiles:
    """ASGI middleware: a request for a known static file is answered from WhiteNoise, anything else passes on."""

    def __init__(self, app: ASGIApp, files: WhiteNoise) -> None:
        self.app = app
        self.files = files

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        static_file = self.files.files.get(scope["path"]) if scope["type"] == "http" else None
        if static_file is None:
            await self.app(scope, receive, send)
            return
        # Header bytes as WSGI carries them (PEP 3333: latin-1), so that no byte a client sends can fail to decode.
        environ = {
            "HTTP_" + name.decode("latin-1").upper().replace("-", "_"): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        response = static_file.get_response(scope["method"], environ)
        headers = [(name.lower().encode(), value.encode()) for name, value in response.headers]
        await send({"type": "http.response.start", "status": int(response.status), "headers": headers})
        if response.file is None:
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            while chunk := await asyncio.to_thread(response.file.read, CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.file.close()
