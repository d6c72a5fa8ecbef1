"""Fan one alert out to every sink, each on its own: retries, the delivery log, one outcome per sink.

Delivery is at least once. A sink is marked in the delivery log only after it accepted the alert,
so a crash between the two sends that alert to that sink once more; the alert id is stable, so
receivers can drop the copy. Sinks run concurrently and fail independently: a Slack outage neither
delays nor blocks the log line.

``backoff_max`` bounds every wait, a receiver's ``Retry-After`` included, so one sink holds an alert
for at most about ``attempts × backoff_max`` before it is reported undelivered (and dead-lettered by
the caller) instead of stalling the stream.

Silences come first (:mod:`alerts.silence`): an alert (or resolution) an active silence matches is
sent to no sink; every sink reports ``silenced``, the alert is recorded against the silence and
logged once, and the result counts as done, so the caller acknowledges the record. The silences are
read before anything is sent: when they cannot be read the dispatch raises with nothing sent, as for
the delivery log.

Inhibition comes next (:mod:`alerts.inhibition`): every firing record marks its alert open and every
resolution closes the alert it resolves (silenced ones too, as in Alertmanager), then an alert that
an open alert of its customer inhibits is sent to no sink (outcome ``inhibited``), logged once and
done with, like a silenced one. The open alerts are read before anything is sent, and a failure to
read or write them raises with nothing sent.

With a routing tree (:mod:`alerts.routing`) an alert goes only to the receivers its routes name;
without one, to every sink. The notification log stays per receiver, so an alert redelivered after a
crash reaches no receiver twice. A resolution skips each receiver whose routes all say
``send_resolved: false`` (outcome ``resolved_not_sent``). A firing alert always reaches at least one
receiver: the root route matches every alert, so there is no "routed nowhere" to count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from alerts.inhibition import OpenAlerts, inhibitor_of
from alerts.model import Alert
from alerts.notifier import Notifier, PermanentDeliveryError, RetryableDeliveryError
from alerts.routing import InhibitRule, Route, route_alert
from alerts.silence import ActiveSilences, Silence, silence_for

log = logging.getLogger("churnwatch.delivery")

OutcomeCallback = Callable[[str, str, float], None]
"""``(sink, outcome, seconds)``: seconds spent on that sink, retries included. Wired to metrics."""


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    FAILED_PERMANENT = "failed_permanent"
    FAILED_RETRIES_EXHAUSTED = "failed_retries_exhausted"
    SILENCED = "silenced"
    """Held back by a silence: not sent, and not due again (the record is done with)."""
    RESOLVED_NOT_SENT = "resolved_not_sent"
    """A resolution the receiver's routes do not send (``send_resolved: false``): done with, not sent."""
    INHIBITED = "inhibited"
    """Held back by an open alert of the customer (an inhibit rule): not sent, and not due again."""


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


@dataclass(frozen=True)
class SinkOutcome:
    sink: str
    outcome: DeliveryOutcome
    seconds: float
    attempts: int
    error: str | None = None

    def __str__(self) -> str:
        """``failed_permanent (slack: HTTP 400: invalid_blocks)``: fit for a dead letter's detail."""
        return f"{self.outcome.value} ({self.error})" if self.error else self.outcome.value


@dataclass(frozen=True)
class DispatchResult:
    alert_id: str
    outcomes: tuple[SinkOutcome, ...]
    """One per sink the alert was routed to (every sink without routes), in the dispatcher's sink order."""
    silenced_by: str | None = None
    """The id of the silence that held the alert back from every sink."""
    inhibited_by: str | None = None
    """The id of the open alert that inhibited this one (sent to no sink)."""

    @property
    def undelivered(self) -> dict[str, SinkOutcome]:
        """Sinks that never got the alert, by name: what the caller dead-letters."""
        done = (
            DeliveryOutcome.DELIVERED,
            DeliveryOutcome.DUPLICATE,
            DeliveryOutcome.SILENCED,
            DeliveryOutcome.RESOLVED_NOT_SENT,
            DeliveryOutcome.INHIBITED,
        )
        return {o.sink: o for o in self.outcomes if o.outcome not in done}

    @property
    def ok(self) -> bool:
        return not self.undelivered

    def outcome(self, sink: str) -> DeliveryOutcome:
        return next(o.outcome for o in self.outcomes if o.sink == sink)


