"""`cg-api token create|list|revoke`: tokens for operators, straight in the api's own table, so that the first
token of a deployment needs no HTTP call with the admin key. What it does is audited like an api change."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from pydantic import ValidationError

from cg_api import audit_repo, tokens_repo
from cg_api.access_schemas import TokenCreate, TokenOut
from cg_api.principal import SCOPES
from cg_api.settings import ApiSettings
from cg_common.db import open_pool

OPERATOR = "operator (cg-api token)"


def add_commands(token: argparse.ArgumentParser) -> None:
    """The `token` command's actions, on the parser `cg-api` made for it."""
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token; its secret is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", action="append", required=True, choices=SCOPES, help="repeatable")
    create.add_argument("--source", action="append", help="with --scope ingest: a source pattern (repeatable)")
    create.add_argument("--rpm", type=int, help="its own rate (default RATE_LIMIT_RPM)")
    create.add_argument("--burst", type=int, help="its own burst (default RATE_LIMIT_BURST)")
    create.add_argument("--expires", help="when it stops working, ISO 8601 with a time zone")
    actions.add_parser("list", help="every token, without secrets")
    revoke = actions.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", type=int)


async def run(settings: ApiSettings, args: argparse.Namespace) -> int:
    """The command's exit code: 0 done, 1 nothing to do (no such token), 2 bad input."""
    db = await open_pool(settings.database_url, name="cg-api-token")
    try:
        async with db.connection() as conn:
            if args.action == "list":
                for listed in await tokens_repo.list_all(conn):
                    print(_line(TokenOut.from_row(listed)))
                return 0
            if args.action == "revoke":
                revoked = await tokens_repo.revoke(conn, args.token_id)
                if revoked is None:
                    print(f"no live token with id {args.token_id}")
                    return 1
                entry = audit_repo.Entry(OPERATOR, "DELETE", f"/tokens/{revoked['id']}", str(revoked["id"]), 204)
                await audit_repo.record(conn, entry)
                print(f"revoked: {_line(TokenOut.from_row(revoked))}")
                return 0
            try:
                body = TokenCreate(
                    name=args.name,
                    scopes=args.scope,
                    sources=args.source,
                    rate_limit_rpm=args.rpm,
                    rate_limit_burst=args.burst,
                    expires_at=args.expires,
                )
            except ValidationError as error:
                for problem in error.errors():
                    print(f"invalid {'.'.join(map(str, problem['loc'])) or 'input'}: {problem['msg']}")
                return 2
            row, secret = await tokens_repo.insert(conn, body.new_token(OPERATOR))
            await audit_repo.record(conn, audit_repo.Entry(OPERATOR, "POST", "/tokens", str(row["id"]), 201))
            print(f"created: {_line(TokenOut.from_row(row))}")
            print(f"TOKEN={secret}")
            print("(shown this once; it is stored only as a hash)")
            return 0
    finally:
        await db.close()


def _line(token: TokenOut) -> str:
    state = "revoked" if token.revoked_at else "expired" if _expired(token) else "live"
    parts = [
        f"#{token.id}",
        token.name,
        token.prefix + "…",
        ",".join(token.scopes),
        state,
        f"last used {token.last_used_at:%Y-%m-%d %H:%M} UTC" if token.last_used_at else "never used",
    ]
    if token.sources:
        parts.append("sources " + ",".join(token.sources))
    return "  ".join(parts)


def _expired(token: TokenOut) -> bool:
    return token.expires_at is not None and token.expires_at <= datetime.now(UTC)
