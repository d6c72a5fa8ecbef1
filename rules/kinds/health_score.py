"""Customer health score: a weighted 0-100 composite of behaviour, feedback and support signals.

The signals and how each is normalised to 0..1 are in :mod:`rules.health`. The default weights put
just over half the score on purchase behaviour (recency and frequency 0.2 each, spend 0.15): it is
known for every buyer and a falling purchase rhythm is the classic early churn signal. Stated
opinion comes next (NPS 0.15, CSAT 0.1, CES 0.05: fewer customers answer, and CES overlaps CSAT),
then engagement (interactions 0.1, noisier: email opens come and go) and support load (complaints
0.05: always present, so kept small lest it dominate a customer with little other data).

**Missing inputs.** A signal without data (no survey answer, too little history) has its weight
shared out over the present ones: ``score = 100 x sum(w x s) / sum(w)`` over the present signals.
When the present weight is less than ``min_weight_present`` of the total, the customer is not
judged at all. The evidence names the missing inputs.

**Triggers.** ``alert_on_bands`` fires when the score's band now is one of those listed and worse
than the band ``lookback`` ago; ``max_drop`` fires when the score fell by more than that many
points within ``lookback``. Either or both may be set (either firing fires the rule).

**The score then** is recomputed purely from the same state as of ``now - lookback`` (windows
shifted, answers after that time ignored, recency measured then): nothing is stored, so it is
deterministic and replays the same. The limit: the store only keeps buckets for the retention
horizon (150 days by default), and the trends read 120 days back, so ``lookback`` is at most 30d;
and only the newest survey answers are kept, so a customer who answered many times within the
lookback may have lost the answer that was the latest then.

**No episode.** The band condition stays true for up to ``lookback`` after the crossing; the
cooldown (set it to at least ``lookback``) makes that one alert. An episode of the band alone would
block a customer who recovers and falls again months later forever, and one of band and day would
be new every day and dedupe nothing, so the cooldown alone decides.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rules.base import Condition, Duration, EvidenceValue, Verdict, format_duration
from rules.context import EvaluationContext
from rules.health import DEFAULT_WEIGHTS, SIGNALS, WINDOW_DAYS, HealthScore, assess, contributions, movers

Band = Literal["healthy", "at_risk", "critical"]
BAND_ORDER: tuple[Band, ...] = ("healthy", "at_risk", "critical")
"""Best first."""
MAX_LOOKBACK = timedelta(days=30)
RECHECK = timedelta(days=1)
"""How often a silent customer's score is looked at again (see :meth:`HealthScoreCondition.next_check`)."""


