"""How far each input topic has been read, so rules are not evaluated on half-read data.

Kafka orders a partition, not several topics. A customer's purchases, interactions and feedback are
co-partitioned (same key, same partition count), but the worker reads the three topics at their own
pace: after downtime, a feedback event from today can be processed before the purchases of the last
three months, and the customer would look like they stopped buying. Kafka Streams solves this with
timestamp synchronisation; here, a rule evaluation at event time ``at`` for partition ``p`` waits
(is deferred) while another input's partition ``p`` still has unread messages *and* has only
reached an event time before ``at - tolerance``. The lagging input's own events trigger the
evaluation again once it catches up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

Highwater = Callable[[str, int], int | None]
"""(topic, partition) -> offset of the next message the broker will write, None if not fetched yet."""


@dataclass
class _Seen:
    next_offset: int
    stream_time: datetime | None


class InputProgress:
    def __init__(self, topics: Sequence[str], *, tolerance: timedelta, highwater: Highwater) -> None:
        self._topics = tuple(topics)
        self._tolerance = tolerance
        self._highwater = highwater
        self._seen: dict[tuple[str, int], _Seen] = {}

    def observe(self, topic: str, partition: int, offset: int, event_time: datetime | None) -> None:
        """Record that ``offset`` was processed (its event time, if it had a valid one)."""
        seen = self._seen.get((topic, partition))
        if seen is None:
            self._seen[(topic, partition)] = _Seen(offset + 1, event_time)
            return
        seen.next_offset = max(seen.next_offset, offset + 1)
        if event_time is not None and (seen.stream_time is None or event_time > seen.stream_time):
            seen.stream_time = event_time

    def complete_until(self, partition: int) -> datetime | None:
        """Up to which event time every input of ``partition`` is known to be read (None: not even the
        earliest; ``datetime.max`` when nothing is unread). ``lagging(p, at)`` is empty exactly when
        ``at <= complete_until(p)``; computed once, it checks many waiting evaluations cheaply."""
        until = datetime.max.replace(tzinfo=UTC)
        for topic in self._topics:
            highwater = self._highwater(topic, partition)
            seen = self._seen.get((topic, partition))
            if highwater is None:
                return None
            if seen is not None and seen.next_offset < highwater:
                if seen.stream_time is None:
                    return None
                until = min(until, seen.stream_time + self._tolerance)
        return until

    def lagging(self, partition: int, at: datetime) -> list[str]:
        """Input topics whose partition ``partition`` may still hold events from before ``at``."""
        behind = []
        for topic in self._topics:
            highwater = self._highwater(topic, partition)
            seen = self._seen.get((topic, partition))
            if highwater is None:
                behind.append(topic)  # not fetched yet: nothing is known about it
            elif (
                seen is not None
                and seen.next_offset < highwater
                and (seen.stream_time is None or seen.stream_time < at - self._tolerance)
            ):
                behind.append(topic)
        return behind

    def describe(self, partition: int) -> str:
        """Where each input of a partition stands (for logs)."""
        parts = []
        for topic in self._topics:
            seen = self._seen.get((topic, partition))
            parts.append(
                f"{topic}[{partition}] read to {seen.next_offset if seen else '-'} of "
                f"{self._highwater(topic, partition)}, at {seen.stream_time if seen else '-'}"
            )
        return "; ".join(parts)