class AlertDispatcher:
    def __init__(
        self,
        notifiers: Sequence[Notifier],
        delivery_log: DeliveryLog,
        *,
        attempts: int,
        backoff_max: float | timedelta,
        backoff_initial: float = 0.5,
        on_outcome: OutcomeCallback | None = None,
        silences: ActiveSilences | None = None,
        team_of: Callable[[str], str | None] = lambda rule_id: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        routes: Route | None = None,
        open_alerts: OpenAlerts | None = None,
        inhibit_rules: Sequence[InhibitRule] = (),
    ) -> None:
        """``open_alerts`` unset: none are tracked (and nothing is inhibited); ``inhibit_rules``
        empty: the open alerts are tracked (for the gauge) but inhibit nothing.
        ``silences`` unset: nothing is ever silenced. ``team_of`` gives a rule's owner team (for
        ``team`` matchers of silences and routes: the alert does not carry it). ``clock`` is the wall
        clock silences are judged at (delivery time, not the alert's event time: a silence mutes what
        is sent now). ``routes`` unset: every sink gets every alert; set, each receiver it names must
        be one of the sinks (by name)."""
        names = [n.name for n in notifiers]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique (they key the delivery log): {names}")
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        if inhibit_rules and open_alerts is None:
            raise ValueError("inhibit_rules need an open-alert store")
        if routes is not None:
            if routes.receiver is None:
                raise ValueError("the root route needs a receiver")
            unknown = sorted({r.receiver for _, r in routes.walk() if r.receiver is not None} - set(names))
            if unknown:
                raise ValueError(f"routes name receivers that are no sink: {unknown} (sinks: {names})")
        self._routes = routes
        self._notifiers = tuple(notifiers)
        self._log = delivery_log
        self._attempts = attempts
        self._backoff_max = backoff_max.total_seconds() if isinstance(backoff_max, timedelta) else float(backoff_max)
        self._backoff = wait_random_exponential(multiplier=backoff_initial, max=self._backoff_max)
        self._on_outcome = on_outcome
        self._silences = silences
        self._team_of = team_of
        self._clock = clock
        self._open_alerts = open_alerts
        self._inhibit_rules = tuple(inhibit_rules)

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(n.name for n in self._notifiers)

    async def dispatch(self, alert: Alert) -> DispatchResult:
        """Deliver to every sink the alert is routed to that does not have it yet.

        Raises whatever the silences, the open alerts or the delivery log raise when they cannot be
        read; nothing has been sent then, so the caller can retry the whole alert later (tracking
        the alert open or closed again is idempotent).
        """
        team = self._team_of(alert.rule_id)
        targets, declined = self._targets(alert, team)
        await self._track(alert)
        silence = await self._silence_of(alert, team)
        if silence is not None:
            return self._silenced(alert, silence, targets)
        inhibitor = await self._inhibitor_of(alert)
        if inhibitor is not None:
            return self._inhibited(alert, inhibitor, targets)
        seen = await asyncio.gather(*(self._log.already_delivered(alert, n.name) for n in targets))
        tried = await asyncio.gather(
            *(self._duplicate(n.name) if dup else self._deliver(n, alert) for n, dup in zip(targets, seen, strict=True))
        )
        by_sink = {o.sink: o for o in tried}
        by_sink.update({name: SinkOutcome(name, DeliveryOutcome.RESOLVED_NOT_SENT, 0.0, 0) for name in declined})
        outcomes = tuple(by_sink[n.name] for n in self._notifiers if n.name in by_sink)
        for outcome in outcomes:
            self._report(outcome)
        return DispatchResult(alert_id=alert.alert_id, outcomes=outcomes)

    def _targets(self, alert: Alert, team: str | None) -> tuple[tuple[Notifier, ...], frozenset[str]]:
        """The sinks ``alert`` goes to, in sink order, and the receivers its routes matched that do
        not send resolutions. Two routes naming one receiver send it once; a resolution goes to a
        receiver if any of its matching routes sends resolutions."""
        if self._routes is None:
            return self._notifiers, frozenset()
        matches = route_alert(self._routes, alert, team=team)
        resolved = alert.status == "resolved"
        wanted = {m.receiver for m in matches if not resolved or m.settings.send_resolved}
        declined = frozenset(m.receiver for m in matches) - wanted
        return tuple(n for n in self._notifiers if n.name in wanted), declined

    async def _silence_of(self, alert: Alert, team: str | None) -> Silence | None:
        if self._silences is None:
            return None
        silences = await self._silences.current(self._clock())
        now = self._clock()  # after the read, which may have waited for Redis
        silence = silence_for(alert, silences, now, team=team)
        if silence is not None:
            try:
                await self._silences.record_silenced(silence, alert)
            except Exception:  # the count in `silence list` is a convenience; the metric still counts it
                log.warning("alert %s: could not record it against silence %s", alert.alert_id, silence.id)
        return silence

    async def _track(self, alert: Alert) -> None:
        if self._open_alerts is None:
            return
        if alert.status == "firing":
            await self._open_alerts.opened(alert)
        elif alert.resolves is not None:
            await self._open_alerts.closed(alert)

    async def _inhibitor_of(self, alert: Alert) -> Alert | None:
        if self._open_alerts is None or not self._inhibit_rules:
            return None
        open_now = await self._open_alerts.open_of(alert.customer_id, self._clock())
        return inhibitor_of(alert, open_now, self._inhibit_rules, team_of=self._team_of)

    def _inhibited(self, alert: Alert, inhibitor: Alert, targets: Sequence[Notifier]) -> DispatchResult:
        log.info(
            "%s %s (customer %s, rule %s, %s) inhibited by open alert %s (rule %s, %s, detected %s): "
            "sent to no receiver",
            "resolution" if alert.status == "resolved" else "alert",
            alert.alert_id,
            alert.customer_id,
            alert.rule_id,
            alert.severity.value,
            inhibitor.alert_id,
            inhibitor.rule_id,
            inhibitor.severity.value,
            inhibitor.detected_at.isoformat(),
        )
        outcomes = tuple(SinkOutcome(n.name, DeliveryOutcome.INHIBITED, 0.0, 0) for n in targets)
        for outcome in outcomes:
            self._report(outcome)
        return DispatchResult(alert_id=alert.alert_id, outcomes=outcomes, inhibited_by=inhibitor.alert_id)

    def _silenced(self, alert: Alert, silence: Silence, targets: Sequence[Notifier]) -> DispatchResult:
        log.info(
            "%s %s (customer %s, rule %s, %s) silenced by %s until %s (%s, by %s): sent to no receiver",
            "resolution" if alert.status == "resolved" else "alert",
            alert.alert_id,
            alert.customer_id,
            alert.rule_id,
            alert.severity.value,
            silence.id,
            silence.ends_at.isoformat(),
            silence.describe(),
            silence.created_by,
        )
        outcomes = tuple(SinkOutcome(n.name, DeliveryOutcome.SILENCED, 0.0, 0) for n in targets)
        for outcome in outcomes:
            self._report(outcome)
        return DispatchResult(alert_id=alert.alert_id, outcomes=outcomes, silenced_by=silence.id)

    async def _duplicate(self, sink: str) -> SinkOutcome:
        return SinkOutcome(sink, DeliveryOutcome.DUPLICATE, seconds=0.0, attempts=0)

    async def _deliver(self, notifier: Notifier, alert: Alert) -> SinkOutcome:
        sink = notifier.name
        started = time.monotonic()
        attempts = 0

        def done(outcome: DeliveryOutcome, error: str | None = None) -> SinkOutcome:
            return SinkOutcome(sink, outcome, time.monotonic() - started, attempts, error)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(RetryableDeliveryError),
            before_sleep=_log_retry(sink, alert),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await notifier.notify(alert)
        except RetryableDeliveryError as exc:
            log.error("alert %s not delivered to %s after %d attempts: %s", alert.alert_id, sink, attempts, exc)
            return done(DeliveryOutcome.FAILED_RETRIES_EXHAUSTED, str(exc))
        except PermanentDeliveryError as exc:
            log.error("alert %s rejected by %s: %s", alert.alert_id, sink, exc)
            return done(DeliveryOutcome.FAILED_PERMANENT, str(exc))
        except Exception as exc:  # a broken sink must not take the others down
            log.exception("alert %s: sink %s failed unexpectedly", alert.alert_id, sink)
            return done(DeliveryOutcome.FAILED_PERMANENT, f"{type(exc).__name__}: {exc}")
        try:
            await self._log.mark_delivered(alert, sink)
        except Exception:
            # Sent but not recorded: a redelivery of this alert resends it once; receivers dedupe by id.
            log.warning("alert %s reached %s but the delivery log was not updated", alert.alert_id, sink)
        return done(DeliveryOutcome.DELIVERED)

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with full jitter, at least the receiver's Retry-After, at most backoff_max."""
        wait = self._backoff(state)
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RetryableDeliveryError) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return min(wait, self._backoff_max)

    def _report(self, outcome: SinkOutcome) -> None:
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(outcome.sink, outcome.outcome.value, outcome.seconds)
        except Exception:
            log.exception("on_outcome callback failed for sink %s", outcome.sink)


def _log_retry(sink: str, alert: Alert) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "alert %s to %s: attempt %d failed (%s); retrying in %.1f s",
            alert.alert_id,
            sink,
            state.attempt_number,
            error,
            wait,
        )

    return before_sleep
