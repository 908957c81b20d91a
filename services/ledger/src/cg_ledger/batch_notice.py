"""After each commit that recorded new usage, one `cg.cost.batch.recorded` notice (`cg_common.cost_batches`): the
UTC days the batch touched, with events and cost per day, summed from the batch's own rows. Dashboards refresh from
it instead of reading every `cg.cost.recorded`; it costs the ledger a dictionary update per event and one small
publish per batch."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date
from decimal import Decimal

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from cg_common.cost_batches import CostBatchRecorded, DayCost
from cg_common.logging import get_logger
from cg_common.subjects import COST_BATCH_RECORDED
from cg_ledger.store import UsageRow

log = get_logger(__name__)

ZERO = Decimal(0)


def batch_notice(rows: Iterable[UsageRow]) -> CostBatchRecorded | None:
    """The notice for these newly recorded rows; None when there are none."""
    costs: dict[date, list[Decimal | None]] = {}
    for row in rows:
        costs.setdefault(row.occurred_at.astimezone(UTC).date(), []).append(row.cost)
    if not costs:
        return None
    days = tuple(
        # An unpriced row (cost None) counts as an event and adds nothing to the cost.
        DayCost(day=day, events=len(day_costs), cost=sum(filter(None, day_costs), ZERO))
        for day, day_costs in sorted(costs.items())
    )
    return CostBatchRecorded(days=days, events=sum(d.events for d in days), cost=sum((d.cost for d in days), ZERO))


async def announce(nc: NATS, rows: Iterable[UsageRow]) -> None:
    """Publish the notice for these newly recorded rows without waiting for anything (a core NATS publish only
    queues it). Never raises: the batch is committed whatever becomes of its notice, and a lost one costs a
    dashboard a refresh."""
    notice = batch_notice(rows)
    if notice is None:
        return
    try:
        await nc.publish(COST_BATCH_RECORDED, notice.model_dump_json().encode())
    except NatsError as error:
        log.warning("cost batch notice not published", error=type(error).__name__)
