"""The ledger's batch handler: validate, price, store in one transaction (with the budgets' spend and the alerts it
decides), then publish what was recorded (and one notice of the days it touched, for dashboards).

Exactly once, end to end: the (source, id) unique key makes storing idempotent; what was stored is published with
the row id as message id, after the commit; and messages are acknowledged by the consumer loop only after both. A
crash anywhere makes JetStream redeliver: storing changes nothing the second time, and for a redelivered message the
ledger publishes the stored rows again, which JetStream's duplicate window turns into nothing if they went out before.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from psycopg_pool import AsyncConnectionPool

from cg_common.consumer import Outcome, TransientError
from cg_common.db import TRANSIENT_DB_ERRORS, Connection
from cg_common.logging import get_logger
from cg_common.pricing import Pricer
from cg_common.publishing import PublishError, publish_all
from cg_common.pull import deliveries
from cg_common.usage_event import InvalidEventError, UsageEvent, parse_usage_events
from cg_ledger import budget_spend, metrics
from cg_ledger.alert_publisher import AlertPublisher
from cg_ledger.batch_notice import announce
from cg_ledger.cost_events import cost_recorded_message
from cg_ledger.reservations import Settlement, settle
from cg_ledger.store import Stored, UsageRow, record_usage, recorded

log = get_logger(__name__)


class UsageRecorder:
    """Callable as the consumer loop's batch handler for the `CG_USAGE` stream."""

    def __init__(
        self, db: AsyncConnectionPool[Connection], nc: NATS, pricer: Pricer, alerts: AlertPublisher | None = None
    ) -> None:
        self._db = db
        self._nc = nc
        self._pricer = pricer
        self._alerts = alerts

    async def __call__(self, messages: Sequence[Msg]) -> list[Outcome]:
        started = time.perf_counter()
        outcomes = [Outcome.done()] * len(messages)
        rows: dict[tuple[str, str], UsageRow] = {}
        reservations: dict[tuple[str, str], str] = {}
        redelivered: set[tuple[str, str]] = set()
        # One clock reading per batch for the "not from the future" check.
        parsed = parse_usage_events([message.data for message in messages], now=datetime.now(UTC))
        for index, (message, event) in enumerate(zip(messages, parsed, strict=True)):
            if isinstance(event, InvalidEventError):
                outcomes[index] = Outcome.dead_letter(str(event))
                continue
            identity = (event.source, event.id)
            # A re-send inside the same batch is the same event: keep the first.
            if identity not in rows:
                rows[identity] = self._row(event, message)
                if event.data.reservation_id is not None:
                    reservations[identity] = event.data.reservation_id
            if deliveries(message) > 1:
                redelivered.add(identity)
        new, earlier, alerts = await self._store(rows, reservations, redelivered)
        if alerts and self._alerts is not None:
            try:
                await self._alerts.publish(alerts)
            except TRANSIENT_DB_ERRORS as error:  # committed and kept: the next fold round publishes them
                log.warning("budget alerts left for the next round", error=f"{type(error).__name__}: {error}"[:300])
        # Only what this commit recorded: a redelivered batch's rows were announced when first committed.
        await announce(self._nc, [row for row, _ in new])
        try:
            await publish_all(self._nc, [cost_recorded_message(row, result) for row, result in (*new, *earlier)])
        except PublishError as error:
            raise TransientError(f"cost.recorded not acknowledged: {error}") from error
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return outcomes

    def _row(self, event: UsageEvent, message: Msg) -> UsageRow:
        data = event.data
        # An unstamped event takes the time JetStream stored it: the same on every redelivery.
        occurred_at = event.time or message.metadata.timestamp.astimezone(UTC)
        price = self._pricer.price(
            data.provider,
            data.model,
            occurred_at,
            input_tokens=data.input_tokens,
            cached_input_tokens=data.cached_input_tokens,
            output_tokens=data.output_tokens,
            requests=data.requests,
        )
        return UsageRow.from_event(event, price, occurred_at=occurred_at)

    async def _store(
        self,
        rows: dict[tuple[str, str], UsageRow],
        reservations: dict[tuple[str, str], str],
        redelivered: set[tuple[str, str]],
    ) -> tuple[list[tuple[UsageRow, Stored]], list[tuple[UsageRow, Stored]], list[str]]:
        """Commit the new rows; returns the rows to publish: the new ones, and the already stored rows of
        redelivered messages (their first publication may have been lost in the crash that caused redelivery), and
        the ids of the budget alerts the commit decided."""
        try:
            async with self._db.connection() as conn, conn.transaction():
                inserted = await record_usage(conn, list(rows.values()))
                alerts = await budget_spend.apply(
                    conn, [r.id for r in inserted], [rows[(r.source, r.event_id)].cost for r in inserted]
                )
                again = redelivered - {(r.source, r.event_id) for r in inserted} if redelivered else set()
                earlier = await recorded(conn, sorted(again))
                # Last: the settlement takes the budgets' admission locks, held only until this commit.
                overruns = await settle(
                    conn,
                    [
                        Settlement(reservations[key], rows[key].cost, f"{key[0]} {key[1]}")
                        for key in ((r.source, r.event_id) for r in inserted)
                        if key in reservations
                    ],
                )
        except TRANSIENT_DB_ERRORS as error:
            raise TransientError(f"{type(error).__name__}: {error}") from error
        new = [(rows[(r.source, r.event_id)], r) for r in inserted]
        metrics.EVENTS_RECORDED.inc(len(new))
        metrics.ALERTS.inc(len(alerts))
        metrics.RESERVATIONS_SETTLED.inc(len(overruns))
        metrics.OVERRUNS.inc(sum(1 for overrun in overruns if overrun > 0))
        metrics.DUPLICATES.inc(len(rows) - len(new))
        metrics.UNPRICED.inc(sum(1 for row, _ in new if row.cost is None))
        # As first recorded, not as in this message: a re-send may differ, the first recording is what counts.
        return new, earlier, alerts
