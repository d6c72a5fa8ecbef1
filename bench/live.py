"""The live-latency phase: a caught-up worker, a producer at a steady rate, event-to-alert latency.

On topics of its own (``bench-<run id>-live.*``), a worker of its own first reads the run's backlog
(the history of the workload's customers) until its ``/metrics`` count says it is caught up. Then
the bench sends live traffic at a steady rate (``--live-rate`` events/s for ``--live-seconds``),
stamped with the wall clock: the demo's live trickle for the backlog's customers
(:func:`stream.demo_profiles.live_events`), and every ``ALERT_EVERY``-th event an NPS answer of 0-6
from a customer never seen before, which fires ``nps-detractor`` at once (no cooldown to wait for).

A consumer on the alerts topic, in the bench process, reads every alert as it arrives. An alert's
``trigger_event_id`` names the event that fired it, so its latency is the alert's arrival minus the
wall time the bench sent that event (both ``time.time()`` in this process). The alert record's own
Kafka timestamp (set by the worker's producer) gives a second figure that leaves out the bench
consumer's fetch. Alerts triggered by anything not sent live (the backlog, the due scan) are counted,
not measured. The phase measures and prints; the p99 target of issue 10 (100 ms) is only shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.console import BenchError, say
from bench.cpu import CPU_ROLES, CpuProbe, CpuTimes, cpu_seconds
from bench.phases import produce
from bench.report import format_counts
from bench.scrape import finished, scrape
from bench.worker_run import POLL_SECONDS, check_alive, spawn_worker
from bench.workload import Message
from stream.demo import encode, event_producer
from stream.demo_profiles import CustomerProfile, live_events
from stream.events import AnyEvent, FeedbackEvent
from stream.localstack import StackInfo
from stream.localstack.worker import WorkerProcess
from stream.settings import Settings
from stream.topics import ensure_topics

ALERT_EVERY = 100
"""Every 100th live event is a detractor's NPS answer from a new customer: 20 alerts/s at 2,000 events/s."""
TICK_SECONDS = 0.002
"""The producer sends what is due every tick (about 4 events at 2,000/s)."""
QUIET_SECONDS = 1.0
"""After the worker has drained, alerts are read until none arrived for this long (at most ``TAIL_SECONDS``)."""
TAIL_SECONDS = 10.0
DRAIN_SECONDS = 120.0
"""How long the worker may take to finish what it is behind on once sending stopped (then: "not drained")."""
TARGET_P99 = 0.100


@dataclass(frozen=True)
class LiveRun:
    offered_rate: float
    sent: int
    send_seconds: float
    """First send to the last (the live window)."""
    max_shortfall: int
    """The most events the producer was ever behind its schedule (a CPU-starved bench falls behind)."""
    detractors: int
    warmup_events: int
    catch_up_seconds: float
    worker_rate: float
    """Events the worker finished per second during the live window."""
    lag_at_end: float
    """Events sent (backlog included) the worker had not finished when sending stopped."""
    drain_seconds: float | None
    """From the end of sending until the worker had finished every event; None if it did not in time."""
    unfinished: float
    """Events still not finished when the drain gave up (their alerts are not measured)."""
    arrival: list[float]
    """Per measured alert: arrival at the bench's alerts consumer minus the send of its trigger, seconds."""
    appended: list[float]
    """Per measured alert: the alert record's Kafka timestamp minus the send of its trigger, seconds."""
    by_rule: Counter[str]
    unmeasured: int
    cpu: CpuTimes
    """During the live window; ``client`` is the worker."""
    bench_cpu: float


def live_traffic(profiles: Sequence[CustomerProfile], seed: int) -> Iterator[AnyEvent]:
    """The demo's live trickle for ``profiles``, with a new detractor's NPS answer every ``ALERT_EVERY``-th event."""
    # Seeds of their own: the backlog's writers were seeded from ``seed + 1``, and the same seed here
    # would give the live events the backlog's event ids (so the worker would drop them as duplicates).
    rng = random.Random(f"live-detractors-{seed}")
    trickle = live_events(profiles, lambda: datetime.now(UTC), random.Random(f"live-trickle-{seed}"))
    for n in range(1, 1 << 62):
        if n % ALERT_EVERY == 0:
            yield FeedbackEvent(
                event_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                customer_id=f"live-detractor-{n // ALERT_EVERY:06d}",
                occurred_at=datetime.now(UTC),
                kind="nps",
                score=rng.randint(0, 6),
            )
        else:
            yield next(trickle)


