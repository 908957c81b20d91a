"""How far ahead of the ledger's clock a stamped fact may be: clocks of different machines disagree by a little, but
a probe result or a billed day from the future is forged or broken, and believing it would hide every real fact
after it (a probe result dated 2999 would stay the key's latest for ever)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

ALLOWED_SKEW = timedelta(minutes=5)


def future_by(moment: datetime, *, now: datetime | None = None) -> timedelta | None:
    """How far ahead of now `moment` lies, when that is more than the allowed skew; None otherwise."""
    ahead = moment - (now or datetime.now(UTC))
    return ahead if ahead > ALLOWED_SKEW else None


def day_in_future(day: date, *, now: datetime | None = None) -> bool:
    """Whether a UTC day has not begun yet anywhere within the allowed skew."""
    return day > ((now or datetime.now(UTC)) + ALLOWED_SKEW).date()
