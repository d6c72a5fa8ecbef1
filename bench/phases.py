"""The phases the bench process runs itself, each over the whole workload: the worker's ceilings.

- produce: the backlog sent with ``acks=all`` (setup, for context);
- bare consumer: an ``AIOKafkaConsumer`` that only counts and ``json.loads`` (the Kafka ceiling);
- decode + validate: the worker's ``decode_event`` alone, no I/O;
- redis apply, sequential and ``apply_batch``: the window store's Lua update alone;
- EventProcessor in-process: churnwatch's processor on real Redis, without Kafka or faust.

Comparing the worker with these tells where its time goes. The objects under test are built from the
same :class:`~stream.settings.Settings` as the worker's, so every phase runs the worker's policies.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from alerts.model import Alert
from bench.console import BenchError, say
from bench.cpu import CpuProbe, Phase
from bench.report import format_counts
from bench.workload import Message, Workload
from rules.ruleset import RuleSet
from stream.contracts import SourceRecord
from stream.decoding import DecodePolicy, decode_event
from stream.due_index import RedisDueIndex
from stream.events import AnyEvent
from stream.localstack import StackInfo
from stream.metrics import Metrics
from stream.pending_ledger import RedisPendingLedger
from stream.processor import EventProcessor
from stream.quarantine import Quarantine, RedisQuarantineLedger
from stream.settings import Settings
from stream.topics import ensure_topics
from stream.windows.store import RedisWindowStore

BATCH_SIZE = 200


async def produce(bootstrap: str, messages: Sequence[Message]) -> float:
    """Send every message (the producer batches them) and wait for every ack; seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, client_id="churnwatch-bench-producer"
    )
    await producer.start()
    try:
        started = time.perf_counter()
        pending = [await producer.send(topic, key=key, value=value) for topic, key, value in messages]
        await asyncio.gather(*pending)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def bare_consume(bootstrap: str, topics: Sequence[str], expected: int, timeout: float) -> float:
    """Read ``expected`` records from the beginning of ``topics`` (no group), ``json.loads`` each value.

    Returns the seconds from the first poll to the poll that returned the last record.
    """
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        client_id="churnwatch-bench-ceiling",
    )
    await consumer.start()
    try:
        count = 0
        started = last = time.perf_counter()
        while count < expected:
            if time.perf_counter() - started > timeout:
                raise BenchError(f"bare consumer read {count} of {expected} records in {timeout:.0f}s")
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    json.loads(record.value)
                count += len(records)
            if batches:
                last = time.perf_counter()
        return last - started
    finally:
        await consumer.stop()


def decode_only(messages: Sequence[Message], kinds: dict[str, str], policy: DecodePolicy) -> float:
    """The worker's JSON + pydantic validation alone, as it is called per message."""
    started = time.perf_counter()
    for topic, key, value in messages:
        decode_event(kinds[topic], key, value, now=datetime.now(UTC), policy=policy)
    return time.perf_counter() - started


async def redis_sequential(store: RedisWindowStore, events: Sequence[AnyEvent]) -> tuple[float, Counter[str]]:
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    for event in events:
        outcomes[(await store.apply(event)).outcome.value] += 1
    return time.perf_counter() - started, outcomes


async def redis_batched(store: RedisWindowStore, events: Sequence[AnyEvent], size: int) -> tuple[float, Counter[str]]:
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    for at in range(0, len(events), size):
        for update in await store.apply_batch(events[at : at + size]):
            outcomes[update.outcome.value] += 1
    return time.perf_counter() - started, outcomes


class CountingPublisher:
    """Alerts publisher for the in-process phase: counts instead of writing to Kafka."""

    def __init__(self) -> None:
        self.published = 0

    async def publish(self, alert: Alert) -> None:
        self.published += 1


class CountingDeadLetters:
    def __init__(self) -> None:
        self.dead_lettered = 0

    async def dead_letter(self, record: SourceRecord, reason: str, detail: str) -> None:
        self.dead_lettered += 1


@dataclass(frozen=True)
class InProcessResult:
    seconds: float
    outcomes: Counter[str]
    alerts: int
    dead_lettered: int


