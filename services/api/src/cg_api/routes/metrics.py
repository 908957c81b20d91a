"""GET /metrics: the contract's JSON, or Prometheus/OpenMetrics text when the client asks for it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import choose_encoder

from cg_api import metrics_snapshot
from cg_api.auth import Authenticated
from cg_api.deps import ResourcesDep
from cg_api.metrics_snapshot import PIPELINE_SERVICES

router = APIRouter(tags=["service"], dependencies=[Authenticated])

PROMETHEUS_TYPES = ("text/plain", "application/openmetrics-text")


@router.get(
    "/metrics",
    responses={200: {"content": {"application/json": {}, "text/plain": {}, "application/openmetrics-text": {}}}},
)
async def metrics(request: Request, resources: ResourcesDep) -> Any:
    snapshot = await metrics_snapshot.gather(resources)
    accept = request.headers.get("accept", "")
    if not any(t in accept for t in PROMETHEUS_TYPES):
        return snapshot
    encoder, content_type = choose_encoder(accept)
    return Response(encoder(_registry(snapshot)), media_type=content_type)


def _registry(snapshot: dict[str, Any]) -> CollectorRegistry:
    """The same figures as Prometheus gauges; unknown values are left out rather than faked."""
    registry = CollectorRegistry()
    figures = {
        "cg_rate_limit_hits": ("Requests refused by the shared rate limiter.", snapshot["counters"]["rate_limit_hits"]),
        "cg_usage_rows": ("Usage records stored.", snapshot["db"]["usage_rows"]),
        "cg_active_keys": ("Active stored OpenAI keys.", snapshot["db"]["active_keys"]),
        "cg_worker_healthy": (
            "1 when the scheduler's and the prober's heartbeats are fresh.",
            int(snapshot["worker"]["healthy"]),
        ),
        "cg_dlq_messages": ("Messages set aside in the DLQ stream.", snapshot["pipeline"]["dlq"]["messages"]),
        "cg_probe_interval_seconds": ("Seconds between probes of a key.", snapshot["worker"]["probe_interval_secs"]),
        "cg_rate_limit_rpm": ("Token refill per minute.", snapshot["rate_limit"]["rpm"]),
        "cg_rate_limit_burst": ("Token bucket capacity.", snapshot["rate_limit"]["burst"]),
        "cg_admission_refusals": ("Admission requests refused by a hard budget.", snapshot["admission"]["refusals"]),
        "cg_admission_overruns": (
            "Settled reservations whose usage cost more than they held.",
            snapshot["admission"]["overruns"],
        ),
        "cg_admission_live_reservations": (
            "Admission reservations neither settled, released nor expired.",
            snapshot["admission"]["live_reservations"],
        ),
    }
    for name, (description, value) in figures.items():
        if value is not None:
            Gauge(name, description, registry=registry).set(value)
    alive = Gauge("cg_pipeline_alive", "1 when the service's heartbeat is fresh.", ["service"], registry=registry)
    for service in PIPELINE_SERVICES:
        alive.labels(service=service).set(int(snapshot["pipeline"][service]["alive"]))
    return registry