class AlertWatch:
    """Reads the alerts topic from its start, keeping (arrival wall time, record timestamp ms, value)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            client_id="churnwatch-bench-alerts",
        )
        self.records: list[tuple[float, int, bytes]] = []
        self.last_arrival = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100)
            arrival = time.time()
            for records in batches.values():
                self.records += [(arrival, r.timestamp, r.value or b"") for r in records]
            if batches:
                self.last_arrival = time.perf_counter()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def _send_steady(
    producer: AIOKafkaProducer,
    settings: Settings,
    traffic: Iterator[AnyEvent],
    rate: float,
    seconds: float,
    sent_at: dict[str, float],
) -> tuple[int, float, int]:
    """Send ``rate`` events/s for ``seconds`` (what is due at each tick); return (sent, seconds, max shortfall)."""
    pending = []
    sent = shortfall = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = min(math.ceil(seconds * rate), int(elapsed * rate) + 1)
        shortfall = max(shortfall, due - sent - 1)
        while sent < due:
            event = next(traffic)
            key, value = encode(event)
            sent_at[event.event_id] = time.time()
            pending.append(await producer.send(settings.topics.for_event(event), key=key, value=value))
            sent += 1
        await asyncio.sleep(TICK_SECONDS)
    window = time.perf_counter() - started
    await asyncio.gather(*pending)
    return sent, window, shortfall


async def _finished(worker: WorkerProcess, settings: Settings) -> float:
    """Records the worker is done with (a duplicate too: it is a record sent, and one worker never rebalances)."""
    return finished(await asyncio.to_thread(scrape, worker), set(settings.topics.events))


async def _wait_finished(
    worker: WorkerProcess, settings: Settings, expected: int, timeout: float, log_path: Path
) -> float | None:
    """Poll ``/metrics`` until the worker has finished ``expected`` events; seconds taken, None on timeout."""
    started = time.perf_counter()
    while await _finished(worker, settings) < expected:
        check_alive(worker, log_path)
        if time.perf_counter() - started > timeout:
            return None
        await asyncio.sleep(POLL_SECONDS)
    return time.perf_counter() - started


async def run_live(
    info: StackInfo,
    settings: Settings,
    backlog: Sequence[Message],
    profiles: Sequence[CustomerProfile],
    *,
    rate: float,
    seconds: float,
    seed: int,
    log_path: Path,
    timeout: float,
) -> LiveRun:
    """``settings`` name the live topics and the live worker's group; ``backlog`` is on those topics."""
    created = await ensure_topics(settings)
    say(f"live: created topics {', '.join(created)}")
    watch = AlertWatch(info.kafka_bootstrap, settings.topics.alerts)
    producer = event_producer(info.kafka_bootstrap, client_id="churnwatch-bench-live")
    async with contextlib.AsyncExitStack() as started:  # stops what started, in reverse, even on failure
        worker = spawn_worker(info, settings.topics, settings.app_id, log_path)
        started.push_async_callback(asyncio.to_thread, worker.stop)
        await asyncio.to_thread(worker.wait_healthy)
        await watch.start()
        started.push_async_callback(watch.stop)
        await producer.start()
        started.push_async_callback(producer.stop)
        say(f"live: worker healthy; sending the backlog of {len(backlog):,} events for it to catch up on")
        await produce(info.kafka_bootstrap, backlog)
        catch_up = await _wait_finished(worker, settings, len(backlog), timeout, log_path)
        if catch_up is None:
            raise BenchError(f"the live worker did not catch up on {len(backlog):,} events in {timeout:.0f}s")
        say(f"live: caught up in {catch_up:.1f}s; sending {rate:,.0f} events/s for {seconds:.0f}s")

        probe = CpuProbe(worker.process.pid, info.kafka_pid, info.redis_pid)
        mark, bench_mark = probe.snapshot(), cpu_seconds(os.getpid())
        sent_at: dict[str, float] = {}
        traffic = live_traffic(profiles, seed)
        sent, window, shortfall = await _send_steady(producer, settings, traffic, rate, seconds, sent_at)
        cpu, bench_cpu = probe.since(mark), cpu_seconds(os.getpid()) - bench_mark
        done = await _finished(worker, settings)
        expected = len(backlog) + sent
        say(f"live: sent {sent:,} events in {window:.1f}s; worker {expected - done:,.0f} behind; draining")
        drain = await _wait_finished(worker, settings, expected, min(timeout, DRAIN_SECONDS), log_path)
        unfinished = 0.0 if drain is not None else expected - await _finished(worker, settings)
        tail_started = time.perf_counter()
        while time.perf_counter() - max(watch.last_arrival, tail_started) < QUIET_SECONDS:
            if time.perf_counter() - tail_started > TAIL_SECONDS:
                break
            await asyncio.sleep(0.1)
    arrival, appended, by_rule, unmeasured = _match(watch.records, sent_at)
    return LiveRun(
        offered_rate=rate,
        sent=sent,
        send_seconds=window,
        max_shortfall=shortfall,
        detractors=sent // ALERT_EVERY,
        warmup_events=len(backlog),
        catch_up_seconds=catch_up,
        worker_rate=(done - len(backlog)) / window,
        lag_at_end=expected - done,
        drain_seconds=drain,
        unfinished=unfinished,
        arrival=arrival,
        appended=appended,
        by_rule=by_rule,
        unmeasured=unmeasured,
        cpu=cpu,
        bench_cpu=bench_cpu,
    )


