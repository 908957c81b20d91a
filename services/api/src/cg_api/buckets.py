"""The roll-ups' time buckets: UTC hours and days, and the range within which their arithmetic stays in Python's
datetime range (shared by the summary and by GET /data's hour look-ups)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Bucket boundaries are computed within these bounds so that rounding never leaves Python's datetime range;
# whatever lies outside them is read from usage_events, which stays exact.
EARLIEST_BUCKET = datetime(1, 1, 2, tzinfo=UTC)
LATEST_BUCKET = datetime(9999, 12, 30, tzinfo=UTC)


def floor(moment: datetime, unit: timedelta) -> datetime:
    """The start of the UTC hour or day holding `moment`."""
    utc = moment.astimezone(UTC)
    if unit == DAY:
        return utc.replace(hour=0, minute=0, second=0, microsecond=0)
    return utc.replace(minute=0, second=0, microsecond=0)


def ceil(moment: datetime, unit: timedelta) -> datetime:
    """The start of the first UTC hour or day at or after `moment`."""
    start = floor(moment, unit)
    return start if start == moment else start + unit
