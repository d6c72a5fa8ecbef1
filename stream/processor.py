"""Processing consumed events, a batch at a time: validate, update the windows, judge, publish alerts.

A batch's window updates go to the store in one call (one pipelined Redis round trip), and each
customer of the batch is judged once, on their state after their last event of it; the due moments
the batch's judgements set are written together at its end. The agent acks the batch's events only
after :meth:`EventProcessor.process_batch` returned, so no offset is committed past unfinished work.
A batch of one is the same path (``replay`` feeds one event at a time, in event-time order).

Delivery guarantee (Kafka is at-least-once, faust can redeliver after a crash or rebalance):
- a window update is idempotent (the customer's latest event ids are kept in their hash, with a
  floor below which an event is taken for a redelivery: :mod:`stream.windows.dedupe`), so a
  redelivered event counts once;
- an alert is claimed in Redis before it is published and confirmed after; the customer's next
  evaluation re-publishes a claim never confirmed (a crash in between) under the same ``alert_id``,
  and a redelivery after confirmation publishes nothing: alerts are at-least-once, a duplicate
  (same id) only after a crash between publishing and confirming;
- an evaluation that has to wait (:mod:`stream.evaluation_queue`) is recorded in Redis until it ran,
  so a crash does not lose it;
- an invalid message is dead-lettered with its bytes and position and never stops the partition;
- a failure while judging one customer is caught at that customer (:mod:`stream.quarantine`): their
  event still counts, other customers go on, and repeated failures quarantine them;
- Redis or the alerts topic being unavailable stalls processing (retried with backoff, counted)
  rather than losing events; any other failure dead-letters the event as ``processing_error``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple, TypeVar

from prometheus_client import Counter, Histogram

from alerts.model import Alert
from rules.base import EvidenceValue, Finding, Mode, RuleBase
from rules.context import EvaluationContext
from rules.evaluation import customer_context, findings_in, next_due_in
from rules.ruleset import RuleSet
from rules.state import CustomerState, epoch_ms
from stream.alert_claims import AlertClaims
from stream.contracts import AlertPublisher, DeadLetterSink, SourceRecord, WindowStore
from stream.decoding import DecodePolicy, Rejection, decode_event
from stream.due_index import DueIndex
from stream.evaluation_queue import EvaluationQueue, PendingLedger, Trigger
from stream.events import EventBase, InteractionEvent
from stream.metrics import Metrics
from stream.progress import InputProgress
from stream.quarantine import Quarantine
from stream.retrying import PUBLISH_ERRORS as _PUBLISH_ERRORS
from stream.retrying import STORE_ERRORS as _STORE_ERRORS
from stream.retrying import retry_unavailable
from stream.windows.store import OpenAlert, UpdateOutcome, WindowUpdate

log = logging.getLogger("churnwatch.processor")

DUE_TRIGGER = "churnwatch.due"
"""The trigger topic of a judgement made by the due scan (no event triggered it: time did)."""
DUE_SCAN_LIMIT = 1000
"""Customers claimed per partition and scan; more due wait for the next scan."""

T = TypeVar("T")
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _TopicChildren(NamedTuple):
    consumed: Counter
    processing: Histogram
    age: Histogram


class _RulesOf(NamedTuple):
    rule_set: RuleSet
    rules: tuple[RuleBase, ...]
    """The enabled rules."""
    evaluation_counters: tuple[Counter, ...]
    """``rule_evaluations`` of each enabled rule."""
    resolvers: dict[tuple[str, str | None], dict[str, RuleBase]]
    """(activity, interaction kind) -> the active rules an event of it resolves, by id (filled as met)."""


Judgement = tuple[Trigger, datetime, Callable[[], CustomerState]]
"""A customer to judge, at which moment, and their state (decoded, or raising, when called)."""


def _given(state: CustomerState | Exception) -> CustomerState:
    """A state read for a judgement, or the error reading it gave (raised as the judgement's)."""
    if isinstance(state, Exception):
        raise state
    return state


Decoded = EventBase | Rejection | Exception
"""A record decoded: an event, a rejection (dead-lettered), or the unexpected error decoding raised."""


@dataclass(eq=False)
class StartedBatch:
    """A batch whose records are decoded and whose window fold is sent or ready to be
    (:meth:`EventProcessor.start_batch`, :meth:`EventProcessor.process_batch`)."""

    records: Sequence[SourceRecord]
    decoded: list[Decoded]
    folded: Awaitable[list[WindowUpdate]]
    """A task already sent (started ahead), or the coroutine :meth:`EventProcessor.finish_batch` awaits."""
    started: float
    """``time.perf_counter()`` at the start, for the batch's processing time."""


async def _settled(folded: Awaitable[list[WindowUpdate]]) -> None:
    """Wait for a started fold to end, however it ends; close one never started."""
    if isinstance(folded, asyncio.Future):
        await asyncio.wait([folded])
    elif isinstance(folded, Coroutine):
        folded.close()


class EventProcessor:
    def __init__(
        self,
        *,
        stream_kinds: dict[str, str],
        store: WindowStore,
        rules: Callable[[], RuleSet],
        publisher: AlertPublisher,
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        decode_policy: DecodePolicy,
        pending: PendingLedger,
        quarantine: Quarantine,
        due: DueIndex,
        clock: Clock = _utcnow,
        store_retry_max_seconds: float = 5.0,
        alert_max_lag: timedelta | None = None,
        progress: InputProgress | None = None,
        max_defer: timedelta = timedelta(seconds=30),
        evaluation_delay: timedelta = timedelta(0),
    ) -> None:
        """``stream_kinds`` maps a topic name to its event kind (purchase, interaction, feedback);
        ``rules`` returns the active rule set (it may be swapped between events).
        ``alert_max_lag``: findings evaluated at an event time further behind the wall clock than
        this are counted but not alerted (a replay of old history must not page anyone today);
        None alerts at any age (backtests).
        ``progress`` defers rule evaluation while another input topic is still behind (see
        :mod:`stream.progress`); None evaluates at once (a single input, or tests). A deferred
        evaluation runs at the latest ``max_defer`` later (see :meth:`sweep_deferred`).
        ``evaluation_delay`` holds every evaluation that long, so that events of one customer
        produced together on different topics are judged together."""
        self._kinds = stream_kinds
        self._store = store
        self._rules = rules
        self._publisher = publisher
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._policy = decode_policy
        self._clock = clock
        self._store_retry_max = store_retry_max_seconds
        self._alert_max_lag = alert_max_lag
        self._progress = progress
        self._quarantine = quarantine
        self._due = due
        self._broken_rules: set[str] = set()
        self._queue = EvaluationQueue(
            pending,
            metrics,
            progress=progress,
            delay_seconds=evaluation_delay.total_seconds(),
            max_wait_seconds=max_defer.total_seconds(),
        )
        self._lock = asyncio.Lock()
        self._due_moments: dict[tuple[int, str], datetime | None] = {}
        """Due moments set by the judgements since the last :meth:`_write_due_moments`."""
        self._judged_by: _RulesOf | None = None
        """The enabled rules of the last rule set seen, and what is derived from them (see :meth:`_enabled`)."""
        self._topic_children: dict[tuple[str, str], _TopicChildren] = {}
        self._alert_claims = AlertClaims(store, publisher, metrics, clock=clock, retrying=self._retrying)

    async def process(self, record: SourceRecord) -> UpdateOutcome | None:
        """Handle one record: a batch of one (see :meth:`process_batch`)."""
        return (await self.process_batch([record]))[0]

    async def process_batch(self, records: Sequence[SourceRecord]) -> list[UpdateOutcome | None]:
        """Handle ``records`` in order; return each one's window outcome, or None if it was dead-lettered."""
        decoded, fold = self._decode(records, after=None)
        return await self.finish_batch(StartedBatch(records, decoded, fold, time.perf_counter()))

    def start_batch(self, records: Sequence[SourceRecord], *, after: StartedBatch | None) -> StartedBatch:
        """Decode ``records`` and send their window fold to the store, without waiting for it: the
        worker judges the previous batch (:meth:`finish_batch`) while Redis folds this one. ``after``:
        the batch started before, whose fold must come first (a customer's events fold in order)."""
        decoded, fold = self._decode(records, after=after)
        return StartedBatch(records, decoded, asyncio.create_task(fold, name="churnwatch.fold"), time.perf_counter())

    def _decode(
        self, records: Sequence[SourceRecord], *, after: StartedBatch | None
    ) -> tuple[list[Decoded], Coroutine[Any, Any, list[WindowUpdate]]]:
        """Each record decoded (an unexpected error kept as such, for :meth:`finish_batch`'s fallback)
        and the coroutine that folds the valid ones."""
        decoded: list[Decoded] = []
        now = self._clock()  # once a batch, for the future-skew check
        for r in records:
            try:
                decoded.append(decode_event(self._kinds[r.topic], r.key, r.value, now=now, policy=self._policy))
            except Exception as exc:  # a bug, not a bad message: this batch is redone one record at a time
                decoded.append(exc)
        events = [d for d in decoded if isinstance(d, EventBase)]

        async def fold() -> list[WindowUpdate]:
            if after is not None:
                await _settled(after.folded)  # its failure is its own batch's to handle
            return await self._retrying("apply", partial(self._store.apply_batch, events)) if events else []

        return decoded, fold()

    async def finish_batch(self, batch: StartedBatch) -> list[UpdateOutcome | None]:
        """Wait for ``batch``'s fold, then resolve, judge and write its due moments; return each
        record's window outcome, or None if it was dead-lettered.

        A batch that breaks in an unexpected way is done again one record at a time (an event applied
        twice counts once, an alert claimed twice is sent once), so that only the record that breaks
        is dead-lettered, as ``processing_error``, rather than crashing the worker and stalling its
        partition.
        """
        records = batch.records
        try:
            async with self._lock:  # one batch, sweep or scan at a time: those run from timers
                return await self._finish_batch(batch)
        except Exception as exc:
            await _settled(batch.folded)  # no fold of these records still running while they are redone
            if len(records) > 1:
                log.exception("a batch of %d records failed; processing them one at a time", len(records))
                return [outcome for record in records for outcome in await self.process_batch([record])]
            record = records[0]
            log.exception("processing %s[%d]@%d failed", record.topic, record.partition, record.offset)
            await self._reject(record, "processing_error", f"{type(exc).__name__}: {exc}")
            return [None]

    async def _reject(self, record: SourceRecord, reason: str, detail: str) -> None:
        """Dead-letter ``record``; a broker that is down stalls here, so no offset passes a message
        that is in no topic."""
        dead_letter = partial(self._dead_letters.dead_letter, record, reason, detail)
        await self._retrying("deadletter", dead_letter, retry_on=_PUBLISH_ERRORS)
        self._metrics.deadletters.labels(topic=record.topic, reason=reason).inc()
        self._metrics.events_consumed.labels(topic=record.topic, outcome="invalid").inc()
        log.warning("dead-lettered %s[%d]@%d: %s: %s", record.topic, record.partition, record.offset, reason, detail)

    async def _finish_batch(self, batch: StartedBatch) -> list[UpdateOutcome | None]:
        records = batch.records
        outcomes: list[UpdateOutcome | None] = [None] * len(records)
        valid: list[tuple[int, EventBase]] = []
        broken = next((d for d in batch.decoded if isinstance(d, Exception)), None)
        if broken is not None:
            raise broken
        for n, (record, decoded) in enumerate(zip(records, batch.decoded, strict=True)):
            assert not isinstance(decoded, Exception)
            if self._progress is not None:  # now, not at the start: this batch is the one being judged
                valid_time = None if isinstance(decoded, Rejection) else decoded.occurred_at
                self._progress.observe(record.topic, record.partition, record.offset, valid_time)
            if isinstance(decoded, Rejection):
                await self._reject(record, decoded.reason.value, decoded.detail)
            else:
                valid.append((n, decoded))
        updates = await batch.folded

        counted: dict[str, tuple[SourceRecord, EventBase, WindowUpdate]] = {}
        """Each customer's last event of the batch that counted (not late: its update carries the state);
        a duplicate counts here: if its alert was claimed but never confirmed published (a crash in
        between), judging it publishes it."""
        returns: list[tuple[EventBase, str]] = []  # every counted event, in arrival order: each return's own time
        for (n, event), update in zip(valid, updates, strict=True):
            record = records[n]
            outcomes[n] = update.outcome
            if update.outcome is not UpdateOutcome.LATE:
                counted[event.customer_id] = (record, event, update)
                returns.append((event, record.topic))
        await self._resolve_returns(returns, {cid: update for cid, (_, _, update) in counted.items()})
        waiting: list[tuple[Trigger, datetime]] = []
        judged: list[Judgement] = []
        for customer_id, (record, event, update) in counted.items():
            trigger = Trigger(customer_id, event.event_id, record.topic, record.partition)
            self._judge_now_or_queue(trigger, update, judged, waiting)
        await self._count_outcomes(judged, await self._judge_all(judged), "event")  # their events counted either way
        if waiting:
            await self._retrying("queue", partial(self._queue.add, waiting))
        for partition in sorted({record.partition for record in records}):
            await self._evaluate_due(partition)
        await self._write_due_moments()

        elapsed = time.perf_counter() - batch.started
        self._metrics.batch_processing.observe(elapsed)
        self._metrics.batch_events.observe(len(records))
        now = self._clock()
        for (n, event), update in zip(valid, updates, strict=True):
            children = self._children(records[n].topic, update.outcome.value)
            children.consumed.inc()
            children.processing.observe(elapsed)
            children.age.observe(max(0.0, (now - event.occurred_at).total_seconds()))
        return outcomes

    def _children(self, topic: str, outcome: str) -> _TopicChildren:
        """The metric children an event of ``topic`` with ``outcome`` updates (``labels()`` looked up once)."""
        children = self._topic_children.get((topic, outcome))
        if children is None:
            metrics = self._metrics
            children = self._topic_children[(topic, outcome)] = _TopicChildren(
                metrics.events_consumed.labels(topic=topic, outcome=outcome),
                metrics.event_processing.labels(topic=topic),
                metrics.event_age.labels(topic=topic),
            )
        return children

    def _enabled(self) -> _RulesOf:
        """The active rule set's enabled rules, with their metric children and which rules each kind of
        event resolves, derived again only when the set is swapped (by identity)."""
        rule_set = self._rules()
        judged_by = self._judged_by
        if judged_by is None or judged_by.rule_set is not rule_set:
            enabled = rule_set.enabled
            counters = tuple(self._metrics.rule_evaluations.labels(rule=rule.id) for rule in enabled)
            judged_by = self._judged_by = _RulesOf(rule_set, enabled, counters, {})
        return judged_by

    def _judge_now_or_queue(
        self,
        trigger: Trigger,
        update: WindowUpdate,
        judged: list[Judgement],
        waiting: list[tuple[Trigger, datetime]],
    ) -> None:
        """Append the customer to ``judged`` (judged with the batch's others) or to ``waiting``
        (queued by the caller, for the batch)."""
        if self._quarantine.holds(trigger.customer_id):
            return
        watermark = update.watermark
        if watermark is None:
            return
        if self._queue.must_wait(trigger, watermark):
            waiting.append((trigger, watermark))
            return
        judged.append((trigger, watermark, lambda: update.state))  # decoded only when judged

    async def _judge_all(self, judgements: Sequence[Judgement]) -> dict[str, Exception]:
        """Judge each customer at its moment, then claim and publish what fired for all of them
        together (:mod:`stream.alert_claims`); return the customers whose judgement or alerts failed,
        with the error. A failed customer's due moment is not written: a due scan's lease on them
        stays, so they are judged again once it runs out."""
        failed: dict[str, Exception] = {}
        found: list[tuple[Finding, Trigger]] = []
        for trigger, now, state in judgements:
            try:
                found += self._judge(trigger, now, state())
            except Exception as exc:  # this customer's failure: the others go on
                failed[trigger.customer_id] = exc
        for customer_id, error in (await self._alert_claims.alert(found)).items():
            failed.setdefault(customer_id, error)
        for trigger, _, _ in judgements:
            if trigger.customer_id in failed:
                self._due_moments.pop((trigger.partition, trigger.customer_id), None)
        return failed

    async def _count_outcomes(
        self, judgements: Sequence[Judgement], failed: Mapping[str, Exception], stage: str
    ) -> None:
        """Each judged customer's failure counted towards their quarantine, or their success noted."""
        for trigger, _, _ in judgements:
            if (error := failed.get(trigger.customer_id)) is not None:
                await self._retrying("quarantine", partial(self._quarantine.failed, trigger.customer_id, stage, error))
            else:
                self._quarantine.succeeded(trigger.customer_id)

    def _resolvers(self, event: EventBase, topic: str) -> dict[str, RuleBase]:
        """The active rules an event of this topic (and interaction kind) resolves, by id."""
        kind = event.counted_kind if isinstance(event, InteractionEvent) else None
        judged_by, activity = self._enabled(), self._kinds[topic]
        rules = judged_by.resolvers.get((activity, kind))
        if rules is None:
            rules = judged_by.resolvers[(activity, kind)] = {
                rule.id: rule
                for rule in judged_by.rules
                if rule.mode is Mode.ACTIVE and rule.resolved_by(activity, kind)
            }
        return rules

    async def _resolve_returns(
        self, returns: Sequence[tuple[EventBase, str]], states: Mapping[str, WindowUpdate]
    ) -> None:
        """Customers who come back resolve their open absence alerts (those sent before their event):
        one resolution per alert, published at least once under a stable id, for the first of the
        batch's events (arrival order) that resolves it. A redelivered event publishes again only what
        was never confirmed. The batch's lookups are one round trip."""
        asked = [(event, topic, rules) for event, topic in returns if (rules := self._resolvers(event, topic))]
        if not asked:
            return
        lookups = [(event.customer_id, event.occurred_at, list(rules)) for event, _, rules in asked]
        try:
            found = await self._retrying("resolve", partial(self._store.resolve_open_alerts_many, lookups))
        except Exception as exc:  # their events counted; their next ones try again
            for cid in dict.fromkeys(event.customer_id for event, _, _ in asked):
                await self._retrying("quarantine", partial(self._quarantine.failed, cid, "resolve", exc))
            return
        published: set[tuple[str, str, str]] = set()
        for (event, topic, rules), open_alerts in zip(asked, found, strict=True):
            cid = event.customer_id
            try:
                for open_alert in open_alerts:
                    if (cid, open_alert.rule_id, open_alert.claim_key) in published:
                        continue  # pending since an earlier event of this batch resolved it
                    published.add((cid, open_alert.rule_id, open_alert.claim_key))
                    state = states[cid].state  # after the batch, at their latest event, as they are judged next
                    context = customer_context(EvaluationContext(state, state.watermark or event.occurred_at))
                    await self._publish_resolution(event, topic, rules[open_alert.rule_id], open_alert, context)
            except Exception as exc:  # the event counted; the next one of this customer tries again
                await self._retrying("quarantine", partial(self._quarantine.failed, cid, "resolve", exc))

    async def _publish_resolution(
        self,
        event: EventBase,
        topic: str,
        rule: RuleBase,
        open_alert: OpenAlert,
        customer: dict[str, EvidenceValue],
    ) -> None:
        """``customer``: the figures a firing alert carries (``CUSTOMER_CONTEXT``), at the customer's
        return, so a route or silence on them (a VIP channel) takes the resolution too."""
        cid = event.customer_id
        resolution = Alert.resolution(
            customer_id=cid,
            rule_id=open_alert.rule_id,
            claim_key=open_alert.claim_key,
            severity=rule.severity,
            alerted_at=open_alert.alerted_at,
            returned_at=event.occurred_at,
            trigger_event_id=event.event_id,
            trigger_topic=topic,
            detected_at=self._clock(),
            customer=customer,
        )
        await self._retrying("publish", partial(self._publisher.publish, resolution), retry_on=_PUBLISH_ERRORS)
        confirm = partial(self._store.confirm_resolved, cid, open_alert.rule_id, open_alert.claim_key)
        await self._retrying("confirm", confirm)
        self._metrics.alerts_resolved.labels(rule=open_alert.rule_id).inc()

    async def sweep_deferred(self) -> None:
        """Run the waiting evaluations that are due, on every partition (called from a timer, so a
        quiet partition does not keep them waiting); first, those a previous worker left behind.
        Never raises: a timer that raised would stop the worker."""
        try:
            async with self._lock:
                await self._retrying("quarantine", self._quarantine.refresh)
                await self._retrying("recover", self._queue.recover)
                for partition in self._queue.partitions():
                    await self._evaluate_due(partition)
                await self._write_due_moments()
        except Exception:
            self._metrics.evaluation_errors.labels(stage="sweep").inc()
            log.exception("sweep of waiting evaluations failed; trying again at the next one")

    async def _evaluate_due(self, partition: int) -> None:
        """Evaluate the customers whose evaluation waited, on their state as it is now. Their own
        events may all have been read already, so nothing else would evaluate them. One customer's
        failure puts their evaluation back (tried again at the next sweep, up to the quarantine)."""
        taken = self._queue.take_due(partition)
        due = [w for w in taken if not self._quarantine.holds(w.trigger.customer_id)]
        done = [w.trigger for w in taken if self._quarantine.holds(w.trigger.customer_id)]  # not judged, cleared
        try:  # every state in one round trip
            states = await self._retrying("read", partial(self._store.read_many, [w.trigger.customer_id for w in due]))
        except Exception:
            for waiting in due:
                self._queue.put_back(waiting)
            raise
        failed: dict[str, Exception] = {}
        judged: list[Judgement] = []
        for waiting, state in zip(due, states, strict=True):
            if isinstance(state, Exception):  # unreadable: this customer's failure
                failed[waiting.trigger.customer_id] = state
            elif state.watermark is not None:  # None: forgotten (idle ttl), nothing to judge
                judged.append((waiting.trigger, state.watermark, partial(_given, state)))
        failed |= await self._judge_all(judged)
        for waiting in due:
            trigger = waiting.trigger
            if (error := failed.get(trigger.customer_id)) is not None:
                quarantined = partial(self._quarantine.failed, trigger.customer_id, "deferred", error)
                if not await self._retrying("quarantine", quarantined):
                    self._queue.put_back(waiting)
                    continue
            else:
                self._quarantine.succeeded(trigger.customer_id)
            done.append(trigger)
        await self._retrying("queue", partial(self._queue.done, done))

    async def scan_due(self, partitions: Iterable[int], *, limit: int = DUE_SCAN_LIMIT) -> int:
        """Judge the customers of ``partitions`` whose due moment has passed (a silence crossed a
        threshold), with the clock's time as "now"; return how many. Called from a timer, so it
        never raises: one customer's failure is theirs (quarantine), a scan's is counted and the
        next scan tries again."""
        now = self._clock()
        judged = 0
        try:
            async with self._lock:
                for partition in partitions:
                    claim = partial(self._due.claim_due, partition, now, limit)
                    customer_ids = await self._retrying("due", claim)
                    await self._judge_due(partition, customer_ids, now)
                    self._metrics.due_judged.inc(len(customer_ids))
                    judged += len(customer_ids)
                    await self._write_due_moments()  # per partition: a lease outlives no scan of its partition
        except Exception:
            self._metrics.evaluation_errors.labels(stage="scan").inc()
            log.exception("scan of due customers failed; trying again at the next one")
        return judged

    async def _judge_due(self, partition: int, customer_ids: Sequence[str], now: datetime) -> None:
        """Judge these customers of ``partition`` at ``now``, their states read in one round trip. A
        customer whose judgement fails is left leased: judged again once the lease runs out, up to
        the quarantine; a read that fails leaves them all leased."""
        held = [c for c in customer_ids if self._quarantine.holds(c)]
        for customer_id in held:
            self._due_moments[partition, customer_id] = None
        judged = [c for c in customer_ids if not self._quarantine.holds(c)]
        states = await self._retrying("read", partial(self._store.read_many, judged))
        judgements: list[Judgement] = []
        for customer_id, state in zip(judged, states, strict=True):
            if not isinstance(state, Exception) and state.watermark is None:  # forgotten (idle ttl)
                self._due_moments[partition, customer_id] = None
                continue
            trigger = Trigger(customer_id, f"due@{epoch_ms(now)}", DUE_TRIGGER, partition)
            judgements.append((trigger, now, partial(_given, state)))
        await self._count_outcomes(judgements, await self._judge_all(judgements), "due")

    def _judge(self, trigger: Trigger, now: datetime, state: CustomerState) -> list[tuple[Finding, Trigger]]:
        """What fires at ``now`` (to claim and publish, with the others judged alongside), and when
        the customer must next be judged (written with the others by :meth:`_write_due_moments`);
        both halves in one context, so what the rules derive from the state is derived once."""
        ctx = EvaluationContext(state, now)
        found = self._findings(trigger, ctx)
        on_rule_error = partial(self._rule_failed, trigger.customer_id)
        due = next_due_in(self._enabled().rules, ctx, on_rule_error=on_rule_error)
        self._due_moments[trigger.partition, trigger.customer_id] = due
        return found

    async def _write_due_moments(self) -> None:
        """One round trip for every due moment noted since the last call. Before a batch is acked or a
        scan's lease runs out: a crash before it leaves the events unacked (redelivered, judged again)
        or the lease to expire (judged again), so no customer is left without a due moment."""
        moments, self._due_moments = self._due_moments, {}
        if moments:
            await self._retrying("due", partial(self._due.schedule_many, moments))

    def _rule_failed(self, customer_id: str, rule: RuleBase, error: Exception) -> None:
        """One rule raising for one customer: the other rules still judge them. The traceback is
        logged once per rule, so a broken rule does not flood the log with one per customer."""
        self._metrics.evaluation_errors.labels(stage="rule").inc()
        first = rule.id not in self._broken_rules
        self._broken_rules.add(rule.id)
        log.error(
            "rule %s failed for customer %r: %s: %s", rule.id, customer_id, type(error).__name__, error,
            exc_info=error if first else None,
        )  # fmt: skip

    def _findings(self, trigger: Trigger, ctx: EvaluationContext) -> list[tuple[Finding, Trigger]]:
        judged_by = self._enabled()
        for counter in judged_by.evaluation_counters:
            counter.inc()
        stale = self._alert_max_lag is not None and self._clock() - ctx.now > self._alert_max_lag
        on_rule_error = partial(self._rule_failed, trigger.customer_id)
        found = []
        for finding in findings_in(judged_by.rules, ctx, on_rule_error=on_rule_error):
            if stale:
                self._metrics.alerts_suppressed.labels(rule=finding.rule_id, reason="stale").inc()
            else:
                found.append((finding, trigger))
        return found

    async def _retrying(
        self,
        operation: str,
        call: Callable[[], Awaitable[T]],
        retry_on: tuple[type[BaseException], ...] = _STORE_ERRORS,
    ) -> T:
        """Retry an unavailable Redis or Kafka with capped backoff until it answers: stall, never skip an event."""
        return await retry_unavailable(
            operation, call, metrics=self._metrics, retry_on=retry_on, max_wait=self._store_retry_max, log=log
        )
