"""One probe request, from message to settled: load and decrypt the key, call OpenAI, then either hand the request
back for a later retry or publish the final result (and the completion's usage) — and only then acknowledge.

Exactly once: the result's `Nats-Msg-Id` is derived from the request id, and a completion's usage event is named
`probe:<request_id>`, so a request redelivered after a crash (or a lost ack) publishes nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from cryptography.fernet import InvalidToken
from nats.aio.msg import Msg
from psycopg import Error as PsycopgError
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from cg_common.consumer import Outcome, TransientError
from cg_common.crypto import KeyCipher
from cg_common.db import Connection
from cg_common.logging import SecretScrubber, get_logger
from cg_common.probes import ProbeRequest, ProbeResult, ProbeUsage, probe_result_subject
from cg_common.publishing import Outgoing
from cg_common.pull import deliveries
from cg_common.usage_event import InvalidEventError
from cg_common.usage_publisher import prepare_usage, usage_event_from_openai
from cg_prober import metrics, upstream
from cg_prober.key_loader import KeyLoader
from cg_prober.keys_repo import StoredKey
from cg_prober.organization import OrganizationPuller
from cg_prober.settings import ProberSettings

log = get_logger(__name__)

PROBE_SOURCE = "//cost-guardian/prober"
PROBE_USAGE_SUBJECT = "cg.usage.openai.probe"
MAX_ERROR_CHARS = 500
MAX_BACKOFF_SECS = 300.0


class ProbeHandler:
    def __init__(
        self,
        settings: ProberSettings,
        db: AsyncConnectionPool[Connection],
        cipher: KeyCipher,
        client: httpx.AsyncClient,
        organization: OrganizationPuller | None = None,
    ) -> None:
        self._settings = settings
        self._keys = KeyLoader(db)
        self._cipher = cipher
        self._client = client
        self._organization = organization
        self._method, self._path, self._body = upstream.probe_request(settings.probe_mode, settings.openai_model)

    async def handle(self, message: Msg) -> Outcome:
        """The per-message consumer's handler; raises TransientError when PostgreSQL cannot be read (the key is not
        to blame: the request is tried again later)."""
        try:
            request = ProbeRequest.model_validate_json(message.data)
        except ValidationError as error:
            metrics.DEAD_LETTERED.inc()
            return Outcome.dead_letter(f"not a probe request: {error.error_count()} errors")
        try:
            key = await self._keys.load(request.key_id)
        except (PsycopgError, TimeoutError) as error:
            raise TransientError(type(error).__name__) from error
        unavailable = self._unavailable(request, key)
        if unavailable is not None:
            return unavailable
        assert key is not None and key.ciphertext is not None  # noqa: S101 - _unavailable returned None
        try:
            api_key = self._cipher.decrypt(key.ciphertext)
        except InvalidToken:
            log.error("stored key cannot be decrypted with MASTER_KEY", key_id=key.id)
            if request.reason == "scheduled":
                metrics.DROPPED.labels("undecryptable").inc()
                return Outcome.done()
            return self._final(request, key_unavailable_result(request, self._settings, "the key cannot be decrypted"))
        return await self._probe(request, key, api_key, deliveries(message))

    def _unavailable(self, request: ProbeRequest, key: StoredKey | None) -> Outcome | None:
        """Deleted, unknown or inactive keys: a scheduled request is dropped; a person asking gets an answer
        (an inactive key is still probed when a person asks)."""
        if key is not None and key.usable and (key.active or request.reason == "manual"):
            return None
        why = "deleted" if key is not None and not key.usable else "unknown" if key is None else "inactive"
        if request.reason == "scheduled":
            metrics.DROPPED.labels(why).inc()
            return Outcome.done()
        return self._final(request, key_unavailable_result(request, self._settings, f"the key is {why}"))

    async def _probe(self, request: ProbeRequest, key: StoredKey, api_key: str, delivery: int) -> Outcome:
        if key.kind == "admin" and self._organization is not None:
            attempt = await self._organization.pull(key, api_key)
        else:
            attempt = await upstream.call(self._client, api_key, self._method, self._path, json_body=self._body)
        metrics.ATTEMPTS.labels(attempt.outcome).inc()
        metrics.LATENCY.observe(attempt.latency_ms / 1000)
        if attempt.retryable and delivery < self._settings.probe_max_attempts:
            delay = self._backoff(delivery, attempt.retry_after_secs)
            metrics.RETRIES.inc()
            log.info(
                "probe failed; retrying later", key_id=key.id, outcome=attempt.outcome, attempt=delivery, delay=delay
            )
            return Outcome.retry(attempt.outcome, delay_secs=delay)
        result = self._result(request, attempt, api_key, delivery)
        outgoing = self._usage(request, key, attempt)
        if not attempt.ok:
            log.info("probe failed", key_id=key.id, outcome=attempt.outcome, status=attempt.http_status)
        return self._final(request, result, outgoing)

    def _backoff(self, delivery: int, retry_after: float | None) -> float:
        """base, 2×base, 4×base… and never sooner than the upstream asked (`retry-after`)."""
        backoff = min(self._settings.probe_retry_base_secs * 2.0 ** (delivery - 1), MAX_BACKOFF_SECS)
        return max(backoff, retry_after or 0.0)

    def _result(self, request: ProbeRequest, attempt: upstream.Attempt, api_key: str, delivery: int) -> ProbeResult:
        model = None
        usage = None
        if attempt.ok and self._settings.probe_mode == "completion" and isinstance(attempt.body, dict):
            model = attempt.body.get("model")
            usage = _probe_usage(attempt.body)
        return ProbeResult(
            request_id=request.request_id,
            key_id=request.key_id,
            reason=request.reason,
            probed_at=datetime.now(UTC),
            mode=self._settings.probe_mode,
            outcome=attempt.outcome,
            ok=attempt.ok,
            http_status=attempt.http_status,
            error_code=attempt.error_code,
            error_message=scrub(attempt.error_message, api_key),
            latency_ms=attempt.latency_ms,
            model=model if isinstance(model, str) else None,
            usage=usage,
            attempts=delivery,
        )

    def _usage(self, request: ProbeRequest, key: StoredKey, attempt: upstream.Attempt) -> list[Outgoing]:
        """A completion probe's usage, as a usage event the ledger prices like any other."""
        if not (attempt.ok and self._settings.probe_mode == "completion" and key.kind != "admin"):
            return []
        try:
            event = usage_event_from_openai(
                attempt.body,
                source=PROBE_SOURCE,
                event_id=f"probe:{request.request_id}",
                key_fingerprint=key.fingerprint,
                attributes={"probe_reason": request.reason},
            )
            event["data"]["key_id"] = key.id
            return [prepare_usage(event, subject=PROBE_USAGE_SUBJECT).outgoing()]
        except (InvalidEventError, TypeError, KeyError) as error:
            log.warning("completion probe answered without usable usage", key_id=key.id, error=str(error)[:200])
            return []

    @staticmethod
    def _final(request: ProbeRequest, result: ProbeResult, extra: list[Outgoing] | None = None) -> Outcome:
        metrics.PROBES.labels(result.outcome).inc()
        message = Outgoing(
            subject=probe_result_subject(request.key_id),
            payload=result.model_dump_json().encode(),
            msg_id=result_msg_id(request.request_id),
        )
        return Outcome.done(outgoing=(*(extra or ()), message))


def result_msg_id(request_id: str) -> str:
    return f"probe-result:{request_id}"


def key_unavailable_result(request: ProbeRequest, settings: ProberSettings, why: str) -> ProbeResult:
    return ProbeResult(
        request_id=request.request_id,
        key_id=request.key_id,
        reason=request.reason,
        probed_at=datetime.now(UTC),
        mode=settings.probe_mode,
        outcome="key_unavailable",
        ok=False,
        error_code="key_unavailable",
        error_message=why,
    )


def scrub(message: str | None, api_key: str) -> str | None:
    """The upstream's message without the key or anything key-shaped, then (never before) short enough to store."""
    if message is None:
        return None
    return SecretScrubber([api_key]).text(message)[:MAX_ERROR_CHARS]


def _probe_usage(body: dict[str, object]) -> ProbeUsage | None:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    try:
        return ProbeUsage(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cached_input_tokens=int(cached or 0),
        )
    except (TypeError, ValueError, ValidationError):
        return None
