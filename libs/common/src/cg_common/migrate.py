"""Schema migrations: ordered SQL files, each applied in a transaction of its own, under an advisory lock.

Any number of replicas may run `cg-migrate` at once: the first takes the lock and applies what is missing, the others
wait for it and then find nothing to do. An applied file that was edited afterwards is refused, not re-run.

A file whose first line is `-- cg:no-transaction` runs outside a transaction, statement by statement, as
`CREATE INDEX CONCURRENTLY` requires (it builds an index without holding the table's writers, but PostgreSQL refuses
it inside a transaction block). Its statements end with `;` at the end of a line; lines of only a `--` comment are
skipped. It is recorded once every statement succeeded, so a file that failed midway runs again from its start: it
must be written to be re-run, e.g. `DROP INDEX CONCURRENTLY IF EXISTS x;` before `CREATE INDEX CONCURRENTLY x …;`
(a failed concurrent build leaves an invalid index behind).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from importlib import resources

import psycopg

# Arbitrary constant shared by every replica: the advisory lock that serialises migrations.
MIGRATION_LOCK_ID = 0x6367_6D69_6772
NO_TRANSACTION = "-- cg:no-transaction"
LOCK_POLL_SECS = 0.2


class MigrationError(RuntimeError):
    """A migration failed, or an applied one was edited; the message names the file."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def file(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def in_transaction(self) -> bool:
        return not self.sql.startswith(NO_TRANSACTION)

    def statements(self) -> list[str]:
        """A no-transaction file's statements: each ends with `;` at the end of a line."""
        statements, current = [], []
        for line in self.sql.splitlines():
            if not line.strip() or line.strip().startswith("--"):
                continue
            current.append(line)
            if line.rstrip().endswith(";"):
                statements.append("\n".join(current))
                current = []
        if current:
            raise MigrationError(f"migration {self.file}: its last statement does not end with ';' at a line's end")
        return statements


def bundled_migrations() -> list[Migration]:
    """The SQL files shipped in `cg_common/migrations`, named `NNNN_description.sql`, in order."""
    found = []
    for entry in resources.files("cg_common.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(int(version), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def apply_migrations(database_url: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply what is missing, each file in a transaction of its own (or none, where it says so); returns the
    migrations this call applied. A failure stops at the file that failed, keeping those before it."""
    pending = bundled_migrations() if migrations is None else migrations
    applied_now: list[Migration] = []
    # Autocommit, so that between files this session holds no snapshot: a concurrent index build waits for every
    # older snapshot, this runner's included. The lock is the session's, held until the connection closes.
    with psycopg.connect(database_url, autocommit=True) as conn:
        _lock(conn)
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
                    raise MigrationError(f"migration {migration.file} was changed after it was applied")
                continue
            try:
                _apply(conn, migration)
            except psycopg.Error as error:
                raise MigrationError(f"migration {migration.file} failed: {error}") from error
            applied_now.append(migration)
    return applied_now


def _lock(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Take the migration lock, polling: a runner blocked inside `pg_advisory_lock` would hold a snapshot all along,
    which a concurrent index build of the runner holding the lock would wait for, while that runner waits for it."""
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_ID,)).fetchone()[0]:  # type: ignore[index]
        time.sleep(LOCK_POLL_SECS)


def _apply(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    record = "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
    values = (migration.version, migration.name, migration.checksum)
    if migration.in_transaction:
        with conn.transaction():
            conn.execute(migration.sql.encode())
            conn.execute(record, values)
        return
    for statement in migration.statements():
        conn.execute(statement.encode())
    conn.execute(record, values)
