"""NATS connection that never gives up reconnecting, and idempotent stream set-up."""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from cg_common.logging import get_logger
from cg_common.settings import CommonSettings
from cg_common.subjects import ALL_STREAMS, PROBE_REQUEST_STREAM

log = get_logger(__name__)

STREAM_NAME_IN_USE = 10058  # JetStream API error code


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


def stream_configs(*, replicas: int, probe_interval_secs: float) -> list[StreamConfig]:
    """Every stream's config for this deployment."""
    configs = []
    for spec in ALL_STREAMS:
        # Two schedulers publish the same (key, slot) message id; the window must outlive a slot to drop the twin.
        window = max(120.0, 2 * probe_interval_secs) if spec is PROBE_REQUEST_STREAM else None
        configs.append(spec.config(replicas=replicas, duplicate_window_secs=window))
    return configs


async def ensure_service_streams(js: JetStreamContext, settings: CommonSettings) -> None:
    """Every stream, configured as this deployment's settings say: what each service does as it starts."""
    await ensure_streams(
        js, stream_configs(replicas=settings.nats_stream_replicas, probe_interval_secs=settings.probe_interval_secs)
    )


async def ensure_streams(js: JetStreamContext, configs: list[StreamConfig]) -> None:
    """Create missing streams and bring existing ones to the given config; safe to run from every replica."""
    for config in configs:
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            try:
                await js.add_stream(config)
                log.info("stream created", stream=config.name)
                continue
            except BadRequestError as error:
                if error.err_code != STREAM_NAME_IN_USE:
                    raise
                # Another replica created it a moment ago, with other settings: converge on ours below.
        await js.update_stream(config)


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
