"""`cg-ledger run` records usage; `cg-ledger reprice [--all]` prices stored usage again; `cg-ledger rebuild-rollups`
sums the dimension roll-ups again from the stored usage; `cg-ledger dlq list` and `cg-ledger dlq replay` show and
re-drive what was dead-lettered."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys

from cg_common.db import open_pool
from cg_common.logging import configure_logging
from cg_common.messaging import close_nats, connect_nats
from cg_common.pricing import Pricer
from cg_common.settings import fail, load_settings
from cg_ledger import dead_letters, dimension_rollups, service
from cg_ledger.reprice import reprice
from cg_ledger.settings import LedgerSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cg-ledger", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="consume usage events and record them")
    reprice_cmd = commands.add_parser("reprice", help="price stored usage again with the current price data")
    reprice_cmd.add_argument("--all", action="store_true", help="every row, not only the unpriced ones")
    rebuild_cmd = commands.add_parser(
        "rebuild-rollups",
        help="bring the rolled-up groupings to DIMENSIONS, DIMENSION_PAIRS and DIMENSION_COARSE, and sum their "
        "history again",
    )
    rebuild_cmd.add_argument(
        "groupings", nargs="*", help="only these, e.g. attributes.team (default: every rolled-up grouping)"
    )
    dlq_cmd = commands.add_parser("dlq", help="dead letters: list them, or publish them again to where they came from")
    dlq_cmd.add_argument("action", choices=["list", "replay"])
    dlq_cmd.add_argument("sequences", nargs="*", type=int, help="dead-letter sequences (default: all)")
    dlq_cmd.add_argument("--subject", help="only this kind, e.g. cg.dlq.usage")
    dlq_cmd.add_argument("--delete", action="store_true", help="replay: remove each from the stream once replayed")
    dlq_cmd.add_argument("--limit", type=_positive, help="list: only the oldest LIMIT")
    args = parser.parse_args(argv)

    settings = load_settings(LedgerSettings)
    level = "debug" if settings.debug else settings.log_level
    # The service logs to stdout; the commands print their report there, so their log goes to stderr.
    configure_logging(level=level, service="ledger", stream=sys.stdout if args.command == "run" else sys.stderr)
    if args.command == "run":
        _tune_gc()
        asyncio.run(service.run(settings))
    elif args.command == "reprice":
        asyncio.run(_reprice(settings, unpriced_only=not args.all))
    elif args.command == "rebuild-rollups":
        asyncio.run(_rebuild_rollups(settings, args.groupings))
    else:
        asyncio.run(
            _dead_letters(
                settings, args.action, args.sequences, subject=args.subject, delete=args.delete, limit=args.limit
            )
        )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _tune_gc() -> None:
    """The ledger allocates some twenty short-lived objects per event, freed by reference counting; the cyclic
    collector's default gen-0 threshold (700) would run it dozens of times per batch and, now and then, walk every
    module object too. Objects from start-up are frozen out of its sight, and it runs ~70x less often."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


async def _reprice(settings: LedgerSettings, *, unpriced_only: bool) -> None:
    db = await open_pool(settings.database_url, name="cg-ledger-reprice", max_size=1)
    try:
        report = await reprice(db, Pricer(), unpriced_only=unpriced_only)
    finally:
        await db.close()
    print(f"examined {report.examined} rows, changed {report.changed}, {report.still_unpriced} still without a price")


async def _rebuild_rollups(settings: LedgerSettings, names: list[str]) -> None:
    db = await open_pool(settings.database_url, name="cg-ledger-rebuild", max_size=1)
    try:
        async with db.connection() as conn:
            changes = await dimension_rollups.bring_list_to(conn, settings.groupings())
            cursor = await conn.execute("SELECT grouping FROM usage_rollup_groupings ORDER BY grouping")
            every = [row["grouping"] for row in await cursor.fetchall()]
        rebuilt = await dimension_rollups.rebuild(db, names or every)
    except LookupError as error:
        fail(str(error))
    finally:
        await db.close()
    if changes.removed:
        print(f"no longer rolled up: {', '.join(changes.removed)}")
    print(f"rebuilt {len(rebuilt)} groupings: {', '.join(rebuilt) or '-'}")


async def _dead_letters(
    settings: LedgerSettings,
    action: str,
    sequences: list[int],
    *,
    subject: str | None,
    delete: bool,
    limit: int | None,
) -> None:
    nats = await connect_nats(settings.nats_url, name="cg-ledger-dlq")
    try:
        if action == "replay":
            report = await dead_letters.replay(nats, subject=subject, sequences=sequences, delete=delete)
            print(
                f"replayed {report.replayed}, deleted {report.deleted}, skipped {report.skipped} (no original subject)"
            )
            return
        print("sequence\tdead-lettered at\tkind\tfrom\tbytes\treason")
        async with contextlib.aclosing(
            dead_letters.dead_letters(nats, subject=subject, sequences=sequences)
        ) as letters:
            listed = 0
            async for letter in letters:
                moment = letter.dead_lettered_at.isoformat() if letter.dead_lettered_at else "-"
                print(
                    f"{letter.sequence}\t{moment}\t{letter.subject}\t{letter.original_subject}#"
                    f"{letter.original_sequence}\t{len(letter.payload)}\t{letter.reason}"
                )
                listed += 1
                if listed == limit:
                    break
    finally:
        await close_nats(nats)
