"""One attempt at one delivery: check where it goes, sign it the Standard Webhooks way, POST it, note the answer.

The signature (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`) comes from `standardwebhooks`, the spec's
reference library; `webhook-id` is the message's id on every attempt, so a receiver can drop what it already has.
Only the status line is read: what a receiver sends back is neither stored nor logged (it may echo anything), and
redirects are not followed (a redirect could lead where the address check would have refused).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from cg_common.webhook_targets import TargetRefusedError, check_target
from cg_notifier.deliveries import AttemptResult, Claimed

USER_AGENT = "CostGuardian-Webhooks/1"
MAX_ERROR_LENGTH = 300


def signed_headers(secret: str, message_id: str, body: str, now: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }


async def attempt(
    client: httpx.AsyncClient, delivery: Claimed, secret: str, *, allow_private: bool, timeout_secs: float
) -> AttemptResult:
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        async with asyncio.timeout(timeout_secs):  # in all: a receiver trickling its answer is cut off too
            await check_target(delivery.url, allow_private=allow_private)
            headers = signed_headers(secret, delivery.message_id, delivery.body, started_at)
            async with client.stream("POST", delivery.url, content=delivery.body.encode(), headers=headers) as response:
                status = response.status_code
        if not 200 <= status < 300:
            error = f"answered HTTP {status}"
    except TargetRefusedError as refused:
        error = str(refused)
    except (TimeoutError, httpx.TimeoutException):
        status = None
        error = f"no answer within {timeout_secs:g} s"
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
    return AttemptResult(
        started_at=started_at,
        duration_ms=round((time.perf_counter() - started) * 1000),
        response_status=status,
        error=error[:MAX_ERROR_LENGTH] if error else None,
    )
