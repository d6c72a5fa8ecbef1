"""Test doubles for the processor's outbound roles (one module, no mock.patch).

The in-memory stores are real adapters (:mod:`stream.windows.memory_store`), and so are the collecting
sinks of a replay (:mod:`stream.replay`); the doubles here add failures on demand.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerts.model import Alert
from stream.contracts import SourceRecord
from stream.replay import ReplayDeadLetters, ReplayPublisher


@dataclass
class RecordingPublisher(ReplayPublisher):
    """The replay's collecting publisher (``alerts``), able to fail on demand."""

    fail_next: int = 0
    """Raise on the next N publishes, as a broker outage or a crash mid-publish would."""

    async def publish(self, alert: Alert) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("alerts topic unavailable")
        await super().publish(alert)


RecordingDeadLetters = ReplayDeadLetters
"""Collects ``(record, reason, detail)``: the replay's dead-letter sink, one implementation."""


@dataclass
class FlakyDeadLetters(RecordingDeadLetters):
    """Raises ``errors`` in order (a broker outage), then records."""

    errors: list[Exception] = field(default_factory=list)

    async def dead_letter(self, record: SourceRecord, reason: str, detail: str) -> None:
        if self.errors:
            raise self.errors.pop(0)
        await super().dead_letter(record, reason, detail)


@dataclass
class FlakyDeliveryLog:
    """An in-memory notification log whose lookups and marks raise the scripted errors first."""

    delivered: set[tuple[str, str]] = field(default_factory=set)
    lookup_errors: list[Exception] = field(default_factory=list)
    mark_errors: list[Exception] = field(default_factory=list)

    async def already_delivered(self, alert: Alert, sink: str) -> bool:
        if self.lookup_errors:
            raise self.lookup_errors.pop(0)
        return (alert.alert_id, sink) in self.delivered

    async def mark_delivered(self, alert: Alert, sink: str) -> None:
        if self.mark_errors:
            raise self.mark_errors.pop(0)
        self.delivered.add((alert.alert_id, sink))


@dataclass
class RecordingNotifier:
    """A sink that records what it got, or raises ``error`` on every call."""

    sink_name: str
    received: list[str] = field(default_factory=list)
    error: Exception | None = None

    @property
    def name(self) -> str:
        return self.sink_name

    async def notify(self, alert: Alert) -> None:
        if self.error is not None:
            raise self.error
        self.received.append(alert.alert_id)


@dataclass
class RecordingTopic:
    """Stands in for a faust topic: records each ``send`` and acknowledges it (at once, by default)."""

    sent: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(default_factory=list)

    acked: bool = True
    """False: the broker's acks wait until the test resolves ``pending``."""
    pending: list[asyncio.Future[None]] = field(default_factory=list)

    async def send(
        self,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        force: bool = False,
    ) -> asyncio.Future[None]:
        self.sent.append((key, value, headers or []))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.acked:
            done.set_result(None)
        else:
            self.pending.append(done)
        return done


@dataclass
class InMemoryOpenAlerts:
    """The open alerts per customer in memory (each open for ``lifetime`` after it was detected);
    calls raise the scripted ``errors`` first, as an unavailable Redis would."""

    lifetime: timedelta = timedelta(days=7)
    alerts: dict[str, dict[str, Alert]] = field(default_factory=dict)
    errors: list[Exception] = field(default_factory=list)

    def _fail(self) -> None:
        if self.errors:
            raise self.errors.pop(0)

    async def opened(self, alert: Alert) -> None:
        self._fail()
        self.alerts.setdefault(alert.customer_id, {})[alert.alert_id] = alert

    async def closed(self, resolution: Alert) -> None:
        self._fail()
        if resolution.resolves is not None:
            self.alerts.get(resolution.customer_id, {}).pop(resolution.resolves, None)

    async def open_of(self, customer_id: str, now: datetime) -> list[Alert]:
        self._fail()
        return [a for a in self.alerts.get(customer_id, {}).values() if a.detected_at + self.lifetime > now]
