"""Price data that differs from the bundled genai-prices data, as after an update: for pricing and reprice tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, time
from decimal import Decimal

from genai_prices import data_snapshot
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import (
    ClauseEquals,
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    Tier,
    TieredPrices,
    TimeOfDateConstraint,
)


# A custom snapshot: the bundled providers, OpenAI with one model more, and a provider of its own whose model has
# everything at once: dated, time-of-day, several tiers starting at 0, and a tiered per-request price.
def custom_providers() -> list[Provider]:
    bundled = data_snapshot.get_snapshot().providers
    extra_openai = ModelInfo(
        id="gpt-cg-test",
        match=ClauseEquals(equals="gpt-cg-test"),
        prices=ModelPrice(input_mtok=Decimal("1.25"), cache_read_mtok=Decimal("0.125"), output_mtok=Decimal("7")),
    )

    def tiered(base: str, *tiers: tuple[int, str]) -> TieredPrices:
        return TieredPrices(base=Decimal(base), tiers=[Tier(start=s, price=Decimal(p)) for s, p in tiers])

    acme = Provider(
        id="acme",
        name="Acme",
        api_pattern=r"https://api\.acme\.test",
        models=[
            ModelInfo(
                id="acme-1",
                match=ClauseEquals(equals="acme-1"),
                prices=[
                    ConditionalPrice(
                        prices=ModelPrice(
                            input_mtok=tiered("1", (0, "1.1"), (1000, "2.2"), (50_000, "3.3")),
                            cache_read_mtok=tiered("0.1", (1000, "0.2")),
                            output_mtok=tiered("4", (50_000, "8")),
                            requests_kcount=tiered("5", (1000, "6")),
                        )
                    ),
                    ConditionalPrice(
                        constraint=StartDateConstraint(start_date=date(2026, 2, 1)),
                        prices=ModelPrice(input_mtok=Decimal("0.3"), output_mtok=Decimal("0.9")),
                    ),
                    ConditionalPrice(
                        constraint=TimeOfDateConstraint(start_time=time(22, tzinfo=UTC), end_time=time(2, tzinfo=UTC)),
                        prices=ModelPrice(input_mtok=tiered("0.5", (10_000, "0.7")), output_mtok=Decimal("1.5")),
                    ),
                ],
            )
        ],
    )
    return [dataclasses.replace(p, models=[extra_openai, *p.models]) if p.id == "openai" else p for p in bundled] + [
        acme
    ]


CUSTOM = DataSnapshot(providers=custom_providers(), from_auto_update=False)


@contextmanager
def prices_from(snapshot: DataSnapshot) -> Iterator[None]:
    data_snapshot.set_custom_snapshot(snapshot)
    try:
        yield
    finally:
        data_snapshot.set_custom_snapshot(None)
