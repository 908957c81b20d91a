"""NATS connection that never gives up reconnecting, and a close that always ends."""

from __future__ import annotations

from urllib.parse import urlsplit

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError

from cg_common.logging import get_logger

log = get_logger(__name__)
DEFAULT_INBOX = "_INBOX"


async def connect_nats(url: str, *, name: str, connect_timeout: int = 5) -> NATS:
    """Connect, then reconnect forever (nats-py gives up after 60 attempts by default), logging each change."""

    async def on_error(error: Exception) -> None:
        log.warning("nats error", error=str(error) or type(error).__name__)

    async def on_disconnected() -> None:
        if not nc.is_closed:  # closing on purpose disconnects too: that is no warning
            log.warning("nats disconnected")

    async def on_reconnected() -> None:
        log.info("nats reconnected", server=str(nc.connected_url.netloc if nc.connected_url else ""))

    async def on_closed() -> None:
        log.info("nats connection closed")

    nc = NATS()
    await nc.connect(
        servers=[url],
        name=name,
        inbox_prefix=inbox_prefix(url),
        connect_timeout=connect_timeout,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        # Keep publishes made while disconnected in a bounded buffer; JetStream acks still decide durability.
        pending_size=8 * 1024 * 1024,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        closed_cb=on_closed,
    )
    return nc


def inbox_prefix(url: str) -> str:
    """`_INBOX.<user>` for a URL with a user in it: the permission file lets each user read only its own inbox, so
    that replies (JetStream acks, API answers, key-value reads) reach no one else; `_INBOX` without a user."""
    user = urlsplit(url).username
    return f"{DEFAULT_INBOX}.{user}" if user else DEFAULT_INBOX


async def close_nats(nc: NATS) -> None:
    """Drain (deliver what is buffered, finish subscriptions) when connected; just close otherwise. nats-py's drain
    raises while reconnecting, and a service stopping during a NATS outage must still stop."""
    try:
        if nc.is_connected:
            await nc.drain()
            return
    except NatsError as error:
        log.warning("nats drain failed; closing", error=type(error).__name__)
    await nc.close()
