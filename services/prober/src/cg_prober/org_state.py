"""The prober's own record of each admin key's organization pulls, in its JetStream key-value bucket
(`CG_PROBER_STATE`; no other service reads it): what it emitted, so that it never needs the ledger's tables.

- `usage.<fingerprint>`: `{"until": <Unix s>}`, where the last complete usage pull ended; the next starts
  LATE_USAGE_HOURS before it (OpenAI may still add to recent hours).
- `usage.<fingerprint>.<hour>`: `{"figures": {<id>: [requests, input, cached, output]}, "pending": [<events>]}`,
  everything emitted for the buckets of that hour (late additions summed in) under each bucket's event id and under
  its group's (`cg_prober.org_usage`: the id without the user, which is also what a previous version's record holds),
  and the events of the latest emission until JetStream has acknowledged them.
- `costs.<fingerprint>`: `{"until": <Unix s>}`, the first UTC day the last costs pull did not cover.

An hour's entry changes only by compare-and-set on its revision, and the events of a change are stored in it
(`pending`) before they are published: a pull that crashes after the change leaves them for the next pull to
publish, and two pulls at once cannot both emit the same figures (one loses the compare-and-set and reads again).
Event ids are deterministic, so publishing pending events twice is harmless (JetStream and the ledger drop the twin).
The bucket keeps an entry for BUCKET_MAX_AGE, longer than the longest look-back, so hours age out by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from cg_common.consumer import TransientError


@dataclass(frozen=True, slots=True)
class UsageFigures:
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int

    def __add__(self, other: UsageFigures) -> UsageFigures:
        return UsageFigures(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.output_tokens + other.output_tokens,
        )

    def __sub__(self, other: UsageFigures) -> UsageFigures:
        return UsageFigures(
            self.requests - other.requests,
            self.input_tokens - other.input_tokens,
            self.cached_input_tokens - other.cached_input_tokens,
            self.output_tokens - other.output_tokens,
        )

    @property
    def negative(self) -> bool:
        """Whether any figure is below zero (a difference where a bucket was lowered)."""
        return min(self.requests, self.input_tokens, self.cached_input_tokens, self.output_tokens) < 0

    @classmethod
    def of_event(cls, event: dict[str, Any]) -> UsageFigures:
        data = event["data"]
        return cls(data["requests"], data["input_tokens"], data["cached_input_tokens"], data["output_tokens"])


NO_USAGE = UsageFigures(0, 0, 0, 0)


@dataclass(frozen=True)
class HourState:
    figures: dict[str, UsageFigures] = field(default_factory=dict)
    pending: tuple[dict[str, Any], ...] = ()
    revision: int = 0  # 0: no entry yet

    def with_emitted(self, events: Iterable[tuple[dict[str, Any], str]]) -> HourState:
        """This state once `events` (each with its group) are emitted: their figures summed in under their bucket's
        id and under their group's (once where the two are the same), and the events pending."""
        events = list(events)
        figures = dict(self.figures)
        for event, group in events:
            for entry in {base_id(event["id"]), group}:
                figures[entry] = figures.get(entry, NO_USAGE) + UsageFigures.of_event(event)
        return HourState(figures, (*self.pending, *(event for event, _ in events)), self.revision)

    def encode(self) -> bytes:
        figures = {
            bucket: [f.requests, f.input_tokens, f.cached_input_tokens, f.output_tokens]
            for bucket, f in self.figures.items()
        }
        return orjson.dumps({"figures": figures, "pending": list(self.pending)})

    @classmethod
    def decode(cls, value: bytes, revision: int) -> HourState:
        stored = orjson.loads(value)
        figures = {bucket: UsageFigures(*numbers) for bucket, numbers in stored["figures"].items()}
        return cls(figures, tuple(stored["pending"]), revision)


def base_id(event_id: str) -> str:
    """The bucket an event belongs to: its id without a late addition's `|after:…` part."""
    return event_id.split("|", 1)[0]


class OrganizationState:
    """Reads and writes the entries above; a NATS fault is a TransientError (the probe is tried again later)."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def usage_until(self, fingerprint: str) -> int | None:
        return await self._until(f"usage.{fingerprint}")

    async def set_usage_until(self, fingerprint: str, until: int) -> None:
        await self._put(f"usage.{fingerprint}", orjson.dumps({"until": until}))

    async def costs_until(self, fingerprint: str) -> int | None:
        return await self._until(f"costs.{fingerprint}")

    async def set_costs_until(self, fingerprint: str, until: int) -> None:
        await self._put(f"costs.{fingerprint}", orjson.dumps({"until": until}))

    async def hour(self, fingerprint: str, hour: int) -> HourState:
        entry = await self._get(f"usage.{fingerprint}.{hour}")
        if entry is None:
            return HourState()
        value, revision = entry
        return HourState.decode(value, revision)

    async def replace_hour(self, fingerprint: str, hour: int, state: HourState) -> HourState | None:
        """Store `state` if the entry is still at `state.revision`; the stored state, or None when another pull
        changed it meanwhile."""
        try:
            revision = await self._kv.update(f"usage.{fingerprint}.{hour}", state.encode(), last=state.revision)
        except KeyWrongLastSequenceError:
            return None
        except (NatsError, TimeoutError) as error:
            raise TransientError(f"prober state not written: {type(error).__name__}") from error
        return HourState(state.figures, state.pending, revision)

    async def _until(self, key: str) -> int | None:
        entry = await self._get(key)
        return int(orjson.loads(entry[0])["until"]) if entry else None

    async def _get(self, key: str) -> tuple[bytes, int] | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        except (NatsError, TimeoutError) as error:
            raise TransientError(f"prober state not read: {type(error).__name__}") from error
        return entry.value or b"", entry.revision or 0

    async def _put(self, key: str, value: bytes) -> None:
        try:
            await self._kv.put(key, value)
        except (NatsError, TimeoutError) as error:
            raise TransientError(f"prober state not written: {type(error).__name__}") from error
