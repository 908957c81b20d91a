"""`cg.cost.recorded.<provider>`: the fact the ledger publishes for each newly recorded usage event.

A CloudEvent (`io.costguardian.cost.recorded.v1`) whose id is the usage row's id; a re-publication after a crash
carries the same `Nats-Msg-Id` (derived from the usage event's source and id), so subscribers see it once.
The schema is documented in docs/ledger.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from cg_common.publishing import Outgoing
from cg_common.subjects import COST_RECORDED
from cg_common.usage_publisher import usage_msg_id

COST_RECORDED_TYPE = "io.costguardian.cost.recorded.v1"
LEDGER_SOURCE = "//cost-guardian/ledger"
_NOT_A_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def cost_recorded_message(row: Mapping[str, Any]) -> Outgoing:
    """The message for one stored usage row (as returned by `store.record_usage`)."""
    cost: Decimal | None = row["cost"]
    event = {
        "specversion": "1.0",
        "type": COST_RECORDED_TYPE,
        "source": LEDGER_SOURCE,
        "id": str(row["id"]),
        "time": _iso(row["recorded_at"]),
        "datacontenttype": "application/json",
        "data": {
            "usage_id": row["id"],
            "event": {"source": row["source"], "id": row["event_id"]},
            "occurred_at": _iso(row["occurred_at"]),
            "provider": row["provider"],
            "model": row["model"],
            "key_id": row["key_id"],
            "key_fingerprint": row["key_fingerprint"],
            "input_tokens": row["input_tokens"],
            "cached_input_tokens": row["cached_input_tokens"],
            "output_tokens": row["output_tokens"],
            "requests": row["requests"],
            "cost": decimal_string(cost),
            "currency": "USD",
            "priced": cost is not None,
            "price_source": row["price_source"],
            "attributes": row["attributes"],
        },
    }
    return Outgoing(
        subject=f"{COST_RECORDED}.{_NOT_A_TOKEN.sub('_', row['provider'])}",
        payload=json.dumps(event, separators=(",", ":")).encode(),
        # Named after the usage event, not the row id: ids restart after a reset, events do not change name.
        msg_id="cost:" + usage_msg_id(row["source"], row["event_id"]),
    )


def decimal_string(value: Decimal | None) -> str | None:
    """Money as a plain decimal string ("0.000345"), never a float nor an exponent."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
