"""The dispatcher with a routing tree: each alert reaches the receivers its routes name, once each."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from alerts.dispatch import AlertDispatcher, DeliveryOutcome, InMemoryDeliveryLog
from alerts.model import Alert
from alerts.routing import RoutesConfig, parse_routes
from alerts.silence import InMemorySilenceStore, Matcher, new_silence
from rules.base import EvidenceValue, Severity
from tests.fakes import RecordingNotifier

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
ROUTES = parse_routes(
    """
receivers:
  - {name: default, type: log}
  - {name: churn-vip, type: slack_api, token_env: VIP_TOKEN, channel: "#churn-vip"}
  - {name: retention-team, type: slack_webhook, url_env: RETENTION_URL}
  - {name: warehouse, type: kafka, topic: churnwatch.warnings}
route:
  receiver: default
  routes:
    - receiver: churn-vip
      matchers: {lifetime_spend: {gt: 1000}}
      continue: true
    - receiver: retention-team
      matchers: {team: retention}
    - receiver: warehouse
      matchers: {severity: info}
      send_resolved: false
""",
    "routes.yaml",
)
Clock = Callable[[], datetime]


def _now() -> datetime:
    return NOW


OWNERS = {"purchase-overdue": "retention", "nps-detractor": "support", "spend-drop": "support"}


def firing(rule: str = "nps-detractor", severity: str = "critical", **customer: EvidenceValue) -> Alert:
    return Alert(
        alert_id=f"alert-{rule}-{customer.get('lifetime_spend')}",
        customer_id="cust-42",
        rule_id=rule,
        severity=Severity(severity),
        message="m",
        evidence={},
        customer=customer,
        evaluated_at=NOW,
        detected_at=NOW,
        trigger_event_id="evt-1",
        trigger_topic="churnwatch.feedback",
    )


def resolution(rule: str = "purchase-overdue", severity: str = "warning", **customer: EvidenceValue) -> Alert:
    return Alert.resolution(
        customer_id="cust-42",
        rule_id=rule,
        claim_key="k",
        severity=Severity(severity),
        alerted_at=NOW - timedelta(days=10),
        returned_at=NOW,
        trigger_event_id="evt-2",
        trigger_topic="churnwatch.purchases",
        detected_at=NOW,
        customer=customer,
    )


class Rig:
    def __init__(
        self, config: RoutesConfig = ROUTES, *, silences: InMemorySilenceStore | None = None, clock: Clock = _now
    ) -> None:
        self.sinks = {r.name: RecordingNotifier(r.name) for r in config.receivers}
        self.log = InMemoryDeliveryLog()
        self.outcomes: list[tuple[str, str]] = []
        self.dispatcher = AlertDispatcher(
            list(self.sinks.values()),
            self.log,
            attempts=2,
            backoff_max=0.01,
            backoff_initial=0.001,
            on_outcome=lambda sink, outcome, seconds: self.outcomes.append((sink, outcome)),
            team_of=OWNERS.get,
            routes=config.route,
            silences=silences,
            clock=clock,
        )

    def reached(self) -> dict[str, list[str]]:
        return {name: sink.received for name, sink in self.sinks.items() if sink.received}


async def test_a_vip_alert_fans_out_to_the_vip_channel_and_its_team() -> None:
    rig = Rig()
    alert = firing("purchase-overdue", "warning", lifetime_spend=2500.0)

    result = await rig.dispatcher.dispatch(alert)

    assert rig.reached() == {"churn-vip": [alert.alert_id], "retention-team": [alert.alert_id]}
    assert [(o.sink, o.outcome) for o in result.outcomes] == [
        ("churn-vip", DeliveryOutcome.DELIVERED),
        ("retention-team", DeliveryOutcome.DELIVERED),
    ]
    assert result.ok
    assert sorted(rig.outcomes) == [("churn-vip", "delivered"), ("retention-team", "delivered")]


async def test_the_team_route_takes_the_alert_by_its_rules_owner() -> None:
    rig = Rig()
    alert = firing("purchase-overdue", "warning", lifetime_spend=80.0)
    await rig.dispatcher.dispatch(alert)
    assert rig.reached() == {"retention-team": [alert.alert_id]}


async def test_an_alert_no_child_route_takes_goes_to_the_default_route_only() -> None:
    rig = Rig()
    alert = firing("nps-detractor", "critical", lifetime_spend=80.0)  # support has no route of its own

    result = await rig.dispatcher.dispatch(alert)

    assert rig.reached() == {"default": [alert.alert_id]}
    assert [o.sink for o in result.outcomes] == ["default"]


async def test_a_redelivered_alert_reaches_no_receiver_twice() -> None:
    rig = Rig()
    alert = firing("purchase-overdue", "warning", lifetime_spend=2500.0)
    await rig.dispatcher.dispatch(alert)

    again = await rig.dispatcher.dispatch(alert)

    assert [o.outcome for o in again.outcomes] == [DeliveryOutcome.DUPLICATE, DeliveryOutcome.DUPLICATE]
    assert rig.reached() == {"churn-vip": [alert.alert_id], "retention-team": [alert.alert_id]}
    assert await rig.log.already_delivered(alert, "churn-vip")
    assert not await rig.log.already_delivered(alert, "default")


async def test_a_route_with_send_resolved_false_gets_the_alert_but_not_its_resolution() -> None:
    rig = Rig()
    alert = firing("spend-drop", "info")
    await rig.dispatcher.dispatch(alert)
    assert rig.reached() == {"warehouse": [alert.alert_id]}

    resolved = resolution("spend-drop", "info")
    result = await rig.dispatcher.dispatch(resolved)

    assert rig.reached() == {"warehouse": [alert.alert_id]}  # nothing more
    assert [(o.sink, o.outcome) for o in result.outcomes] == [("warehouse", DeliveryOutcome.RESOLVED_NOT_SENT)]
    assert result.ok  # done with: the caller acknowledges it, nothing is dead-lettered
    assert ("warehouse", "resolved_not_sent") in rig.outcomes
    assert not await rig.log.already_delivered(resolved, "warehouse")


async def test_a_resolution_is_routed_by_the_customer_figures_it_carries() -> None:
    rig = Rig()
    vip = resolution("purchase-overdue", "warning", lifetime_spend=2500.0, lifetime_purchases=40)
    small = resolution("nps-detractor", "critical", lifetime_spend=60.0)

    await rig.dispatcher.dispatch(vip)
    await rig.dispatcher.dispatch(small)

    assert rig.reached() == {
        "churn-vip": [vip.alert_id],
        "retention-team": [vip.alert_id],
        "default": [small.alert_id],
    }


async def test_two_routes_naming_one_receiver_send_once_and_a_resolution_if_either_sends_them() -> None:
    config = parse_routes(
        """
