"""Prices usage events with `genai-prices` (pydantic's maintained price table), exactly and fast.

`genai_prices.calc_price` is the reference but costs ~70 µs a call, nearly all of it in resolving price units, and
the ledger must price ~20,000 events a second. Within one price entry the cost is an affine function of the token
counts (piecewise, for tiered prices: a tier's rate applies to the whole event once its input exceeds the tier's
start), so `Pricer` asks genai-prices itself for the cost of a few basis usages once per entry and band, and then
prices each event with four Decimal products. The result equals `calc_price(...).total_price`.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from genai_prices import Usage, __version__, data_snapshot
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.types import (
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
    calc_unit_price,
)

_MAX_MODELS = 10_000


class Price(NamedTuple):
    """A cost in USD and the price entry it came from, so a stored cost says what priced it; both None if unpriced."""

    cost: Decimal | None
    source: str | None


UNPRICED = Price(None, None)


_Coefficients = tuple[Decimal, Decimal, Decimal, Decimal]


@dataclass(frozen=True, slots=True)
class _Entry:
    """One price entry of a model: its source label and, per band of input sizes, the cost of one request, one
    uncached input token, one cached input token and one output token; no bands if genai-prices cannot apply it.

    Tiered prices switch rate for the whole event once its input (cached tokens included) exceeds a tier's start, so
    band i holds the events whose input exceeds exactly i of the sorted tier starts `thresholds`.
    """

    source: str
    thresholds: tuple[int, ...]
    bands: tuple[_Coefficients, ...]


@dataclass(frozen=True, slots=True)
class _Model:
    model: ModelInfo
    source: str
    # Keyed by id() of the model's own ModelPrice objects, which the model keeps alive, so the ids cannot be reused.
    entries: dict[int, _Entry]


class Pricer:
    """Prices usage exactly as `genai_prices.calc_price` does, from a cache of per-entry coefficients.

    The cache belongs to the price data it was built from: whenever `genai_prices.data_snapshot.get_snapshot()`
    returns another snapshot object (`set_custom_snapshot`, `UpdatePrices`), the cache is dropped. A snapshot
    mutated in place is not noticed; replace it instead.

    `requests` multiplies per-request prices: genai-prices charges a per-request price once per call, while an
    event may cover several requests (or none). With requests=1 the cost is exactly `calc_price`'s.
    """

    def __init__(self) -> None:
        self._snapshot: DataSnapshot | None = None
        self._models: dict[tuple[str, str], _Model | None] = {}

    def price(
        self,
        provider: str,
        model: str,
        occurred_at: datetime,
        *,
        input_tokens: int,
        cached_input_tokens: int,
        output_tokens: int,
        requests: int,
    ) -> Price:
        """The cost of one usage event at the price in force at `occurred_at` (naive means UTC).

        `input_tokens` includes the `cached_input_tokens`, which are priced at the cache-read rate (at the input
        rate if the model has none). Unknown provider or model, or price data genai-prices cannot apply: UNPRICED.
        """
        if not 0 <= cached_input_tokens <= input_tokens or output_tokens < 0 or requests < 0:
            raise ValueError("counts must be >= 0 and cached_input_tokens <= input_tokens")
        snapshot = data_snapshot.get_snapshot()
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._models = {}
        try:
            known = self._models[provider, model]
        except KeyError:
            known = self._remember(snapshot, provider, model)
        if known is None:
            return UNPRICED
        model_price = known.model.get_prices(occurred_at)
        # genai-prices returns one of the model's own ModelPrice objects; should that ever change, derive afresh.
        entry = known.entries.get(id(model_price)) or _entry(model_price, known.source)
        if not entry.bands:
            return UNPRICED
        per_request, per_input, per_cached, per_output = entry.bands[bisect_left(entry.thresholds, input_tokens)]
        cost = (
            per_request * requests
            + per_input * (input_tokens - cached_input_tokens)
            + per_cached * cached_input_tokens
            + per_output * output_tokens
        )
        return Price(cost, entry.source)

    def _remember(self, snapshot: DataSnapshot, provider_id: str, model_ref: str) -> _Model | None:
        """Look the model up and derive its entries; unknown ones are remembered too, as they are slow to look up."""
        try:
            provider, model = snapshot.find_provider_model(model_ref, None, provider_id, None)
        except LookupError:
            known = None
        else:
            source = f"genai-prices {__version__} {provider.id}/{model.id}"
            if snapshot.from_auto_update:
                source += f" (data fetched {snapshot.timestamp:%Y-%m-%d})"
            entries = {id(c.prices): _entry(c.prices, source + _condition_label(c)) for c in _conditional_prices(model)}
            known = _Model(model, source, entries)
        if len(self._models) >= _MAX_MODELS:
            del self._models[next(iter(self._models))]
        self._models[provider_id, model_ref] = known
        return known


def _conditional_prices(model: ModelInfo) -> list[ConditionalPrice]:
    return [ConditionalPrice(prices=model.prices)] if isinstance(model.prices, ModelPrice) else model.prices


def _condition_label(conditional: ConditionalPrice) -> str:
    constraint = conditional.constraint
    if isinstance(constraint, StartDateConstraint):
        return f" from {constraint.start_date.isoformat()}"
    if isinstance(constraint, TimeOfDateConstraint):
        return f" {constraint.start_time.isoformat()}-{constraint.end_time.isoformat()}"
    return ""


def _entry(model_price: ModelPrice, source: str) -> _Entry:
    """_Coefficients from genai-prices' own prices of basis usages: zero usage costs one request's price, and each
    further token adds its rate. Tiered prices are first fixed at each band's rates, by genai-prices' tier choice.
    Price data genai-prices rejects (ValueError, whatever the usage) gets no bands."""
    thresholds = sorted(
        {tier.start for value in vars(model_price).values() if isinstance(value, TieredPrices) for tier in value.tiers}
    )
    try:
        model_price.calc_price(Usage())  # genai-prices' own check of the price data, tiers included
        bands = tuple(
            _coefficients(_fixed_at(model_price, input_tokens)) for input_tokens in (0, *(t + 1 for t in thresholds))
        )
    except ValueError:
        return _Entry(source, (), ())
    return _Entry(source, tuple(thresholds), bands)


def _fixed_at(model_price: ModelPrice, input_tokens: int) -> ModelPrice:
    """The plain prices a tiered ModelPrice charges for an event with this many input tokens."""
    return ModelPrice(
        **{
            key: calc_unit_price(value, 1, input_tokens, 1) if isinstance(value, TieredPrices) else value
            for key, value in vars(model_price).items()
        }
    )


def _coefficients(model_price: ModelPrice) -> _Coefficients:
    base, one_input, one_cached, one_output = (
        model_price.calc_price(usage)["total_price"]
        for usage in (
            Usage(),
            Usage(input_tokens=1),
            Usage(input_tokens=1, cache_read_tokens=1),
            Usage(output_tokens=1),
        )
    )
    return base, one_input - base, one_cached - base, one_output - base
