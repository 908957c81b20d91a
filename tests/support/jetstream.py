"""JetStream in tests: provisioning it as the migration step does, and reading a consumer's state once the server
has applied the acks it was sent."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import nats
from nats.js.api import ConsumerInfo
from nats.js.client import JetStreamContext

from cg_common.messaging import inbox_prefix
from cg_common.settings import TopologySettings
from cg_common.topology import Topology, provision
from tests.support.nats_users import as_user


async def settled_consumer_info(
    js: JetStreamContext, stream: str, durable: str, *, timeout_secs: float = 5.0
) -> ConsumerInfo:
    """The consumer's info once nothing awaits an ack, or as it is after `timeout_secs`: the server applies acks on
    the consumer's own time, a moment after they arrived, so a read right after `flush` can still count some."""
    deadline = asyncio.get_running_loop().time() + timeout_secs
    while True:
        info: ConsumerInfo = await js.consumer_info(stream, durable)
        if not info.num_ack_pending or asyncio.get_running_loop().time() >= deadline:
            return info
        await asyncio.sleep(0.05)


def topology_for(env: Mapping[str, str]) -> Topology:
    """The topology a service started with these settings expects (unset ones at their defaults)."""
    return Topology.from_settings(TopologySettings.model_validate({name.lower(): v for name, v in env.items()}))


async def provision_async(nats_url: str, topology: Topology) -> None:
    nc = await nats.connect(as_user(nats_url, "migrate"), inbox_prefix=inbox_prefix(as_user(nats_url, "migrate")))
    try:
        await provision(nc.jetstream(), topology)
    finally:
        await nc.close()


def provision_for(env: Mapping[str, str]) -> None:
    """The migration step's JetStream part for services about to start with `env`, as a deployment's migrate Job
    runs before its services; callable from sync and async tests alike (it runs on a thread of its own)."""
    topology = topology_for(env)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, provision_async(env["NATS_URL"], topology)).result()
