"""``churnwatch replay``: a history pushed through the worker's own :class:`~stream.processor.EventProcessor`.

Same code as the worker: each event goes in as the bytes of a Kafka record and is decoded, folded,
judged (rules, cooldowns, episodes, resolutions) and published by the processor; silence is judged
by its due scan. What differs is behind the Protocols and the clock:

- the stores are in memory (:mod:`stream.windows.memory_store`), the alerts and dead letters are
  collected (:class:`ReplayPublisher`, :class:`ReplayDeadLetters`);
- the clock follows the events: before each event, and at ``until`` at the end, the driver moves the
  clock to every due moment that falls before it, in order, and runs ``scan_due`` there, so an
  absence rule fires at the simulated moment the worker's timer would have fired it (to the
  millisecond; live, up to one scan interval later);
- one partition (0), input read in one event-time order (a stable sort: equal times keep the input
  order), so there is no evaluation delay, no input-progress tracking, and no stale-alert cut-off
  (``alert_max_lag`` None).

The input format is the wire format of the three event topics, one JSON object a line:
``{"topic": "purchase" | "interaction" | "feedback", "event": {...}}``. A line that does not hold a
valid event is reported with its number and the decoder's reason, and counted; the rest replays.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from prometheus_client import CollectorRegistry

from alerts.model import Alert
from rules.ruleset import RuleSet
from stream.contracts import SourceRecord
from stream.decoding import DecodePolicy, Rejection, decode_event
from stream.events import EVENT_MODELS, EventBase
from stream.metrics import Metrics
from stream.processor import EventProcessor
from stream.quarantine import Quarantine
from stream.settings import Topics
from stream.windows.memory_store import MemoryDueIndex, MemoryPendingLedger, MemoryQuarantineLedger, MemoryStore
from stream.windows.store import WindowPolicy

PARTITION = 0
"""The one partition a replay runs (the worker's partitioning only spreads customers over workers)."""
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)
_STEP = timedelta(milliseconds=1)
"""The due index counts in milliseconds: two scans are at least this far apart."""

EarliestDue = Callable[[], Awaitable[datetime | None]]
Progress = Callable[[int, int], None]


class Processor(Protocol):
    """What the driver needs of :class:`~stream.processor.EventProcessor`."""

    async def process(self, record: SourceRecord) -> object: ...

    async def scan_due(self, partitions: Iterable[int]) -> int: ...


@dataclass
class ReplayClock:
    """The processor's clock during a replay: set by the driver, read by the processor."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ReplayPublisher:
    """The alerts topic of a replay: every alert and resolution, in the order they were published."""

    alerts: list[Alert] = field(default_factory=list)

    async def publish(self, alert: Alert) -> None:
        self.alerts.append(alert)


@dataclass
class ReplayDeadLetters:
    """What the processor dead-lettered (the record's offset is its input line)."""

    records: list[tuple[SourceRecord, str, str]] = field(default_factory=list)

    async def dead_letter(self, record: SourceRecord, reason: str, detail: str) -> None:
        self.records.append((record, reason, detail))


@dataclass(frozen=True)
class TimedRecord:
    at: datetime
    """The event's time, to sort on (the processor decodes the record again, as the worker does)."""
    record: SourceRecord


@dataclass(frozen=True)
class InputProblem:
    line: int
    reason: str
    """``not_json``, ``envelope`` or one of the decoder's reasons (:class:`stream.decoding.RejectReason`)."""
    detail: str


@dataclass
class ReplayInput:
    records: list[TimedRecord] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)
    lines: int = 0
    """Lines read, blank ones excluded (a table's data rows)."""
    unit: str = "line"
    """What ``InputProblem.line`` counts: ``line`` (JSON Lines, CSV) or ``row`` (Parquet, 1-based)."""

    def problem_counts(self) -> Counter[str]:
        return Counter(p.reason for p in self.problems)


def read_jsonl(lines: Iterable[bytes], topics: Topics, policy: DecodePolicy) -> ReplayInput:
    """Envelopes ``{"topic": kind, "event": {...}}`` -> records of the kind's topic, checked by the
    worker's decoder (so a line the worker would dead-letter is reported here, with its reason).
    Nothing in a line makes this raise: what cannot be read is a problem of that line."""
    topic_of = {kind: topic for topic, kind in topics.event_kinds.items()}
    read = ReplayInput()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        read.lines += 1
        try:
            got = _read_line(line, number, topic_of, policy)
        except Exception as exc:  # e.g. nested past the recursion limit
            got = InputProblem(number, "not_json", f"{type(exc).__name__}: {exc}")
        if isinstance(got, InputProblem):
            read.problems.append(got)
        else:
            read.records.append(got)
    return read


