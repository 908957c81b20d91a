"""Webhooks (admin only, contract section 8): where budget alerts are delivered, the delivery log, a test send.

The signing secret is made here, shown once in the 201, and stored encrypted under MASTER_KEY for the notifier,
which signs and sends. A URL is checked when the webhook is made (and again by the notifier before each attempt):
loopback, private and link-local receivers only where WEBHOOK_ALLOW_PRIVATE allows them.
"""

from __future__ import annotations

import base64
import secrets
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from cg_api import webhooks_repo
from cg_api.auth import PrincipalDep
from cg_api.deps import DbDep, ResourcesDep
from cg_api.dimension_params import unprocessable
from cg_api.schemas import ErrorOut
from cg_api.unavailable import DependencyUnavailableError, UnavailableOut
from cg_api.webhook_schemas import (
    DeliveryOut,
    DeliveryStatus,
    TestDeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
)
from cg_common.subjects import WEBHOOK_TEST
from cg_common.webhook_targets import TargetRefusedError, check_target

router = APIRouter(prefix="/webhooks", tags=["webhooks"])

SECRET_BYTES = 32
# The notifier's attempt may take WEBHOOK_TIMEOUT_SECS (10 s by default); the answer is awaited a little longer.
TEST_WAIT_SECS = 15.0
WebhookId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The webhook's id.")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No webhook with this id."}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate, db: DbDep, resources: ResourcesDep, principal: PrincipalDep, request: Request
) -> WebhookCreated:
    """The answer holds the signing secret (`whsec_…`): keep it, it is never shown again."""
    try:
        await check_target(body.url, allow_private=resources.settings.allow_private_targets)
    except TargetRefusedError as refused:
        raise unprocessable("url", str(refused), where="body") from None
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
    webhook_id = await webhooks_repo.insert(
        db,
        url=body.url,
        events=list(body.events),
        format=body.format,
        secret_ciphertext=resources.cipher.encrypt(secret),
        created_by=principal.name,
    )
    request.state.audit_target = webhook_id
    (row,) = await webhooks_repo.live(db, webhook_id)
    return WebhookCreated.model_validate({**_shown(row), "secret": secret})


@router.get("", response_model=list[WebhookOut])
async def list_webhooks(db: DbDep) -> list[WebhookOut]:
    """Live webhooks, without their secrets, each with its pending deliveries and its latest one."""
    return [WebhookOut.model_validate(_shown(row)) for row in await webhooks_repo.live(db)]


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_webhook(webhook_id: WebhookId, db: DbDep) -> Response:
    """Nothing more is delivered to it; its delivery log stays readable."""
    if not await webhooks_repo.delete(db, webhook_id):
        raise _not_found(webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryOut], responses=NOT_FOUND)
async def list_deliveries(
    webhook_id: WebhookId,
    db: DbDep,
    delivery_status: Annotated[DeliveryStatus | None, Query(alias="status", description="Only these.")] = None,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Only deliveries older than this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[DeliveryOut]:
    """Newest first, each with every attempt and the receiver's answer; page on with `before` = the last id."""
    if not await webhooks_repo.exists(db, webhook_id):
        raise _not_found(webhook_id)
    rows = await webhooks_repo.deliveries(db, webhook_id, status=delivery_status, before=before, limit=limit)
    return [DeliveryOut.model_validate(row) for row in rows]


TEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    503: {"model": UnavailableOut, "description": "No notifier answered (or NATS does not): nothing was sent."},
}


@router.post("/{webhook_id}/test", response_model=TestDeliveryOut, responses=TEST_RESPONSES)
async def test_webhook(webhook_id: WebhookId, resources: ResourcesDep) -> TestDeliveryOut:
    """Send a signed test delivery (`type` `webhook.test`) now, and answer with what the receiver said. It is a
    delivery like any other: in the log, and retried on the schedule when this attempt fails."""
    async with resources.db.connection() as conn:  # released before the wait, which may last seconds
        if not await webhooks_repo.live(conn, webhook_id):
            raise _not_found(webhook_id)
    request = orjson.dumps({"webhook_id": webhook_id})
    try:
        message = await resources.nats.request(WEBHOOK_TEST, request, timeout=TEST_WAIT_SECS)
    except NoRespondersError:
        raise DependencyUnavailableError("notifier") from None
    except NatsTimeoutError:
        raise DependencyUnavailableError(
            "notifier", f"the notifier did not answer within {TEST_WAIT_SECS:g} s"
        ) from None
    except NatsError:
        raise DependencyUnavailableError("nats") from None
    answer = orjson.loads(message.data)
    if answer.get("not_found"):
        raise _not_found(webhook_id)
    if answer.get("unavailable"):
        raise DependencyUnavailableError("postgres")
    if "error" in answer and "delivery_id" not in answer:
        raise DependencyUnavailableError("notifier", f"the notifier refused the test: {answer['error']}")
    return TestDeliveryOut.model_validate(answer)


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    last = {"status": row["last_status"], "at": row["last_at"]} if row["last_status"] else None
    return {**row, "last_delivery": last}


def _not_found(webhook_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no webhook with id {webhook_id}")