receivers:
  - {name: default, type: log}
  - {name: ops, type: log}
route:
  receiver: default
  routes:
    - {receiver: ops, matchers: {severity: warning}, continue: true, send_resolved: false}
    - {receiver: ops, matchers: {team: retention}}
""",
        "routes.yaml",
    )
    rig = Rig(config)
    resolved = resolution("purchase-overdue", "warning")

    result = await rig.dispatcher.dispatch(resolved)

    assert rig.reached() == {"ops": [resolved.alert_id]}
    assert [(o.sink, o.outcome) for o in result.outcomes] == [("ops", DeliveryOutcome.DELIVERED)]


async def test_a_silence_comes_first_and_reports_only_the_receivers_the_alert_was_routed_to() -> None:
    silences = InMemorySilenceStore()
    await silences.add(
        new_silence(
            [Matcher.parse("customer_id=cust-42")],
            ends_at=NOW + timedelta(days=1),
            created_by="ana",
            comment="on a planned break",
            now=NOW - timedelta(minutes=1),
        )
    )
    rig = Rig(silences=silences)
    alert = firing("purchase-overdue", "warning", lifetime_spend=2500.0)

    result = await rig.dispatcher.dispatch(alert)

    assert rig.reached() == {}
    assert result.silenced_by is not None
    assert sorted(rig.outcomes) == [("churn-vip", "silenced"), ("retention-team", "silenced")]


async def test_without_routes_every_sink_gets_every_alert_as_before() -> None:
    sinks = [RecordingNotifier("log"), RecordingNotifier("slack")]
    dispatcher = AlertDispatcher(sinks, InMemoryDeliveryLog(), attempts=1, backoff_max=0.01)
    await dispatcher.dispatch(resolution("spend-drop", "info", lifetime_spend=2500.0))
    assert [len(s.received) for s in sinks] == [1, 1]


def test_routes_naming_a_receiver_without_a_sink_are_refused() -> None:
    with pytest.raises(ValueError, match="churn-vip"):
        AlertDispatcher(
            [RecordingNotifier("default")], InMemoryDeliveryLog(), attempts=1, backoff_max=0.01, routes=ROUTES.route
        )
