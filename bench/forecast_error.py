"""The forecast's error on a replayed history: how far `cg_common.forecast`'s projection (the one the api shows and
the ledger alerts on) lands from what the period really spent, at 10, 25, 50, 75 and 90% of day, week and month
periods; and what its alert does for budgets set just above and just below what the period spent.

The history is 26 weeks of hourly spend shaped like a platform team's: busy office hours and quiet nights, quiet
weekends, noise on every hour (log-normal), a few bursts (a batch job: 10 to 30 times an hour's usual), and a step
change (+60% from week 14 on, a new feature going live). It is replayed hour by hour through the same functions,
with the same guard; the alert is judged after each hour, as the ledger judges it when spend arrives.
"""

from __future__ import annotations

import math
import random
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bench.support import say
from cg_common import forecast

NAME = "forecast"
WEEKS = 26
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
ZONE = ZoneInfo("Europe/Berlin")
SHARES = (0.10, 0.25, 0.50, 0.75, 0.90)
SEED = 20261205
MARGINS = (Decimal("0.1"), Decimal("0.25"))


def history() -> list[Decimal]:
    """Spend per UTC hour from START."""
    rng = random.Random(SEED)
    spend = []
    for hour in range(WEEKS * 7 * 24):
        moment = (START + timedelta(hours=hour)).astimezone(ZONE)
        office = 3.0 if 9 <= moment.hour < 18 else 1.0 if 7 <= moment.hour < 22 else 0.3
        weekend = 0.4 if moment.weekday() >= 5 else 1.0
        step = 1.6 if hour >= 13 * 7 * 24 else 1.0
        burst = rng.uniform(10, 30) if rng.random() < 0.004 else 1.0
        noise = math.exp(rng.gauss(0, 0.3))
        spend.append(Decimal(str(round(2.0 * office * weekend * step * burst * noise, 6))))
    return spend


def periods(kind: str) -> list[tuple[datetime, datetime]]:
    """Whole periods of the history, local midnights in Europe/Berlin, as budget periods are."""
    local = START.astimezone(ZONE).replace(hour=0, minute=0, second=0, microsecond=0)
    end = START + timedelta(weeks=WEEKS)
    found = []
    while True:
        if kind == "day":
            following = local + timedelta(days=1)
        elif kind == "week":
            following = local + timedelta(days=7 - local.weekday())
        else:
            following = (local.replace(day=1) + timedelta(days=32)).replace(day=1)
        following = following.replace(tzinfo=None).replace(tzinfo=ZONE)  # local midnight, its own offset
        start_utc, end_utc = local.astimezone(UTC), following.astimezone(UTC)
        if start_utc >= START and end_utc <= end:
            found.append((start_utc, end_utc))
        if end_utc > end:
            return found
        local = following


def run() -> dict[str, Any]:
    spend = history()

    def hours(a: datetime, b: datetime) -> list[Decimal]:
        first = int((a - START).total_seconds() // 3600)
        last = int((b - START).total_seconds() // 3600)
        return spend[max(first, 0) : last]

    result: dict[str, Any] = {}
    for kind in ("day", "week", "month"):
        errors: dict[float, list[float]] = {share: [] for share in SHARES}
        alerts: dict[Decimal, dict[str, Any]] = {margin: {"false": 0, "early": 0, "lead": []} for margin in MARGINS}
        chosen = periods(kind)
        for start, end in chosen:
            actual = sum(hours(start, end), Decimal(0))
            length = int((end - start).total_seconds() // 3600)
            for share in SHARES:
                now = start + timedelta(hours=round(length * share))
                errors[share].append(float(abs(_projected(hours, start, end, now) - actual) / actual))
            for margin, tally in alerts.items():
                _judge_alerts(hours, start, end, length, actual, margin, tally)
        result[kind] = {
            "periods": len(chosen),
            "median": {share: statistics.median(values) for share, values in errors.items()},
            "p90": {share: statistics.quantiles(values, n=10)[-1] for share, values in errors.items()},
            "alerts": {
                margin: {
                    "false": tally["false"],
                    "early": tally["early"],
                    "lead_hours": statistics.median(tally["lead"]) if tally["lead"] else 0.0,
                }
                for margin, tally in alerts.items()
            },
        }
        say(NAME, f"{kind}: median error at half the period {result[kind]['median'][0.5]:.1%}")
    return result


def _judge_alerts(
    hours: Any, start: datetime, end: datetime, length: int, actual: Decimal, margin: Decimal, tally: dict[str, Any]
) -> None:
    """The alert judged each hour, for a budget `margin` above what the period spent (it should stay quiet) and one
    `margin` below (it should speak before the spend itself gets there)."""
    above, below = actual * (1 + margin), actual * (1 - margin)
    fired_above = fired_below = crossed = None
    for n in range(1, length + 1):
        now = start + timedelta(hours=n)
        if crossed is None and sum(hours(start, now), Decimal(0)) >= below:
            crossed = n
        if not forecast.judged(start, end, now):
            continue
        projected = _projected(hours, start, end, now)
        if fired_above is None and projected > above:
            fired_above = n
        if fired_below is None and projected > below:
            fired_below = n
    tally["false"] += fired_above is not None
    if fired_below is not None and crossed is not None and fired_below < crossed:
        tally["early"] += 1
        tally["lead"].append(crossed - fired_below)


def _projected(hours: Any, start: datetime, end: datetime, now: datetime) -> Decimal:
    spent = sum(hours(start, now), Decimal(0))
    since = forecast.recent_start(start, end, START, now)
    return forecast.project(spent, sum(hours(since, now), Decimal(0)), since, now, end)


def markdown(result: dict[str, Any]) -> str:
    header = " | ".join(f"at {share:.0%}" for share in SHARES)
    rows = []
    for kind, figures in result.items():
        cells = " | ".join(f"{figures['median'][s]:.1%} / {figures['p90'][s]:.1%}" for s in SHARES)
        rows.append(f"| {kind} ({figures['periods']}) | {cells} |")
    alerts = [
        f"| {kind} | {float(margin):.0%} | {a['false']} of {f['periods']} | {a['early']} of {f['periods']} "
        f"(median {a['lead_hours']:.0f} h ahead) |"
        for kind, f in result.items()
        for margin, a in f["alerts"].items()
    ]
    table, alert_table = "\n".join(rows), "\n".join(alerts)
    return f"""`bench/forecast_error.py` replays {WEEKS} weeks of synthetic hourly spend (office hours and nights,
quiet weekends, log-normal noise, rare bursts, +60% from week 14) through `cg_common.forecast`, the method the api
shows and the ledger alerts on, for every whole day, week and month of it in Europe/Berlin. Absolute error of the
forecast against what the period really spent, median / p90, by how much of the period had passed:

| period (how many) | {header} |
| --- | {" | ".join("---:" for _ in SHARES)} |
{table}

The `budget.forecast` alert, judged hourly with its guard (a tenth of the period, or a day, must have passed), for
budgets a margin above what each period spent (any alert is a false one) and the same margin below (an alert before
the spend itself crossed the amount is the useful kind):

| period | margin | false alerts (amount above) | alerted before the crossing (amount below) |
| --- | ---: | ---: | ---: |
{alert_table}
"""


if __name__ == "__main__":
    print(markdown(run()))