async def processor_in_process(
    settings: Settings,
    rule_set: RuleSet,
    redis: Redis,
    store: RedisWindowStore,
    messages: Sequence[Message],
    policy: DecodePolicy,
    batch_size: int = 1,
) -> InProcessResult:
    """``EventProcessor.process_batch`` over ``batch_size`` messages at a time, with the worker's rules
    and settings (1: one event at a time, as ``replay`` does; more: as the worker does in a backlog).

    No Kafka: alerts and dead letters are counted, and rule evaluation is never deferred
    (``progress=None``), since all inputs are "read" in one event-time-ordered sequence.
    """
    publisher, dead_letters = CountingPublisher(), CountingDeadLetters()
    metrics = Metrics(CollectorRegistry())
    processor = EventProcessor(
        stream_kinds=settings.topics.event_kinds,
        store=store,
        rules=lambda: rule_set,
        publisher=publisher,
        dead_letters=dead_letters,
        metrics=metrics,
        decode_policy=policy,
        pending=RedisPendingLedger(redis, settings.app_id),
        due=RedisDueIndex(redis, settings.app_id),
        quarantine=Quarantine(RedisQuarantineLedger(redis, settings.app_id), metrics, max_failures=3),
        alert_max_lag=settings.alert_max_lag,
    )
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    records = [SourceRecord(topic, 0, offset, key, value) for offset, (topic, key, value) in enumerate(messages)]
    for at in range(0, len(records), batch_size):
        for outcome in await processor.process_batch(records[at : at + batch_size]):
            outcomes[outcome.value if outcome else "dead-lettered"] += 1
    seconds = time.perf_counter() - started
    return InProcessResult(seconds, outcomes, publisher.published, dead_letters.dead_lettered)


async def produce_backlog(info: StackInfo, settings: Settings, messages: Sequence[Message]) -> Phase:
    """Create the run's topics and send the backlog to them: the ``produce`` row."""
    created = await ensure_topics(settings)
    say(f"created topics {', '.join(created)} with {settings.topic_partitions} partitions")
    say(f"producing {len(messages):,} events")
    probe = CpuProbe(os.getpid(), info.kafka_pid, info.redis_pid)
    mark = probe.snapshot()
    seconds = await produce(info.kafka_bootstrap, messages)
    return Phase("produce (acks=all, linger 5 ms)", len(messages), seconds, probe.since(mark))


async def client_phases(
    info: StackInfo,
    settings: Settings,
    rule_set: RuleSet,
    workload: Workload,
    timeout: float,
    flush: Callable[[], object],
) -> tuple[list[Phase], list[str]]:
    """The bare consumer ceiling, decode alone, Redis alone, the processor without Kafka (on the
    backlog :func:`produce_backlog` sent).

    ``timeout`` bounds the bare consumer; ``flush`` empties Redis, so each Redis phase starts from
    empty windows and leaves none behind for the worker.
    """
    n = len(workload.messages)
    topics = settings.topics
    probe = CpuProbe(os.getpid(), info.kafka_pid, info.redis_pid)
    phases: list[Phase] = []
    notes: list[str] = []

    say("bare aiokafka consumer: reading the backlog")
    mark = probe.snapshot()
    seconds = await bare_consume(info.kafka_bootstrap, topics.events, n, timeout)
    phases.append(Phase("bare aiokafka consumer (ceiling)", n, seconds, probe.since(mark)))

    policy = settings.decode_policy()
    say("decode + validate alone")
    mark = probe.snapshot()
    seconds = decode_only(workload.messages, topics.event_kinds, policy)
    phases.append(Phase("decode + validate only (CPU, no I/O)", n, seconds, probe.since(mark)))

    redis = Redis.from_url(settings.redis_url)
    store = RedisWindowStore(redis, settings.window_policy())
    try:
        flush()
        say("redis apply, sequential")
        mark = probe.snapshot()
        seconds, outcomes = await redis_sequential(store, workload.events)
        phases.append(Phase("redis apply, sequential awaits", n, seconds, probe.since(mark)))
        notes.append(f"redis apply outcomes: {format_counts(outcomes)}")

        flush()
        say(f"redis apply_batch({BATCH_SIZE})")
        mark = probe.snapshot()
        seconds, outcomes = await redis_batched(store, workload.events, BATCH_SIZE)
        phases.append(Phase(f"redis apply_batch({BATCH_SIZE}), pipelined", n, seconds, probe.since(mark)))
        notes.append(f"redis apply_batch outcomes: {format_counts(outcomes)}")

        for size in (1, settings.batch_max_events):
            flush()
            say(f"EventProcessor in-process, batches of {size} (real Redis, no Kafka)")
            mark = probe.snapshot()
            result = await processor_in_process(settings, rule_set, redis, store, workload.messages, policy, size)
            name = f"EventProcessor in-process, batch {size}"
            phases.append(Phase(name, n, result.seconds, probe.since(mark)))
            notes.append(
                f"in-process (batch {size}) outcomes: {format_counts(result.outcomes)}; alerts published "
                f"{result.alerts}, dead-lettered {result.dead_lettered}"
            )
        flush()
    finally:
        await redis.aclose()
    return phases, notes
