"""The notifier's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

ATTEMPTS = Counter("cg_notifier_attempts", "Webhook delivery attempts, by outcome (delivered: a 2xx).", ["outcome"])
DELIVERIES = Counter(
    "cg_notifier_deliveries", "Webhook deliveries settled for good: delivered, or failed after every retry.", ["status"]
)
MADE = Counter("cg_notifier_deliveries_made", "Webhook deliveries made from alerts (one per webhook that wants each).")
