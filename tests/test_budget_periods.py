"""A budget's periods in its time zone, across daylight-saving changes: start and end of day, week and month, and an
event one second either side of each boundary lands in the right period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cg_api.budget_periods import Period, Window, window_at

NEW_YORK = ZoneInfo("America/New_York")  # 2026: summer time from Sun 8 March 02:00, back on Sun 1 November 02:00
BERLIN = ZoneInfo("Europe/Berlin")  # 2026: summer time from Sun 29 March 02:00, back on Sun 25 October 03:00
SECOND = timedelta(seconds=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "period", "inside", "start", "end", "hours"),
    [
        # The day the clocks go forward has 23 hours, the day they go back 25.
        (NEW_YORK, "day", utc(2026, 3, 8, 12), utc(2026, 3, 8, 5), utc(2026, 3, 9, 4), 23),
        (NEW_YORK, "day", utc(2026, 11, 1, 12), utc(2026, 11, 1, 4), utc(2026, 11, 2, 5), 25),
        (BERLIN, "day", utc(2026, 3, 29, 12), utc(2026, 3, 28, 23), utc(2026, 3, 29, 22), 23),
        (BERLIN, "day", utc(2026, 10, 25, 12), utc(2026, 10, 24, 22), utc(2026, 10, 25, 23), 25),
        # Weeks from Monday 00:00 local to the next, through the change.
        (NEW_YORK, "week", utc(2026, 3, 8, 12), utc(2026, 3, 2, 5), utc(2026, 3, 9, 4), 7 * 24 - 1),
        (BERLIN, "week", utc(2026, 10, 25, 12), utc(2026, 10, 18, 22), utc(2026, 10, 25, 23), 7 * 24 + 1),
        # Months from the 1st, local: March in New York loses an hour, October in Berlin gains one.
        (NEW_YORK, "month", utc(2026, 3, 20), utc(2026, 3, 1, 5), utc(2026, 4, 1, 4), 31 * 24 - 1),
        (BERLIN, "month", utc(2026, 10, 31, 23, 30), utc(2026, 10, 31, 23), utc(2026, 11, 30, 23), 30 * 24),
        (BERLIN, "month", utc(2026, 10, 31, 22, 59), utc(2026, 9, 30, 22), utc(2026, 10, 31, 23), 31 * 24 + 1),
        (NEW_YORK, "month", utc(2026, 12, 31, 23), utc(2026, 12, 1, 5), utc(2027, 1, 1, 5), 31 * 24),
    ],
)
def test_periods_follow_the_local_calendar(
    zone: ZoneInfo, period: Period, inside: datetime, start: datetime, end: datetime, hours: int
) -> None:
    window = window_at(inside, period, zone)
    assert window == Window(start, end)
    assert window.end - window.start == timedelta(hours=hours)


@pytest.mark.parametrize("zone", [NEW_YORK, BERLIN, ZoneInfo("UTC"), ZoneInfo("Asia/Kolkata")])
@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_a_second_either_side_of_each_boundary_lands_in_its_own_period(zone: ZoneInfo, period: Period) -> None:
    """Walk a year of periods: each one starts where the last ended, and the instants just around a boundary fall
    on either side of it."""
    window = window_at(utc(2026, 1, 1, 12), period, zone)
    while window.start < utc(2027, 1, 1):
        following = window_at(window.end, period, zone)
        assert following.start == window.end
        assert window_at(window.end - SECOND, period, zone) == window
        assert window_at(window.end + SECOND, period, zone) == following
        local = window.end.astimezone(zone)
        assert (local.hour, local.minute, local.second) == (0, 0, 0)
        assert period != "week" or local.weekday() == 0
        assert period != "month" or local.day == 1
        window = following


def test_a_skipped_midnight_starts_the_day_when_the_clocks_resume() -> None:
    """America/Havana skips 00:00–01:00 on its spring change: that day starts at 01:00 local."""
    havana = ZoneInfo("America/Havana")
    window = window_at(utc(2026, 3, 8, 12), "day", havana)
    assert window.start.astimezone(havana).hour == 1
    assert window.end - window.start == timedelta(hours=23)
