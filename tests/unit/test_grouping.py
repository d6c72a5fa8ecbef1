"""The pure decisions of grouping: ranking by customer value, when a group is due, what a digest
takes under the storm limit, and what a repeat re-sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.grouping import (
    GroupSettings,
    GroupState,
    Pending,
    after_sent,
    digest_id,
    next_due,
    plan_digest,
    plan_repeat,
    ranked,
    value_of,
)
from alerts.model import Alert
from rules.base import EvidenceValue
from tests.alerts_factory import make_alert

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SETTINGS = GroupSettings(
    receiver="storm",
    route="route.routes[1]",
    digest=True,
    group_wait=timedelta(seconds=30),
    group_interval=timedelta(minutes=5),
    repeat_interval=timedelta(hours=4),
    max_alerts_per_hour=50,
    digest_size=3,
)


def alert(n: int, spend: EvidenceValue = None, *, at: datetime = NOW) -> Alert:
    customer = {} if spend is None else {"lifetime_spend": spend}
    return make_alert(alert_id=f"a-{n:03d}", customer=customer, evaluated_at=at, detected_at=at)


def waiting(*alerts: Alert) -> list[Pending]:
    return [Pending(alert=a, since=NOW) for a in alerts]


def test_value_is_lifetime_spend_and_anything_else_counts_zero() -> None:
    assert value_of(alert(1, 1234.5)) == 1234.5
    assert value_of(alert(2, 7)) == 7.0
    for odd in (None, "a lot", True, float("nan"), float("inf")):
        assert value_of(alert(3, odd)) == 0.0


def test_ranked_most_valuable_first_ties_by_detection_then_id() -> None:
    early = alert(5, 100.0, at=NOW - timedelta(minutes=1))
    order = ranked([alert(1, 10.0), alert(3, 100.0), early, alert(2, 100.0), alert(4)])
    assert [a.alert_id for a in order] == ["a-005", "a-002", "a-003", "a-001", "a-004"]


def test_the_first_digest_is_due_group_wait_after_the_first_alert() -> None:
    assert next_due(GroupState(), SETTINGS, NOW) == NOW + timedelta(seconds=30)


def test_later_digests_wait_for_group_interval_after_the_last() -> None:
    state = GroupState(last_sent_at=NOW)
    assert next_due(state, SETTINGS, NOW + timedelta(seconds=10)) == NOW + timedelta(minutes=5)
    assert next_due(state, SETTINGS, NOW + timedelta(minutes=9)) == NOW + timedelta(minutes=9, seconds=30)


def test_a_route_without_digest_sends_its_held_alerts_without_group_wait() -> None:
    limited = SETTINGS.model_copy(update={"digest": False})
    assert next_due(GroupState(), limited, NOW) == NOW


def test_a_digest_takes_the_granted_most_valuable_and_leaves_the_rest_waiting() -> None:
    pending = waiting(*(alert(n, float(n)) for n in range(1, 11)))
    digest, left = plan_digest("g", SETTINGS, GroupState(sequence=4), pending, 6, NOW)
    assert [a.alert_id for a in digest.alerts] == [f"a-{n:03d}" for n in range(10, 4, -1)]
    assert [a.alert_id for a in digest.top] == ["a-010", "a-009", "a-008"]
    assert (digest.shown, digest.rest, digest.held_back) == (3, 3, 4)
    assert sorted(p.alert.alert_id for p in left) == [f"a-{n:03d}" for n in range(1, 5)]
    assert digest.digest_id == digest_id("g", 4) != digest_id("g", 5)
    assert digest.list_command() == f"churnwatch alerts list --digest {digest.digest_id}"


def test_a_small_digest_shows_every_alert() -> None:
    digest, left = plan_digest("g", SETTINGS, GroupState(), waiting(alert(1, 5.0), alert(2, 9.0)), 2, NOW)
    assert (digest.shown, digest.rest, digest.held_back, left) == (2, 0, 0, [])


def test_after_sent_counts_the_digest_and_clears_the_flight() -> None:
    digest, _ = plan_digest("g", SETTINGS, GroupState(sequence=2), waiting(alert(1, 5.0)), 1, NOW)
    state = after_sent(GroupState(sequence=2, in_flight=digest), digest, NOW)
    assert (state.sequence, state.in_flight, state.last_sent_at) == (3, None, NOW)
    assert state.last_digest == ("a-001",) and state.last_digest_id == digest.digest_id


def test_a_repeat_comes_after_repeat_interval_without_resolved_or_old_alerts() -> None:
    old = alert(3, 50.0, at=NOW - timedelta(days=8))
    last, _ = plan_digest("g", SETTINGS, GroupState(), waiting(alert(1, 5.0), alert(2, 9.0), old), 3, NOW)
    state = after_sent(GroupState(), last, NOW)
    assert plan_repeat("g", SETTINGS, state, last, set(), NOW + timedelta(hours=3)) is None
    repeat = plan_repeat("g", SETTINGS, state, last, {"a-002"}, NOW + timedelta(hours=4))
    assert repeat is not None and repeat.repeat
    assert [a.alert_id for a in repeat.alerts] == ["a-001"]
    assert repeat.digest_id == digest_id("g", 1)
    assert plan_repeat("g", SETTINGS, state, last, {"a-001", "a-002"}, NOW + timedelta(hours=4)) is None
