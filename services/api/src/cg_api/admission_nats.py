"""Admission over NATS request-reply on `cg.budget.admit`, for gateways that speak NATS: the same request JSON as
POST /budgets/admit and the same answer; a bad request gets `{"error", "status": 422, "detail"}`, an unreachable
PostgreSQL `{"error", "status": 503}`. Every api replica answers in one queue group, so each request gets one answer."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from cg_api import admission
from cg_api.admission_batcher import AdmissionBatcher
from cg_api.admission_schemas import AdmitRequest
from cg_common.db import TRANSIENT_DB_ERRORS
from cg_common.logging import get_logger
from cg_common.subjects import BUDGET_ADMIT

log = get_logger(__name__)

QUEUE_GROUP = "api"


class AdmitResponder:
    def __init__(self, batcher: AdmissionBatcher) -> None:
        self._batcher = batcher
        self._tasks: set[asyncio.Task[None]] = set()

    async def subscribe(self, nc: NATS) -> Subscription:
        return await nc.subscribe(BUDGET_ADMIT, queue=QUEUE_GROUP, cb=self._received)

    async def _received(self, message: Msg) -> None:
        task = asyncio.create_task(self._answer(message))  # requests are answered concurrently, as over HTTP
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: Msg) -> None:
        if not message.reply:
            return
        await message.respond(orjson.dumps(await self.answer(message.data)))

    async def answer(self, data: bytes) -> dict[str, Any]:
        try:
            request = AdmitRequest.model_validate_json(data)
        except ValidationError as error:
            detail = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors(include_url=False)]
            return {"error": "invalid admit request", "status": 422, "detail": detail}
        try:
            out = await admission.admit(self._batcher, request)
        except admission.UnpricedError as error:
            return {"error": str(error), "status": 422}
        except TRANSIENT_DB_ERRORS as error:
            log.warning("admit over NATS not decided", error=str(error)[:200])
            return {"error": "PostgreSQL is not answering right now; try again shortly", "status": 503}
        return out.model_dump(mode="json", exclude_none=True)
