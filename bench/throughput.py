"""Throughput benchmark: how many events per second churnwatch processes, against its ceilings.

One run starts a private local stack (Kafka + Redis), pre-produces a realistic backlog of N events
(the demo's customer personas, a 120-day backfill, keyed by customer id) into fresh 4-partition
topics, then measures over the same events:

- ``produce``: the backlog sent with ``acks=all`` (setup cost, for context);
- ``bare aiokafka``: the consumer ceiling, an ``AIOKafkaConsumer`` that only counts and ``json.loads``;
- ``decode + validate``: the worker's ``decode_event`` (JSON + pydantic) alone, in-process, no I/O;
- ``redis apply`` / ``redis apply_batch``: the window store's Lua update alone, sequential and pipelined;
- ``processor in-process``: churnwatch's ``EventProcessor`` (decode, window update, rules, alert
  claims) on real Redis without Kafka or faust;
- ``worker end to end``: the real ``churnwatch worker`` child process reading the backlog, from
  healthy (and from its first processed event) until its ``/metrics`` count reaches N.

Afterwards it reports the Redis memory the worker's state takes per customer. It prints figures and
never asserts on them: it is a benchmark, not a test. Run ``python -m bench.throughput --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import redis as redis_sync
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from alerts.model import Alert
from rules.ruleset import RuleConfigError, RuleSet, load_rule_set
from stream.contracts import SourceRecord
from stream.decoding import DecodePolicy, decode_event
from stream.demo_profiles import backfill_events, make_profiles
from stream.events import AnyEvent
from stream.localstack import StackInfo, running_stack
from stream.localstack.worker import WorkerProcess, start_worker
from stream.metrics import Metrics
from stream.processor import EventProcessor
from stream.settings import Settings, Topics
from stream.topics import ensure_topics
from stream.windows.store import RedisWindowStore, WindowPolicy

BACKFILL_DAYS = 120
EVENTS_PER_CUSTOMER_GUESS = 200
"""A 120-day backfill with the default persona mix gives about 260 events per customer; guess low, trim after."""
BATCH_SIZE = 200
POLL_SECONDS = 0.2
PROGRESS_EVERY = 10.0
STATE_PATTERN = "cw:{*}:state"
SEEN_PATTERN = "cw:{*}:seen:*"
SENT_PATTERN = "cw:{*}:sent:*"

Message = tuple[str, bytes, bytes]
"""(topic, key, value) as produced."""
Sample = tuple[str, dict[str, str], float]
"""One Prometheus sample: (name, labels, value)."""


class BenchError(RuntimeError):
    """A phase could not finish (timeout, worker died); the run stops and cleans up."""


def source_revision() -> str:
    """The checked-out commit, flagged if files outside ``bench/`` differ from it (figures depend on the code)."""
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench")
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {head}" + (" + uncommitted changes" if dirty else "")


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --------------------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    events: list[AnyEvent]
    """Validated models, in event-time order (the order they are produced in)."""
    messages: list[Message]
    customers: int
    events_per_customer: list[int]


def build_workload(target: int, customers: int | None, seed: int, topics: Topics) -> Workload:
    """Exactly ``target`` events from whole customers' backfills (the last customer may be cut short).

    With ``customers`` given, that many customers are generated; if they produce fewer than
    ``target`` events, all of them are used.
    """
    now = datetime.now(UTC)
    count = customers or max(1, math.ceil(target / EVENTS_PER_CUSTOMER_GUESS))
    while True:
        profiles = make_profiles(count, random.Random(seed))
        history = backfill_events(profiles, now, BACKFILL_DAYS, random.Random(seed + 1))
        if customers is not None or len(history) >= target:
            break
        count = math.ceil(count * target / max(1, len(history)) * 1.1)
    by_customer: dict[str, list[AnyEvent]] = defaultdict(list)
    for event in history:
        by_customer[event.customer_id].append(event)
    kept: list[AnyEvent] = []
    per_customer: list[int] = []
    for profile in profiles:
        if len(kept) >= target:
            break
        taken = by_customer[profile.customer_id][: target - len(kept)]
        if taken:
            kept += taken
            per_customer.append(len(taken))
    kept.sort(key=lambda e: e.occurred_at)  # stable: a customer's own order is kept
    messages = [(topics.for_event(e), e.customer_id.encode(), e.model_dump_json().encode()) for e in kept]
    return Workload(kept, messages, len(per_customer), per_customer)


# ----------------------------------------------------------------------------------------------- phases


CpuTimes = dict[str, float]
"""CPU seconds (user + system) by process role: ``client`` (the bench, or the worker), ``kafka``, ``redis``,
and ``machine``: every CPU's busy time (``/proc/stat``), so other load on the machine shows."""
CPU_ROLES = ("client", "kafka", "redis")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Busy CPU seconds summed over all CPUs since boot (user, nice, system, irq, softirq, steal)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _stat_cpu(stat_path: Path) -> float:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a live process (all its threads) from ``/proc`` (NaN if unknown)."""
    if pid is None:
        return math.nan
    try:
        return _stat_cpu(Path(f"/proc/{pid}/stat"))
    except OSError:
        return math.nan


def main_thread_cpu(pid: int) -> float:
    """CPU time of a process's main thread alone (its task id is the pid)."""
    try:
        return _stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))
    except OSError:
        return math.nan