def _read_line(line: bytes, number: int, topic_of: dict[str, str], policy: DecodePolicy) -> TimedRecord | InputProblem:
    try:
        envelope = json.loads(line.decode("utf-8-sig"))  # UTF-8 only, as the worker's decoder
    except ValueError as exc:  # UnicodeDecodeError included
        return InputProblem(number, "not_json", str(exc))
    kind = envelope.get("topic") if isinstance(envelope, dict) else None
    if not isinstance(kind, str) or kind not in topic_of or set(envelope) != {"topic", "event"}:
        shown = line[:120].decode("utf-8", "replace").strip()
        detail = f'expected {{"topic": one of {", ".join(EVENT_MODELS)}, "event": {{...}}}}, got {shown!r}'
        return InputProblem(number, "envelope", detail)
    return checked_record(kind, envelope["event"], number, topic_of[kind], policy)


def checked_record(
    kind: str, event: object, number: int, topic: str, policy: DecodePolicy
) -> TimedRecord | InputProblem:
    """``event`` (a JSON-able dict) as the record a producer keyed by its customer would send to
    ``topic``, checked by the worker's decoder: what the worker would dead-letter is a problem of
    input line (or row) ``number``, with the decoder's reason."""
    customer = event.get("customer_id") if isinstance(event, dict) else None
    key = customer.strip().encode() if isinstance(customer, str) else None
    # Numbers pass through float here: exact for every amount the contract accepts (at most 14
    # significant digits), and integers stay integers.
    value = json.dumps(event, separators=(",", ":")).encode()
    decoded = decode_event(kind, key, value, now=_END_OF_TIME, policy=policy)
    if isinstance(decoded, Rejection):
        return InputProblem(number, decoded.reason.value, decoded.detail)
    return TimedRecord(decoded.occurred_at, SourceRecord(topic, PARTITION, number, key, value))


def records_of(events: Iterable[EventBase], topics: Topics) -> list[TimedRecord]:
    """Validated events as the records a producer would have sent (offset: their position)."""
    return [
        TimedRecord(
            event.occurred_at,
            SourceRecord(
                topics.for_event(event), PARTITION, n, event.customer_id.encode(), event.model_dump_json().encode()
            ),
        )
        for n, event in enumerate(events)
    ]


async def drive(
    records: Sequence[TimedRecord],
    processor: Processor,
    clock: ReplayClock,
    earliest_due: EarliestDue,
    *,
    until: datetime | None = None,
    partition: int = PARTITION,
    progress: Progress | None = None,
) -> int:
    """Feed ``records`` (in event-time order: sorted here, stably) to ``processor`` with ``clock``
    following them, scanning the due customers at each due moment before the next event, and up to
    ``until`` (inclusive) at the end. Records after ``until`` are not fed. Returns the scans run.

    ``earliest_due`` is the due index's earliest moment, leases included; the driver knows nothing
    else of the stores, so a test drives a processor on the real Redis exactly the same way."""
    ordered = sorted(records, key=lambda r: r.at)
    if until is not None:
        ordered = [r for r in ordered if r.at <= until]
    scans = 0
    last_scan: datetime | None = None

    async def scan_before(limit: datetime, *, inclusive: bool) -> None:
        nonlocal scans, last_scan
        while (due := await earliest_due()) is not None:
            moment = max(due, clock.now)
            if last_scan is not None and moment < last_scan + _STEP:
                moment = last_scan + _STEP  # still due right after a scan (over the claim limit): next ms
            if moment > limit or (moment == limit and not inclusive):
                return
            clock.now = last_scan = moment
            await processor.scan_due([partition])
            scans += 1

    for done, timed in enumerate(ordered, start=1):
        if done == 1:
            clock.now = timed.at
        await scan_before(timed.at, inclusive=False)
        clock.now = max(clock.now, timed.at)
        await processor.process(timed.record)
        if progress is not None and done % 1000 == 0:
            progress(done, len(ordered))
    if until is not None:
        await scan_before(until, inclusive=True)
        clock.now = max(clock.now, until)
    if progress is not None:
        progress(len(ordered), len(ordered))
    return scans


@dataclass
class Replay:
    """The worker's processor on in-memory adapters, and what it produced."""

    processor: EventProcessor
    clock: ReplayClock
    store: MemoryStore
    due: MemoryDueIndex
    publisher: ReplayPublisher
    dead_letters: ReplayDeadLetters
    metrics: Metrics

    async def run(
        self, records: Sequence[TimedRecord], *, until: datetime | None, progress: Progress | None = None
    ) -> int:
        """Replay ``records`` up to ``until`` (default: the last event time); returns the due scans run."""
        if until is None and records:
            until = max(r.at for r in records)

        async def earliest() -> datetime | None:
            return await self.due.earliest_due(PARTITION)

        return await drive(records, self.processor, self.clock, earliest, until=until, progress=progress)


