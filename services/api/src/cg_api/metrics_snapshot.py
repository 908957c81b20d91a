"""The figures behind GET /metrics, gathered once per request from Postgres and Redis."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from nats.errors import Error as NatsError
from redis.exceptions import RedisError

from cg_api import admission_repo, keys_repo, usage_repo
from cg_api.resources import Resources
from cg_common.heartbeats import last_beat
from cg_common.ratelimit import rate_limit_hits
from cg_common.subjects import DLQ_STREAM

METRICS_VERSION = "1"
PIPELINE_SERVICES = ("scheduler", "prober", "ledger", "notifier")
STREAM_INFO_TIMEOUT_SECS = 1.0


async def gather(resources: Resources) -> dict[str, Any]:
    """The contract's JSON shape; a heartbeat expires after its service's TTL, so `alive` means a recent beat."""
    settings = resources.settings
    async with resources.db.connection() as conn:
        key_counts = await keys_repo.counts(conn)
        usage = await usage_repo.figures(conn)
        admission = await admission_repo.figures(conn)
    beats = {service: await _beat_or_none(resources, service) for service in PIPELINE_SERVICES}
    return {
        "version": METRICS_VERSION,
        "env": settings.env,
        "debug": settings.debug,
        "rate_limit": {
            "rpm": settings.rate_limit_rpm,
            "burst": settings.rate_limit_burst,
            "exempt_paths": list(settings.rate_limit_exempt),
            "enabled": settings.rate_limit_enabled,
            "fail_mode": settings.rate_limit_fail_mode,
        },
        "counters": {"rate_limit_hits": await rate_limit_hits(resources.redis)},
        "db": {
            "usage_rows": int(usage["usage_rows"]),
            "active_keys": key_counts["active_keys"],
            "last_usage_at": _iso(usage["last_usage_at"]),
            "last_key_ok_at": _iso(key_counts["last_key_ok_at"]),
        },
        "worker": {
            "probe_interval_secs": settings.probe_interval_secs,
            # Probing works only when requests are both made and answered.
            "healthy": beats["scheduler"] is not None and beats["prober"] is not None,
            "last_heartbeat_at": _iso(beats["scheduler"]),
        },
        "admission": admission,
        "pipeline": {
            **{service: {"alive": beat is not None, "last_beat_at": _iso(beat)} for service, beat in beats.items()},
            "dlq": {"messages": await _dlq_messages(resources)},
        },
    }


async def _dlq_messages(resources: Resources) -> int | None:
    """Messages set aside in the DLQ stream; None when NATS does not say (never a made-up 0)."""
    if not resources.nats.is_connected:
        return None
    try:
        async with asyncio.timeout(STREAM_INFO_TIMEOUT_SECS):
            info = await resources.js.stream_info(DLQ_STREAM.name)
    except (NatsError, TimeoutError):
        return None
    return int(info.state.messages)


async def _beat_or_none(resources: Resources, service: str) -> datetime | None:
    try:
        return await last_beat(resources.redis, service)
    except (RedisError, OSError):
        return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
