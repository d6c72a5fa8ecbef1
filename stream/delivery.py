"""Delivering one record of the alerts topic: validate, dispatch to every sink, dead-letter what
cannot be delivered.

The guarantee: :meth:`AlertDelivery.handle` returns only once the alert reached every sink or is on
the dead-letter topic, so the agent never acknowledges (and faust never commits) past an alert that
is neither. To that end:

- Redis unavailable (the notification log) or Kafka unavailable (the dead-letter topic) stalls the
  alert where it is, retried with backoff and counted in ``churnwatch_dependency_errors_total``
  (operations ``delivery_lookup``, ``delivery_mark``, ``deadletter``), the same mechanism
  (:mod:`stream.retrying`) as the event processor's;
- the lookup comes before any send, so retrying it never sends twice; the mark comes after a sink
  accepted the alert and is retried on its own, so the alert is not sent again meanwhile. A mark that
  fails for another reason is logged and skipped by the dispatcher: the alert was delivered, and a
  later redelivery of the record would send it once more (receivers dedupe by ``alert_id``);
- any other failure while dispatching is not an outage (a bug, Redis refusing a command): the alert is
  dead-lettered as ``delivery_error`` rather than crashing the agent;
- silences are read before anything is sent (operation ``silence_lookup``, stalled the same way: an
  alert is never sent because its silences could not be read, nor dropped); a silenced alert or
  resolution reaches no sink, is counted in ``churnwatch_alerts_silenced_total{rule,status}`` and
  is acknowledged like a delivered one. Recording it against its silence (``silence_record``)
  stalls on an outage too; a refusal of another kind is logged and the alert still counts silenced;
- every record's alert is tracked open or closed (operation ``open_alert_mark``, stalled the same
  way), and with the routes file's ``inhibit_rules`` the customer's open alerts are read before
  anything is sent (``open_alert_lookup``); an inhibited alert or resolution reaches no sink, is
  counted in ``churnwatch_alerts_inhibited_total{rule,status}`` and acknowledged;
- a record every sink now has is timed from its event time to then
  (``churnwatch_alert_event_to_delivered_seconds``); one every sink had already is not timed again;
- with routes (``CHURNWATCH_ROUTES_FILE``) an alert goes only to the receivers its routes name (see
  :mod:`alerts.dispatch`); "every sink" above means every sink it is routed to;
- on a ``digest`` route, or over a route's ``max_alerts_per_hour``, "has the alert" means the alert
  is in its group in Redis (operation ``group_add``, stalled the same way), from where
  :meth:`AlertDelivery.flush_groups` (the worker's timer) sends it in a digest (:mod:`alerts.digests`);
  on a route with a ``flap_span`` a resolution is held there instead (``held_resolution``) and sent by
  the same timer after the span (:mod:`alerts.flapping`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from pydantic import ValidationError

from alerts.digests import DigestFlusher, lock_ttl
from alerts.dispatch import AlertDispatcher, DeliveryLog, DeliveryOutcome
from alerts.flapping import Held, HeldResolutions, ResolutionReleaser
from alerts.grouping import AlertGroups, Digest, GroupSettings, GroupSnapshot, GroupState, Pending
from alerts.inhibition import OpenAlerts
from alerts.model import Alert
from alerts.notifier import Notifier
from alerts.notify import RetryingSender, SinkOutcome
from alerts.routing import InhibitRule, Route
from alerts.silence import ActiveSilences, Silence
from stream.contracts import DeadLetterSink, SourceRecord
from stream.metrics import Metrics
from stream.retrying import DEFAULT_MAX_WAIT, PUBLISH_ERRORS, STORE_ERRORS, retry_unavailable

log = logging.getLogger("churnwatch.delivery")

T = TypeVar("T")


class Handled(StrEnum):
    DELIVERED = "delivered"
    """Every sink it is routed to has the alert (now or from an earlier delivery), or holds it for
    later: in its group for a digest, or a resolution held for its flap span."""
    DEAD_LETTERED = "dead_lettered"
    SILENCED = "silenced"
    """A silence held it back from every sink; counted, and done with."""
    INHIBITED = "inhibited"
    """An open alert of the customer held it back from every sink; counted, and done with."""


class _Stalling:
    """A Redis-backed role of the delivery path whose every call is retried until Redis answers:
    the one place the notification log, the silences and the open alerts get "stall, never skip"."""

    def __init__(self, metrics: Metrics, max_wait: float) -> None:
        self._metrics = metrics
        self._max_wait = max_wait

    async def _stalled(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        return await retry_unavailable(
            operation, call, metrics=self._metrics, retry_on=STORE_ERRORS, max_wait=self._max_wait, log=log
        )


class _StallingDeliveryLog(_Stalling):
    def __init__(self, inner: DeliveryLog, metrics: Metrics, max_wait: float) -> None:
        super().__init__(metrics, max_wait)
        self._inner = inner

    async def already_delivered(self, alert: Alert, sink: str) -> bool:
        return await self._stalled("delivery_lookup", lambda: self._inner.already_delivered(alert, sink))

    async def mark_delivered(self, alert: Alert, sink: str) -> None:
        await self._stalled("delivery_mark", lambda: self._inner.mark_delivered(alert, sink))


class _StallingSilences(_Stalling):
    def __init__(self, inner: ActiveSilences, metrics: Metrics, max_wait: float) -> None:
        super().__init__(metrics, max_wait)
        self._inner = inner

    async def current(self, now: datetime) -> Sequence[Silence]:
        return await self._stalled("silence_lookup", lambda: self._inner.current(now))

    async def record_silenced(self, silence: Silence, alert: Alert) -> None:
        await self._stalled("silence_record", lambda: self._inner.record_silenced(silence, alert))


class _StallingOpenAlerts(_Stalling):
    def __init__(self, inner: OpenAlerts, metrics: Metrics, max_wait: float) -> None:
        super().__init__(metrics, max_wait)
        self._inner = inner

    async def opened(self, alert: Alert) -> None:
        await self._stalled("open_alert_mark", lambda: self._inner.opened(alert))

    async def closed(self, resolution: Alert) -> None:
        await self._stalled("open_alert_mark", lambda: self._inner.closed(resolution))

    async def open_of(self, customer_id: str, now: datetime) -> Sequence[Alert]:
        return await self._stalled("open_alert_lookup", lambda: self._inner.open_of(customer_id, now))


class _StallingGroups(_Stalling):
    """The groups as the delivery path uses them: a record is acknowledged only once its alert is in
    its group, so an outage stalls it (operations ``group_add``, ``group_lookup``) rather than skip it.
    The flusher's calls pass through: the timer tries again on its next tick."""

    def __init__(self, inner: AlertGroups, metrics: Metrics, max_wait: float) -> None:
        super().__init__(metrics, max_wait)
        self._inner = inner

    async def add(self, group: str, settings: GroupSettings, entry: Pending, now: datetime, due_at: datetime) -> None:
        await self._stalled("group_add", lambda: self._inner.add(group, settings, entry, now, due_at))

    async def drop_pending(self, group: str, alert_id: str) -> bool:
        return await self._stalled("group_add", lambda: self._inner.drop_pending(group, alert_id))

    async def record_resolved(self, group: str, alert_id: str) -> None:
        await self._stalled("group_add", lambda: self._inner.record_resolved(group, alert_id))

    async def resolved(self, group: str) -> set[str]:
        return await self._inner.resolved(group)

    async def reserve(self, group: str, wanted: int, limit: int, now: datetime) -> tuple[int, datetime | None]:
        return await self._stalled("group_lookup", lambda: self._inner.reserve(group, wanted, limit, now))

    async def due(self, now: datetime) -> list[str]:
        return await self._inner.due(now)

    async def lock(self, group: str, ttl: timedelta) -> bool:
        return await self._inner.lock(group, ttl)

    async def unlock(self, group: str) -> None:
        await self._inner.unlock(group)

    async def load(self, group: str) -> GroupSnapshot | None:
        return await self._inner.load(group)

    async def mark_limited(self, group: str, entries: Sequence[Pending]) -> None:
        await self._inner.mark_limited(group, entries)

    async def start_digest(self, group: str, state: GroupState, limited: Sequence[Pending]) -> None:
        await self._inner.start_digest(group, state, limited)

    async def finish_digest(self, group: str, state: GroupState, if_empty: datetime | None) -> None:
        await self._inner.finish_digest(group, state, if_empty)

    async def reschedule(self, group: str, if_pending: datetime, if_empty: datetime | None) -> None:
        await self._inner.reschedule(group, if_pending, if_empty)

    async def digest(self, digest_id: str) -> Digest | None:
        return await self._inner.digest(digest_id)


