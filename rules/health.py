"""The signal math of the customer health score (see :mod:`rules.kinds.health_score`).

Every signal is a pure function of the customer's state *as of a moment* ``at``, normalised to
0..1 (1 = healthy), or None when it cannot be judged. "As of" means windows end on ``at``'s day and
survey answers after ``at`` are ignored, so the score a week ago is recomputed from today's state
instead of being stored. Day buckets are whole UTC days: an event later on ``at``'s own day counts
as already seen, the same granularity every window in churnwatch has.

Normalisation (``s`` = signal, clamped to [0, 1]):

- ``recency``: ``r = days since the last purchase / usual gap``, the usual gap being the lifetime
  mean ``(last - first) / (n - 1)`` (at least one day); ``s = 1`` for ``r <= 1``, falling linearly to
  0 at ``r = 3``: ``s = (3 - r) / 2``. None with fewer than 2 purchases.
- ``frequency_trend`` / ``spend_trend``: purchases (spend) in the last 30 days against what the
  customer's own rate over the 90 days before predicts, ``s = min(1, recent / expected)``. None
  with less than 30 days of history in the baseline or fewer than 3 baseline purchases.
- ``interaction_trend``: the same over interactions of every kind but support tickets and
  complaints; None with fewer than 3 such interactions in the baseline.
- ``nps`` = latest / 10, ``csat`` = (latest - 1) / 4, ``ces`` = (7 - latest) / 6 (high effort is
  bad). None if never answered by ``at``.
- ``complaints`` = 1 - min(1, support tickets and complaints in the last 30 days / cap). Always
  present.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property

from rules.state import SECONDS_PER_DAY, CustomerState, day_number, days_between
from rules.windows import BaselineComparison, compare_to_baseline, count_in_last

SIGNALS = (
    "recency", "frequency_trend", "spend_trend", "interaction_trend", "nps", "csat", "ces", "complaints",
)  # fmt: skip
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "recency": 0.2, "frequency_trend": 0.2, "spend_trend": 0.15, "interaction_trend": 0.1,
    "nps": 0.15, "csat": 0.1, "ces": 0.05, "complaints": 0.05,
}  # fmt: skip
RECENT_DAYS = 30
BASELINE_DAYS = 90
WINDOW_DAYS = RECENT_DAYS + BASELINE_DAYS
"""How far back the trends read from ``at``: the score a lookback ago reads lookback + this."""
MIN_HISTORY_DAYS = 30
MIN_BASELINE_COUNT = 3
RECENCY_FULL_GAPS = 1.0
RECENCY_ZERO_GAPS = 3.0
MIN_GAP_DAYS = 1.0
COMPLAINT_KINDS = ("support_ticket", "complaint")
SURVEY_SCALES: Mapping[str, tuple[int, int, bool]] = {"nps": (0, 10, True), "csat": (1, 5, True), "ces": (1, 7, False)}
"""Survey kind: (lowest answer, highest answer, higher is better)."""

Signals = Mapping[str, float | None]


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _purchase_history_as_of(state: CustomerState, at: datetime) -> tuple[datetime, datetime, int] | None:
    """(first, last, count) of the purchases made by ``at``; None if none, or if the last of them is past the
    retention horizon. A last purchase found in the day buckets is placed at the start of its day."""
    first, last, count = state.first_purchase_at, state.last_purchase_at, state.lifetime_purchases
    if first is None or last is None or first > at:
        return None
    if last <= at:
        return first, last, count
    today = day_number(at)
    later, last_then = state.purchase_counts.derived(("as of", today), lambda: _bought_by(state, today))
    if last_then is None:
        return None
    return first, max(first, last_then), count - later


def _bought_by(state: CustomerState, today: int) -> tuple[int, datetime | None]:
    """Purchases after ``today``, and the start of the last day by ``today`` with one (None if none):
    day-level, so kept with the series for the day (the score a lookback ago asks it every judgement)."""
    later = sum(n for day, n in state.purchases_by_day.items() if day > today)
    earlier = [day for day, n in state.purchases_by_day.items() if day <= today and n > 0]
    if not earlier:
        return later, None
    return later, datetime.fromtimestamp(max(earlier) * SECONDS_PER_DAY, tz=UTC)


def recency(state: CustomerState, at: datetime) -> float | None:
    history = _purchase_history_as_of(state, at)
    if history is None or history[2] < 2:
        return None
    first, last, count = history
    usual_gap = max(MIN_GAP_DAYS, days_between(first, last) / (count - 1))
    gaps = days_between(last, at) / usual_gap
    return _clamp((RECENCY_ZERO_GAPS - gaps) / (RECENCY_ZERO_GAPS - RECENCY_FULL_GAPS))


def _compare(buckets: Mapping[int, float], at: datetime, history_start_day: int | None) -> BaselineComparison | None:
    return compare_to_baseline(
        buckets,
        now=at,
        history_start_day=history_start_day,
        recent_days=RECENT_DAYS,
        baseline_days=BASELINE_DAYS,
        min_history_days=MIN_HISTORY_DAYS,
    )


def _ratio(comparison: BaselineComparison | None) -> float | None:
    return None if comparison is None or comparison.expected <= 0 else _clamp(comparison.ratio)


def _purchases_judgeable(state: CustomerState, at: datetime) -> BaselineComparison | None:
    comparison = _compare(state.purchase_counts, at, state.first_purchase_day)
    return comparison if comparison is not None and comparison.baseline >= MIN_BASELINE_COUNT else None


def frequency_trend(state: CustomerState, at: datetime) -> float | None:
    return _ratio(_purchases_judgeable(state, at))


def spend_trend(state: CustomerState, at: datetime) -> float | None:
    return _spend_ratio(state, at, _purchases_judgeable(state, at))


def _spend_ratio(state: CustomerState, at: datetime, judgeable: BaselineComparison | None) -> float | None:
    """``spend_trend``, given what :func:`_purchases_judgeable` said (the frequency trend asks it too)."""
    if judgeable is None:
        return None
    return _ratio(_compare(state.purchase_spend, at, state.first_purchase_day))


def interaction_trend(state: CustomerState, at: datetime) -> float | None:
    # Days with no counted interaction are left out of the merged series, so its first day is the
    # first active one.
    merged = state.interactions_of(kind for kind in state.interactions_by_kind if kind not in COMPLAINT_KINDS)
    comparison = _compare(merged, at, merged.first_day)
    if comparison is None or comparison.baseline < MIN_BASELINE_COUNT:
        return None
    return _ratio(comparison)


def survey(state: CustomerState, kind: str, at: datetime) -> float | None:
    answers = [a for a in state.answers(kind) if a.answered_at <= at]
    if not answers:
        return None
    low, high, higher_is_better = SURVEY_SCALES[kind]
    value = _clamp((answers[-1].score - low) / (high - low))
    return value if higher_is_better else 1.0 - value


def complaints(state: CustomerState, at: datetime, cap: int) -> float:
    count = sum(count_in_last(state.interaction_counts(k), at, RECENT_DAYS) for k in COMPLAINT_KINDS)
    return 1.0 - min(1.0, count / cap)


def signals(state: CustomerState, at: datetime, complaints_cap: int) -> dict[str, float | None]:
    """Every signal of :data:`SIGNALS` as of ``at``."""
    judgeable = _purchases_judgeable(state, at)
    return {
        "recency": recency(state, at),
        "frequency_trend": _ratio(judgeable),
        "spend_trend": _spend_ratio(state, at, judgeable),
        "interaction_trend": interaction_trend(state, at),
        "nps": survey(state, "nps", at),
        "csat": survey(state, "csat", at),
        "ces": survey(state, "ces", at),
        "complaints": complaints(state, at, complaints_cap),
    }


@dataclass(frozen=True)
class HealthScore:
    """The signals at one moment and the weights they are combined with."""

    signals: Signals
    weights: Mapping[str, float]

    # Cached: a judgement reads each several times (a HealthScore is frozen, its inputs read-only).

    @cached_property
    def present(self) -> dict[str, float]:
        """The weighted signals that have a value (a weight of 0 switches a signal off)."""
        return {n: v for n in SIGNALS if self.weights[n] > 0 and (v := self.signals[n]) is not None}

    @cached_property
    def missing(self) -> tuple[str, ...]:
        return tuple(n for n in SIGNALS if self.weights[n] > 0 and self.signals[n] is None)

    @cached_property
    def weight_present(self) -> float:
        """Share of the total weight whose signal has a value, 0..1."""
        return sum(self.weights[n] for n in self.present) / sum(self.weights.values())

    @cached_property
    def score(self) -> float:
        """0..100: the weighted mean of the present signals (missing ones' weight is shared out)."""
        present = self.present
        weight = sum(self.weights[n] for n in present)
        return 100 * sum(self.weights[n] * v for n, v in present.items()) / weight if weight else 0.0


def assess(state: CustomerState, at: datetime, weights: Mapping[str, float], complaints_cap: int) -> HealthScore:
    return HealthScore(signals(state, at, complaints_cap), weights)


def contributions(now: HealthScore, then: HealthScore) -> dict[str, float]:
    """Score points each signal moved the score by from ``then`` to ``now``; they add up to the change.

    A signal present both times moved it by ``100 x its weight share now x its change``. One that
    appeared moved it by ``100 x share x (its value - the then-score of the signals present both
    times)``: how far it pulls the score from where the others had it. One that disappeared moved it
    by the opposite of what it pulled, measured then.
    """
    now_present, then_present = now.present, then.present
    common = now_present.keys() & then_present.keys()
    w = now.weights
    moved: dict[str, float] = {}
    if common:
        base = sum(w[n] * then_present[n] for n in common) / sum(w[n] for n in common)
        then_weight = sum(w[n] for n in then_present)
        for name, value in then_present.items():
            if name not in common:
                moved[name] = 100 * w[name] / then_weight * (base - value)
    else:
        base = then.score / 100
    now_weight = sum(w[n] for n in now_present)
    for name, value in now_present.items():
        moved[name] = 100 * w[name] / now_weight * (value - then_present.get(name, base))
    return moved


def movers(moved: Mapping[str, float], shown: int = 4) -> str:
    """``"recency -18.0, nps -9.0"``: the biggest contributions first, those that round to 0 left out."""
    ranked = sorted((item for item in moved.items() if abs(item[1]) >= 0.05), key=lambda item: -abs(item[1]))
    return ", ".join(f"{name} {points:+.1f}" for name, points in ranked[:shown])
