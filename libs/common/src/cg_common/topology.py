"""The JetStream topology the services rely on: streams, durable consumers and key-value buckets, as data made from
the deployment's settings.

The migration step (`cg-migrate`, `make migrate`, `make up`, the compose `migrate` service, the Kubernetes migrate
Job) provisions it: creates what is missing and brings what exists to this config. A service only checks, at start,
that the parts it uses exist as configured here, and stops with one line naming every difference otherwise. So a
stream's config (the probe-request duplicate window the no-double-probe guarantee rests on, say) is what the
migration step made it, never whatever the last replica to start had in its settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from cg_common.settings import TopologySettings, fail
from cg_common.subjects import (
    ALERT_ALL,
    ALERT_STREAM,
    ALL_STREAMS,
    BILLING,
    BILLING_STREAM,
    DAY,
    PROBE_REQUEST,
    PROBE_REQUEST_STREAM,
    PROBE_RESULT,
    PROBE_RESULT_STREAM,
    USAGE_ALL,
    USAGE_STREAM,
    StreamSpec,
)

PROBER_STATE_BUCKET = "CG_PROBER_STATE"  # the prober's own state: organization-usage bookmarks (cg_prober.org_state)
# An entry not written for this long is gone: longer than the longest organization look-back (31 days), so an hour
# the prober may still pull never loses its record of what was emitted.
PROBER_STATE_MAX_AGE_SECS = 35 * DAY
USAGE_MAX_ACK_PENDING = 40_000  # room for every ledger replica's batches in flight (4 × the largest batch, 10,000)
MAX_ACK_PENDING = 20_000
NOTIFIER_ACK_WAIT_SECS = 30.0  # an alert becomes its deliveries in one short transaction
MIGRATE_HINT = "run the migration step (cg-migrate, make migrate) with this deployment's settings"


@dataclass(frozen=True)
class DurableConsumer:
    """A durable pull consumer shared by all replicas of a service: explicit acks, never given up on (a message must
    never vanish silently; the consumer loop dead-letters what keeps failing)."""

    stream: str
    durable: str
    filter_subject: str
    ack_wait_secs: float
    max_ack_pending: int = MAX_ACK_PENDING

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_secs,
            max_ack_pending=self.max_ack_pending,
            max_deliver=-1,
        )


@dataclass(frozen=True)
class Bucket:
    """A JetStream key-value bucket (stored as the stream `KV_<name>`), keeping the latest value of each key."""

    name: str
    replicas: int
    max_age_secs: float = 0.0  # 0: entries never expire
    description: str = ""

    @property
    def stream(self) -> str:
        return f"KV_{self.name}"


@dataclass(frozen=True)
class Topology:
    streams: dict[str, StreamConfig]
    ledger_usage: DurableConsumer
    ledger_probe_results: DurableConsumer
    ledger_billing: DurableConsumer
    prober_requests: DurableConsumer
    prober_state: Bucket
    notifier_alerts: DurableConsumer
    consumers: tuple[DurableConsumer, ...] = field(init=False)

    def __post_init__(self) -> None:
        consumers = (
            self.ledger_usage,
            self.ledger_probe_results,
            self.ledger_billing,
            self.prober_requests,
            self.notifier_alerts,
        )
        object.__setattr__(self, "consumers", consumers)

    @classmethod
    def from_settings(cls, settings: TopologySettings) -> Topology:
        replicas = settings.nats_stream_replicas
        streams = {}
        for spec in ALL_STREAMS:
            # Two schedulers publish the same (key, slot) message id; the window must outlive a slot to drop the twin.
            window = max(120.0, 2 * settings.probe_interval_secs) if spec is PROBE_REQUEST_STREAM else None
            streams[spec.name] = spec.config(replicas=replicas, duplicate_window_secs=window)
        ledger = settings.ledger_consumer
        return cls(
            streams=streams,
            ledger_usage=DurableConsumer(
                USAGE_STREAM.name, ledger, USAGE_ALL, settings.ledger_ack_wait_secs, USAGE_MAX_ACK_PENDING
            ),
            # Their own durables: key health never waits behind a backlog of usage, nor the other way round.
            ledger_probe_results=DurableConsumer(
                PROBE_RESULT_STREAM.name, f"{ledger}-probe-results", f"{PROBE_RESULT}.>", settings.ledger_ack_wait_secs
            ),
            ledger_billing=DurableConsumer(
                BILLING_STREAM.name, f"{ledger}-billing", f"{BILLING}.>", settings.ledger_ack_wait_secs
            ),
            prober_requests=DurableConsumer(
                PROBE_REQUEST_STREAM.name,
                settings.prober_consumer,
                f"{PROBE_REQUEST}.>",
                settings.prober_ack_wait_secs,
            ),
            prober_state=Bucket(
                PROBER_STATE_BUCKET, replicas, PROBER_STATE_MAX_AGE_SECS, "the prober's organization-usage bookmarks"
            ),
            # Every alert reaches the notifier, which turns it into one delivery per webhook that wants it.
            notifier_alerts=DurableConsumer(
                ALERT_STREAM.name, settings.notifier_consumer, ALERT_ALL, NOTIFIER_ACK_WAIT_SECS
            ),
        )

    def stream(self, name: str) -> StreamConfig:
        return self.streams[name]


class TopologyError(RuntimeError):
    """JetStream does not hold what a service needs, as it needs it; the message is one line naming every
    difference and what to do."""


@dataclass(frozen=True)
class Needs:
    """The parts of the topology one service uses."""

    streams: tuple[StreamSpec, ...] = ()
    consumers: tuple[DurableConsumer, ...] = ()
    buckets: tuple[Bucket, ...] = ()


async def provision(js: JetStreamContext, topology: Topology) -> list[str]:
    """Create what is missing and bring what exists to the topology's config; returns what changed, one line each.
    Safe to run again and from several places at once (the last one writes the same config)."""
    changes = []
    for config in [*topology.streams.values(), *(_bucket_stream(b) for b in (topology.prober_state,))]:
        name = config.name or ""
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(config)
            changes.append(f"created stream {name}")
            continue
        differences = _stream_differences(info.config, config)
        if differences:
            await js.update_stream(config)
            changes.append(f"updated stream {name}: {'; '.join(differences)}")
    for consumer in topology.consumers:
        try:
            info = await js.consumer_info(consumer.stream, consumer.durable)
        except NotFoundError:
            await js.add_consumer(consumer.stream, config=consumer.config())
            changes.append(f"created consumer {consumer.durable} on {consumer.stream}")
            continue
        differences = _consumer_differences(info.config, consumer.config())
        if differences:
            await js.add_consumer(consumer.stream, config=consumer.config())  # an existing durable is updated
            changes.append(f"updated consumer {consumer.durable} on {consumer.stream}: {'; '.join(differences)}")
    return changes


async def verify(js: JetStreamContext, topology: Topology, needs: Needs) -> None:
    """Raise TopologyError naming every difference between JetStream and what `needs` expects."""
    problems = []
    expected_streams = [topology.stream(spec.name) for spec in needs.streams]
    expected_streams += [_bucket_stream(bucket) for bucket in needs.buckets]
    for expected in expected_streams:
        name = expected.name or ""
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            problems.append(f"stream {name} does not exist")
            continue
        problems += [f"stream {name} {difference}" for difference in _stream_differences(info.config, expected)]
    for consumer in needs.consumers:
        try:
            info = await js.consumer_info(consumer.stream, consumer.durable)
        except NotFoundError:
            problems.append(f"consumer {consumer.durable} on {consumer.stream} does not exist")
            continue
        problems += [
            f"consumer {consumer.durable} on {consumer.stream} {difference}"
            for difference in _consumer_differences(info.config, consumer.config())
        ]
    if problems:
        raise TopologyError(f"JetStream is not as this service expects: {'; '.join(problems)}; {MIGRATE_HINT}")


def _bucket_stream(bucket: Bucket) -> StreamConfig:
    """The stream behind a key-value bucket, as nats-py's `create_key_value` makes it (latest value per key)."""
    return StreamConfig(
        name=bucket.stream,
        description=bucket.description or None,
        subjects=[f"$KV.{bucket.name}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=bucket.replicas,
        max_age=bucket.max_age_secs,
        max_msgs_per_subject=1,
        allow_rollup_hdrs=True,
        deny_delete=True,
        allow_direct=True,
        duplicate_window=120.0,
    )


def _stream_differences(actual: StreamConfig, expected: StreamConfig) -> list[str]:
    """What differs in the fields this project sets, in words: `duplicate_window is 120 s, expected 600 s`."""
    pairs = {
        "subjects": (sorted(actual.subjects or []), sorted(expected.subjects or [])),
        "retention": (_value(actual.retention), _value(expected.retention)),
        "storage": (_value(actual.storage), _value(expected.storage)),
        "replicas": (actual.num_replicas or 1, expected.num_replicas or 1),
        "max_age": (_secs(actual.max_age), _secs(expected.max_age)),
        "duplicate_window": (_secs(actual.duplicate_window), _secs(expected.duplicate_window)),
    }
    if expected.max_msgs_per_subject:
        pairs["max_msgs_per_subject"] = (actual.max_msgs_per_subject, expected.max_msgs_per_subject)
    return _differences(pairs)


def _consumer_differences(actual: ConsumerConfig, expected: ConsumerConfig) -> list[str]:
    pairs = {
        "filter_subject": (actual.filter_subject, expected.filter_subject),
        "ack_policy": (_value(actual.ack_policy), _value(expected.ack_policy)),
        "ack_wait": (_secs(actual.ack_wait), _secs(expected.ack_wait)),
        "max_ack_pending": (actual.max_ack_pending, expected.max_ack_pending),
        "max_deliver": (actual.max_deliver or -1, expected.max_deliver or -1),
    }
    return _differences(pairs)


def _differences(pairs: dict[str, tuple[object, object]]) -> list[str]:
    return [f"{name} is {_show(a)}, expected {_show(e)}" for name, (a, e) in pairs.items() if a != e]


def _secs(value: float | None) -> float:
    """A duration as JetStream returns it (nanoseconds turned into float seconds), compared to the millisecond."""
    return round(float(value or 0.0), 3)


def _value(member: object) -> object:
    return getattr(member, "value", member)


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g} s" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


async def require(js: JetStreamContext, topology: Topology, needs: Needs) -> None:
    """What a service does at start: go on when JetStream holds what it needs, else stop with the one line."""
    try:
        await verify(js, topology, needs)
    except TopologyError as error:
        fail(f"cannot start: {error}")
