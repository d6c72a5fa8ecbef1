"""Evaluations that wait: for the customer's other inputs to catch up (:mod:`stream.progress`), or
for ``evaluation_delay`` so that a burst of one customer's events is judged once, on all of it.

A waiting evaluation is also recorded in Redis (an index of customers and what triggered them), and
cleared once it ran: a worker that crashes with evaluations waiting leaves them there, and the next
worker runs them when it starts. Without that, the events behind them, already committed, would
never be judged again unless the customer sent another one.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from stream.metrics import Metrics
from stream.progress import InputProgress

log = logging.getLogger("churnwatch.evaluation_queue")

MAX_WAITING_PER_PARTITION = 100_000


@dataclass(frozen=True)
class Trigger:
    """The event an evaluation runs for: its id keys the alert claim, its topic goes on the alert."""

    customer_id: str
    event_id: str
    topic: str
    partition: int


@dataclass(frozen=True)
class Waiting:
    trigger: Trigger
    watermark: datetime | None
    """The customer's event time when it was queued (None for one recovered after a restart)."""
    since: float
    """Monotonic time it was first queued."""


class PendingLedger(Protocol):
    """Where waiting evaluations survive a crash (Redis, in production)."""

    async def mark_pending(self, triggers: Sequence[Trigger]) -> None: ...

    async def clear_pending(self, customer_ids: Sequence[str]) -> None: ...

    async def load_pending(self, limit: int) -> list[Trigger]: ...


class EvaluationQueue:
    def __init__(
        self,
        ledger: PendingLedger,
        metrics: Metrics,
        *,
        progress: InputProgress | None,
        delay_seconds: float,
        max_wait_seconds: float,
    ) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._progress = progress
        self._delay = delay_seconds
        self._max_wait = max_wait_seconds
        self._waiting: defaultdict[int, dict[str, Waiting]] = defaultdict(dict)
        self._recovered = False

    def must_wait(self, trigger: Trigger, watermark: datetime) -> bool:
        """Whether this evaluation has to queue (and count why)."""
        behind = [] if self._progress is None else self._progress.lagging(trigger.partition, watermark)
        if behind:
            self._metrics.evaluations_deferred.labels(waiting_for=behind[0]).inc()
        return bool(behind) or self._delay > 0 or trigger.customer_id in self._waiting[trigger.partition]

    async def add(self, entries: Sequence[tuple[Trigger, datetime]]) -> None:
        """Queue (or refresh) each customer's evaluation; one per customer, run on the latest state.
        The customers not waiting yet are recorded in the ledger first, in one call: an evaluation
        is never waiting here without being recorded there."""
        new = [t for t, _ in entries if t.customer_id not in self._waiting[t.partition]]
        await self._ledger.mark_pending(new)
        now = time.monotonic()
        for trigger, watermark in entries:
            waiting = self._waiting[trigger.partition]
            queued = waiting.get(trigger.customer_id)
            waiting[trigger.customer_id] = Waiting(trigger, watermark, queued.since if queued else now)
            if len(waiting) > MAX_WAITING_PER_PARTITION:
                oldest = next(iter(waiting))  # dicts keep insertion order; it stays in the ledger
                del waiting[oldest]
                self._metrics.evaluations_deferred_dropped.inc()

    def partitions(self) -> list[int]:
        return [p for p, waiting in self._waiting.items() if waiting]

    def take_due(self, partition: int) -> list[Waiting]:
        """Remove and return the evaluations of ``partition`` that may run now: their delay has passed
        and the inputs have caught up with them, or they waited the longest allowed."""
        waiting = self._waiting.get(partition)
        if not waiting:
            return []
        complete_until = (
            datetime.max.replace(tzinfo=UTC) if self._progress is None else self._progress.complete_until(partition)
        )
        now = time.monotonic()
        due = []
        for entry in waiting.values():
            if now - entry.since < self._delay:
                continue
            caught_up = complete_until is not None and (entry.watermark is None or entry.watermark <= complete_until)
            if caught_up:
                due.append(entry)
            elif now - entry.since > self._max_wait:
                self._expired(entry)
                due.append(entry)
        for entry in due:
            del waiting[entry.trigger.customer_id]
        return due

    def put_back(self, entry: Waiting) -> None:
        """An evaluation taken by :meth:`take_due` that failed: due again at the next sweep."""
        self._waiting[entry.trigger.partition].setdefault(entry.trigger.customer_id, entry)

    def _expired(self, entry: Waiting) -> None:
        behind = [] if self._progress is None or entry.watermark is None else self._progress.lagging(
            entry.trigger.partition, entry.watermark
        )  # fmt: skip
        self._metrics.evaluations_deferred_expired.labels(waiting_for=behind[0] if behind else "?").inc()
        log.warning(
            "evaluation of customer %s waited %.0fs for %s; evaluating with what is there (%s)",
            entry.trigger.customer_id, self._max_wait, ", ".join(behind) or "?",
            self._progress.describe(entry.trigger.partition) if self._progress else "",
        )  # fmt: skip

    async def done(self, triggers: Sequence[Trigger]) -> None:
        """Clear the ledger's record of these evaluations (one call), except for a customer queued again meanwhile."""
        await self._ledger.clear_pending(
            [t.customer_id for t in triggers if t.customer_id not in self._waiting[t.partition]]
        )

    async def recover(self, limit: int = MAX_WAITING_PER_PARTITION) -> int:
        """Once, at start: queue the evaluations a previous worker left waiting."""
        if self._recovered:
            return 0
        self._recovered = True
        recovered = 0
        for trigger in await self._ledger.load_pending(limit):
            waiting = self._waiting[trigger.partition]
            if trigger.customer_id not in waiting:  # not one this worker queued itself meanwhile
                waiting[trigger.customer_id] = Waiting(trigger, None, time.monotonic() - self._delay)
                recovered += 1
        if recovered:
            log.warning("recovered %d evaluations left waiting by a previous worker", recovered)
        return recovered
