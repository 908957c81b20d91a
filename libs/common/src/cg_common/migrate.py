"""Schema migrations: ordered SQL files applied in one transaction under an advisory lock.

Any number of replicas may run `cg-migrate` at once: the first takes the lock and applies what is missing, the others
wait for it and then find nothing to do. An applied file that was edited afterwards is refused, not re-run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg

# Arbitrary constant shared by every replica: the advisory lock that serialises migrations.
MIGRATION_LOCK_ID = 0x6367_6D69_6772


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def bundled_migrations() -> list[Migration]:
    """The SQL files shipped in `cg_common/migrations`, named `NNNN_description.sql`, in order."""
    found = []
    for entry in resources.files("cg_common.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(int(version), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def apply_migrations(database_url: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply what is missing; returns the migrations this call applied."""
    pending = bundled_migrations() if migrations is None else migrations
    applied_now: list[Migration] = []
    with psycopg.connect(database_url, autocommit=False) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done: dict[int, str] = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        for migration in pending:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise RuntimeError(
                        f"migration {migration.version}_{migration.name} was changed after it was applied"
                    )
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied_now.append(migration)
        conn.commit()
    return applied_now
