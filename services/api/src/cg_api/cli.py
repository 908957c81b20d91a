"""`cg-api serve` runs the api; `cg-api rotate-master-key` re-encrypts stored keys under the first MASTER_KEY;
`cg-api token create|list|revoke` manages API tokens."""

from __future__ import annotations

import argparse
import asyncio

import uvicorn

from cg_api import token_cli
from cg_api.app import create_app
from cg_api.settings import ApiSettings
from cg_api.vault import WrongMasterKeyError, check_master_key, key_cipher, rotate_master_key
from cg_common.db import open_pool
from cg_common.logging import configure_logging, get_logger
from cg_common.messaging import close_nats, connect_nats
from cg_common.settings import fail, load_settings
from cg_common.subjects import DLQ_STREAM, PROBE_REQUEST_STREAM, USAGE_STREAM
from cg_common.topology import Needs, Topology, require

# What the api uses in JetStream: usage it publishes, probe requests it publishes and purges, and the DLQ it counts.
NEEDS = Needs(streams=(USAGE_STREAM, PROBE_REQUEST_STREAM, DLQ_STREAM))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cg-api", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP api on API_PORT")
    serve_cmd.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a service listens on its pod's interfaces
    commands.add_parser("rotate-master-key", help="re-encrypt every stored key under the first MASTER_KEY")
    token_cli.add_commands(commands.add_parser("token", help="create, list or revoke API tokens (docs/access.md)"))
    args = parser.parse_args(argv)

    settings = load_settings(ApiSettings)
    configure_logging(
        level="debug" if settings.debug else settings.log_level,
        service="api",
        secrets=[settings.api_key, *settings.master_keys],
    )
    if args.command == "serve":
        serve(settings, host=args.host)
    elif args.command == "token":
        raise SystemExit(asyncio.run(token_cli.run(settings, args)))
    else:
        asyncio.run(_rotate(settings))


def serve(settings: ApiSettings, *, host: str) -> None:
    asyncio.run(_check_master_key(settings))
    asyncio.run(_check_topology(settings))
    uvicorn.run(
        create_app(settings),
        host=host,
        port=settings.api_port,
        log_config=None,  # keep our JSON logging, with its secret scrubbing
        proxy_headers=False,  # X-Forwarded-For is believed only from TRUSTED_PROXIES (cg_common.client_address)
        timeout_graceful_shutdown=20,
    )


async def _check_master_key(settings: ApiSettings) -> None:
    """Refuse to start with a MASTER_KEY that opens none of the stored keys, before serving anything."""
    db = await open_pool(settings.database_url, name="cg-api-preflight")
    try:
        await check_master_key(db, key_cipher(settings))
    except WrongMasterKeyError as error:
        fail(f"invalid configuration: MASTER_KEY: {error}")
    finally:
        await db.close()


async def _check_topology(settings: ApiSettings) -> None:
    """Refuse to start when JetStream lacks the streams the api publishes to, or holds them configured otherwise."""
    nats = await connect_nats(settings.nats_url, name="cg-api-preflight")
    try:
        await require(nats.jetstream(), Topology.from_settings(settings), NEEDS)
    finally:
        await close_nats(nats)


async def _rotate(settings: ApiSettings) -> None:
    log = get_logger(__name__)
    db = await open_pool(settings.database_url, name="cg-rotate")
    try:
        rotated, unreadable = await rotate_master_key(db, key_cipher(settings))
    finally:
        await db.close()
    log.info("master key rotation finished", rotated=rotated, unreadable=unreadable)
    print(
        f"rotated {rotated} stored keys and webhook secrets to the first MASTER_KEY; "
        f"{unreadable} could not be decrypted"
    )
    if unreadable:
        raise SystemExit(1)
