"""Flap damping (alerts.flapping): a resolution is held for the route's flap_span; a firing of the
same customer and rule meanwhile cancels it and is not sent, so the receiver sees one open alert;
after the span the resolution goes out once, naming the first alert of the episode."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from alerts.dispatch import AlertDispatcher, DeliveryOutcome, InMemoryDeliveryLog
from alerts.flapping import ResolutionReleaser, hold
from alerts.model import Alert
from alerts.notifier import RetryableDeliveryError
from alerts.notify import RetryingSender
from alerts.routing import parse_routes
from rules.base import Severity
from tests.alert_groups_fake import InMemoryHeldResolutions
from tests.fakes import RecordingNotifier

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ROUTES = parse_routes(
    """
receivers:
  - {name: default, type: log}
  - {name: support, type: log}
route:
  receiver: default
  routes:
    - receiver: support
      matchers: {rule: purchase-overdue}
      flap_span: 10m
      continue: true
    - receiver: default
""",
    "routes.yaml",
).route


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    clock: Clock
    held: InMemoryHeldResolutions
    dispatcher: AlertDispatcher
    releaser: ResolutionReleaser
    support: RecordingNotifier
    default: RecordingNotifier
    outcomes: Counter[tuple[str, str]]
    resolutions: list[Alert]


class RecordingResolutions(RecordingNotifier):
    """Also keeps each alert, to read what a released resolution names."""

    def __init__(self, name: str, kept: list[Alert]) -> None:
        super().__init__(name)
        self.kept = kept

    async def notify(self, alert: Alert) -> None:
        await super().notify(alert)
        self.kept.append(alert)


@pytest.fixture
def rig() -> Rig:
    clock = Clock()
    held = InMemoryHeldResolutions()
    kept: list[Alert] = []
    support, default = RecordingResolutions("support", kept), RecordingNotifier("default")
    outcomes: Counter[tuple[str, str]] = Counter()

    def count(sink: str, outcome: str, _: float) -> None:
        outcomes.update([(sink, outcome)])

    dispatcher = AlertDispatcher(
        [default, support],
        InMemoryDeliveryLog(),
        attempts=1,
        backoff_max=0.01,
        routes=ROUTES,
        clock=clock,
        held=held,
        on_outcome=count,
    )
    releaser = ResolutionReleaser(
        held, {"support": support, "default": default}, RetryingSender(attempts=1, backoff_max=0.01), clock=clock,
        on_outcome=count,
    )  # fmt: skip
    return Rig(clock, held, dispatcher, releaser, support, default, outcomes, kept)


def firing(claim: str) -> Alert:
    return Alert(
        alert_id=f"alert-{claim}",
        customer_id="cust-7",
        rule_id="purchase-overdue",
        severity=Severity.WARNING,
        message="no purchase for 30 days",
        evidence={},
        evaluated_at=START,
        detected_at=START,
        trigger_event_id=f"evt-{claim}",
        trigger_topic="churnwatch.purchases",
    )


def resolving(claim: str) -> Alert:
    return firing(claim).model_copy(
        update={"alert_id": f"resolved-{claim}", "status": "resolved", "resolves": f"alert-{claim}"}
    )


def test_hold_names_the_first_alert_of_the_episode() -> None:
    held = hold("support", resolving("b"), timedelta(minutes=10), START, "alert-a")
    assert held.release_at == START + timedelta(minutes=10)
    assert held.resolution.resolves == "alert-a" and held.resolution.alert_id == "resolved-b"
    assert hold("support", resolving("b"), timedelta(minutes=10), START, None).resolution == resolving("b")


async def test_fire_resolve_fire_within_the_span_is_one_open_alert(rig: Rig) -> None:
    await rig.dispatcher.dispatch(firing("a"))
    held = await rig.dispatcher.dispatch(resolving("a"))
    assert held.outcome("support") is DeliveryOutcome.RESOLUTION_HELD and held.ok
    assert held.outcome("default") is DeliveryOutcome.DELIVERED  # a route without flap_span: at once
    rig.clock.now = START + timedelta(minutes=4)
    again = await rig.dispatcher.dispatch(firing("b"))
    assert again.outcome("support") is DeliveryOutcome.FLAPPING and again.ok
    rig.clock.now = START + timedelta(hours=1)
    assert await rig.releaser.release_due() == []
    assert rig.support.received == ["alert-a"]  # one firing message, no resolution, no second alert
    assert rig.default.received == ["alert-a", "resolved-a", "alert-b"]
    assert rig.outcomes[("support", "flapping")] == 1


async def test_a_resolution_goes_out_once_after_the_span(rig: Rig) -> None:
    await rig.dispatcher.dispatch(firing("a"))
    await rig.dispatcher.dispatch(resolving("a"))
    rig.clock.now = START + timedelta(minutes=9)
    assert await rig.releaser.release_due() == []
    rig.clock.now = START + timedelta(minutes=10)
    [sent] = await rig.releaser.release_due()
    assert sent.outcome is DeliveryOutcome.DELIVERED
    again = await rig.dispatcher.dispatch(resolving("a"))  # the record read again after a crash
    assert again.outcome("support") is DeliveryOutcome.DUPLICATE
    rig.clock.now = START + timedelta(hours=1)
    assert await rig.releaser.release_due() == []
    assert rig.support.received == ["alert-a", "resolved-a"]


async def test_the_resolution_after_a_flap_names_the_first_alert(rig: Rig) -> None:
    await rig.dispatcher.dispatch(firing("a"))
    await rig.dispatcher.dispatch(resolving("a"))
    await rig.dispatcher.dispatch(firing("b"))  # absorbed into alert-a's episode
    await rig.dispatcher.dispatch(resolving("b"))
    rig.clock.now = START + timedelta(minutes=10)
    await rig.releaser.release_due()
    [resolution] = rig.resolutions[1:]
    assert (resolution.alert_id, resolution.resolves) == ("resolved-b", "alert-a")
    assert rig.support.received == ["alert-a", "resolved-b"]


async def test_a_firing_after_the_span_is_a_new_alert(rig: Rig) -> None:
    await rig.dispatcher.dispatch(firing("a"))
    await rig.dispatcher.dispatch(resolving("a"))
    rig.clock.now = START + timedelta(minutes=11)
    await rig.releaser.release_due()
    result = await rig.dispatcher.dispatch(firing("b"))
    assert result.outcome("support") is DeliveryOutcome.DELIVERED
    assert rig.support.received == ["alert-a", "resolved-a", "alert-b"]


async def test_a_refused_resolution_is_kept_and_sent_after_the_lease(rig: Rig) -> None:
    await rig.dispatcher.dispatch(firing("a"))
    await rig.dispatcher.dispatch(resolving("a"))
    rig.support.error = RetryableDeliveryError("support", "HTTP 503")
    rig.clock.now = START + timedelta(minutes=10)
    [failed] = await rig.releaser.release_due()
    assert failed.outcome is DeliveryOutcome.FAILED_RETRIES_EXHAUSTED
    rig.support.error = None
    assert await rig.releaser.release_due() == []  # leased: not before the lease lapses
    rig.clock.now = START + timedelta(minutes=16)
    [sent] = await rig.releaser.release_due()
    assert sent.outcome is DeliveryOutcome.DELIVERED and rig.support.received == ["alert-a", "resolved-a"]


async def test_without_a_store_flap_span_is_not_applied() -> None:
    support = RecordingNotifier("support")
    dispatcher = AlertDispatcher(
        [RecordingNotifier("default"), support], InMemoryDeliveryLog(), attempts=1, backoff_max=0.01, routes=ROUTES
    )
    await dispatcher.dispatch(firing("a"))
    assert (await dispatcher.dispatch(resolving("a"))).outcome("support") is DeliveryOutcome.DELIVERED


async def test_with_the_web_api_the_resolution_after_a_flap_updates_the_first_message_in_its_thread() -> None:
    from pydantic import SecretStr

    from alerts.message_refs import InMemoryMessageRefs
    from alerts.slack_web import SlackWebApiNotifier
    from tests.unit.http_receiver import LocalReceiver, Reply

    def ok(ts: str) -> Reply:
        body = f'{{"ok": true, "channel": "C0SUPPORT", "ts": "{ts}", "message": {{"ts": "{ts}"}}}}'
        return Reply(200, {"Content-Type": "application/json"}, body)

    clock, held = Clock(), InMemoryHeldResolutions()
    async with LocalReceiver([ok("100.1"), ok("100.1"), ok("200.2")]) as receiver:
        slack = SlackWebApiNotifier(
            SecretStr("xoxb-1-2-token"), "#support", InMemoryMessageRefs(), name="support", base_url=receiver.url,
            messages_per_second=100.0,
        )  # fmt: skip
        dispatcher = AlertDispatcher(
            [RecordingNotifier("default"), slack], InMemoryDeliveryLog(), attempts=1, backoff_max=0.01,
            routes=ROUTES, clock=clock, held=held,
        )  # fmt: skip
        for record in (firing("a"), resolving("a"), firing("b"), resolving("b")):
            await dispatcher.dispatch(record)
        clock.now = START + timedelta(minutes=10)
        releaser = ResolutionReleaser(
            held, {"support": slack}, RetryingSender(attempts=1, backoff_max=0.01), clock=clock
        )
        await releaser.release_due()

    post, update, reply = receiver.requests  # alert-b was never posted
    assert (post.path, update.path, reply.path) == ("/chat.postMessage", "/chat.update", "/chat.postMessage")
    assert update.json["ts"] == "100.1" and reply.json["thread_ts"] == "100.1"
    assert "Resolves alert `alert-a`" in json.dumps(update.json["blocks"])
