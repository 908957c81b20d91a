"""A service's own PostgreSQL role, holding exactly the grants `cg_common.ownership` (and docs/architecture.md) give
it, so that a test run through it proves the service touches nothing else."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from cg_common.ownership import SERVICES, grants
from cg_common.service_roles import ensure_service_roles, role_name


@contextmanager
def service_role(database_url: str, service: str) -> Iterator[str]:
    """A login role for `service` in the database at `database_url` (which must be a superuser's); yields the URL
    that connects as it; the role is dropped on exit."""
    role = f"cg_{service}_{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        for statement in grants(service, role):
            conn.execute(statement)
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    try:
        yield urlunsplit(parts._replace(netloc=f"{role}@{host}"))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def migration_step_roles(database_url: str) -> dict[str, str]:
    """The roles the migration step makes (cg_api, cg_ledger, cg_prober, cg_scheduler) with fresh passwords; returns
    each service's DATABASE_URL through its role."""
    passwords = {service: secrets.token_hex(16) for service in SERVICES}
    ensure_service_roles(database_url, passwords)
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    return {
        service: urlunsplit(parts._replace(netloc=f"{role_name(service)}:{password}@{host}"))
        for service, password in passwords.items()
    }