def build_replay(
    rules: RuleSet,
    *,
    topics: Topics,
    window_policy: WindowPolicy,
    decode_policy: DecodePolicy,
    max_failures: int = 3,
) -> Replay:
    clock = ReplayClock(datetime(1970, 1, 1, tzinfo=UTC))
    store, due = MemoryStore(window_policy), MemoryDueIndex()
    publisher, dead_letters = ReplayPublisher(), ReplayDeadLetters()
    metrics = Metrics(CollectorRegistry())
    processor = EventProcessor(
        stream_kinds=topics.event_kinds,
        store=store,
        rules=lambda: rules,
        publisher=publisher,
        dead_letters=dead_letters,
        metrics=metrics,
        decode_policy=decode_policy,
        pending=MemoryPendingLedger(),
        quarantine=Quarantine(MemoryQuarantineLedger(), metrics, max_failures=max_failures),
        due=due,
        clock=clock,
        alert_max_lag=None,
    )
    return Replay(processor, clock, store, due, publisher, dead_letters, metrics)


def alert_line(alert: Alert) -> dict[str, object]:
    """One line of ``replay --out``: when, who, which rule, and why."""
    line: dict[str, object] = {
        "time": alert.evaluated_at.isoformat(),
        "customer": alert.customer_id,
        "rule": alert.rule_id,
        "severity": alert.severity.value,
        "status": alert.status,
        "evidence": alert.evidence,
        "alert_id": alert.alert_id,
        "message": alert.message,
        "trigger": alert.trigger_topic,
    }
    if alert.resolves is not None:
        line["resolves"] = alert.resolves
    return line


@dataclass(frozen=True)
class RuleSummary:
    rule_id: str
    alerts: int
    """Firing alerts (resolutions are counted apart)."""
    customers: int
    resolved: int
    per_week: float


def summarise(alerts: Iterable[Alert], start: datetime, until: datetime) -> list[RuleSummary]:
    """Per rule: alerts, distinct customers, resolutions, and alerts per week of the replayed span
    (at least one week, so a short replay does not extrapolate)."""
    weeks = max((until - start) / timedelta(weeks=1), 1.0)
    firing: Counter[str] = Counter()
    resolved: Counter[str] = Counter()
    customers: dict[str, set[str]] = {}
    for alert in alerts:
        if alert.status == "resolved":
            resolved[alert.rule_id] += 1
        else:
            firing[alert.rule_id] += 1
            customers.setdefault(alert.rule_id, set()).add(alert.customer_id)
    return [
        RuleSummary(rule, firing[rule], len(customers.get(rule, ())), resolved[rule], firing[rule] / weeks)
        for rule in sorted(set(firing) | set(resolved))
    ]


MAX_PROBLEMS_SHOWN = 20
"""Invalid lines quoted with their number on stderr; all are counted by reason."""


def parse_moment(text: str) -> datetime:
    """``--until``: an ISO 8601 date-time with a timezone, or a date (its 00:00 UTC)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO 8601 date or date-time") from exc
    if len(text.strip()) == 10:  # a date alone
        return moment.replace(tzinfo=UTC)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone: add Z or +hh:mm")
    return moment


def problem_lines(read: ReplayInput, dead_letters: ReplayDeadLetters) -> list[str]:
    """The invalid lines (the reader's and any the processor dead-lettered), numbered, then counted."""
    problems = [*read.problems, *(InputProblem(r.offset, reason, d) for r, reason, d in dead_letters.records)]
    if not problems:
        return []
    counts, unit = Counter(p.reason for p in problems), read.unit
    out = [
        f"{len(problems)} invalid {unit}(s), not replayed: " + ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
    ]
    out += [f"  {unit} {p.line}: {p.reason}: {p.detail[:300]}" for p in sorted(problems, key=lambda p: p.line)]
    if len(out) > MAX_PROBLEMS_SHOWN + 1:
        out[MAX_PROBLEMS_SHOWN + 1 :] = [f"  ... and {len(problems) - MAX_PROBLEMS_SHOWN} more"]
    return out


def summary_lines(summaries: Sequence[RuleSummary]) -> list[str]:
    if not summaries:
        return ["no alerts"]
    width = max(len("rule"), *(len(s.rule_id) for s in summaries))
    out = [f"{'rule':<{width}}  {'alerts':>7}  {'customers':>9}  {'per week':>9}  {'resolved':>8}"]
    out += [
        f"{s.rule_id:<{width}}  {s.alerts:>7}  {s.customers:>9}  {s.per_week:>9.2f}  {s.resolved:>8}" for s in summaries
    ]
    return out


class ProgressLine:
    """``replayed N / M events, R events/s`` rewritten in place, at most twice a second (a terminal only)."""

    def __init__(self, write: Callable[[str], object], clock: Callable[[], float]) -> None:
        self._write, self._clock = write, clock
        self._started = self._shown = clock()

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if now - self._shown < 0.5 and done < total:
            return
        self._shown = now
        rate = done / max(now - self._started, 1e-9)
        self._write(f"\rreplayed {done:,} / {total:,} events, {rate:,.0f} events/s")
        if done >= total:
            self._write("\n")
