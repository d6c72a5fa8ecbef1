"""The roles the event processor talks to, as narrow Protocols; adapters are named for the technology."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from alerts.cooldown import Claim, ClaimRequest, PublishedClaim
from alerts.model import Alert
from rules.state import CustomerState
from stream.events import EventBase
from stream.windows.store import OpenAlert, WindowUpdate


@dataclass(frozen=True)
class SourceRecord:
    """One Kafka message as it arrived: where it came from and its untouched bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class WindowStore(Protocol):
    async def apply_batch(self, events: Sequence[EventBase]) -> list[WindowUpdate]:
        """Fold each customer's ``events`` in order, each event once (a redelivery is a duplicate); at
        least the update of each customer's last event that was not late carries their state."""

    async def read(self, customer_id: str) -> CustomerState: ...

    async def read_many(self, customer_ids: Sequence[str]) -> list[CustomerState | Exception]:
        """Each customer's state, in the order asked (one round trip); a state that cannot be decoded
        comes back as its error, so one customer's broken state stays theirs."""

    async def claim_alerts(self, requests: Sequence[ClaimRequest]) -> list[Claim | Exception]:
        """Each request's claim (:func:`alerts.cooldown.decide_claim`, atomic per customer), in order,
        in one round trip; one that fails comes back as its error."""

    async def confirm_published_many(self, claims: Sequence[PublishedClaim]) -> None:
        """Mark each claim's alert published (only a claim still standing under its key); one round trip."""

    async def resolve_open_alerts_many(
        self, returns: Sequence[tuple[str, datetime, Sequence[str]]]
    ) -> list[list[OpenAlert]]:
        """For each (customer, returning event's time, rule ids) in order: their open alerts of those
        rules made before that time, marked resolved (pending until :meth:`confirm_resolved`), and any
        marked earlier but never confirmed; one round trip."""

    async def confirm_resolved(self, customer_id: str, rule_id: str, claim_key: str) -> None: ...


class AlertPublisher(Protocol):
    async def publish(self, alert: Alert) -> None:
        """Return only once the alert is durably on the alerts topic."""


class DeadLetterSink(Protocol):
    async def dead_letter(self, record: SourceRecord, reason: str, detail: str) -> None:
        """Keep the original bytes with the reason and the source position; return once durable."""
