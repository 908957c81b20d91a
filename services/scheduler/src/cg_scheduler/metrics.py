"""The scheduler's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PUBLISHED = Counter("cg_scheduler_requests_published", "Probe requests JetStream stored as new.")
DUPLICATES = Counter(
    "cg_scheduler_duplicates",
    "Probe requests JetStream dropped as duplicates (another replica, or this one before a restart, sent them first).",
)
PUBLISH_FAILURES = Counter("cg_scheduler_publish_failures", "Ticks whose requests JetStream did not acknowledge.")
READ_FAILURES = Counter("cg_scheduler_read_failures", "Ticks that could not read the keys from PostgreSQL.")
ACTIVE_KEYS = Gauge("cg_scheduler_active_keys", "Active keys at the last successful read.")
SLOT = Gauge("cg_scheduler_slot", "The slot (interval number since the epoch) being scheduled.")
