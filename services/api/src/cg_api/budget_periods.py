"""A budget's periods in its own time zone: days start at local midnight, weeks on Monday, months on the 1st, and
each boundary is the instant the local calendar turns, whatever daylight saving does to the length of the period.

The arithmetic is on local calendar dates (never on durations), and each boundary is turned into an instant by
`zoneinfo`: a day of 23 or 25 hours across a change is one period, as the people paying the bill expect. A local
midnight that does not exist (a change at 00:00, as in America/Havana) starts at the first instant of that local day;
one that happens twice starts at its first occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")


@dataclass(frozen=True)
class Window:
    """One period of a budget: [start, end), both UTC instants."""

    start: datetime
    end: datetime

    def elapsed_share(self, now: datetime) -> float:
        """How much of the period lies behind `now`, from 0 to 1."""
        total = (self.end - self.start).total_seconds()
        return min(max((now - self.start).total_seconds() / total, 0.0), 1.0)


def window_at(moment: datetime, period: Period, zone: ZoneInfo) -> Window:
    """The period holding `moment` (an aware datetime)."""
    local_day = moment.astimezone(zone).date()
    first = _first_day(local_day, period)
    return Window(_local_midnight(first, zone), _local_midnight(_next_first_day(first, period), zone))


def _first_day(day: date, period: Period) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_first_day(first: date, period: Period) -> date:
    if period == "day":
        return first + timedelta(days=1)
    if period == "week":
        return first + timedelta(days=7)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of the local `day`: midnight, or, where the clocks skip midnight, the end of the gap."""
    # fold=0: a repeated midnight is its first occurrence, and a skipped one is read with the offset from before the
    # change, which names exactly the instant the gap ends (PEP 495).
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
