"""The stages that can hold an alert back from every receiver before routing sends it anywhere:
silences (:mod:`alerts.silence`) and inhibition (:mod:`alerts.inhibition`).

Each stage reads its store before anything is sent, and lets the store's errors out, so that a
failed read leaves nothing sent and the whole alert can be tried again. A stage that holds an
alert back logs it once, with what held it back; the dispatcher reports the outcome per receiver.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from alerts.inhibition import OpenAlerts, inhibitor_of
from alerts.model import Alert
from alerts.routing import InhibitRule
from alerts.silence import ActiveSilences, Silence, silence_for

log = logging.getLogger("churnwatch.delivery")


def _what(alert: Alert) -> str:
    return "resolution" if alert.status == "resolved" else "alert"


class SilenceStage:
    """Which active silence, if any, mutes an alert (or resolution); ``silences`` unset: none ever does."""

    def __init__(self, silences: ActiveSilences | None, clock: Callable[[], datetime]) -> None:
        self._silences = silences
        self._clock = clock

    async def silence_of(self, alert: Alert, team: str | None) -> Silence | None:
        """The silence that mutes ``alert`` now, recorded against it (best effort) and logged."""
        if self._silences is None:
            return None
        silences = await self._silences.current(self._clock())
        now = self._clock()  # after the read, which may have waited for Redis
        silence = silence_for(alert, silences, now, team=team)
        if silence is None:
            return None
        try:
            await self._silences.record_silenced(silence, alert)
        except Exception:  # the count in `silence list` is a convenience; the metric still counts it
            log.warning("alert %s: could not record it against silence %s", alert.alert_id, silence.id)
        log.info(
            "%s %s (customer %s, rule %s, %s) silenced by %s until %s (%s, by %s): sent to no receiver",
            _what(alert),
            alert.alert_id,
            alert.customer_id,
            alert.rule_id,
            alert.severity.value,
            silence.id,
            silence.ends_at.isoformat(),
            silence.describe(),
            silence.created_by,
        )
        return silence


class InhibitionStage:
    """Tracks every record's alert open or closed, and finds the open alert that inhibits one.

    ``open_alerts`` unset: nothing is tracked or inhibited; ``rules`` empty: tracked (for the gauge),
    nothing inhibited."""

    def __init__(
        self,
        open_alerts: OpenAlerts | None,
        rules: Sequence[InhibitRule],
        *,
        team_of: Callable[[str], str | None],
        clock: Callable[[], datetime],
    ) -> None:
        if rules and open_alerts is None:
            raise ValueError("inhibit_rules need an open-alert store")
        self._open_alerts = open_alerts
        self._rules = tuple(rules)
        self._team_of = team_of
        self._clock = clock

    async def track(self, alert: Alert) -> None:
        """A firing record opens its alert, a resolution closes the one it resolves (idempotent)."""
        if self._open_alerts is None:
            return
        if alert.status == "firing":
            await self._open_alerts.opened(alert)
        elif alert.resolves is not None:
            await self._open_alerts.closed(alert)

    async def inhibitor_of(self, alert: Alert) -> Alert | None:
        """The open alert of the customer that inhibits ``alert``, logged; None when none does."""
        if self._open_alerts is None or not self._rules:
            return None
        open_now = await self._open_alerts.open_of(alert.customer_id, self._clock())
        inhibitor = inhibitor_of(alert, open_now, self._rules, team_of=self._team_of)
        if inhibitor is not None:
            log.info(
                "%s %s (customer %s, rule %s, %s) inhibited by open alert %s (rule %s, %s, detected %s): "
                "sent to no receiver",
                _what(alert),
                alert.alert_id,
                alert.customer_id,
                alert.rule_id,
                alert.severity.value,
                inhibitor.alert_id,
                inhibitor.rule_id,
                inhibitor.severity.value,
                inhibitor.detected_at.isoformat(),
            )
        return inhibitor
