"""The prober's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PROBES = Counter("cg_prober_probes", "Final probe results published, by outcome.", ["outcome"])
ATTEMPTS = Counter("cg_prober_attempts", "Calls made to OpenAI, by outcome (retries included).", ["outcome"])
RETRIES = Counter("cg_prober_retries", "Requests handed back for a later retry after a transient failure.")
DROPPED = Counter("cg_prober_dropped", "Scheduled requests dropped without a probe, by reason.", ["reason"])
DEAD_LETTERED = Counter("cg_prober_dead_lettered", "Unreadable requests sent to the DLQ.")
LATENCY = Histogram(
    "cg_prober_probe_seconds",
    "Time one call to OpenAI took.",
    buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30),
)
ORG_EVENTS = Counter("cg_prober_org_usage_events", "Organization usage events published from admin keys' pulls.")
