"""Flap damping: fire, resolve, fire again within a route's ``flap_span`` stays one open alert.

A customer who buys once after an absence alert and then goes quiet again would otherwise give
support three messages (alert, resolved, a new alert) about one story. On a route with a
``flap_span``:

- a resolution is **held** for the span (durably, in Redis: :class:`HeldResolutions`) instead of
  sent (outcome ``resolution_held``);
- a firing of the same customer and rule while it is held **cancels** it and is not sent either
  (outcome ``flapping``): the first alert is still open, and still the one support has; the new
  alert is remembered as part of that first alert's episode;
- a resolution held for the whole span goes out then (the worker's timer). A resolution of an alert
  that was absorbed into an earlier one names that earlier alert, so the Slack Web API receiver
  updates the first message (and replies in its thread), which is the one support saw.

A held resolution is claimed with a lease before it is sent and deleted after, so a crash in
between sends it once more (same ``alert_id``, the receivers' idempotency key), never not at all.
Per receiver: one receiver's span does not hold another's. The decisions are the pure functions
here; the store is behind the Protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from alerts.model import Alert
from alerts.nflog import DeliveryLog
from alerts.notifier import Notifier
from alerts.notify import DeliveryOutcome, OutcomeCallback, RetryingSender, SinkOutcome, report_outcome
from alerts.routing import RouteMatch

log = logging.getLogger("churnwatch.delivery")

LEASE = timedelta(minutes=5)
"""How long a claimed resolution is another worker's to send: longer than any one send."""
EPISODE_KEPT = timedelta(days=30)
"""How long an absorbed alert remembers the alert whose episode it joined."""


@dataclass(frozen=True)
class Held:
    """A resolution waiting out the span, and when it goes out."""

    receiver: str
    resolution: Alert
    release_at: datetime


def hold(receiver: str, resolution: Alert, span: timedelta, now: datetime, original: str | None) -> Held:
    """The resolution to hold; ``original``: the first alert of the episode the resolved alert joined
    (a flap absorbed it), which the resolution then names, so the first message is the one updated."""
    if original is not None and original != resolution.resolves:
        resolution = resolution.model_copy(update={"resolves": original})
    return Held(receiver, resolution, now + span)


class HeldResolutions(Protocol):
    """Held resolutions per receiver, customer and rule (Redis: :mod:`stream.held_resolutions`)."""

    async def hold(self, held: Held) -> None:
        """Durable once this returns; a resolution already held for the same receiver, customer and
        rule is kept (a redelivered record does not postpone it)."""
        ...

    async def cancel(self, receiver: str, customer_id: str, rule_id: str) -> Alert | None:
        """Take the held resolution of this customer and rule out, atomically; None if none was held."""
        ...

    async def remember_episode(self, receiver: str, alert_id: str, original: str) -> None: ...

    async def original_of(self, receiver: str, alert_id: str) -> str | None: ...

    async def claim_due(self, now: datetime, lease: timedelta) -> list[Held]:
        """Held resolutions whose span has passed, each leased to this caller for ``lease``."""
        ...

    async def release(self, held: Held) -> None:
        """Sent: forget it (only this resolution: a newer one held meanwhile stays)."""
        ...


class FlapStage:
    """The delivery path's side: hold resolutions, absorb re-firings (routes with ``flap_span``)."""

    def __init__(self, store: HeldResolutions, delivery_log: DeliveryLog, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._log = delivery_log
        self._clock = clock

    async def damp(self, match: RouteMatch, alert: Alert) -> SinkOutcome | None:
        """The outcome when flap damping takes the record for this receiver; None: send it on."""
        span = match.settings.flap_span
        if span <= timedelta(0):
            return None
        receiver = match.receiver
        if alert.status == "resolved":
            if alert.resolves is None:
                return None
            original = await self._store.original_of(receiver, alert.resolves)
            await self._store.hold(hold(receiver, alert, span, self._clock(), original))
            await self._mark(alert, receiver)
            return SinkOutcome(receiver, DeliveryOutcome.RESOLUTION_HELD, 0.0, 0)
        cancelled = await self._store.cancel(receiver, alert.customer_id, alert.rule_id)
        if cancelled is None:
            return None
        root = cancelled.resolves  # the episode's first alert: hold() made the resolution name it
        if root is not None:
            await self._store.remember_episode(receiver, alert.alert_id, root)
        await self._mark(alert, receiver)
        log.info(
            "alert %s (customer %s, rule %s) fired again within %s's flap span: resolution %s cancelled, "
            "alert %s stays open; not sent",
            alert.alert_id,
            alert.customer_id,
            alert.rule_id,
            receiver,
            cancelled.alert_id,
            root,
        )
        return SinkOutcome(receiver, DeliveryOutcome.FLAPPING, 0.0, 0)

    async def _mark(self, alert: Alert, receiver: str) -> None:
        try:  # a redelivered record is then a duplicate, not held or absorbed twice
            await self._log.mark_delivered(alert, receiver)
        except Exception:
            log.warning("alert %s: flap damping done for %s, the delivery log not updated", alert.alert_id, receiver)


class ResolutionReleaser:
    """The timer's side: sends the resolutions whose span passed without a re-fire."""

    def __init__(
        self,
        store: HeldResolutions,
        notifiers: Mapping[str, Notifier],
        sender: RetryingSender,
        *,
        clock: Callable[[], datetime],
        on_outcome: OutcomeCallback | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        """``lease``: longer than one send with all its retries (:func:`alerts.digests.lock_ttl`)."""
        self._lease = lease
        self._store = store
        self._notifiers = dict(notifiers)
        self._sender = sender
        self._clock = clock
        self._on_outcome = on_outcome

    async def release_due(self) -> list[SinkOutcome]:
        outcomes = []
        for held in await self._store.claim_due(self._clock(), self._lease):
            notifier = self._notifiers.get(held.receiver)
            if notifier is None:
                log.error(
                    "held resolution %s: receiver %s is not configured; kept", held.resolution.alert_id, held.receiver
                )
                continue
            outcome = await self._sender.send(
                notifier.name, f"resolution {held.resolution.alert_id}", _notify(notifier, held.resolution)
            )
            report_outcome(self._on_outcome, outcome.sink, outcome.outcome.value, outcome.seconds)
            if outcome.outcome is DeliveryOutcome.DELIVERED:
                await self._store.release(held)
            # else: the lease lapses and it is tried again (kept in Redis, never dropped)
            outcomes.append(outcome)
        return outcomes


def _notify(notifier: Notifier, alert: Alert) -> Callable[[], Awaitable[None]]:
    return lambda: notifier.notify(alert)
