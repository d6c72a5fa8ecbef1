"""Inhibition: an open alert mutes lesser alerts of the same customer while it is open (after
Alertmanager's ``inhibit_rules``).

A customer with an open critical alert ("NPS 2/10") does not need a warning ("purchases thinning")
on top: whoever handles the critical sees the whole customer. The rules are in the routes file
(:class:`alerts.routing.InhibitRule`); without any, nothing is inhibited.

**Open** means: the delivery stage read the alert's firing record, has not read its resolution
record (``resolves`` naming it), and the alert is younger than its rule's cooldown (the store's
``open_for``: within it the rule cannot alert the customer again, after it a still-true condition
fires a new alert that opens anew). Rules that never resolve (a survey answer) thereby stop
inhibiting on their own. As in Alertmanager, a silenced alert still inhibits (the silence decides
who is told, not whether the customer is at risk), an alert never inhibits itself, and resolutions
are judged like alerts (a warning muted while the critical was open has its resolution muted too,
as silences do).

Pure: the open alerts come from a store behind :class:`OpenAlerts` (:mod:`stream.open_alerts` on
Redis; the fake in ``tests/fakes.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from alerts.model import Alert
from alerts.routing import InhibitRule
from alerts.silence import labels_of


class OpenAlerts(Protocol):
    """The open alerts per customer. Each call is idempotent: a redelivered record repeats it."""

    async def opened(self, alert: Alert) -> None:
        """A firing record was read: the alert is open (until resolved or its rule's cooldown passed)."""
        ...

    async def closed(self, resolution: Alert) -> None:
        """A resolution record was read: the alert it ``resolves`` is no longer open."""
        ...

    async def open_of(self, customer_id: str, now: datetime) -> Sequence[Alert]:
        """The customer's alerts open at ``now``."""
        ...


def inhibitor_of(
    alert: Alert,
    open_alerts: Iterable[Alert],
    rules: Sequence[InhibitRule],
    *,
    team_of: Callable[[str], str | None] = lambda rule_id: None,
) -> Alert | None:
    """The open alert that inhibits ``alert`` under ``rules``, or None; of several, the earliest
    detected (ties by id), so the log names the same one on every redelivery. ``team_of`` gives a
    rule's owner, for ``team`` matchers (alerts do not carry it)."""
    if not rules:
        return None
    team = team_of(alert.rule_id)
    targeted = [rule for rule in rules if rule.target.match(alert, team)]
    if not targeted:
        return None
    labels = labels_of(alert, team)
    itself = {alert.alert_id, alert.resolves}
    for source in sorted(open_alerts, key=lambda a: (a.detected_at, a.alert_id)):
        if source.alert_id in itself or source.status != "firing":
            continue
        source_team = team_of(source.rule_id)
        source_labels = labels_of(source, source_team)
        for rule in targeted:
            if rule.source.match(source, source_team) and all(source_labels[n] == labels[n] for n in rule.equal):
                return source
    return None
