"""A manual probe: publish a request for one key and wait for the prober's result for exactly that request.

The wait subscribes (core NATS, no stream consumer) to the key's result subject BEFORE the request is published, so
that a fast prober's answer cannot slip past; results for other requests of the same key are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from pydantic import ValidationError

from cg_common.probes import ProbeRequest, ProbeResult, probe_request_subject, probe_result_subject
from cg_common.publishing import Outgoing, PublishError, publish

PUBLISH_ACK_WAIT_SECS = 2.0


class PipelineUnavailableError(Exception):
    """NATS does not answer, so no probe can be requested."""


class NoResultError(Exception):
    """The request went out, but no result came back in time."""


async def probe_now(nats: NATS, key_id: int, *, wait_secs: float) -> ProbeResult:
    if not nats.is_connected:
        raise PipelineUnavailableError("NATS is not connected")
    request = ProbeRequest(
        request_id=f"manual:{uuid.uuid4()}", key_id=key_id, reason="manual", requested_at=datetime.now(UTC)
    )
    answer: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()

    async def on_result(message: Msg) -> None:
        with contextlib.suppress(ValidationError):
            result = ProbeResult.model_validate_json(message.data)
            if result.request_id == request.request_id and not answer.done():
                answer.set_result(result)

    try:
        subscription = await nats.subscribe(probe_result_subject(key_id), cb=on_result)
    except NatsError as error:
        raise PipelineUnavailableError(type(error).__name__) from error
    try:
        outgoing = Outgoing(
            subject=probe_request_subject(key_id),
            payload=request.model_dump_json().encode(),
            msg_id=request.request_id,
        )
        try:
            await publish(nats, outgoing, ack_wait_secs=PUBLISH_ACK_WAIT_SECS, attempts=2)
        except PublishError as error:
            raise PipelineUnavailableError(str(error)) from error
        try:
            return await asyncio.wait_for(answer, timeout=wait_secs)
        except TimeoutError:
            raise NoResultError(request.request_id) from None
    finally:
        with contextlib.suppress(NatsError):
            await subscription.unsubscribe()
