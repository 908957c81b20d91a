"""The ledger's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_RECORDED = Counter("cg_ledger_events_recorded", "Usage events recorded for the first time.")
DUPLICATES = Counter("cg_ledger_duplicates", "Usage events skipped because (source, id) was already recorded.")
UNPRICED = Counter("cg_ledger_unpriced", "Usage events recorded without a price (model unknown to the price data).")
ALERTS = Counter("cg_ledger_budget_alerts", "Budget alerts decided (a threshold reached in a period, once each).")
RESERVATIONS_SETTLED = Counter(
    "cg_ledger_reservations_settled", "Admission reservations settled by the usage events naming them."
)
OVERRUNS = Counter("cg_ledger_reservation_overruns", "Settled reservations whose event cost more than they held.")
LAG = Gauge("cg_ledger_lag", "Usage messages in the stream not yet delivered to the ledger.")
ACK_PENDING = Gauge("cg_ledger_ack_pending", "Usage messages delivered but not yet acknowledged.")
BATCH_SECONDS = Histogram(
    "cg_ledger_batch_seconds", "Time to record one batch.", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
)
PENDING_FOLDED = Counter("cg_ledger_rollup_pending_folded", "Pending roll-up sums folded into the roll-ups.")
