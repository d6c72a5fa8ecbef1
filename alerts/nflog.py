"""The notification log stage: which receivers already have which alert (after Alertmanager's ``nflog/``).

An alert is marked only after its receiver accepted it, and looked up before anything is sent, so a
record read again after a crash reaches no receiver twice, except the one whose request was in
flight (sent, not yet marked): it gets the alert once more, under the same ``alert_id``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from alerts.model import Alert


class DeliveryLog(Protocol):
    """The notification log: which sinks already have which alert, so redeliveries are not resent."""

    async def already_delivered(self, alert: Alert, sink: str) -> bool: ...

    async def mark_delivered(self, alert: Alert, sink: str) -> None: ...


class InMemoryDeliveryLog:
    """For tests and log-only runs: forgets on restart, and the oldest entries past ``max_entries``."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._delivered: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def already_delivered(self, alert: Alert, sink: str) -> bool:
        return (alert.alert_id, sink) in self._delivered

    async def mark_delivered(self, alert: Alert, sink: str) -> None:
        self._delivered[(alert.alert_id, sink)] = None
        self._delivered.move_to_end((alert.alert_id, sink))
        while len(self._delivered) > self._max_entries:
            self._delivered.popitem(last=False)
