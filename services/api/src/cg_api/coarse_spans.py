"""How a summary over a coarse dimension grouping (daily and monthly roll-ups, no hourly one) reads a range exactly.

[since, until) is written as a signed sum: whole months (+1), or a month minus the days of it outside the range;
whole days; and each partial day at the edges either from the records inside the range or as that day's roll-up minus
the records outside the range, whichever spans less time that has already passed (the records after `now` are few or
none, so a range ending now costs one day row and a few minutes of records). Every part counts exactly what its
records hold, so the sum equals a scan of the range's records; a value whose parts cancel out has no usage in it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from cg_api.buckets import DAY, ceil, floor

# Months and days are only reckoned within these bounds (so that their arithmetic stays in Python's date range);
# what lies outside them is read from the records.
EARLIEST = datetime(1, 2, 1, tzinfo=UTC)
LATEST = datetime(9999, 11, 1, tzinfo=UTC)


@dataclass
class SignedParts:
    """Records over half-open ranges with a sign, and day and month roll-up rows with a coefficient each."""

    records: list[tuple[datetime, datetime, int]] = field(default_factory=list)
    days: Counter[date] = field(default_factory=Counter)
    months: Counter[date] = field(default_factory=Counter)

    def pending_days(self) -> dict[date, int]:
        """The coefficient of each day's pending sums: its own, plus its month's (pending sums are not folded into
        either roll-up yet)."""
        weights: Counter[date] = Counter(self.days)
        for month, coefficient in self.months.items():
            day = month
            while day.month == month.month:
                weights[day] += coefficient
                day += timedelta(days=1)
        return {day: weight for day, weight in weights.items() if weight}


def cut(since: datetime, until: datetime, now: datetime, *, months: bool = True) -> SignedParts:
    """The signed parts of [since, until); `months` False when the summary groups by day (a month row cannot be
    split into days)."""
    parts = SignedParts()
    if since >= until:
        return parts
    low, high = max(since, EARLIEST), min(until, LATEST)
    if low >= high:
        parts.records.append((since, until, 1))
        return parts
    parts.records += [(start, end, 1) for start, end in ((since, low), (high, until)) if start < end]
    first_day, end_day = ceil(low, DAY), floor(high, DAY)
    if first_day > end_day:  # within one day
        _edge(parts, floor(low, DAY), low, high, now)
        return parts
    if low < first_day:
        _edge(parts, first_day - DAY, low, first_day, now)
    if end_day < high:
        _edge(parts, end_day, end_day, high, now)
    _whole_days(parts, first_day.date(), end_day.date(), now.date(), months=months)
    parts.days = Counter({day: n for day, n in parts.days.items() if n})
    return parts


def _edge(parts: SignedParts, day: datetime, start: datetime, end: datetime, now: datetime) -> None:
    """[start, end) within `day`: its records, or the day's row minus the records of the rest of the day."""
    outside = [(day, start), (end, day + DAY)]
    if _passed(outside, now) < _passed([(start, end)], now):
        parts.days[day.date()] += 1
        parts.records += [(a, b, -1) for a, b in outside if a < b]
    else:
        parts.records.append((start, end, 1))


def _passed(ranges: list[tuple[datetime, datetime]], now: datetime) -> timedelta:
    """How much of these ranges lies before `now`: what reading their records costs."""
    return sum((max(min(b, now) - a, timedelta(0)) for a, b in ranges), timedelta(0))


def _whole_days(parts: SignedParts, first: date, end: date, today: date, *, months: bool) -> None:
    """Days [first, end): per month, its days, or (when it reads fewer rows) the month minus its other days."""
    day = first
    while day < end:
        month = day.replace(day=1)
        following = (month + timedelta(days=32)).replace(day=1)
        inside = [day + timedelta(days=n) for n in range((min(end, following) - day).days)]
        others = [month + timedelta(days=n) for n in range((following - month).days)]
        others = [d for d in others if not first <= d < end]
        direct, complement = Counter(parts.days), Counter(parts.days)
        direct.update(inside)
        complement.subtract(others)
        if months and _rows(complement, today) + 1 < _rows(direct, today):
            parts.days = complement
            parts.months[month] += 1
        else:
            parts.days = direct
        day = min(end, following)


def _rows(days: Counter[date], today: date) -> int:
    """Day rows to read: days after today hold none yet."""
    return sum(1 for day, n in days.items() if n and day <= today)