class Bands(BaseModel):
    """Score thresholds: ``healthy`` and above is healthy, ``at_risk`` and above at risk, below critical."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    healthy: float = Field(default=70.0, gt=0, le=100, description="Lowest healthy score")
    at_risk: float = Field(default=40.0, gt=0, le=100, description="Lowest at-risk score; below is critical")

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.at_risk >= self.healthy:
            raise ValueError(f"bands: at_risk ({self.at_risk:g}) must be below healthy ({self.healthy:g})")
        return self

    def of(self, score: float) -> Band:
        return "healthy" if score >= self.healthy else "at_risk" if score >= self.at_risk else "critical"


class HealthScoreCondition(Condition):
    kind: Literal["health_score"]
    weights: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        description="Weight per signal (" + ", ".join(SIGNALS) + "); signals left out keep their default "
        "weight, 0 switches one off",
    )
    bands: Bands = Field(default_factory=Bands)
    alert_on_bands: list[Literal["at_risk", "critical"]] = Field(
        default_factory=list, description="Fire when the band now is one of these and worse than lookback ago"
    )
    max_drop: float | None = Field(
        default=None, ge=0, le=100, description="Fire when the score fell by more than this within lookback"
    )
    lookback: Duration = Field(default=timedelta(days=7), description="How far back the score is compared (<= 30d)")
    min_weight_present: float = Field(
        default=0.5, gt=0, le=1, description="Share of the total weight that must have data to judge the customer"
    )
    complaints_cap: int = Field(
        default=3, ge=1, description="Support tickets + complaints in 30 days that bring the complaints signal to 0"
    )

    evidence_fields: ClassVar[tuple[str, ...]] = (
        "score", "previous_score", "drop", "band", "previous_band", "missing", "movers", "lookback",
        "weight_present", *(f"signal_{name}" for name in SIGNALS),
    )  # fmt: skip
    risk_score: ClassVar[tuple[str, bool] | None] = ("score", False)

    @field_validator("weights")
    @classmethod
    def _known_signals(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(SIGNALS))
        if unknown:
            raise ValueError(f"unknown signal(s) {', '.join(unknown)}; valid signals: {', '.join(SIGNALS)}")
        merged = {name: weights.get(name, DEFAULT_WEIGHTS[name]) for name in SIGNALS}
        if sum(merged.values()) <= 0:
            raise ValueError("at least one weight must be above 0")
        return merged

    @field_validator("lookback")
    @classmethod
    def _lookback_within_horizon(cls, lookback: timedelta) -> timedelta:
        if not timedelta(days=1) <= lookback <= MAX_LOOKBACK:
            raise ValueError(
                f"lookback must be between 1d and {format_duration(MAX_LOOKBACK)}: the score then reads "
                f"lookback + {WINDOW_DAYS} days back, and the store keeps 150 days by default"
            )
        return lookback

    @model_validator(mode="after")
    def _has_a_trigger(self) -> HealthScoreCondition:
        if not self.alert_on_bands and self.max_drop is None:
            raise ValueError("configure a trigger: alert_on_bands (e.g. [at_risk, critical]) and/or max_drop")
        return self

    def next_check(self, ctx: EvaluationContext) -> datetime | None:
        """Time alone moves the score (recency grows, the trend windows slide over empty days), so a
        customer with a purchase history is judged again a day later even if they send nothing: a
        decay into a worse band is seen within a day, at one judgement per customer per day."""
        if ctx.state.last_purchase_at is None:
            return None
        return ctx.now + RECHECK

    def check(self, ctx: EvaluationContext) -> Verdict:
        now = assess(ctx.state, ctx.now, self.weights, self.complaints_cap)
        if now.weight_present < self.min_weight_present:
            return Verdict.quiet(self._evidence(now), self._too_little(now, "now"))
        score = round(now.score, 1)
        band = self.bands.of(score)
        then = assess(ctx.state, ctx.now - self.lookback, self.weights, self.complaints_cap)
        if then.weight_present < self.min_weight_present:
            note = self._too_little(then, f"{format_duration(self.lookback)} ago")
            return Verdict.quiet(self._evidence(now, score=score, band=band), note)
        previous = round(then.score, 1)
        previous_band = self.bands.of(previous)
        drop = round(previous - score, 1)
        evidence = self._evidence(
            now,
            score=score,
            previous_score=previous,
            drop=drop,
            band=band,
            previous_band=previous_band,
            movers=movers(contributions(now, then)),
        )
        crossed = band in self.alert_on_bands and BAND_ORDER.index(band) > BAND_ORDER.index(previous_band)
        dropped = self.max_drop is not None and drop > self.max_drop
        return Verdict(crossed or dropped, evidence)

    def _evidence(self, now: HealthScore, **scores: EvidenceValue) -> dict[str, EvidenceValue]:
        return {
            **scores,
            "missing": ", ".join(now.missing),
            "weight_present": round(now.weight_present, 2),
            "lookback": format_duration(self.lookback),
            **{f"signal_{name}": None if value is None else round(value, 2) for name, value in now.signals.items()},
        }

    def _too_little(self, health: HealthScore, when: str) -> str:
        return (
            f"too little data {when}: {health.weight_present:.0%} of the weight has a value, "
            f"{self.min_weight_present:.0%} needed (missing: {', '.join(health.missing)})"
        )
