"""Test doubles for the processor's outbound roles (one module, no mock.patch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from alerts.model import Alert
from stream.contracts import SourceRecord


@dataclass
class RecordingPublisher:
    alerts: list[Alert] = field(default_factory=list)
    fail_next: int = 0
    """Raise on the next N publishes, as a broker outage or a crash mid-publish would."""

    async def publish(self, alert: Alert) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("alerts topic unavailable")
        self.alerts.append(alert)


@dataclass
class RecordingDeadLetters:
    records: list[tuple[SourceRecord, str, str]] = field(default_factory=list)

    async def dead_letter(self, record: SourceRecord, reason: str, detail: str) -> None:
        self.records.append((record, reason, detail))
