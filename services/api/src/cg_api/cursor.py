"""Opaque page cursors for GET /data: the last row's (occurred_at, id), base64url, for keyset pagination."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

MAX_CURSOR_CHARS = 200
MAX_ID = 2**63 - 1


class BadCursorError(ValueError):
    """The cursor was not made by this api (or was cut short): the client should start again without one."""


def encode_cursor(occurred_at: datetime, row_id: int) -> str:
    text = f"{occurred_at.astimezone(UTC).isoformat()}|{row_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """(occurred_at, id) from a cursor; raises BadCursorError for anything else, whatever it holds."""
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise BadCursorError("cursor is malformed")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        stamp, row_id_text = text.split("|")
        occurred_at = datetime.fromisoformat(stamp)
        row_id = int(row_id_text)
        if occurred_at.tzinfo is None:
            raise ValueError("a cursor's time has a zone")
        # In UTC, as the queries take it: year 1 at +14:00 (or 9999 at -14:00) has no UTC time and is refused.
        occurred_at = occurred_at.astimezone(UTC)
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise BadCursorError("cursor is malformed") from None
    if not 1 <= row_id <= MAX_ID:
        raise BadCursorError("cursor is malformed")
    return occurred_at, row_id
