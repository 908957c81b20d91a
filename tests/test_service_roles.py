"""Each service's own PostgreSQL role, made by the migration step with exactly the grants docs/architecture.md
lists: what a service needs works through it (the pipeline test runs every service on its role), and what it does
not own is refused by PostgreSQL itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from cg_common.service_roles import ensure_service_roles, password_variable, role_name
from tests.conftest import ADMIN_KEY, api_client, settings_from
from tests.support.keys import fake_openai_key
from tests.support.processes import script
from tests.support.roles import migration_step_roles

REFUSED = [
    ("ledger", "INSERT INTO api_keys (label, ciphertext, fingerprint, prefix, last4) VALUES ('x', 'x', 'x', 'x', 'x')"),
    ("ledger", "UPDATE api_tokens SET revoked_at = now()"),
    ("ledger", "SELECT ciphertext FROM api_keys"),
    ("api", "INSERT INTO usage_events (source, event_id) VALUES ('x', 'y')"),
    ("api", "UPDATE key_health SET consecutive_failures = 0"),
    ("api", "TRUNCATE usage_events"),
    ("scheduler", "SELECT ciphertext FROM api_keys"),
    ("scheduler", "SELECT * FROM usage_events"),
    ("prober", "SELECT * FROM usage_events"),
    ("prober", "SELECT * FROM billed_costs"),
    ("prober", "SELECT * FROM api_tokens"),
    ("api", "CREATE TABLE sneaky (x int)"),
]


@pytest.mark.parametrize(("service", "statement"), REFUSED)
def test_what_a_service_does_not_own_is_refused(api_env: dict[str, str], service: str, statement: str) -> None:
    url = migration_step_roles(api_env["DATABASE_URL"])[service]
    with psycopg.connect(url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


async def test_the_api_does_its_whole_job_through_its_role(api_env: dict[str, str]) -> None:
    url = migration_step_roles(api_env["DATABASE_URL"])["api"]
    async with api_client(settings_from({**api_env, "DATABASE_URL": url})) as api:
        assert (await api.post("/keys", json={"label": "k", "api_key": fake_openai_key()})).status_code == 201
        token = await api.post("/tokens", json={"name": "t", "scopes": ["read"]})
        assert token.status_code == 201
        assert (await api.get("/keys", headers={"X-API-Key": token.json()["token"]})).status_code == 200
        for path in ("/keys", "/data", "/usage/summary", "/usage/billed", "/metrics", "/tokens", "/audit"):
            assert (await api.get(path)).status_code == 200, path
        assert (await api.post("/sessions", json={"credential": ADMIN_KEY})).status_code == 201
        assert (await api.delete("/reset")).status_code == 204  # through the ledger's clear_usage()
        assert (await api.delete(f"/tokens/{token.json()['id']}")).status_code == 204


def test_a_later_run_takes_back_whatever_was_granted_by_hand(api_env: dict[str, str]) -> None:
    url = migration_step_roles(api_env["DATABASE_URL"])["ledger"]
    with psycopg.connect(api_env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(f"GRANT INSERT ON api_keys TO {role_name('ledger')}")
    ensure_service_roles(api_env["DATABASE_URL"], {"ledger": "again"})
    with psycopg.connect(url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "INSERT INTO api_keys (label, ciphertext, fingerprint, prefix, last4) VALUES ('x', 'x', 'x', 'x', 'x')"
        )


def test_cg_migrate_makes_the_roles_the_environment_names(api_env: dict[str, str], tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": api_env["DATABASE_URL"],
        "NATS_URL": api_env["NATS_URL"],
        password_variable("scheduler"): "s3cret-scheduler",
        "LOG_LEVEL": "info",
    }
    done = subprocess.run(
        [*script("cg-migrate"), "--only", "sql"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert '"roles": ["cg_scheduler"]' in done.stdout
    with psycopg.connect(api_env["DATABASE_URL"]) as conn:
        granted = conn.execute(
            """SELECT table_name, privilege_type FROM information_schema.role_table_grants
               WHERE grantee = 'cg_scheduler' ORDER BY 1, 2"""
        ).fetchall()
        columns = conn.execute(
            "SELECT column_name FROM information_schema.column_privileges WHERE grantee = 'cg_scheduler' ORDER BY 1"
        ).fetchall()
    assert granted == []  # no whole table: only the columns it reads
    assert [c for (c,) in columns] == ["active", "deleted_at", "id"]
