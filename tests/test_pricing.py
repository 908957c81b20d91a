"""Pricer's cost equals genai-prices' own `calc_price` to the last digit, for plain, dated, time-of-day, tiered and
per-request prices; unknown models are unpriced, and replacing the price data is noticed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import Usage, calc_price, data_snapshot
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import (
    ClauseEquals,
    ModelInfo,
    ModelPrice,
    Provider,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cg_common.pricing import UNPRICED, Price, Pricer
from tests.support.prices import CUSTOM, prices_from

VERSION = genai_prices.__version__

# (provider, model as reported by the API): plain prices, a dated price change (o3 on 2025-06-10), tiered prices
# (200k-token tier), tiered until a date then plain (claude-sonnet-4-6, 2026-03-13), time-of-day prices (deepseek),
# time-of-day and dated together (deepseek-v4-pro, 2026-08-17), and a per-request price (perplexity sonar).
MODELS = [
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o"),
    ("openai", "gpt-4.1-mini"),
    ("openai", "o3-mini"),
    ("openai", "gpt-3.5-turbo"),
    ("openai", "text-embedding-3-small"),
    ("openai", "o3"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-sonnet-4-6"),
    ("google", "gemini-3-pro-preview"),
    ("deepseek", "deepseek-chat"),
    ("deepseek", "deepseek-v4-pro"),
    ("perplexity", "sonar"),
]

OFFSETS = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-9, minutes=-30))])
MOMENTS = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=OFFSETS)
INPUT_TOKENS = st.one_of(st.integers(0, 10**9), st.integers(199_990, 200_010), st.integers(0, 1000))
OUTPUT_TOKENS = st.one_of(st.integers(0, 10**8), st.integers(0, 1000))
CACHED_TOKENS = st.one_of(st.integers(0, 10**9), st.integers(0, 1000), st.just(10**9))  # capped at the input

pricer = Pricer()


def reference(provider: str, model: str, at: datetime, input_tokens: int, cached: int, output: int) -> Decimal | None:
    usage = Usage(input_tokens=input_tokens, cache_read_tokens=cached, output_tokens=output)
    try:
        return calc_price(usage, model, provider_id=provider, genai_request_timestamp=at).total_price
    except LookupError:
        return None


def cost(provider: str, model: str, at: datetime, input_tokens: int, cached: int, output: int) -> Decimal | None:
    return pricer.price(
        provider, model, at, input_tokens=input_tokens, cached_input_tokens=cached, output_tokens=output, requests=1
    ).cost


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(MODELS), MOMENTS, INPUT_TOKENS, CACHED_TOKENS, OUTPUT_TOKENS)
@example(("openai", "o3"), datetime(2025, 6, 9, 23, 59, 59, tzinfo=UTC), 1000, 100, 10)
@example(("openai", "o3"), datetime(2025, 6, 10, tzinfo=UTC), 1000, 100, 10)
@example(("anthropic", "claude-sonnet-4-6"), datetime(2026, 3, 12, 23, 59, tzinfo=UTC), 200_001, 0, 10)
@example(("anthropic", "claude-sonnet-4-6"), datetime(2026, 3, 13, tzinfo=UTC), 200_001, 0, 10)
@example(("deepseek", "deepseek-chat"), datetime(2026, 1, 1, 0, 29, 59, tzinfo=UTC), 500, 100, 10)
@example(("deepseek", "deepseek-chat"), datetime(2026, 1, 1, 0, 30, tzinfo=UTC), 500, 100, 10)
@example(("deepseek", "deepseek-v4-pro"), datetime(2026, 8, 16, 12, tzinfo=UTC), 500, 100, 10)
@example(("deepseek", "deepseek-v4-pro"), datetime(2026, 8, 17, 12, tzinfo=UTC), 500, 100, 10)
@example(("deepseek", "deepseek-v4-pro"), datetime(2026, 8, 17, 2, tzinfo=UTC), 500, 100, 10)
def test_cost_equals_calc_price(
    provider_model: tuple[str, str], at: datetime, input_tokens: int, cached_or_more: int, output: int
) -> None:
    provider, model = provider_model
    cached = min(cached_or_more, input_tokens)
    expected = reference(provider, model, at, input_tokens, cached, output)
    assert expected is not None
    assert cost(provider, model, at, input_tokens, cached, output) == expected


@pytest.mark.parametrize("input_tokens", [0, 1, 199_999, 200_000, 200_001, 10**9])
@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-sonnet-4-6"])
def test_tier_boundaries(model: str, input_tokens: int) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for cached in (0, input_tokens // 3, input_tokens):
        expected = reference("anthropic", model, at, input_tokens, cached, 1234)
        assert cost("anthropic", model, at, input_tokens, cached, 1234) == expected


def test_every_bundled_model_at_a_few_points() -> None:
    """Guards a genai-prices upgrade: every model it ships, tiered or not, priced both ways."""
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            for at, usage in [
                (datetime(2025, 3, 1, 7, tzinfo=UTC), (1_000, 300, 200)),
                (datetime(2026, 11, 26, 20, tzinfo=UTC), (250_000, 20_000, 9_000)),
            ]:
                assert cost(provider.id, model.id, at, *usage) == reference(provider.id, model.id, at, *usage)


def test_cached_tokens_are_part_of_input_and_priced_at_the_cache_read_rate() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    # gpt-4o-mini: $0.15/MTok input, $0.075/MTok cache read; gpt-3.5-turbo has no cache-read rate: $0.5/MTok input.
    assert cost("openai", "gpt-4o-mini-2024-07-18", at, 1000, 0, 0) == Decimal("0.00015")
    assert cost("openai", "gpt-4o-mini-2024-07-18", at, 1000, 1000, 0) == Decimal("0.000075")
    assert cost("openai", "gpt-4o-mini-2024-07-18", at, 1000, 400, 0) == Decimal("0.00012")
    assert cost("openai", "gpt-3.5-turbo", at, 1000, 400, 0) == Decimal("0.0005")


def test_per_request_prices_are_multiplied_by_requests() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    per_request = reference("perplexity", "sonar", at, 0, 0, 0)
    one = reference("perplexity", "sonar", at, 1000, 0, 50)
    assert per_request == Decimal("0.012")  # $12 per 1,000 requests
    assert one is not None
    for requests in (0, 1, 3, 1000):
        got = pricer.price(
            "perplexity", "sonar", at, input_tokens=1000, cached_input_tokens=0, output_tokens=50, requests=requests
        )
        assert got.cost == one + (requests - 1) * per_request
    # Models without a per-request price cost the same whatever `requests` says.
    for requests in (0, 7):
        got = pricer.price(
            "openai", "gpt-4o", at, input_tokens=1000, cached_input_tokens=10, output_tokens=50, requests=requests
        )
        assert got.cost == reference("openai", "gpt-4o", at, 1000, 10, 50)


def test_source_names_the_price_entry() -> None:
    def source(provider: str, model: str, at: datetime) -> str | None:
        return pricer.price(
            provider, model, at, input_tokens=1, cached_input_tokens=0, output_tokens=1, requests=1
        ).source

    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert source("openai", "gpt-4o-mini-2024-07-18", at) == f"genai-prices {VERSION} openai/gpt-4o-mini"
    assert source("openai", "o3", datetime(2025, 6, 9, tzinfo=UTC)) == f"genai-prices {VERSION} openai/o3"
    assert (
        source("openai", "o3", datetime(2025, 6, 10, tzinfo=UTC)) == f"genai-prices {VERSION} openai/o3 from 2025-06-10"
    )
    assert source("deepseek", "deepseek-chat", at) == (
        f"genai-prices {VERSION} deepseek/deepseek-chat 00:30:00+00:00-16:30:00+00:00"
    )


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "gpt-does-not-exist"), ("no-such-provider", "gpt-4o"), ("no-such-provider", "no-such-model")],
)
def test_unknown_provider_or_model_is_unpriced(provider: str, model: str) -> None:
    for _ in range(2):  # the second time from the cache
        got = pricer.price(
            provider, model, datetime.now(UTC), input_tokens=10, cached_input_tokens=0, output_tokens=1, requests=1
        )
        assert got == Price(None, None) == UNPRICED


def test_cached_beyond_input_is_refused() -> None:
    with pytest.raises(ValueError, match="cached_input_tokens"):
        pricer.price(
            "openai", "gpt-4o", datetime.now(UTC), input_tokens=10, cached_input_tokens=11, output_tokens=0, requests=1
        )


@pytest.fixture
def custom_prices() -> Iterator[None]:
    with prices_from(CUSTOM):
        yield


def test_a_model_known_only_to_a_custom_snapshot() -> None:
    local = Pricer()
    at = datetime(2026, 5, 1, tzinfo=UTC)

    def price() -> Price:
        return local.price(
            "openai", "gpt-cg-test", at, input_tokens=1000, cached_input_tokens=200, output_tokens=10, requests=1
        )

    assert price() == UNPRICED
    with prices_from(CUSTOM):
        assert price() == Price(Decimal("0.001095"), f"genai-prices {VERSION} openai/gpt-cg-test")
        assert price().cost == reference("openai", "gpt-cg-test", at, 1000, 200, 10)
    assert price() == UNPRICED  # the bundled data is back, and the cache did not outlive the custom data


@pytest.mark.usefixtures("custom_prices")
def test_bundled_models_are_still_priced_under_the_custom_snapshot() -> None:
    at = datetime(2026, 5, 1, tzinfo=UTC)
    assert cost("openai", "gpt-4o-mini-2024-07-18", at, 1000, 0, 0) == Decimal("0.00015")
    assert cost("acme", "acme-1", at, 1000, 0, 0) == reference("acme", "acme-1", at, 1000, 0, 0)


@settings(max_examples=500, deadline=None)
@given(
    MOMENTS,
    st.one_of(st.integers(0, 3), st.integers(995, 1005), st.integers(9_995, 10_005), st.integers(0, 10**7)),
    st.data(),
    OUTPUT_TOKENS,
)
def test_custom_tiered_dated_time_of_day_model(
    at: datetime, input_tokens: int, data: st.DataObject, output: int
) -> None:
    cached = data.draw(st.integers(0, input_tokens), label="cached")
    with prices_from(CUSTOM):
        assert cost("acme", "acme-1", at, input_tokens, cached, output) == reference(
            "acme", "acme-1", at, input_tokens, cached, output
        )


def test_price_data_genai_prices_rejects_is_unpriced() -> None:
    broken = ModelInfo(id="broken", match=ClauseEquals(equals="broken"), prices=ModelPrice(input_mtok=Decimal(-1)))
    acme = Provider(id="acme", name="Acme", api_pattern=r"https://api\.acme\.test", models=[broken])
    with prices_from(DataSnapshot(providers=[acme], from_auto_update=False)):
        with pytest.raises(ValueError, match="Invalid price value"):
            reference("acme", "broken", datetime.now(UTC), 1, 0, 0)
        assert (
            pricer.price(
                "acme", "broken", datetime.now(UTC), input_tokens=1, cached_input_tokens=0, output_tokens=0, requests=1
            )
            == UNPRICED
        )


def test_auto_updated_data_is_named_in_the_source() -> None:
    fetched = DataSnapshot(providers=CUSTOM.providers, from_auto_update=True, timestamp=datetime(2026, 11, 2, 8))
    with prices_from(fetched):
        got = pricer.price(
            "openai",
            "gpt-cg-test",
            datetime.now(UTC),
            input_tokens=1,
            cached_input_tokens=0,
            output_tokens=0,
            requests=1,
        )
    assert got.source == f"genai-prices {VERSION} openai/gpt-cg-test (data fetched 2026-11-02)"