def _match(
    records: Sequence[tuple[float, int, bytes]], sent_at: dict[str, float]
) -> tuple[list[float], list[float], Counter[str], int]:
    """Latencies of the alerts whose trigger was sent live; the others are only counted."""
    arrival: list[float] = []
    appended: list[float] = []
    by_rule: Counter[str] = Counter()
    unmeasured = 0
    for arrived, timestamp_ms, value in records:
        alert = json.loads(value)
        sent = sent_at.get(alert["trigger_event_id"])
        if sent is None:
            unmeasured += 1
            continue
        arrival.append(arrived - sent)
        appended.append(timestamp_ms / 1000 - sent)
        by_rule[alert["rule_id"] if alert["status"] == "firing" else f"{alert['rule_id']} (resolved)"] += 1
    return arrival, appended, by_rule, unmeasured


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (``q`` in 0-1)."""
    ordered = sorted(values)
    at = q * (len(ordered) - 1)
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _latency(values: Sequence[float]) -> str:
    if not values:
        return "no alert measured"
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    return f"p50 {p50 * 1000:,.1f} ms, p99 {p99 * 1000:,.1f} ms, max {max(values) * 1000:,.1f} ms"


def _per_event(cpu_seconds: float, events: float) -> str:
    return f"{cpu_seconds / events * 1e6:,.0f} µs" if events > 0 else "n/a"


def live_lines(run: LiveRun) -> list[str]:
    cpus = os.cpu_count() or 1
    ours = sum(run.cpu.get(role, 0.0) for role in CPU_ROLES) + run.bench_cpu
    other = max(0.0, run.cpu.get("machine", math.nan) - ours)
    drained = (
        f"in {run.drain_seconds:.1f}s"
        if run.drain_seconds is not None
        else f"not within {DRAIN_SECONDS:.0f}s: {run.unfinished:,.0f} events left unfinished, so their alerts are "
        "missing and the latencies below are a lower bound"
    )
    target = "n/a" if not run.arrival else "met" if percentile(run.arrival, 0.99) <= TARGET_P99 else "not met"
    return [
        f"live latency (own topics and worker; caught up on the {run.warmup_events:,}-event backlog in "
        f"{run.catch_up_seconds:.1f}s, then live traffic stamped now: the backlog customers' demo trickle, and every "
        f"{ALERT_EVERY}th event a new customer's NPS answer 0-6, which fires nps-detractor at once):",
        f"  producer: {run.sent:,} events in {run.send_seconds:.1f}s = {run.sent / run.send_seconds:,.0f} events/s "
        f"(offered {run.offered_rate:,.0f}/s; at most {run.max_shortfall:,} events behind its schedule), "
        f"{run.detractors:,} detractor answers",
        f"  worker: {run.worker_rate:,.0f} events/s finished while they were sent "
        f"({_per_event(run.cpu['client'], run.worker_rate * run.send_seconds)} of worker CPU each); behind when "
        "sending stopped: "
        f"{run.lag_at_end:,.0f} events ({run.lag_at_end / run.offered_rate:.1f}s of traffic); drained {drained}",
        f"  event -> alert at the bench's alerts consumer: {_latency(run.arrival)} over {len(run.arrival):,} alerts "
        f"({format_counts(run.by_rule)}); issue 10's target p99 <= {TARGET_P99 * 1000:.0f} ms: {target}",
        f"  event -> alert record's timestamp (set by the worker's producer): {_latency(run.appended)}",
        f"  alerts not measured (triggered by the backlog or the due scan): {run.unmeasured:,}",
        f"  CPU while sending: worker {run.cpu['client']:.1f}s ({100 * run.cpu['client'] / run.send_seconds:.0f}% "
        f"of one core), kafka {run.cpu['kafka']:.1f}s, redis {run.cpu['redis']:.1f}s, bench (producer, alerts "
        f"consumer) {run.bench_cpu:.1f}s, other {other:.1f}s; machine busy "
        f"{100 * run.cpu['machine'] / (run.send_seconds * cpus):.0f}%",
    ]