class _StallingHeld(_Stalling):
    """Held resolutions on the delivery path (operation ``held_resolution``): stalled on an outage,
    so a record is acknowledged only once its resolution is held or its flap absorbed."""

    def __init__(self, inner: HeldResolutions, metrics: Metrics, max_wait: float) -> None:
        super().__init__(metrics, max_wait)
        self._inner = inner

    async def hold(self, held: Held) -> None:
        await self._stalled("held_resolution", lambda: self._inner.hold(held))

    async def cancel(self, receiver: str, customer_id: str, rule_id: str) -> Alert | None:
        return await self._stalled("held_resolution", lambda: self._inner.cancel(receiver, customer_id, rule_id))

    async def remember_episode(self, receiver: str, alert_id: str, original: str) -> None:
        await self._stalled("held_resolution", lambda: self._inner.remember_episode(receiver, alert_id, original))

    async def original_of(self, receiver: str, alert_id: str) -> str | None:
        return await self._stalled("held_resolution", lambda: self._inner.original_of(receiver, alert_id))

    async def claim_due(self, now: datetime, lease: timedelta) -> list[Held]:
        return await self._inner.claim_due(now, lease)

    async def release(self, held: Held) -> None:
        await self._inner.release(held)


class AlertDelivery:
    def __init__(
        self,
        notifiers: Sequence[Notifier],
        delivery_log: DeliveryLog,
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        *,
        attempts: int,
        backoff_max: float | timedelta,
        retry_max_seconds: float = DEFAULT_MAX_WAIT,
        silences: ActiveSilences | None = None,
        team_of: Callable[[str], str | None] = lambda rule_id: None,
        routes: Route | None = None,
        open_alerts: OpenAlerts | None = None,
        inhibit_rules: Sequence[InhibitRule] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        groups: AlertGroups | None = None,
        held: HeldResolutions | None = None,
    ) -> None:
        """``held`` unset: ``flap_span`` is not applied; set, resolutions of routes with one are held
        there and :meth:`flush_groups` sends them when their span has passed.
        ``groups`` unset: route timing is not applied (every alert at once); set, ``digest`` routes
        and storm limits apply (:mod:`alerts.digests`) and :meth:`flush_groups` sends due digests.
        ``attempts`` and ``backoff_max`` bound each sink's own retries (see
        :class:`alerts.dispatch.AlertDispatcher`); ``retry_max_seconds`` caps the wait between
        attempts at an unavailable Redis or Kafka, which are retried for as long as they are down.
        ``silences`` unset: nothing is silenced; ``team_of`` names a rule's owner, for silences and
        routes by team. ``routes`` unset: every sink gets every alert. ``open_alerts`` unset: no
        inhibition (set with no ``inhibit_rules``: only tracked, for the gauge). ``clock``: wall time,
        for silences, open alerts and the event-to-delivered time."""
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._retry_max = retry_max_seconds
        self._clock = clock
        self._dispatcher = AlertDispatcher(
            notifiers,
            _StallingDeliveryLog(delivery_log, metrics, retry_max_seconds),
            attempts=attempts,
            backoff_max=backoff_max,
            on_outcome=metrics.record_delivery,
            on_retry=metrics.record_delivery_retry,
            silences=None if silences is None else _StallingSilences(silences, metrics, retry_max_seconds),
            team_of=team_of,
            routes=routes,
            open_alerts=None if open_alerts is None else _StallingOpenAlerts(open_alerts, metrics, retry_max_seconds),
            inhibit_rules=inhibit_rules,
            clock=clock,
            groups=None if groups is None else _StallingGroups(groups, metrics, retry_max_seconds),
            held=None if held is None else _StallingHeld(held, metrics, retry_max_seconds),
        )
        # What the timer sends (held resolutions, digests) goes out like an alert: same sinks, same retries.
        by_name = {n.name: n for n in notifiers}
        sender = RetryingSender(attempts=attempts, backoff_max=backoff_max, on_retry=metrics.record_delivery_retry)
        lease = lock_ttl(attempts, _as_timedelta(backoff_max))
        self._releaser = (
            None
            if held is None
            else ResolutionReleaser(held, by_name, sender, clock=clock, on_outcome=metrics.record_delivery, lease=lease)
        )
        self._flusher = (
            None
            if groups is None
            else DigestFlusher(
                groups,
                by_name,
                sender,
                clock=clock,
                on_outcome=metrics.record_delivery,
                on_digest=metrics.record_digest,
                lock_for=lease,
            )
        )

    @property
    def sinks(self) -> tuple[str, ...]:
        return self._dispatcher.sinks

    async def handle(self, record: SourceRecord) -> Handled:
        """Deliver the alert in ``record``, or dead-letter it; return only once one of them is done."""
        try:
            alert = Alert.model_validate_json(record.value or b"")
        except ValidationError as exc:
            await self._dead_letter(record, "invalid_alert", str(exc))
            return Handled.DEAD_LETTERED
        try:
            result = await self._dispatcher.dispatch(alert)
        except Exception as exc:  # outages are retried inside: this is something retrying will not fix
            log.exception(
                "alert %s from %s[%d]@%d failed", alert.alert_id, record.topic, record.partition, record.offset
            )
            await self._dead_letter(record, "delivery_error", f"{type(exc).__name__}: {exc}")
            return Handled.DEAD_LETTERED
        if result.silenced_by is not None:
            self._metrics.alerts_silenced.labels(rule=alert.rule_id, status=alert.status).inc()
            return Handled.SILENCED
        if result.inhibited_by is not None:
            self._metrics.alerts_inhibited.labels(rule=alert.rule_id, status=alert.status).inc()
            return Handled.INHIBITED
        failed = result.undelivered
        if failed:
            detail = "; ".join(f"{sink}: {outcome}" for sink, outcome in failed.items())
            await self._dead_letter(record, "undeliverable", detail)
            return Handled.DEAD_LETTERED
        if any(o.outcome is DeliveryOutcome.DELIVERED for o in result.outcomes):
            age = (self._clock() - alert.evaluated_at).total_seconds()
            self._metrics.alert_event_to_delivered.labels(status=alert.status).observe(max(age, 0.0))
        return Handled.DELIVERED

    async def flush_groups(self) -> list[SinkOutcome]:
        """Send the digests of due groups and the held resolutions whose flap span passed (the
        worker's timer); never raises: a failure is logged and tried again on the next call."""
        sent: list[SinkOutcome] = []
        for what, flush in (("digests", self._flusher), ("held resolutions", self._releaser)):
            if flush is None:
                continue
            try:
                sent += await (flush.flush_due() if isinstance(flush, DigestFlusher) else flush.release_due())
            except Exception as exc:  # Redis down while listing what is due: the next tick tries again
                self._metrics.dependency_errors.labels(operation="group_flush").inc()
                log.warning("%s not sent this time: %s: %s", what, type(exc).__name__, exc)
        return sent

    async def _dead_letter(self, record: SourceRecord, reason: str, detail: str) -> None:
        await retry_unavailable(
            "deadletter",
            lambda: self._dead_letters.dead_letter(record, reason, detail),
            metrics=self._metrics,
            retry_on=PUBLISH_ERRORS,
            max_wait=self._retry_max,
            log=log,
        )
        self._metrics.deadletters.labels(topic=record.topic, reason=reason).inc()
        log.warning("dead-lettered %s[%d]@%d: %s: %s", record.topic, record.partition, record.offset, reason, detail)


def _as_timedelta(value: float | timedelta) -> timedelta:
    return value if isinstance(value, timedelta) else timedelta(seconds=value)
