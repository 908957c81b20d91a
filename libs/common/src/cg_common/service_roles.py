"""One PostgreSQL role per service, with exactly the grants `cg_common.ownership` (and docs/architecture.md) give it:
made or brought up to date by the migration step every time it runs, so a table added by a later migration reaches
its owner's and readers' roles with the same release. A deployment then gives each service a DATABASE_URL of its
own role, and a service that tries to touch what it does not own is refused by PostgreSQL itself."""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import sql

from cg_common.ownership import SERVICES, TABLES, grants

ROLE_PREFIX = "cg_"
PASSWORD_VARIABLE = "PG_{service}_PASSWORD"  # noqa: S105 - a variable name: PG_API_PASSWORD, PG_LEDGER_PASSWORD, …


def role_name(service: str) -> str:
    return f"{ROLE_PREFIX}{service}"


def password_variable(service: str) -> str:
    return PASSWORD_VARIABLE.format(service=service.upper())


def passwords_from(environ: Mapping[str, str]) -> dict[str, str]:
    """The roles' passwords the environment gives (PG_<SERVICE>_PASSWORD); a service without one gets no role."""
    return {
        service: environ[password_variable(service)] for service in SERVICES if environ.get(password_variable(service))
    }


def ensure_service_roles(database_url: str, passwords: Mapping[str, str]) -> list[str]:
    """Creates or updates each service's login role and sets its grants to exactly what ownership says (anything
    granted before is revoked first); returns the roles brought up to date."""
    done = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        database = conn.info.dbname
        for service, password in passwords.items():
            role = sql.Identifier(role_name(service))
            with conn.transaction():
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role_name(service),)).fetchone()
                verb = sql.SQL("ALTER ROLE" if exists else "CREATE ROLE")
                conn.execute(sql.SQL("{} {} LOGIN PASSWORD {}").format(verb, role, sql.Literal(password)))
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role))
                conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(role))
                conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(role))
                conn.execute(sql.SQL("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {}").format(role))
                for statement in grants(service, role_name(service)):
                    conn.execute(statement)
                for sequence in _sequences_of(conn, [t.name for t in TABLES if t.owner == service]):
                    conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sql.Identifier(sequence), role))
            done.append(role_name(service))
    return done


def _sequences_of(conn: psycopg.Connection[tuple[object, ...]], tables: list[str]) -> list[str]:
    """The sequences behind the tables' serial columns (an owner inserts rows, and so draws ids)."""
    rows = conn.execute(
        """SELECT DISTINCT s.relname FROM pg_class s
           JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')
           JOIN pg_class t ON t.oid = d.refobjid
           WHERE s.relkind = 'S' AND t.relname = ANY(%s)""",
        (tables,),
    ).fetchall()
    return [str(row[0]) for row in rows]
