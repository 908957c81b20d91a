"""The cost-over-time chart's geometry: stacked bars per UTC day, one colour per model (the top ones, the rest as
"other"). Computed here, drawn by the template as plain SVG (no script, no inline style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 28, 12, 28
SERIES = 5  # models with a colour of their own; the rest is "other"
OTHER = "other models"


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_bottom: int
    segments: list[Segment]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    legend: list[tuple[int, str]]
    empty: bool


def stacked_by_model(days: Sequence[date], costs: Mapping[date, Mapping[str, Decimal]], *, other: str = OTHER) -> Chart:
    """`costs[day][model]` for each day in `days` (missing days and models count as nothing); any grouping's values
    stack alike (sources, keys), `other` naming the rest past the top ones."""
    totals_by_model: dict[str, Decimal] = {}
    for day in days:
        for model, cost in costs.get(day, {}).items():
            totals_by_model[model] = totals_by_model.get(model, Decimal(0)) + cost
    ranked = [m for m, total in sorted(totals_by_model.items(), key=lambda kv: (-kv[1], kv[0])) if total > 0]
    named = ranked[:SERIES]
    names = [*named, other] if len(ranked) > SERIES else named
    series_of = {model: (named.index(model) if model in named else SERIES) for model in ranked}

    per_day = [_stack(costs.get(day, {}), series_of) for day in days]
    peak = max((sum(stack.values(), Decimal(0)) for stack in per_day), default=Decimal(0))
    top = _nice_ceiling(peak)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(days), 1)
    bar = max(slot * 0.72, 1.0)
    segments = []
    for index, (day, stack) in enumerate(zip(days, per_day, strict=True)):
        y = float(HEIGHT - BOTTOM)
        for series in sorted(stack):
            cost = stack[series]
            height = float(cost / top) * plot_height if top > 0 else 0.0
            if height <= 0:
                continue
            y -= height
            name = names[series] if series < len(names) else other
            title = f"{day.isoformat()} · {name}: {_usd(cost)}"
            segments.append(Segment(LEFT + index * slot + (slot - bar) / 2, y, bar, height, series, title))
    return _chart(days, segments, top, names, peak == 0, label_every=7)


def paired(
    days: Sequence[date], first: Mapping[date, Decimal], second: Mapping[date, Decimal], names: tuple[str, str]
) -> Chart:
    """Two bars side by side per UTC day (billed beside computed, say): series 0 is `first`, 1 `second`."""
    peak = max([*first.values(), *second.values(), Decimal(0)])
    top = _nice_ceiling(peak)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(days), 1)
    bar = max(slot * 0.36, 1.0)
    segments = []
    for index, day in enumerate(days):
        for series, values in enumerate((first, second)):
            cost = values.get(day, Decimal(0))
            height = float(cost / top) * plot_height if top > 0 else 0.0
            if height <= 0:
                continue
            x = LEFT + index * slot + slot * 0.14 + series * bar
            title = f"{day.isoformat()} · {names[series]}: {_usd(cost)}"
            segments.append(Segment(x, HEIGHT - BOTTOM - height, bar, height, series, title))
    return _chart(days, segments, top, list(names), peak == 0, label_every=max(1, len(days) // 5))


def _chart(
    days: Sequence[date], segments: list[Segment], top: Decimal, names: list[str], empty: bool, *, label_every: int
) -> Chart:
    """The axes around `segments`: five value ticks up to `top`, a day label every `label_every` days (the last one
    always labelled)."""
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(days), 1)
    y_ticks = [Tick(HEIGHT - BOTTOM - plot_height * i / 4, _usd(top * i / 4)) for i in range(5)]
    x_ticks = [
        Tick(LEFT + index * slot + slot / 2, day.strftime("%b %d"))
        for index, day in enumerate(days)
        if (len(days) - 1 - index) % label_every == 0
    ]
    return Chart(
        WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, segments, y_ticks, x_ticks, list(enumerate(names)), empty
    )


def _stack(day_costs: Mapping[str, Decimal], series_of: Mapping[str, int]) -> dict[int, Decimal]:
    stack: dict[int, Decimal] = {}
    for model, cost in day_costs.items():
        if cost > 0:
            series = series_of[model]
            stack[series] = stack.get(series, Decimal(0)) + cost
    return stack


def _nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10^n at or above `value`, so that the axis reads in round steps."""
    if value <= 0:
        return Decimal(1)
    magnitude = Decimal(10) ** (value.adjusted())
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _usd(value: Decimal) -> str:
    if value == 0:
        return "$0"
    if value < 1:
        return f"${value:.4f}".rstrip("0").rstrip(".")
    if value < 100:
        return f"${value:.2f}"
    return f"${value:,.0f}"
