"""Searches everything the system keeps or emits for a plaintext secret."""

from __future__ import annotations

import nats
import psycopg
import redis
from nats.js.errors import NotFoundError
from psycopg import sql


def database_holds(database_url: str, secret: str) -> list[str]:
    """Tables (and columns) whose stored text or bytes contain `secret`, across the whole public schema."""
    found = []
    needle = secret.encode()
    with psycopg.connect(database_url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
        for table, column in columns:
            query = sql.SQL("SELECT {}::text, {} FROM {}").format(
                sql.Identifier(column), sql.Identifier(column), sql.Identifier(table)
            )
            for as_text, raw in conn.execute(query):
                raw_bytes = bytes(raw) if isinstance(raw, bytes | memoryview) else b""
                if (as_text and secret in as_text) or needle in raw_bytes:
                    found.append(f"{table}.{column}")
    return found


def redis_holds(redis_url: str, secret: str) -> list[str]:
    client = redis.Redis.from_url(redis_url)
    found = []
    try:
        for key in client.scan_iter():
            dumped = client.dump(key) or b""
            if secret.encode() in key or secret.encode() in dumped:
                found.append(key.decode(errors="replace"))
    finally:
        client.close()
    return found


async def nats_holds(nats_url: str, secret: str) -> list[str]:
    """Streams (and sequences) any of whose messages carry `secret` in their payload, subject or headers."""
    nc = await nats.connect(nats_url)
    found = []
    needle = secret.encode()
    try:
        js = nc.jetstream()
        for stream in await js.streams_info():
            name = stream.config.name or ""
            if not stream.state.messages:
                continue
            for seq in range(stream.state.first_seq, stream.state.last_seq + 1):
                try:
                    msg = await js.get_msg(name, seq)
                except NotFoundError:
                    continue
                headers = " ".join(f"{k}={v}" for k, v in (msg.headers or {}).items()).encode()
                if needle in (msg.data or b"") or needle in headers or needle in (msg.subject or "").encode():
                    found.append(f"{name}#{seq}")
    finally:
        await nc.close()
    return found
