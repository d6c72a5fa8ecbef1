"""Grouping through the dispatcher and the flusher (alerts.digests) over the in-memory groups: digest
routes wait and send one digest, the storm limit holds the rest for later digests (ranked, counted
once, none lost, none twice), a crash after a send re-sends the same digest, and routes without
digest or limit are untouched."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from alerts.digests import DigestFlusher
from alerts.dispatch import AlertDispatcher, DeliveryOutcome, InMemoryDeliveryLog
from alerts.grouping import Digest
from alerts.model import Alert
from alerts.notifier import RetryableDeliveryError
from alerts.notify import RetryingSender
from alerts.routing import parse_routes
from tests.alert_groups_fake import InMemoryAlertGroups
from tests.alerts_factory import make_alert
from tests.fakes import RecordingNotifier

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ROUTES = parse_routes(
    """
receivers:
  - {name: default, type: log}
  - {name: storm, type: log}
  - {name: capped, type: log}
route:
  receiver: default
  routes:
    - receiver: storm
      matchers: {rule: burst}
      digest: true
      group_wait: 30s
      group_interval: 5m
      repeat_interval: 4h
      max_alerts_per_hour: 50
      digest_size: 5
    - receiver: capped
      matchers: {rule: capped}
      max_alerts_per_hour: 2
