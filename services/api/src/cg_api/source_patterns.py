"""An ingest token's `sources`: patterns where `*` matches any run of characters and everything else itself, so
that a token given to the checkout service (`//checkout/*`) cannot report usage for anyone else."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from fastapi import HTTPException, status

from cg_common.usage_publisher import PreparedUsage


@lru_cache(maxsize=1024)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = (
        "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", p)) for p in patterns
    )
    return re.compile("|".join(f"(?:{alternative})" for alternative in alternatives), re.DOTALL)


def matches(source: str, patterns: tuple[str, ...]) -> bool:
    return _compiled(patterns).fullmatch(source) is not None


def require_allowed(prepared: list[PreparedUsage], patterns: tuple[str, ...] | None, who: str) -> None:
    """403 naming each event (by index, as the 422 for invalid events does) whose source the token may not report;
    then nothing of the request is published."""
    if patterns is None:
        return
    refused: list[dict[str, Any]] = [
        {
            "loc": ["body", index],
            "index": index,
            "msg": f"{who} may not report usage for source {item.event.source!r}",
            "type": "source_not_allowed",
        }
        for index, item in enumerate(prepared)
        if not matches(item.event.source, patterns)
    ]
    if refused:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=refused)
