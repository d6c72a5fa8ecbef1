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
  :mod:`alerts.dispatch`); "every sink" above means every sink it is routed to.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from pydantic import ValidationError

from alerts.dispatch import AlertDispatcher, DeliveryLog, DeliveryOutcome
from alerts.inhibition import OpenAlerts
from alerts.model import Alert
from alerts.notifier import Notifier
from alerts.routing import InhibitRule, Route
from alerts.silence import ActiveSilences, Silence
from stream.contracts import DeadLetterSink, SourceRecord
from stream.metrics import Metrics
from stream.retrying import DEFAULT_MAX_WAIT, PUBLISH_ERRORS, STORE_ERRORS, retry_unavailable

log = logging.getLogger("churnwatch.delivery")

T = TypeVar("T")


class Handled(StrEnum):
    DELIVERED = "delivered"
    """Every sink it is routed to has the alert (now or from an earlier delivery)."""
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
    ) -> None:
        """``attempts`` and ``backoff_max`` bound each sink's own retries (see
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
            silences=None if silences is None else _StallingSilences(silences, metrics, retry_max_seconds),
            team_of=team_of,
            routes=routes,
            open_alerts=None if open_alerts is None else _StallingOpenAlerts(open_alerts, metrics, retry_max_seconds),
            inhibit_rules=inhibit_rules,
            clock=clock,
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