""",
    "routes.yaml",
).route
STORM = "storm@route.routes[1]"
CAPPED = "capped@route.routes[2]"


@dataclass
class DigestRecorder:
    """A receiver that takes digests as one message (as every built-in one does)."""

    sink_name: str
    alerts: list[str] = field(default_factory=list)
    digests: list[Digest] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.sink_name

    async def notify(self, alert: Alert) -> None:
        self.alerts.append(alert.alert_id)

    async def notify_digest(self, digest: Digest) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.digests.append(digest)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Rig:
    clock: Clock
    groups: InMemoryAlertGroups
    dispatcher: AlertDispatcher
    flusher: DigestFlusher
    sinks: dict[str, DigestRecorder]
    outcomes: Counter[tuple[str, str]]
    digest_outcomes: Counter[tuple[str, str]]


@pytest.fixture
def rig() -> Rig:
    clock = Clock()
    groups = InMemoryAlertGroups()
    sinks = {name: DigestRecorder(name) for name in ("default", "storm", "capped")}
    outcomes: Counter[tuple[str, str]] = Counter()
    digest_outcomes: Counter[tuple[str, str]] = Counter()
    dispatcher = AlertDispatcher(
        list(sinks.values()),
        InMemoryDeliveryLog(),
        attempts=1,
        backoff_max=0.01,
        routes=ROUTES,
        clock=clock,
        groups=groups,
        on_outcome=lambda sink, outcome, _: outcomes.update([(sink, outcome)]),
    )
    flusher = DigestFlusher(
        groups,
        sinks,
        RetryingSender(attempts=1, backoff_max=0.01),
        clock=clock,
        on_outcome=lambda sink, outcome, _: outcomes.update([(sink, outcome)]),
        on_digest=lambda sink, outcome, _: digest_outcomes.update([(sink, outcome)]),
    )
    return Rig(clock, groups, dispatcher, flusher, sinks, outcomes, digest_outcomes)


def alert(n: int, rule: str = "burst", spend: float | None = None) -> Alert:
    return make_alert(
        alert_id=f"alert-{n:04d}",
        customer_id=f"cust-{n}",
        rule_id=rule,
        customer={"lifetime_spend": float(n) if spend is None else spend},
        evaluated_at=START,
        detected_at=START,
    )


def resolution_of(n: int, rule: str = "burst") -> Alert:
    return alert(n, rule).model_copy(
        update={"alert_id": f"resolved-{n:04d}", "status": "resolved", "resolves": f"alert-{n:04d}"}
    )


def in_digests(recorder: DigestRecorder) -> list[str]:
    return [a.alert_id for d in recorder.digests for a in d.alerts]


async def test_a_route_without_digest_or_limit_sends_at_once_and_keeps_no_group(rig: Rig) -> None:
    result = await rig.dispatcher.dispatch(alert(1, rule="other"))
    assert result.outcome("default") is DeliveryOutcome.DELIVERED
    assert rig.sinks["default"].alerts == ["alert-0001"]
    assert rig.groups.pending == {} and rig.groups.due_at == {}


async def test_without_a_group_store_route_timing_is_not_applied() -> None:
    storm = RecordingNotifier("storm")
    dispatcher = AlertDispatcher(
        [RecordingNotifier("default"), storm, RecordingNotifier("capped")],
        InMemoryDeliveryLog(),
        attempts=1,
        backoff_max=0.01,
        routes=ROUTES,
    )
    assert (await dispatcher.dispatch(alert(1))).outcome("storm") is DeliveryOutcome.DELIVERED
    assert storm.received == ["alert-0001"]


async def test_digest_route_alerts_wait_then_go_out_as_one_digest_ranked_by_value(rig: Rig) -> None:
    for n in (3, 12, 7, 1, 9, 5, 11, 2, 8, 4, 10, 6):
        result = await rig.dispatcher.dispatch(alert(n))
        assert result.outcome("storm") is DeliveryOutcome.GROUPED and result.ok
    assert rig.sinks["storm"].alerts == [] and rig.outcomes[("storm", "grouped")] == 12

    rig.clock.advance(seconds=29)
    assert await rig.flusher.flush_due() == []
    rig.clock.advance(seconds=2)
    [sent] = await rig.flusher.flush_due()
    assert sent.outcome is DeliveryOutcome.DELIVERED
    [digest] = rig.sinks["storm"].digests
    assert [a.alert_id for a in digest.alerts] == [f"alert-{n:04d}" for n in range(12, 0, -1)]
    assert (digest.shown, digest.rest, digest.held_back) == (5, 7, 0)
    assert rig.groups.pending[STORM] == {}
    assert rig.digest_outcomes == Counter({("storm", "delivered"): 1})
    assert rig.sinks["storm"].alerts == []  # no alert was also sent on its own


async def test_a_storm_is_sent_within_the_limit_most_valuable_first_counted_once_none_lost(rig: Rig) -> None:
    for n in range(1, 121):
        await rig.dispatcher.dispatch(alert(n))
    rig.clock.advance(seconds=31)
    await rig.flusher.flush_due()
    [first] = rig.sinks["storm"].digests
    assert [a.alert_id for a in first.alerts] == [f"alert-{n:04d}" for n in range(120, 70, -1)]
    assert (len(first.alerts), first.held_back) == (50, 70)
    assert rig.outcomes[("storm", "rate_limited")] == 70

    for minutes in (5, 10, 30):  # group_interval passes, the hour's budget does not
        rig.clock.now = START + timedelta(minutes=minutes)
        await rig.flusher.flush_due()
    assert len(rig.sinks["storm"].digests) == 1
    assert rig.outcomes[("storm", "rate_limited")] == 70  # counted once each, not per try

    rig.clock.now = START + timedelta(minutes=62)
    await rig.flusher.flush_due()
    rig.clock.now = START + timedelta(minutes=124)
    await rig.flusher.flush_due()
    second, third = rig.sinks["storm"].digests[1:]
    assert [a.alert_id for a in second.alerts] == [f"alert-{n:04d}" for n in range(70, 20, -1)]
    assert second.held_back == 20 and third.held_back == 0 and len(third.alerts) == 20
    delivered = in_digests(rig.sinks["storm"])
    assert len(delivered) == len(set(delivered)) == 120
    assert rig.groups.pending[STORM] == {}


async def test_a_limited_route_sends_within_the_limit_at_once_and_the_rest_by_a_later_digest(rig: Rig) -> None:
    outcomes = [(await rig.dispatcher.dispatch(alert(n, rule="capped"))).outcome("capped") for n in range(1, 6)]
    assert outcomes == [DeliveryOutcome.DELIVERED] * 2 + [DeliveryOutcome.RATE_LIMITED] * 3
    assert rig.sinks["capped"].alerts == ["alert-0001", "alert-0002"]
    await rig.flusher.flush_due()
    assert rig.sinks["capped"].digests == []  # the hour's budget is spent
    rig.clock.advance(minutes=61)
    await rig.flusher.flush_due()
    [later] = rig.sinks["capped"].digests
    assert [a.alert_id for a in later.alerts] == ["alert-0005", "alert-0004"]
    assert later.held_back == 1 and rig.outcomes[("capped", "rate_limited")] == 3


async def test_a_redelivered_record_is_not_grouped_or_sent_twice(rig: Rig) -> None:
    await rig.dispatcher.dispatch(alert(1))
    again = await rig.dispatcher.dispatch(alert(1))
    assert again.outcome("storm") is DeliveryOutcome.DUPLICATE
    rig.clock.advance(seconds=31)
    await rig.flusher.flush_due()
    assert (await rig.dispatcher.dispatch(alert(1))).outcome("storm") is DeliveryOutcome.DUPLICATE
    rig.clock.advance(minutes=10)
    await rig.flusher.flush_due()
    assert in_digests(rig.sinks["storm"]) == ["alert-0001"]


async def test_a_crash_after_the_send_resends_the_same_digest_once_and_loses_none(rig: Rig) -> None:
    for n in range(1, 4):
        await rig.dispatcher.dispatch(alert(n))
    rig.clock.advance(seconds=31)
    rig.groups.crash_on_finish = True
    assert await rig.flusher.flush_due() == []  # the flush failed after the send: logged, not raised
    rig.groups.crash_on_finish = False
    await rig.dispatcher.dispatch(alert(4))  # comes in meanwhile: not part of the digest in flight
    rig.groups.locks.clear()  # the killed worker's lock lapsed
    await rig.flusher.flush_due()
    first, again = rig.sinks["storm"].digests
    assert first == again  # same digest_id (the idempotency key), same alerts
    assert sorted(a.alert_id for a in first.alerts) == ["alert-0001", "alert-0002", "alert-0003"]
    rig.clock.advance(minutes=5)
    await rig.flusher.flush_due()
    assert in_digests(rig.sinks["storm"])[6:] == ["alert-0004"]
    assert len(rig.sinks["storm"].digests) == 3


async def test_a_refused_digest_is_kept_and_sent_later(rig: Rig) -> None:
    await rig.dispatcher.dispatch(alert(1))
    rig.sinks["storm"].failures.append(RetryableDeliveryError("storm", "HTTP 503"))
    rig.clock.advance(seconds=31)
    [failed] = await rig.flusher.flush_due()
    assert failed.outcome is DeliveryOutcome.FAILED_RETRIES_EXHAUSTED
    assert await rig.flusher.flush_due() == []  # not before RETRY_AFTER
    rig.clock.advance(seconds=31)
    [sent] = await rig.flusher.flush_due()
    assert sent.outcome is DeliveryOutcome.DELIVERED and in_digests(rig.sinks["storm"]) == ["alert-0001"]
    assert rig.digest_outcomes == Counter({("storm", "failed_retries_exhausted"): 1, ("storm", "delivered"): 1})
    assert rig.outcomes[("storm", "failed_retries_exhausted")] == 1  # where failing deliveries are watched


async def test_group_interval_separates_digests_of_a_group(rig: Rig) -> None:
    await rig.dispatcher.dispatch(alert(1))
    rig.clock.advance(seconds=31)
    await rig.flusher.flush_due()
    rig.clock.advance(minutes=1)
    await rig.dispatcher.dispatch(alert(2))
    rig.clock.advance(seconds=31)
    await rig.flusher.flush_due()
    assert len(rig.sinks["storm"].digests) == 1
    rig.clock.now = START + timedelta(seconds=31, minutes=5)
    await rig.flusher.flush_due()
    assert [d.alerts[0].alert_id for d in rig.sinks["storm"].digests] == ["alert-0001", "alert-0002"]


async def test_an_unchanged_group_is_repeated_after_repeat_interval_without_its_resolved_alerts(rig: Rig) -> None:
    for n in (1, 2, 3):
        await rig.dispatcher.dispatch(alert(n))
    rig.clock.advance(seconds=31)
    await rig.flusher.flush_due()
    resolved = await rig.dispatcher.dispatch(resolution_of(2))
    assert resolved.outcome("storm") is DeliveryOutcome.DELIVERED  # told of the alert, so of its end too
    rig.clock.advance(hours=3)
    await rig.flusher.flush_due()
    assert len(rig.sinks["storm"].digests) == 1
    rig.clock.advance(hours=1, seconds=1)
    await rig.flusher.flush_due()
    repeat = rig.sinks["storm"].digests[-1]
    assert repeat.repeat and [a.alert_id for a in repeat.alerts] == ["alert-0003", "alert-0001"]


async def test_a_resolution_of_a_waiting_alert_takes_it_out_and_is_not_sent(rig: Rig) -> None:
    await rig.dispatcher.dispatch(alert(1))
    await rig.dispatcher.dispatch(alert(2))
    result = await rig.dispatcher.dispatch(resolution_of(1))
    assert result.outcome("storm") is DeliveryOutcome.RESOLVED_NOT_SENT and result.ok
    rig.clock.advance(seconds=31)
    await rig.flusher.flush_due()
    assert in_digests(rig.sinks["storm"]) == ["alert-0002"] and rig.sinks["storm"].alerts == []


async def test_a_receiver_without_digests_gets_the_alerts_one_by_one(rig: Rig) -> None:
    plain = RecordingNotifier("storm")
    flusher = DigestFlusher(rig.groups, {"storm": plain}, RetryingSender(attempts=1, backoff_max=0.01), clock=rig.clock)
    for n in (1, 2):
        await rig.dispatcher.dispatch(alert(n))
    rig.clock.advance(seconds=31)
    await flusher.flush_due()
    assert plain.received == ["alert-0002", "alert-0001"]
