"""`cg-migrate`: the migration step of a release, run before its services start (the Kubernetes migrate Job, the
compose `migrate` service, `make migrate`, `make up`). It applies the missing SQL migrations, then provisions the
JetStream topology (streams, durable consumers, key-value buckets) from the deployment's settings. Where the
environment gives PG_<SERVICE>_PASSWORD, it also makes or updates that service's own PostgreSQL role with exactly the
grants docs/architecture.md lists (cg_common.service_roles). Any number may
run at once; running it again changes nothing."""

from __future__ import annotations

import argparse
import asyncio
import os

from cg_common.logging import configure_logging, get_logger
from cg_common.messaging import close_nats, connect_nats
from cg_common.migrate import apply_migrations
from cg_common.service_roles import ensure_service_roles, passwords_from
from cg_common.settings import DatabaseSettings, NatsSettings, TopologySettings, load_settings
from cg_common.topology import Topology, provision

NATS_TIMEOUT_SECS = 30.0  # the client reconnects forever; a wrong NATS_URL must end the step, not hang it


class MigrateSettings(DatabaseSettings, NatsSettings, TopologySettings):
    """What the step reads: both servers, and the settings the topology is made from."""


async def provision_jetstream(nats_url: str, topology: Topology) -> list[str]:
    """Provision `topology` on the NATS at `nats_url`; returns what changed, one line each."""
    async with asyncio.timeout(NATS_TIMEOUT_SECS):
        nc = await connect_nats(nats_url, name="cg-migrate")
        try:
            return await provision(nc.jetstream(), topology)
        finally:
            await close_nats(nc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cg-migrate", description=__doc__)
    parser.add_argument("--only", choices=["sql", "nats"], help="only the SQL migrations, or only JetStream")
    args = parser.parse_args(argv)
    settings = load_settings(MigrateSettings)
    configure_logging(level=settings.log_level, service="migrate")
    log = get_logger(__name__)
    if args.only != "nats":
        applied = apply_migrations(settings.database_url)
        log.info("migrations applied", applied=[f"{m.version}_{m.name}" for m in applied])
        roles = ensure_service_roles(settings.database_url, passwords_from(os.environ))
        log.info("service roles brought up to date", roles=roles)
    if args.only != "sql":
        changes = asyncio.run(provision_jetstream(settings.nats_url, Topology.from_settings(settings)))
        log.info("jetstream provisioned", changes=changes)