@dataclass(frozen=True)
class CpuProbe:
    client: int
    kafka: int | None
    redis: int | None

    def snapshot(self) -> CpuTimes:
        pids = (self.client, self.kafka, self.redis)
        times = {role: cpu_seconds(pid) for role, pid in zip(CPU_ROLES, pids, strict=True)}
        times["machine"] = machine_busy_seconds()
        return times

    def since(self, mark: CpuTimes) -> CpuTimes:
        now = self.snapshot()
        return {role: now[role] - mark[role] for role in now}


@dataclass(frozen=True)
class Phase:
    name: str
    events: int
    seconds: float
    cpu: CpuTimes = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else math.inf


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
    for topic, _key, value in messages:
        decode_event(kinds[topic], value, now=datetime.now(UTC), policy=policy)
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
    settings: Settings, rule_set: RuleSet, store: RedisWindowStore, messages: Sequence[Message], policy: DecodePolicy
) -> InProcessResult:
    """``EventProcessor.process`` per message, sequentially, with the worker's rules and settings.

    No Kafka: alerts and dead letters are counted, and rule evaluation is never deferred
    (``progress=None``), since all inputs are "read" in one event-time-ordered sequence.
    """
    publisher, dead_letters = CountingPublisher(), CountingDeadLetters()
    processor = EventProcessor(
        stream_kinds=settings.topics.event_kinds,
        store=store,
        rules=lambda: rule_set,
        publisher=publisher,
        dead_letters=dead_letters,
        metrics=Metrics(CollectorRegistry()),
        decode_policy=policy,
        alert_max_lag=settings.alert_max_lag,
    )
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    for offset, (topic, key, value) in enumerate(messages):
        outcome = await processor.process(SourceRecord(topic, 0, offset, key, value))
        outcomes[outcome.value if outcome else "dead-lettered"] += 1
    seconds = time.perf_counter() - started
    return InProcessResult(seconds, outcomes, publisher.published, dead_letters.dead_lettered)


# ---------------------------------------------------------------------------------- worker end to end


def scrape(worker: WorkerProcess) -> list[Sample]:
    text = worker.get("/metrics")
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: Iterable[Sample], name: str, topics: Collection[str] | None = None, **labels: str) -> float:
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name
        and (topics is None or sample_labels.get("topic") in topics)
        and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def by_label(
    samples: Iterable[Sample], name: str, label: str, topics: Collection[str] | None = None
) -> dict[str, float]:
    found: dict[str, float] = defaultdict(float)
    for sample_name, labels, value in samples:
        if sample_name == name and (topics is None or labels.get("topic") in topics):
            found[labels.get(label, "")] += value
    return {k: v for k, v in sorted(found.items()) if v}


