"""The ledger's handler for probe results: each key's health in `key_health` (the ledger's table; the api reads it),
applied exactly once.

Per result, under the lock of the key's `key_health` row: a result older than the key's last success changes nothing
(it cannot alter the failure streak since); one already in `key_probe_results` changes nothing (a re-send or a
redelivery); otherwise it is remembered and applied. A success resets `consecutive_failures` to the failures
remembered after it (those that arrived before it, out of order) and forgets everything older; a failure adds one.
The "last …" columns follow the newest result by `probed_at`, whatever order results arrive in. Results of deleted or
unknown keys are ignored.

Memory is bounded: results probed longer ago than `CG_PROBE_RESULTS` keeps messages (7 days) are ignored, so the rows
of a key failing for weeks can be forgotten after that time without a late re-send ever counting twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.msg import Msg
from prometheus_client import Counter
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from cg_common.clock_skew import ALLOWED_SKEW, future_by
from cg_common.consumer import Outcome, TransientError
from cg_common.db import TRANSIENT_DB_ERRORS, Connection
from cg_common.logging import SecretScrubber
from cg_common.probes import ProbeResult
from cg_common.subjects import PROBE_RESULT_STREAM

APPLIED = Counter("cg_ledger_probe_results_applied", "Probe results applied to a key's health.")
IGNORED = Counter(
    "cg_ledger_probe_results_ignored",
    "Probe results that changed nothing: already applied, older than the key's last success, or of a deleted key.",
)

MAX_ERROR_CHARS = 500
MEMORY = timedelta(seconds=PROBE_RESULT_STREAM.max_age_secs)
PRUNE_EVERY_FAILURES = 100
_scrubber = SecretScrubber()


def error_text(result: ProbeResult) -> str | None:
    """What `last_error` shows: code and message, scrubbed again here whatever the prober did."""
    if result.ok:
        return None
    parts = [part for part in (result.error_code or result.outcome, result.error_message) if part]
    return _scrubber.text(": ".join(parts))[:MAX_ERROR_CHARS]


class KeyHealthRecorder:
    """Callable as the consumer loop's batch handler for the `CG_PROBE_RESULTS` stream."""

    def __init__(self, db: AsyncConnectionPool[Connection]) -> None:
        self._db = db

    async def __call__(self, messages: Sequence[Msg]) -> list[Outcome]:
        outcomes = [Outcome.done()] * len(messages)
        results: list[ProbeResult] = []
        for index, message in enumerate(messages):
            try:
                result = ProbeResult.model_validate_json(message.data)
            except ValidationError as error:
                outcomes[index] = Outcome.dead_letter(f"not a probe result: {_first_error(error)}")
                continue
            ahead = future_by(result.probed_at)
            if ahead is not None:
                outcomes[index] = Outcome.dead_letter(
                    f"probe result from the future: probed_at {result.probed_at.isoformat()} is {ahead} ahead of "
                    f"the ledger's clock (allowed skew {ALLOWED_SKEW})"
                )
                continue
            results.append(result)
        # Rows are locked in key order, so concurrent batches (and replicas) never deadlock.
        results.sort(key=lambda r: (r.key_id, r.probed_at, r.request_id))
        try:
            async with self._db.connection() as conn, conn.transaction():
                for result in results:
                    applied = await apply_result(conn, result)
                    (APPLIED if applied else IGNORED).inc()
        except TRANSIENT_DB_ERRORS as error:
            raise TransientError(f"{type(error).__name__}: {error}") from error
        return outcomes


async def apply_result(conn: Connection, result: ProbeResult) -> bool:
    """Apply one result inside the caller's transaction; False when it changes nothing."""
    # The key must be stored and live (api_keys, read only); its health row is made on its first result.
    await conn.execute(
        """INSERT INTO key_health (key_id) SELECT id FROM api_keys WHERE id = %s AND deleted_at IS NULL
           ON CONFLICT DO NOTHING""",
        (result.key_id,),
    )
    cursor = await conn.execute(
        """SELECT h.last_probe_at, h.last_success_at, h.consecutive_failures
           FROM key_health h JOIN api_keys k ON k.id = h.key_id
           WHERE h.key_id = %s AND k.deleted_at IS NULL FOR UPDATE OF h""",
        (result.key_id,),
    )
    key = await cursor.fetchone()
    horizon = datetime.now(UTC) - MEMORY
    if key is None or result.probed_at < horizon or _before(result.probed_at, key["last_success_at"]):
        return False
    cursor = await conn.execute(
        """INSERT INTO key_probe_results (key_id, request_id, probed_at, ok) VALUES (%s, %s, %s, %s)
           ON CONFLICT DO NOTHING""",
        (result.key_id, result.request_id, result.probed_at, result.ok),
    )
    if cursor.rowcount == 0:
        return False
    health: dict[str, Any] = {"key_id": result.key_id}
    if result.ok:
        health["last_success_at"] = result.probed_at
        health["consecutive_failures"] = await _failures_after(conn, result)
        await conn.execute(
            "DELETE FROM key_probe_results WHERE key_id = %s AND probed_at < %s", (result.key_id, result.probed_at)
        )
    else:
        health["consecutive_failures"] = key["consecutive_failures"] + 1
        if health["consecutive_failures"] % PRUNE_EVERY_FAILURES == 0:  # a key failing for long: forget the oldest
            await conn.execute(
                "DELETE FROM key_probe_results WHERE key_id = %s AND probed_at < %s", (result.key_id, horizon)
            )
    if key["last_probe_at"] is None or result.probed_at > key["last_probe_at"]:
        health |= {
            "last_probe_at": result.probed_at,
            "last_outcome": result.outcome,
            "last_status": result.http_status,
            "last_latency_ms": result.latency_ms,
            "last_error": error_text(result),
        }
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in health if name != "key_id"
    )
    await conn.execute(sql.SQL("UPDATE key_health SET {} WHERE key_id = %(key_id)s").format(assignments), health)
    return True


async def _failures_after(conn: Connection, result: ProbeResult) -> int:
    cursor = await conn.execute(
        "SELECT count(*) AS n FROM key_probe_results WHERE key_id = %s AND NOT ok AND probed_at > %s",
        (result.key_id, result.probed_at),
    )
    row = await cursor.fetchone()
    return int(row["n"]) if row else 0


def _before(moment: datetime, last_success_at: datetime | None) -> bool:
    return last_success_at is not None and moment <= last_success_at


def _first_error(error: ValidationError) -> str:
    item = error.errors()[0]
    return f"{'.'.join(str(p) for p in item['loc']) or 'body'}: {item['msg']}"
