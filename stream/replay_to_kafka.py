"""``churnwatch replay INPUT --to-kafka [--speed F]``: a history sent into the live input topics.

For the demo and load tests: the records :func:`stream.tabular_input.read_input` made (checked by
the worker's decoder) go to their topics in event-time order (a stable sort, as the in-memory
replay feeds them), keyed by the customer id, valued with the event JSON the decoder accepted.
With a speed F the gaps between event times are divided by F, counted from the first event (so time
spent sending does not add up); 0 sends as fast as the broker takes them. Ctrl-C (or SIGTERM) stops
the sending; what was sent is flushed and counted. The producer is the demo's
(:func:`stream.demo.event_producer`) on the worker's own broker settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import click
from aiokafka.errors import KafkaError

from stream.input_options import InputOptions
from stream.replay import ReplayDeadLetters, TimedRecord, problem_lines
from stream.settings import Settings

ACK_WINDOW = 5_000
"""Sends in flight before the sender waits for their acknowledgements: bounded memory, and a count
of sent events that the broker has acknowledged."""

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Producer(Protocol):
    """What the sender needs of ``aiokafka.AIOKafkaProducer``."""

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Awaitable[Any]: ...

    async def flush(self) -> None: ...


class Pacer:
    """When to send each event: its time's distance from the first event's, divided by ``speed``,
    after the wall-clock moment the first was sent. ``speed`` 0: at once."""

    def __init__(self, speed: float, clock: Clock) -> None:
        if speed < 0:
            raise ValueError(f"speed must be 0 (as fast as possible) or above, got {speed}")
        self.speed, self._clock = speed, clock
        self._start: tuple[datetime, float] | None = None

    def delay(self, at: datetime) -> float:
        """Seconds to wait before sending the event of time ``at`` (0: it is due)."""
        if self.speed == 0:
            return 0.0
        now = self._clock()
        if self._start is None:
            self._start = (at, now)
            return 0.0
        first_at, started = self._start
        return max(started + (at - first_at).total_seconds() / self.speed - now, 0.0)


@dataclass(frozen=True)
class Sent:
    events: int
    """Acknowledged by the broker."""
    seconds: float
    stopped: bool
    """Stopped before the end (Ctrl-C)."""

    @property
    def rate(self) -> float:
        return self.events / max(self.seconds, 1e-9)


async def send_history(
    records: Sequence[TimedRecord], producer: Producer, pacer: Pacer, *, stop: asyncio.Event, sleep: Sleep, clock: Clock
) -> Sent:
    """Send ``records`` in event-time order, each when ``pacer`` says, until the end or ``stop``;
    then flush and wait for every acknowledgement (a failed one raises)."""
    started, acknowledged = clock(), 0
    in_flight: list[Awaitable[Any]] = []
    for timed in sorted(records, key=lambda r: r.at):
        wait = pacer.delay(timed.at)
        if wait > 0 and not stop.is_set():
            await sleep(wait)
        if stop.is_set():
            break
        record = timed.record
        in_flight.append(await producer.send(record.topic, value=record.value, key=record.key))
        if len(in_flight) >= ACK_WINDOW:
            acknowledged += len(await asyncio.gather(*in_flight))
            in_flight.clear()
    await producer.flush()
    acknowledged += len(await asyncio.gather(*in_flight))
    return Sent(acknowledged, clock() - started, stop.is_set())


def stoppable_sleep(stop: asyncio.Event) -> Sleep:
    """``asyncio.sleep`` that ends early when ``stop`` is set."""

    async def sleep(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    return sleep


async def replay_to_kafka(records: Sequence[TimedRecord], settings: Settings, *, speed: float) -> Sent:
    """Send ``records`` to the broker of ``settings`` (its input topics created if missing, as the
    worker does), stopping cleanly on SIGINT or SIGTERM."""
    from stream.connections import kafka_security_kwargs
    from stream.demo import event_producer
    from stream.topics import ensure_topics

    await ensure_topics(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows, nor off the main thread
            loop.add_signal_handler(signum, stop.set)
    producer = event_producer(
        settings.kafka_bootstrap, client_id=f"{settings.app_id}-replay", kafka_security=kafka_security_kwargs(settings)
    )
    await producer.start()
    try:
        pacer = Pacer(speed, time.monotonic)
        return await send_history(
            records, producer, pacer, stop=stop, sleep=stoppable_sleep(stop), clock=time.monotonic
        )
    finally:
        await producer.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


def future_events(records: Sequence[TimedRecord], settings: Settings, now: datetime | None = None) -> int:
    """Events the live worker will dead-letter as ``future_timestamp`` (it judges against its clock)."""
    limit = (now or datetime.now(UTC)) + settings.max_future_skew
    return sum(r.at > limit for r in records)


def summary(sent: Sent, total: int, kafka: str) -> str:
    stopped = f", stopped after {sent.events:,} of {total:,}" if sent.stopped else ""
    return f"sent {sent.events:,} events to {kafka} in {sent.seconds:.1f} s: {sent.rate:,.0f} events/s{stopped}"


def send_command(
    path: Path, options: InputOptions, settings: Settings, *, until: datetime | None, speed: float
) -> None:
    """``churnwatch replay INPUT --to-kafka``: read and check INPUT as the in-memory replay does,
    report its invalid lines, send the rest (up to ``until``), print the count and the rate."""
    from stream.connections import KafkaUnavailableError, describe_kafka

    read = options.read(path, topics=settings.topics, policy=settings.decode_policy())
    for line in problem_lines(read, ReplayDeadLetters()):
        click.echo(line, err=True)
    records = [r for r in read.records if until is None or r.at <= until]
    ahead = future_events(records, settings)
    if ahead:
        click.echo(
            f"{ahead:,} events are more than CHURNWATCH_MAX_FUTURE_SKEW ({settings.max_future_skew}) ahead of now: "
            "a worker dead-letters them (future_timestamp)",
            err=True,
        )
    pace = f"{speed:g} times real time" if speed else "as fast as possible"
    click.echo(f"sending {len(records):,} events to {describe_kafka(settings)}, {pace} (Ctrl-C stops)", err=True)
    try:
        sent = asyncio.run(replay_to_kafka(records, settings, speed=speed))
    except (KafkaUnavailableError, KafkaError) as exc:
        raise click.ClickException(f"sending to Kafka failed: {exc}") from exc
    click.echo(summary(sent, len(records), describe_kafka(settings)), err=True)