def finished(samples: Iterable[Sample], topics: Collection[str]) -> float:
    """Events the worker is done with: processed (any outcome) or dead-lettered."""
    samples = list(samples)
    return total(samples, "churnwatch_event_processing_seconds_count", topics) + total(
        samples, "churnwatch_deadletters_total", topics
    )


def histogram_quantile(samples: Iterable[Sample], name: str, topics: Collection[str], q: float) -> float | None:
    """Approximate quantile from cumulative buckets summed over ``topics`` (linear within a bucket)."""
    buckets: dict[float, float] = defaultdict(float)
    for sample_name, labels, value in samples:
        if sample_name == f"{name}_bucket" and labels.get("topic") in topics:
            buckets[float(labels["le"])] += value
    count = buckets.get(math.inf, 0.0)
    if not count:
        return None
    rank = q * count
    low, below = 0.0, 0.0
    for bound in sorted(buckets):
        cumulative = buckets[bound]
        if cumulative >= rank:
            if math.isinf(bound):
                return low  # beyond the last finite bucket: report its bound as a floor
            return low + (bound - low) * (rank - below) / (cumulative - below)
        low, below = bound, cumulative
    return None


@dataclass
class WorkerRun:
    startup_seconds: float
    """Spawn to ``/healthz`` answering (excluded from the throughput figures)."""
    from_ready: float
    """Healthy to every event finished (includes the consumer group join)."""
    from_first: float
    """First event seen finished (by a /metrics poll) to every event finished."""
    ready_to_first: float
    samples: list[Sample]
    cpu_from_ready: CpuTimes
    cpu_from_first: CpuTimes
    bench_cpu: float
    """CPU seconds the bench itself spent while the worker ran (polling /metrics)."""
    main_thread_cpu: float
    """CPU seconds of the worker's main (event loop) thread from its 1st event to the end."""
    profile: list[str] = field(default_factory=list)


PROFILE_RATE = 100
"""py-spy samples per second."""


