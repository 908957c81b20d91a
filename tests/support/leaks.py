"""Searches everything the system keeps or emits for a plaintext secret."""

from __future__ import annotations

import psycopg
import redis
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
