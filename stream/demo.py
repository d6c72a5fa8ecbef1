"""Demo traffic, the I/O part: produce a backfill of realistic history, then a live trickle, to Kafka.

The events themselves come from :mod:`stream.demo_profiles` (pure, seeded). Events are keyed by
``customer_id`` and sent as the models' JSON, each to its stream's topic.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from stream.demo_profiles import CustomerProfile, Persona, backfill_events, live_events, make_profiles
from stream.events import AnyEvent
from stream.settings import Topics


def encode(event: AnyEvent) -> tuple[bytes, bytes]:
    """The Kafka key and value of an event."""
    return event.customer_id.encode(), event.model_dump_json().encode()


@dataclass(frozen=True)
class DemoSummary:
    profiles: tuple[CustomerProfile, ...]
    backfilled: int
    live: int


def describe(profiles: list[CustomerProfile], backfilled: int) -> list[str]:
    n = Counter(p.persona for p in profiles)
    others = n[Persona.NEW] + n[Persona.OCCASIONAL]
    lines = [
        f"backfilled {backfilled} events for {len(profiles)} customers ({n[Persona.HEALTHY]} healthy, "
        f"{n[Persona.FADING]} fading, {n[Persona.DETRACTOR]} detractors, {others} new/occasional)"
    ]
    expectations = (
        (
            Persona.FADING,
            "purchase-overdue for those who stopped buying altogether (about half; purchase-frequency-drop, "
            "which would flag all of them, ships disabled: worse than chance on real baskets)",
        ),
        (Persona.DETRACTOR, "nps-detractor"),
    )
    for persona, rule in expectations:
        ids = [p.customer_id for p in profiles if p.persona is persona]
        if ids:
            lines.append(f"expect {rule} for: {', '.join(ids)}")
    return lines


def event_producer(
    bootstrap: str, *, client_id: str, kafka_security: Mapping[str, Any] | None = None
) -> AIOKafkaProducer:
    """A producer of input events, as a live producer should send them: acknowledged by every
    in-sync replica, idempotent (a retried batch is not written twice), batched for 5 ms."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        client_id=client_id,
        **(kafka_security or {}),
    )


async def _send_all(producer: AIOKafkaProducer, topics: Topics, events: Sequence[AnyEvent]) -> None:
    """Queue every event (the producer batches them), then wait until all are acknowledged."""
    pending = []
    for event in events:
        key, value = encode(event)
        pending.append(await producer.send(topics.for_event(event), value=value, key=key))
    await asyncio.gather(*pending)


async def _stopped_within(stop: asyncio.Event | None, seconds: float) -> bool:
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def run_demo(
    bootstrap: str,
    topics: Topics,
    *,
    customers: int = 40,
    seed: int = 42,
    rate_per_second: float = 2.0,
    stop: asyncio.Event | None = None,
    log: Callable[[str], None] = print,
    days: int = 120,
    kafka_security: Mapping[str, Any] | None = None,
) -> DemoSummary:
    """Send the backfill in event-time order across all three topics (as live producers would), then
    live events at ``rate_per_second`` until ``stop`` is set. ``rate_per_second <= 0`` sends the
    backfill only. With ``stop=None`` the live trickle runs until the task is cancelled.
    ``kafka_security``: aiokafka's TLS/SASL options (:func:`stream.connections.kafka_security_kwargs`).
    """
    rng = random.Random(seed)
    profiles = make_profiles(customers, rng)
    now = datetime.now(UTC)
    history = backfill_events(profiles, now, days, rng)
    producer = event_producer(bootstrap, client_id="churnwatch-demo", kafka_security=kafka_security)
    await producer.start()
    live = 0
    try:
        await _send_all(producer, topics, history)
        for line in describe(profiles, len(history)):
            log(line)
        if rate_per_second > 0 and not (stop is not None and stop.is_set()):
            log(f"live: about {rate_per_second:g} events/s until stopped")
            interval = 1.0 / rate_per_second
            for event in live_events(profiles, lambda: datetime.now(UTC), rng):
                key, value = encode(event)
                await producer.send_and_wait(topics.for_event(event), value=value, key=key)
                live += 1
                if await _stopped_within(stop, interval):
                    break
            log(f"live: sent {live} events")
    finally:
        await producer.stop()
    return DemoSummary(profiles=tuple(profiles), backfilled=len(history), live=live)