def start_profiler(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        say("py-spy not found (pip install py-spy in the venv); not profiling")
        return None
    argv = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(PROFILE_RATE)]
    # Blocking mode (py-spy pauses the worker for each sample): --nonblocking reads half-updated stacks
    # and counted a thread entering or leaving epoll_wait as busy far too often here.
    argv += ["--format", "raw", "--nolineno", "--threads", "--output", str(output)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def run_worker(
    info: StackInfo,
    topics: Topics,
    app_id: str,
    expected: int,
    *,
    log_path: Path,
    timeout: float,
    profile_seconds: float,
) -> WorkerRun:
    env = {
        "CHURNWATCH_APP_ID": app_id,
        **{f"CHURNWATCH_TOPIC_{name.upper()}": value for name, value in topics.model_dump().items()},
    }
    inputs = set(topics.events)
    profile_path = log_path.with_name("py-spy.raw.txt")
    profiler: subprocess.Popen[bytes] | None = None
    launched = time.perf_counter()
    worker = start_worker(info, env=env, output=log_path)
    say(f"worker pid {worker.process.pid} starting (log: {log_path})")
    try:
        worker.wait_healthy()
        ready = time.perf_counter()
        probe = CpuProbe(worker.process.pid, info.kafka_pid, info.redis_pid)
        at_ready, bench_at_ready = probe.snapshot(), cpu_seconds(os.getpid())
        say(f"worker healthy after {ready - launched:.1f}s; waiting for {expected:,} events")
        first: float | None = None
        at_first: CpuTimes = {}
        next_report = ready + PROGRESS_EVERY
        while True:
            samples = scrape(worker)
            done = finished(samples, inputs)
            now = time.perf_counter()
            if first is None and done > 0:
                first, at_first = now, probe.snapshot()
                main_at_first = main_thread_cpu(worker.process.pid)
                if profile_seconds > 0:
                    profiler = start_profiler(worker.process.pid, profile_seconds, profile_path)
            if done >= expected:
                cpu_from_ready, cpu_from_first = probe.since(at_ready), probe.since(at_first)
                bench_cpu = cpu_seconds(os.getpid()) - bench_at_ready
                main_cpu = main_thread_cpu(worker.process.pid) - main_at_first
                break
            if worker.process.poll() is not None:
                raise BenchError(f"the worker exited with code {worker.process.returncode}; see {log_path}")
            if now - ready > timeout:
                raise BenchError(f"the worker finished {done:,.0f} of {expected:,} events in {timeout:.0f}s")
            if now >= next_report:
                say(f"worker: {done:,.0f}/{expected:,} events after {now - ready:.0f}s")
                next_report += PROGRESS_EVERY
            time.sleep(POLL_SECONDS)
        assert first is not None
        run = WorkerRun(
            startup_seconds=ready - launched,
            from_ready=now - ready,
            from_first=now - first,
            ready_to_first=first - ready,
            samples=samples,
            cpu_from_ready=cpu_from_ready,
            cpu_from_first=cpu_from_first,
            bench_cpu=bench_cpu,
            main_thread_cpu=main_cpu,
        )
        if profiler is not None:
            profiler.wait(timeout=profile_seconds + 60)
            window = min(profile_seconds, run.from_first)
            run.profile = (
                summarize_profile(profile_path, window) if profile_path.exists() else ["(py-spy wrote nothing)"]
            )
        return run
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.terminate()
            profiler.wait()
        worker.stop()


PLUMBING_FILES = (
    "<frozen runpy>",
    "click/core.py",
    "threading.py",
    "asyncio/base_events.py",
    "asyncio/events.py",
    "mode/threads.py",
    "mode/worker.py",
    "stream/cli.py",
)
"""Frames every sample passes through; left out of the inclusive ranking."""


def _frame_file(frame: str) -> str:
    return frame.rpartition(" (")[2].rstrip(")")


def _short(frame: str) -> str:
    """``fn (/long/path/pkg/module.py)`` -> ``fn (pkg/module.py)``, for readable tables."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")")
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def _package(frame: str) -> str:
    path = _frame_file(frame)
    return path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")


def summarize_profile(path: Path, window: float, top: int = 15) -> list[str]:
    """Per-thread activity and the top frames and packages of a py-spy raw (collapsed stacks) file.

    py-spy records only samples where a thread is running (not blocked in epoll, a lock or a
    sleep), so a thread's samples over ``window`` seconds x the rate is roughly its busy share.
    """
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, *raw_frames = stack.split(";")
        threads[thread.partition(": ")[2] or thread] += count
        frames = [_short(f) for f in raw_frames] or ["(no Python frame)"]
        busy += count
        self_time[frames[-1]] += count
        packages[_package(frames[-1])] += count
        for frame in set(frames):
            if _frame_file(frame) not in PLUMBING_FILES:
                inclusive[frame] += count
    if not busy:
        return ["(no active samples)"]
    ticks = max(1.0, window * PROFILE_RATE)
    lines = [
        f"active samples by thread over the {window:.1f}s the worker was busy (~share of wall time running): "
        + ", ".join(f"{t} {n} (~{100 * n / ticks:.0f}%)" for t, n in threads.most_common()),
        "active samples by package of the innermost frame: "
        + ", ".join(f"{pkg} {100 * n / busy:.0f}%" for pkg, n in packages.most_common(12)),
        f"top frames by self time (share of {busy} active samples):",
    ]
    lines += [f"  {100 * n / busy:5.1f}%  {frame}" for frame, n in self_time.most_common(top)]
    lines.append("top frames by inclusive time (share of active samples; event loop/thread plumbing left out):")
    lines += [f"  {100 * n / busy:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return lines


# --------------------------------------------------------------------------------------- redis memory


@dataclass(frozen=True)
class MemoryReport:
    state_bytes: list[int]
    state_fields: list[int]
    encodings: Counter[str]
    state_ttl: int
    seen_count: int
    seen_bytes: int
    seen_ttl: int
    sent_count: int
    sent_bytes: int
    used_before: int
    used_after: int


def _chunks(items: Sequence[bytes], size: int = 1000) -> Iterable[Sequence[bytes]]:
    for at in range(0, len(items), size):
        yield items[at : at + size]


def _memory_usage(client: redis_sync.Redis, keys: Sequence[bytes]) -> list[int]:
    sizes: list[int] = []
    for chunk in _chunks(keys):
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        sizes += [int(size or 0) for size in pipe.execute()]
    return sizes


def measure_memory(client: redis_sync.Redis, used_before: int) -> MemoryReport:
    used_after = int(client.info("memory")["used_memory"])
    states: list[bytes] = list(client.scan_iter(match=STATE_PATTERN, count=1000))
    seen: list[bytes] = list(client.scan_iter(match=SEEN_PATTERN, count=1000))
    sent: list[bytes] = list(client.scan_iter(match=SENT_PATTERN, count=1000))
    pipe = client.pipeline(transaction=False)
    for key in states:
        pipe.object("encoding", key)
        pipe.hlen(key)
    replies = pipe.execute()
    encodings: Counter[str] = Counter(e.decode() if isinstance(e, bytes) else str(e) for e in replies[::2])
    return MemoryReport(
        state_bytes=_memory_usage(client, states),
        state_fields=[int(n) for n in replies[1::2]],
        encodings=encodings,
        state_ttl=int(client.ttl(states[0])) if states else -2,
        seen_count=len(seen),
        seen_bytes=sum(_memory_usage(client, seen)),
        seen_ttl=int(client.ttl(seen[0])) if seen else -2,
        sent_count=len(sent),
        sent_bytes=sum(_memory_usage(client, sent)),
        used_before=used_before,
        used_after=used_after,
    )


# -------------------------------------------------------------------------------------------- report


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def format_table(phases: Sequence[Phase], ceiling: Phase) -> list[str]:
    """One row per phase; CPU columns are seconds of user + system time during the phase."""
    width = max(len(p.name) for p in phases)
    cpus = os.cpu_count() or 1
    header = (
        f"{'phase':<{width}}  {'events':>7}  {'seconds':>7}  {'events/s':>8}  {'vs ceiling':>10}  "
        f"{'cpu client':>10}  {'kafka':>5}  {'redis':>5}  {'other':>5}  {'machine busy':>12}"
    )
    lines = [header, "-" * len(header)]
    for p in phases:
        ours = sum(p.cpu.get(role, 0.0) for role in CPU_ROLES)
        machine = p.cpu.get("machine", math.nan)
        lines.append(
            f"{p.name:<{width}}  {p.events:>7,}  {p.seconds:>7.2f}  {_fmt_rate(p.rate):>8}  "
            f"{p.rate / ceiling.rate:>9.3f}x  {p.cpu.get('client', math.nan):>10.2f}  "
            f"{p.cpu.get('kafka', math.nan):>5.2f}  {p.cpu.get('redis', math.nan):>5.2f}  "
            f"{max(0.0, machine - ours):>5.2f}  {100 * machine / (p.seconds * cpus):>11.0f}%"
        )
    return lines


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.2f} ms"


def _dict(counts: dict[str, float] | Counter[str]) -> str:
    return ", ".join(f"{k} {v:,.0f}" for k, v in counts.items()) or "none"


def worker_lines(run: WorkerRun, inputs: Collection[str]) -> list[str]:
    s = run.samples
    name = "churnwatch_event_processing_seconds"
    count = total(s, f"{name}_count", inputs)
    inside = total(s, f"{name}_sum", inputs)
    mean = inside / count if count else None
    return [
        f"worker startup (spawn -> /healthz 200): {run.startup_seconds:.1f}s, excluded from both worker rows; "
        f"healthy -> first event finished: {run.ready_to_first:.1f}s (group join + assignment, in 'from healthy')",
        f"time inside EventProcessor.process (histogram sum): {inside:.2f}s = "
        f"{100 * inside / run.from_first:.0f}% of the worker's wall time from its 1st event; the rest is "
        f"faust/aiokafka (fetch, dispatch, commits) and waiting for CPU; bench CPU while polling /metrics: "
        f"{run.bench_cpu:.2f}s",
        f"worker CPU from its 1st event: main (event loop) thread {run.main_thread_cpu:.2f}s = "
        f"{100 * run.main_thread_cpu / run.from_first:.0f}% of one core, other threads (faust's consumer thread, "
        f"the rules file watcher, ...) {run.cpu_from_first['client'] - run.main_thread_cpu:.2f}s",
        f"worker processing latency per event (read -> windows, rules, alerts done; excludes faust queueing): "
        f"p50 ~{_ms(histogram_quantile(s, name, inputs, 0.5))}, p99 ~{_ms(histogram_quantile(s, name, inputs, 0.99))}"
        f" (bucket-interpolated), mean {_ms(mean)}",
        f"worker outcomes: {_dict(by_label(s, 'churnwatch_events_consumed_total', 'outcome', inputs))}; "
        f"dead-lettered: {_dict(by_label(s, 'churnwatch_deadletters_total', 'reason', inputs))}",
        f"rule evaluations deferred (another input behind): "
        f"{_dict(by_label(s, 'churnwatch_evaluations_deferred_total', 'waiting_for'))}",
        f"alerts fired: {total(s, 'churnwatch_alerts_fired_total'):,.0f} "
        f"(by rule: {_dict(by_label(s, 'churnwatch_alerts_fired_total', 'rule'))}; "
        f"by mode: {_dict(by_label(s, 'churnwatch_alerts_fired_total', 'mode'))}); suppressed: "
        f"{_dict(by_label(s, 'churnwatch_alerts_suppressed_total', 'reason'))}; "
        f"deliveries: {_dict(by_label(s, 'churnwatch_alert_deliveries_total', 'outcome'))}",
    ]


def memory_lines(report: MemoryReport, workload: Workload) -> list[str]:
    sizes = report.state_bytes
    customers = len(sizes)
    if not customers:
        return ["no customer state keys found in Redis"]
    per_customer = workload.events_per_customer
    delta = report.used_after - report.used_before
    measured = sum(sizes) + report.seen_bytes + report.sent_bytes
    per_seen = report.seen_bytes / report.seen_count if report.seen_count else 0.0
    return [
        f"customers with a state hash: {customers:,} (workload: {workload.customers:,}); events per customer: "
        f"mean {statistics.fmean(per_customer):.0f}, p50 {statistics.median(per_customer):.0f}, "
        f"max {max(per_customer)} over a {BACKFILL_DAYS}-day history",
        f"state hash (MEMORY USAGE SAMPLES 0) per customer: mean {statistics.fmean(sizes):,.0f} B, "
        f"p50 {statistics.median(sizes):,.0f} B, max {max(sizes):,} B, total {sum(sizes) / 1e6:.2f} MB; "
        f"fields mean {statistics.fmean(report.state_fields):.1f}; encodings {_dict(report.encodings)}; "
        f"TTL (idle) {report.state_ttl / 86400:.0f} d",
        f"dedupe ':seen:' keys: {report.seen_count:,} ({report.seen_count / customers:.0f} per customer), "
        f"{report.seen_bytes / 1e6:.2f} MB total, {per_seen:.0f} B each, "
        f"{report.seen_bytes / customers:,.0f} B per customer; they expire after the dedupe TTL "
        f"({report.seen_ttl / 86400:.1f} d left on a sample key), so they scale with events per 7 days, "
        f"not with customers",
        f"alert ':sent:' markers: {report.sent_count:,} keys, {report.sent_bytes:,} B",
        f"INFO used_memory delta: {delta / 1e6:.2f} MB = {delta / customers:,.0f} B per customer "
        f"(state + seen keys + overhead; cross-check of {measured / customers:,.0f} B from MEMORY USAGE)",
    ]


# ---------------------------------------------------------------------------------------------- main


@dataclass(frozen=True)
class Options:
    events: int
    customers: int | None
    partitions: int
    seed: int
    timeout: float
    py_spy: float


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events to pre-produce (default 50000)")
    parser.add_argument(
        "--customers", type=int, default=None, help="customers to generate (default: enough for --events)"
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900.0, help="max seconds for a consuming phase")
    parser.add_argument(
        "--py-spy",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="profile the worker with py-spy for SECONDS once it processes events (perturbs its figure)",
    )
    ns = parser.parse_args(argv)
    if ns.events < 1:
        parser.error("--events must be >= 1")
    return Options(ns.events, ns.customers, ns.partitions, ns.seed, ns.timeout, ns.py_spy)


async def client_phases(
    info: StackInfo,
    settings: Settings,
    rule_set: RuleSet,
    workload: Workload,
    options: Options,
    flush: Callable[[], object],
) -> tuple[list[Phase], list[str]]:
    """Produce, the bare consumer ceiling, decode alone, Redis alone, the processor without Kafka."""
    n = len(workload.messages)
    topics = settings.topics
    probe = CpuProbe(os.getpid(), info.kafka_pid, info.redis_pid)
    phases: list[Phase] = []
    notes: list[str] = []
    created = await ensure_topics(settings)
    say(f"created topics {', '.join(created)} with {settings.topic_partitions} partitions")

    say(f"producing {n:,} events")
    mark = probe.snapshot()
    seconds = await produce(info.kafka_bootstrap, workload.messages)
    phases.append(Phase("produce (acks=all, linger 5 ms)", n, seconds, probe.since(mark)))

    say("bare aiokafka consumer: reading the backlog")
    mark = probe.snapshot()
    seconds = await bare_consume(info.kafka_bootstrap, topics.events, n, options.timeout)
    phases.append(Phase("bare aiokafka consumer (ceiling)", n, seconds, probe.since(mark)))

    policy = DecodePolicy(
        max_message_bytes=settings.max_message_bytes,
        max_future_skew=settings.max_future_skew,
        currency=settings.currency,
    )
    say("decode + validate alone")
    mark = probe.snapshot()
    seconds = decode_only(workload.messages, topics.event_kinds, policy)
    phases.append(Phase("decode + validate only (CPU, no I/O)", n, seconds, probe.since(mark)))

    redis = Redis.from_url(settings.redis_url)
    store = RedisWindowStore(
        redis,
        WindowPolicy(
            retention=settings.retention,
            dedupe_ttl=settings.dedupe_ttl,
            idle_ttl=settings.idle_ttl,
            feedback_history=settings.feedback_history,
        ),
    )
    try:
        flush()
        say("redis apply, sequential")
        mark = probe.snapshot()
        seconds, outcomes = await redis_sequential(store, workload.events)
        phases.append(Phase("redis apply, sequential awaits", n, seconds, probe.since(mark)))
        notes.append(f"redis apply outcomes: {_dict(outcomes)}")

        flush()
        say(f"redis apply_batch({BATCH_SIZE})")
        mark = probe.snapshot()
        seconds, outcomes = await redis_batched(store, workload.events, BATCH_SIZE)
        phases.append(Phase(f"redis apply_batch({BATCH_SIZE}), pipelined", n, seconds, probe.since(mark)))
        notes.append(f"redis apply_batch outcomes: {_dict(outcomes)}")

        flush()
        say("EventProcessor in-process (real Redis, no Kafka)")
        mark = probe.snapshot()
        result = await processor_in_process(settings, rule_set, store, workload.messages, policy)
        phases.append(Phase("EventProcessor in-process (Redis, no Kafka)", n, result.seconds, probe.since(mark)))
        notes.append(
            f"in-process outcomes: {_dict(result.outcomes)}; alerts published {result.alerts}, "
            f"dead-lettered {result.dead_lettered}"
        )
        flush()
    finally:
        await redis.aclose()
    return phases, notes


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    run_id = uuid.uuid4().hex[:8]
    topics = Topics(
        purchases=f"bench-{run_id}.purchases",
        interactions=f"bench-{run_id}.interactions",
        feedback=f"bench-{run_id}.feedback",
        alerts=f"bench-{run_id}.alerts",
        deadletter=f"bench-{run_id}.deadletter",
    )
    rules_dir = Settings().rules_dir
    try:
        rule_set = load_rule_set(rules_dir)  # the worker loads the same; fail before starting anything
    except RuleConfigError as exc:
        say(f"the rule set in {rules_dir} is invalid, so the worker would refuse to start:")
        for problem in exc.problems:
            say(f"  {problem}")
        return 2
    revision = source_revision()
    out_dir = Path(tempfile.mkdtemp(prefix=f"churnwatch-bench-{run_id}-"))
    say(f"run {run_id}: generating the workload (seed {options.seed})")
    started = time.perf_counter()
    workload = build_workload(options.events, options.customers, options.seed, topics)
    say(
        f"{len(workload.messages):,} events for {workload.customers} customers "
        f"in {time.perf_counter() - started:.1f}s; outputs in {out_dir}"
    )
    with running_stack(f"bench-{os.getpid()}", purge=True, log=say) as info:
        settings = Settings(
            app_id=f"churnwatch-bench-{run_id}",
            kafka_bootstrap=info.kafka_bootstrap,
            redis_url=info.redis_url,
            topics=topics,
            topic_partitions=options.partitions,
        )
        admin = redis_sync.Redis.from_url(info.redis_url)
        try:
            phases, notes = asyncio.run(
                client_phases(info, settings, rule_set, workload, options, flush=lambda: admin.flushdb())
            )
            used_before = int(admin.info("memory")["used_memory"])
            run = run_worker(
                info,
                topics,
                settings.app_id,
                len(workload.messages),
                log_path=out_dir / "worker.log",
                timeout=options.timeout,
                profile_seconds=options.py_spy,
            )
            say("measuring Redis memory")
            memory = measure_memory(admin, used_before)
        finally:
            admin.close()
        kafka_version = info.kafka_version
    n = len(workload.messages)
    phases += [
        Phase("churnwatch worker e2e, from healthy", n, run.from_ready, run.cpu_from_ready),
        Phase("churnwatch worker e2e, from 1st event", n, run.from_first, run.cpu_from_first),
    ]
    context = (
        f"run {run_id}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {revision}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, Kafka {kafka_version}, "
        f"rule set {rule_set.version[:12]} ({len(rule_set.enabled)} enabled rules)"
    )
    print_report(phases, notes, run, memory, workload, topics, options, context)
    return 0


def print_report(
    phases: Sequence[Phase],
    notes: Sequence[str],
    run: WorkerRun,
    memory: MemoryReport,
    workload: Workload,
    topics: Topics,
    options: Options,
    context: str,
) -> None:
    kinds = Counter(topics.event_kinds[topic] for topic, _k, _v in workload.messages)
    mean_size = statistics.fmean(len(v) for _t, _k, v in workload.messages)
    ceiling = next(p for p in phases if "ceiling" in p.name)
    lines = [
        "",
        f"churnwatch throughput benchmark - {context}",
        f"workload: {len(workload.messages):,} events ({_dict(kinds)}) for {workload.customers} customers, "
        f"{BACKFILL_DAYS}-day backfill, mean message {mean_size:.0f} B, {options.partitions} partitions per topic, "
        f"pre-produced before any consumer starts",
        "",
        *format_table(phases, ceiling),
        "",
        "ceiling = AIOKafkaConsumer (no group, from earliest) counting records and json.loads-ing each value",
        "cpu columns = user+system CPU seconds during the phase of: client (the bench process; the worker process "
        "in the worker rows), kafka (the broker JVM), redis, other (everything else on the machine: other users' "
        "processes, the bench polling /metrics in the worker rows, the kernel); "
        f"machine busy = all CPU time used / (wall time x {os.cpu_count()} CPUs), from /proc/stat",
        *notes,
        *worker_lines(run, set(topics.events)),
        "",
        "Redis memory after the worker run:",
        *memory_lines(memory, workload),
    ]
    if options.py_spy > 0:
        lines += [
            "",
            f"py-spy on the worker ({options.py_spy:.0f}s from its 1st event; "
            "sampling pauses it, so the worker rows are slower):",
        ]
        lines += run.profile
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
