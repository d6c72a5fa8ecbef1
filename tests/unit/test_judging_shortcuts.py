"""The shortcuts that make a judgement cheaper give what the plain computation gives, exactly: the
purchase model's next moment found on floats, against the bisection judging every moment; the series'
derivations done in C, against the plain loops."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.context import EvaluationContext
from rules.kinds.purchase_model import SEARCH_LIMIT, PurchaseModelCondition
from rules.purchase_model import BgNbdParameters, p_alive, p_no_purchase_within, silence_odds
from rules.state import DaySeries
from tests.unit.state_builder import NOW, customer

PARAMETERS = BgNbdParameters(r=0.25, alpha=4.0, a=0.8, b=2.5)
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), ZoneInfo("Europe/Berlin")]


def plain_next_check(rule: PurchaseModelCondition, ctx: EvaluationContext) -> datetime | None:
    """``next_check`` as it was: every probed moment judged through ``_judge``."""
    now_judged = rule._judge(ctx.state, ctx.now)
    if now_judged is None or now_judged.fired:
        return None
    quiet, fires = 0, int(SEARCH_LIMIT.total_seconds())

    def fires_after(seconds: int) -> bool:
        judged = rule._judge(ctx.state, ctx.now + timedelta(seconds=seconds))
        return judged is not None and judged.fired

    if not fires_after(fires):
        return None
    while fires - quiet > 1:
        middle = (quiet + fires) // 2
        if fires_after(middle):
            fires = middle
        else:
            quiet = middle
    return ctx.now + timedelta(seconds=fires)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=140), min_size=1, max_size=12),
    st.floats(min_value=0, max_value=5_000_000),
    st.sampled_from(ZONES),
    st.one_of(
        st.builds(lambda p: {"min_p_no_purchase": p}, st.floats(0.05, 0.95)),
        st.builds(lambda p: {"max_p_alive": p}, st.floats(0.05, 0.95)),
    ),
)
def test_next_check_is_the_plain_bisections(
    purchases: list[float], seconds: float, zone: timezone | ZoneInfo, threshold: dict[str, float]
) -> None:
    rule = PurchaseModelCondition(kind="purchase_model", parameters=PARAMETERS, **threshold)  # type: ignore[arg-type]
    state = customer(purchases)
    now = (NOW + timedelta(seconds=seconds)).astimezone(zone)
    got, want = rule.next_check(EvaluationContext(state, now)), plain_next_check(rule, EvaluationContext(state, now))
    assert repr(got) == repr(want)


@given(
    st.integers(min_value=0, max_value=200),
    st.floats(min_value=0, max_value=400),
    st.floats(min_value=0, max_value=4000),
    st.floats(min_value=0.5, max_value=365),
    st.sampled_from([PARAMETERS, BgNbdParameters(r=2.0, alpha=30.0, a=1.5, b=0.6)]),
)
def test_silence_odds_are_the_closed_forms(
    x: int, t_x: float, later: float, horizon: float, p: BgNbdParameters
) -> None:
    alive, no_purchase = silence_odds(p, x, t_x, horizon)
    T = t_x + later
    assert alive(T) == p_alive(p, x, t_x, T)
    assert no_purchase(T) == p_no_purchase_within(p, x, t_x, T, horizon)


@given(st.dictionaries(st.integers(-5, 200), st.one_of(st.integers(0, 3), st.booleans(), st.floats(0, 3)), max_size=60))
def test_series_derivations_are_the_plain_ones(buckets: dict[int, float]) -> None:
    series = DaySeries(buckets)
    assert series.first_active_day == min((day for day, v in buckets.items() if v), default=None)
    exact = all(type(v) is int for v in buckets.values())
    assert (series.exact_total(0, 100) is not None) == exact
    if exact:
        assert series.exact_total(0, 100) == sum(v for day, v in buckets.items() if 0 <= day <= 100)


def test_a_derived_value_is_computed_once_per_key() -> None:
    series, calls = DaySeries({1: 2}), []
    assert series.derived("k", lambda: calls.append(1) or 5) == 5
    assert series.derived("k", lambda: calls.append(1) or 6) == 5 and len(calls) == 1
    assert series.derived("other", lambda: 7) == 7
