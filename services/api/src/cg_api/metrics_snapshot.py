"""The figures behind GET /metrics, gathered once per request from Postgres and Redis."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from cg_api import keys_repo, usage_repo
from cg_api.resources import Resources
from cg_common.heartbeats import last_beat
from cg_common.ratelimit import rate_limit_hits

METRICS_VERSION = "1"


async def gather(resources: Resources) -> dict[str, Any]:
    """The contract's JSON shape; a figure nobody produces yet is reported as it is (0, null or false)."""
    settings = resources.settings
    async with resources.db.connection() as conn:
        key_counts = await keys_repo.counts(conn)
        usage = await usage_repo.figures(conn)
    scheduler_beat = await _beat_or_none(resources, "scheduler")
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
            "healthy": scheduler_beat is not None,
            "last_heartbeat_at": _iso(scheduler_beat),
        },
    }


async def _beat_or_none(resources: Resources, service: str) -> datetime | None:
    try:
        return await last_beat(resources.redis, service)
    except (RedisError, OSError):
        return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
