"""Fan one alert out to every sink, each on its own: retries, the delivery log, one outcome per sink.

:meth:`AlertDispatcher.dispatch` is the pipeline, one stage per module (after Alertmanager's
``dispatch/``, ``silence/``, ``inhibit/``, ``notify/``, ``nflog/``)::

    routing (alerts.routing) → silence, inhibition (alerts.stages) → notification log (alerts.nflog)
    → delivery with retries (alerts.notify) → the log's mark (alerts.nflog)

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.digests import GroupingStage
from alerts.flapping import FlapStage, HeldResolutions
from alerts.grouping import AlertGroups
from alerts.inhibition import OpenAlerts
from alerts.model import Alert
from alerts.nflog import DeliveryLog as DeliveryLog
from alerts.nflog import InMemoryDeliveryLog as InMemoryDeliveryLog
from alerts.notifier import Notifier
from alerts.notify import DONE, OutcomeCallback, RetryingSender, report_outcome
from alerts.notify import DeliveryOutcome as DeliveryOutcome
from alerts.notify import SinkOutcome as SinkOutcome
from alerts.routing import InhibitRule, Route, RouteMatch, route_alert
from alerts.silence import ActiveSilences
from alerts.stages import InhibitionStage, SilenceStage

log = logging.getLogger("churnwatch.delivery")


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
        return {o.sink: o for o in self.outcomes if o.outcome not in DONE}

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
        on_retry: Callable[[str], None] | None = None,
        silences: ActiveSilences | None = None,
        team_of: Callable[[str], str | None] = lambda rule_id: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        routes: Route | None = None,
        open_alerts: OpenAlerts | None = None,
        inhibit_rules: Sequence[InhibitRule] = (),
        groups: AlertGroups | None = None,
        held: HeldResolutions | None = None,
    ) -> None:
        """``held`` unset: ``flap_span`` is not applied (resolutions go out at once); set, routes
        with a ``flap_span`` hold resolutions there (:mod:`alerts.flapping`). ``groups`` unset: route
        timing is not applied (every alert is sent at once); set, alerts of ``digest`` routes and
        those over a route's ``max_alerts_per_hour`` wait there for a digest (:mod:`alerts.digests`).
        ``open_alerts`` unset: none are tracked (and nothing is inhibited); ``inhibit_rules``
        empty: the open alerts are tracked (for the gauge) but inhibit nothing.
        ``silences`` unset: nothing is ever silenced. ``team_of`` gives a rule's owner team (for
        ``team`` matchers of silences and routes: the alert does not carry it). ``clock`` is the wall
        clock silences are judged at (delivery time, not the alert's event time: a silence mutes what
        is sent now). ``routes`` unset: every sink gets every alert; set, each receiver it names must
        be one of the sinks (by name)."""
        names = [n.name for n in notifiers]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique (they key the delivery log): {names}")
        if routes is not None:
            if routes.receiver is None:
                raise ValueError("the root route needs a receiver")
            unknown = sorted({r.receiver for _, r in routes.walk() if r.receiver is not None} - set(names))
            if unknown:
                raise ValueError(f"routes name receivers that are no sink: {unknown} (sinks: {names})")
        self._sender = RetryingSender(
            attempts=attempts, backoff_max=backoff_max, backoff_initial=backoff_initial, on_retry=on_retry
        )
        self._silence = SilenceStage(silences, clock)
        self._inhibition = InhibitionStage(open_alerts, inhibit_rules, team_of=team_of, clock=clock)
        self._routes = routes
        self._notifiers = tuple(notifiers)
        self._log = delivery_log
        self._on_outcome = on_outcome
        self._team_of = team_of
        self._grouping = None if groups is None else GroupingStage(groups, delivery_log, clock)
        self._flaps = None if held is None else FlapStage(held, delivery_log, clock)

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(n.name for n in self._notifiers)

    async def dispatch(self, alert: Alert) -> DispatchResult:
        """Deliver to every sink the alert is routed to that does not have it yet.

        The stages, in order: routing (which receivers), open-alert tracking, silence, inhibition,
        the notification log, delivery, then the log's mark. Raises whatever the silences, the open
        alerts or the delivery log raise when they cannot be read; nothing has been sent then, so
        the caller can retry the whole alert later (tracking the alert open or closed again is
        idempotent).
        """
        team = self._team_of(alert.rule_id)
        targets, declined, match_of = self._targets(alert, team)
        await self._inhibition.track(alert)
        silence = await self._silence.silence_of(alert, team)
        if silence is not None:
            return self._held(alert, targets, DeliveryOutcome.SILENCED, silenced_by=silence.id)
        inhibitor = await self._inhibition.inhibitor_of(alert)
        if inhibitor is not None:
            return self._held(alert, targets, DeliveryOutcome.INHIBITED, inhibited_by=inhibitor.alert_id)
        seen = await asyncio.gather(*(self._log.already_delivered(alert, n.name) for n in targets))
        tried = await asyncio.gather(
            *(
                self._duplicate(n.name) if dup else self._route_one(n, alert, match_of.get(n.name))
                for n, dup in zip(targets, seen, strict=True)
            )
        )
        by_sink = {o.sink: o for o in tried}
        by_sink.update({name: SinkOutcome(name, DeliveryOutcome.RESOLVED_NOT_SENT, 0.0, 0) for name in declined})
        outcomes = tuple(by_sink[n.name] for n in self._notifiers if n.name in by_sink)
        for outcome in outcomes:
            self._report(outcome)
        return DispatchResult(alert_id=alert.alert_id, outcomes=outcomes)

    def _targets(
        self, alert: Alert, team: str | None
    ) -> tuple[tuple[Notifier, ...], frozenset[str], dict[str, RouteMatch]]:
        """The sinks ``alert`` goes to, in sink order, the receivers its routes matched that do not
        send resolutions, and the route each receiver takes it by (the first in tree order). Two
        routes naming one receiver send it once; a resolution goes to a receiver if any of its
        matching routes sends resolutions."""
        if self._routes is None:
            return self._notifiers, frozenset(), {}
        matches = route_alert(self._routes, alert, team=team)
        resolved = alert.status == "resolved"
        match_of: dict[str, RouteMatch] = {}
        for m in matches:
            if not resolved or m.settings.send_resolved:
                match_of.setdefault(m.receiver, m)
        declined = frozenset(m.receiver for m in matches) - set(match_of)
        return tuple(n for n in self._notifiers if n.name in match_of), declined, match_of

    async def _route_one(self, notifier: Notifier, alert: Alert, match: RouteMatch | None) -> SinkOutcome:
        """Flap damping (routes with ``flap_span``), grouping and the storm limit (``digest``,
        ``max_alerts_per_hour``), then delivery. A resolution of an alert still waiting in its group
        takes it out before anything else: the receiver never heard of it."""
        if match is None:
            return await self._deliver(notifier, alert)
        grouped = self._grouping is not None and match.settings.grouped
        taken_out = (
            alert.status == "resolved"
            and grouped
            and self._grouping is not None
            and await self._grouping.resolution_pending(match, alert)
        )
        if taken_out:
            return SinkOutcome(notifier.name, DeliveryOutcome.RESOLVED_NOT_SENT, 0.0, 0)
        if self._flaps is not None:
            damped = await self._flaps.damp(match, alert)
            if damped is not None:
                return damped
        if alert.status == "resolved" or not grouped or self._grouping is None:
            return await self._deliver(notifier, alert)
        if await self._grouping.admit(match):
            return await self._deliver(notifier, alert)
        return await self._grouping.hold(match, alert)

    def _held(
        self,
        alert: Alert,
        targets: Sequence[Notifier],
        outcome: DeliveryOutcome,
        *,
        silenced_by: str | None = None,
        inhibited_by: str | None = None,
    ) -> DispatchResult:
        """Held back from every receiver by a silence or an inhibition: each reports ``outcome``."""
        outcomes = tuple(SinkOutcome(n.name, outcome, 0.0, 0) for n in targets)
        for each in outcomes:
            self._report(each)
        return DispatchResult(
            alert_id=alert.alert_id, outcomes=outcomes, silenced_by=silenced_by, inhibited_by=inhibited_by
        )

    async def _duplicate(self, sink: str) -> SinkOutcome:
        return SinkOutcome(sink, DeliveryOutcome.DUPLICATE, seconds=0.0, attempts=0)

    async def _deliver(self, notifier: Notifier, alert: Alert) -> SinkOutcome:
        outcome = await self._sender.send(notifier.name, f"alert {alert.alert_id}", lambda: notifier.notify(alert))
        if outcome.outcome is DeliveryOutcome.DELIVERED:
            try:
                await self._log.mark_delivered(alert, notifier.name)
            except Exception:
                # Sent but not recorded: a redelivery of this alert resends it once; receivers dedupe by id.
                log.warning("alert %s reached %s but the delivery log was not updated", alert.alert_id, notifier.name)
        return outcome

    def _report(self, outcome: SinkOutcome) -> None:
        report_outcome(self._on_outcome, outcome.sink, outcome.outcome.value, outcome.seconds)
