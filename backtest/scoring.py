"""The backtest's figures: pure functions of the alerts, the label and the scores at the cut-off.

Views of "flagged" (:data:`VIEWS`):

- ``open_at_cutoff``: the customer has an alert of the rule still open at the cut-off. A rule that
  resolves (an absence rule, ended by the customer's next purchase) is open until its resolution is
  published; a rule that never resolves (a detractor answer, a spend drop) is open for its cooldown
  after it fired, the time the worker keeps quiet about it;
- ``last_30d`` / ``last_60d`` / ``last_90d``: the rule fired for the customer in those days before
  the cut-off.

Lead time of a true positive: days from its first alert in the view to the cut-off, and from that
alert to the customer's last purchase before the cut-off (negative: the alert came after it, as an
absence alert always does).
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerts.model import Alert
from backtest.outcome import Outcome

VIEWS = ("open_at_cutoff", "last_30d", "last_60d", "last_90d")
BASELINE_DAYS = (30, 60, 90)
_DAY = timedelta(days=1)
_WEEK = timedelta(weeks=1)


@dataclass(frozen=True)
class Confusion:
    flagged: int
    true_positives: int
    churned: int

    @classmethod
    def of(cls, flagged: Collection[str], outcome: Outcome) -> Confusion:
        inside = [c for c in flagged if c in outcome.population]
        return cls(len(inside), sum(1 for c in inside if c in outcome.churned), len(outcome.churned))

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.churned if self.churned else None

    @property
    def f1(self) -> float:
        """0 when nothing is flagged or nobody churned: no warning is worth nothing."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p and r else 0.0


@dataclass(frozen=True)
class RuleTraits:
    """What scoring needs to know of a rule."""

    resolves: bool
    cooldown: timedelta


@dataclass(frozen=True)
class Flagged:
    """One view of one rule (or of a set): each flagged customer's first alert in the view, and the
    alerts the view counts for volume."""

    first_alert: Mapping[str, datetime]
    alerts: int
    span: timedelta


def view_start(view: str, cutoff: datetime, replay_start: datetime) -> datetime:
    if view == "open_at_cutoff":
        return replay_start
    return cutoff - int(view.removeprefix("last_").removesuffix("d")) * _DAY


def flagged_in_view(
    alerts: Iterable[Alert],
    view: str,
    *,
    traits: Mapping[str, RuleTraits],
    cutoff: datetime,
    replay_start: datetime,
    resolved: Collection[str],
) -> Flagged:
    """``alerts``: the firing alerts of the rules to count together (resolutions are passed in
    ``resolved``, as the ids of the alerts they resolve). ``traits``: each of those rules'."""
    start = view_start(view, cutoff, replay_start)
    first: dict[str, datetime] = {}
    counted = 0
    for alert in alerts:
        at = alert.evaluated_at
        if at > cutoff or at < start:
            continue
        counted += 1
        if view == "open_at_cutoff" and not _open(alert, traits[alert.rule_id], cutoff, resolved):
            continue
        if alert.customer_id not in first or at < first[alert.customer_id]:
            first[alert.customer_id] = at
    return Flagged(first, counted, max(cutoff - start, _WEEK))


def _open(alert: Alert, traits: RuleTraits, cutoff: datetime, resolved: Collection[str]) -> bool:
    if traits.resolves:
        return alert.alert_id not in resolved
    return cutoff - alert.evaluated_at < traits.cooldown


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def lead_days(flagged: Flagged, outcome: Outcome) -> list[float]:
    """Days from each true positive's first alert to the cut-off, sorted."""
    return sorted((outcome.cutoff - at) / _DAY for c, at in flagged.first_alert.items() if c in outcome.churned)


def lead_to_last_purchase_days(flagged: Flagged, outcome: Outcome) -> list[float]:
    """Days from each true positive's first alert to their last purchase (negative: after it)."""
    return sorted(
        (outcome.last_purchase[c] - at) / _DAY for c, at in flagged.first_alert.items() if c in outcome.churned
    )


def alerts_per_1000_per_week(flagged: Flagged, population: int) -> float:
    return 1000 * flagged.alerts / population / (flagged.span / _WEEK) if population else 0.0


def roc_auc(scores: Mapping[str, float], positives: Collection[str]) -> float | None:
    """Probability that a churned customer outscores one who stayed (ties count half): the
    Mann-Whitney U over the customers with a score. None without both kinds."""
    ranked = sorted(scores.items(), key=lambda item: item[1])
    n_pos = sum(1 for c, _ in ranked if c in positives)
    n_neg = len(ranked) - n_pos
    if not n_pos or not n_neg:
        return None
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][1] == ranked[i][1]:
            j += 1
        average_rank = (i + 1 + j) / 2  # ranks i+1 .. j share their mean
        rank_sum += average_rank * sum(1 for c, _ in ranked[i:j] if c in positives)
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
