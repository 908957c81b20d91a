"""`cg.cost.recorded.<provider>`: the fact the ledger publishes for each newly recorded usage event.

A CloudEvent (`io.costguardian.cost.recorded.v1`) whose id is the usage row's id; a re-publication after a crash
carries the same `Nats-Msg-Id` (derived from the usage event's source and id), so subscribers see it once.
The schema is documented in docs/ledger.md.
"""

from __future__ import annotations

import re
from functools import cache

import orjson

from cg_common.money import money_text
from cg_common.publishing import Outgoing
from cg_common.subjects import COST_RECORDED
from cg_common.usage_publisher import usage_msg_id
from cg_ledger.store import Stored, UsageRow

COST_RECORDED_TYPE = "io.costguardian.cost.recorded.v1"
LEDGER_SOURCE = "//cost-guardian/ledger"
_NOT_A_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


# The attributes every record shares, serialised once; each message appends its own id, time and data.
_ENVELOPE = orjson.dumps(
    {
        "specversion": "1.0",
        "type": COST_RECORDED_TYPE,
        "source": LEDGER_SOURCE,
        "datacontenttype": "application/json",
    }
)[:-1]


def cost_recorded_message(row: UsageRow, stored: Stored) -> Outgoing:
    """The message for one usage row, with what storing it added (`store.record_usage`'s result for it)."""
    cost = row.cost
    own = {
        "id": str(stored.id),
        "time": stored.recorded_at,
        "data": {
            "usage_id": stored.id,
            "event": {"source": row.source, "id": row.event_id},
            "occurred_at": row.occurred_at,
            "provider": row.provider,
            "model": row.model,
            "key_id": stored.key_id,
            "key_fingerprint": stored.key_fingerprint,
            "input_tokens": row.input_tokens,
            "cached_input_tokens": row.cached_input_tokens,
            "output_tokens": row.output_tokens,
            "requests": row.requests,
            "cost": None if cost is None else money_text(cost),
            "currency": "USD",
            "priced": cost is not None,
            "price_source": row.price_source,
            "attributes": row.attributes,
        },
    }
    # orjson: several times faster than json, and writes the datetimes as RFC 3339 with "Z" itself.
    own_json = orjson.dumps(own, option=orjson.OPT_UTC_Z)
    return Outgoing(
        cost_subject(row.provider),
        _ENVELOPE + b"," + own_json[1:],
        # Named after the usage event, not the row id: ids restart after a reset, events do not change name.
        "cost:" + usage_msg_id(row.source, row.event_id),
    )


@cache
def cost_subject(provider: str) -> str:
    """`cg.cost.recorded.<provider>`, the provider made a valid subject token; a handful of providers, computed once."""
    return f"{COST_RECORDED}.{_NOT_A_TOKEN.sub('_', provider)}"
