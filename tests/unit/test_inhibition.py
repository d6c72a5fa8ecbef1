"""Inhibition: the pure decision, the routes file's ``inhibit_rules``, the dispatcher and the
delivery agent with open alerts (fakes, no Redis)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from alerts.dispatch import AlertDispatcher, DeliveryOutcome, InMemoryDeliveryLog
from alerts.inhibition import inhibitor_of
from alerts.model import Alert
from alerts.routing import InhibitRule, RoutesConfigError, parse_routes
from alerts.silence import InMemorySilenceStore, Matcher, new_silence
from rules.base import Severity
from stream.contracts import SourceRecord
from stream.delivery import AlertDelivery, Handled
from stream.metrics import Metrics
from stream.open_alerts import OpenAlertsGauge
from tests.fakes import FlakyDeadLetters, FlakyDeliveryLog, InMemoryOpenAlerts, RecordingNotifier

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
ROUTES = """
receivers:
  - {name: default, type: log}
route: {receiver: default}
"""
CRITICAL_MUTES_LESSER = InhibitRule.model_validate(
    {"source": {"severity": "critical"}, "target": {"severity": ["warning", "info"]}, "equal": ["customer_id"]}
)


def alert(
    alert_id: str,
    severity: str = "warning",
    *,
    customer: str = "cust-42",
    rule: str = "purchase-overdue",
    detected: datetime = NOW,
    segment: str | None = None,
) -> Alert:
    return Alert(
        alert_id=alert_id,
        customer_id=customer,
        rule_id=rule,
        severity=Severity(severity),
        message="m",
        evidence={},
        customer={} if segment is None else {"segment": segment},
        evaluated_at=detected - timedelta(seconds=30),
        detected_at=detected,
        trigger_event_id="evt-1",
        trigger_topic="churnwatch.feedback",
    )


def resolution_of(firing: Alert) -> Alert:
    return Alert.resolution(
        customer_id=firing.customer_id,
        rule_id=firing.rule_id,
        claim_key="k",
        severity=firing.severity,
        alerted_at=firing.detected_at,
        returned_at=NOW + timedelta(hours=1),
        trigger_event_id="evt-2",
        trigger_topic="churnwatch.purchases",
        detected_at=NOW + timedelta(hours=1),
    ).model_copy(update={"resolves": firing.alert_id})


# --- the decision ---------------------------------------------------------------------------------


def test_an_open_critical_inhibits_the_customers_warnings_and_infos_only() -> None:
    critical = alert("c1", "critical", rule="nps-detractor")
    rules = [CRITICAL_MUTES_LESSER]
    assert inhibitor_of(alert("w1", "warning"), [critical], rules) == critical
    assert inhibitor_of(alert("i1", "info"), [critical], rules) == critical
    assert inhibitor_of(alert("c2", "critical", rule="spend-drop"), [critical], rules) is None
    assert inhibitor_of(alert("w2", "warning"), [], rules) is None


def test_no_rules_inhibit_nothing_and_an_alert_never_inhibits_itself() -> None:
    critical = alert("c1", "critical")
    assert inhibitor_of(alert("w1"), [critical], []) is None
    both_ways = InhibitRule.model_validate({"source": {"rule": "purchase-overdue"}, "target": {"severity": "critical"}})
    assert inhibitor_of(critical, [critical], [both_ways]) is None


def test_equal_labels_must_agree_and_the_earliest_source_is_named() -> None:
    by_segment = InhibitRule.model_validate(
        {"source": {"severity": "critical"}, "target": {"severity": "warning"}, "equal": ["customer_id", "segment"]}
    )
    late = alert("c-late", "critical", detected=NOW + timedelta(minutes=5), segment="smb")
    early = alert("c-early", "critical", detected=NOW, segment="smb")
    other = alert("c-other", "critical", segment="enterprise")
    assert inhibitor_of(alert("w", segment="smb"), [late, other, early], [by_segment]) == early
    assert inhibitor_of(alert("w", segment="trial"), [late, other, early], [by_segment]) is None


def test_team_matchers_use_the_rules_owner() -> None:
    support_mutes = InhibitRule.model_validate({"source": {"team": "support"}, "target": {"team": "retention"}})
    owners = {"nps-detractor": "support", "purchase-overdue": "retention"}
    source = alert("c1", "critical", rule="nps-detractor")
    assert inhibitor_of(alert("w1"), [source], [support_mutes], team_of=owners.get) == source
    assert inhibitor_of(alert("w1"), [source], [support_mutes]) is None  # owners unknown: no team matches


# --- the routes file ------------------------------------------------------------------------------


def test_routes_without_inhibit_rules_have_none() -> None:
    assert parse_routes(ROUTES, "routes.yaml").inhibit_rules == ()


def test_inhibit_rules_parse_and_equal_defaults_to_the_customer() -> None:
    config = parse_routes(
        ROUTES + "inhibit_rules:\n  - {source: {severity: critical}, target: {severity: [warning, info]}}\n",
        "routes.yaml",
    )
    assert config.inhibit_rules == (CRITICAL_MUTES_LESSER,)


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("{source: {severity: critical}, target: {severity: warning}, equal: [segment]}", "must include customer_id"),
        ("{source: {}, target: {severity: warning}}", "give source and target matchers"),
        ("{source: {severity: critical}, target: {severity: warning}, equal: [nope]}", "inhibit_rules[1].equal[1]"),
        ("{source: {sevrity: critical}, target: {severity: warning}}", "unknown field"),
    ],
)
def test_bad_inhibit_rules_are_refused_naming_the_field(rule: str, says: str) -> None:
    with pytest.raises(RoutesConfigError) as error:
        parse_routes(ROUTES + f"inhibit_rules:\n  - {rule}\n", "routes.yaml")
    assert says in str(error.value) and "inhibit_rules[1]" in str(error.value)


# --- the dispatcher -------------------------------------------------------------------------------


class Rig:
    def __init__(self, *, silences: InMemorySilenceStore | None = None, lifetime: timedelta = timedelta(days=7)):
        self.slack = RecordingNotifier("slack")
        self.hook = RecordingNotifier("webhook")
        self.open = InMemoryOpenAlerts(lifetime=lifetime)
        self.outcomes: list[tuple[str, str]] = []
        self.now = NOW
        self.dispatcher = AlertDispatcher(
            [self.slack, self.hook],
            InMemoryDeliveryLog(),
            attempts=1,
            backoff_max=0.01,
            on_outcome=lambda sink, outcome, seconds: self.outcomes.append((sink, outcome)),
            silences=silences,
            clock=lambda: self.now,
            open_alerts=self.open,
            inhibit_rules=[CRITICAL_MUTES_LESSER],
        )


async def test_a_warning_after_an_open_critical_is_sent_nowhere_and_reported_inhibited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig()
    assert (await rig.dispatcher.dispatch(alert("c1", "critical", rule="nps-detractor"))).ok
    with caplog.at_level(logging.INFO, logger="churnwatch.delivery"):
        result = await rig.dispatcher.dispatch(alert("w1"))
    inhibited = [r.getMessage() for r in caplog.records if "inhibited by" in r.getMessage()]
    assert len(inhibited) == 1 and "alert w1" in inhibited[0] and "open alert c1" in inhibited[0]  # once, not per sink
    assert result.ok and result.inhibited_by == "c1"
    assert [o.outcome for o in result.outcomes] == [DeliveryOutcome.INHIBITED] * 2
    assert rig.slack.received == rig.hook.received == ["c1"]
    assert rig.outcomes[-2:] == [("slack", "inhibited"), ("webhook", "inhibited")]
    other = await rig.dispatcher.dispatch(alert("w-other", customer="cust-7"))  # another customer's warning
    assert other.inhibited_by is None and rig.slack.received == ["c1", "w-other"]


async def test_the_criticals_resolution_ends_the_inhibition() -> None:
    rig = Rig()
    critical = alert("c1", "critical")
    await rig.dispatcher.dispatch(critical)
    await rig.dispatcher.dispatch(resolution_of(critical))  # a critical's resolution is itself sent
    assert (await rig.dispatcher.dispatch(alert("w1"))).inhibited_by is None
    assert rig.slack.received == ["c1", resolution_of(critical).alert_id, "w1"]


async def test_an_unresolved_critical_stops_inhibiting_when_its_rule_would_alert_again() -> None:
    rig = Rig(lifetime=timedelta(days=7))
    await rig.dispatcher.dispatch(alert("c1", "critical"))
    rig.now = NOW + timedelta(days=7)
    assert (await rig.dispatcher.dispatch(alert("w1"))).inhibited_by is None


async def test_a_silenced_critical_still_inhibits_and_a_muted_warnings_resolution_is_muted_too() -> None:
    store = InMemorySilenceStore()
    await store.add(
        new_silence(
            [Matcher.parse("rule=nps-detractor")],
            ends_at=NOW + timedelta(days=1),
            created_by="ana",
            comment="noisy",
            now=NOW - timedelta(hours=1),
        )
    )
    rig = Rig(silences=store)
    assert (await rig.dispatcher.dispatch(alert("c1", "critical", rule="nps-detractor"))).silenced_by is not None
    warning = alert("w1")
    assert (await rig.dispatcher.dispatch(warning)).inhibited_by == "c1"
    assert (await rig.dispatcher.dispatch(resolution_of(warning))).inhibited_by == "c1"
    assert rig.slack.received == []


async def test_without_inhibit_rules_alerts_are_tracked_but_nothing_is_inhibited() -> None:
    open_alerts = InMemoryOpenAlerts()
    dispatcher = AlertDispatcher(
        [RecordingNotifier("slack")], InMemoryDeliveryLog(), attempts=1, backoff_max=0.01, open_alerts=open_alerts
    )
    await dispatcher.dispatch(alert("c1", "critical"))
    assert (await dispatcher.dispatch(alert("w1"))).inhibited_by is None
    assert set(open_alerts.alerts["cust-42"]) == {"c1", "w1"}
    with pytest.raises(ValueError, match="open-alert store"):
        AlertDispatcher([], InMemoryDeliveryLog(), attempts=1, backoff_max=0.01, inhibit_rules=[CRITICAL_MUTES_LESSER])


# --- the delivery agent: counted, and stalled while Redis is down ----------------------------------


def delivery_rig(open_alerts: InMemoryOpenAlerts) -> tuple[AlertDelivery, Metrics, RecordingNotifier]:
    metrics = Metrics(CollectorRegistry())
    slack = RecordingNotifier("slack")
    delivery = AlertDelivery(
        [slack], FlakyDeliveryLog(), FlakyDeadLetters(), metrics, attempts=1, backoff_max=0.01,
        retry_max_seconds=0.01, open_alerts=open_alerts, inhibit_rules=[CRITICAL_MUTES_LESSER],
        clock=lambda: NOW + timedelta(seconds=90),
    )  # fmt: skip
    return delivery, metrics, slack


def record(a: Alert) -> SourceRecord:
    return SourceRecord("churnwatch.alerts", 0, 7, a.customer_id.encode(), a.model_dump_json().encode())


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_an_inhibited_record_is_acknowledged_and_counted_by_rule_and_status() -> None:
    delivery, metrics, slack = delivery_rig(InMemoryOpenAlerts())
    assert await delivery.handle(record(alert("c1", "critical", rule="nps-detractor"))) is Handled.DELIVERED
    assert await delivery.handle(record(alert("w1"))) is Handled.INHIBITED
    assert slack.received == ["c1"]
    assert sample(metrics, "churnwatch_alerts_inhibited_total", rule="purchase-overdue", status="firing") == 1
    assert sample(metrics, "churnwatch_alert_deliveries_total", sink="slack", outcome="inhibited") == 1
    # Timed once, the delivered one: evaluated 30 s before detection, delivered 90 s after it.
    assert sample(metrics, "churnwatch_alert_event_to_delivered_seconds_count", status="firing") == 1
    assert sample(metrics, "churnwatch_alert_event_to_delivered_seconds_sum", status="firing") == 120


async def test_open_alerts_unreadable_stall_the_record_then_it_is_judged_once_redis_answers() -> None:
    """Neither sent unchecked nor dropped: nothing is sent until the open alerts could be written and read."""
    open_alerts = InMemoryOpenAlerts()
    delivery, metrics, slack = delivery_rig(open_alerts)
    await delivery.handle(record(alert("c1", "critical")))
    open_alerts.errors = [RedisConnectionError("refused")] * 3
    assert await delivery.handle(record(alert("w1"))) is Handled.INHIBITED
    assert slack.received == ["c1"]
    retried = sample(metrics, "churnwatch_dependency_errors_total", operation="open_alert_mark") + sample(
        metrics, "churnwatch_dependency_errors_total", operation="open_alert_lookup"
    )
    assert retried == 3


def test_the_open_alerts_gauge_drops_alerts_whose_time_passed() -> None:
    metrics = Metrics(CollectorRegistry())
    gauge = OpenAlertsGauge(metrics.open_alerts, until=lambda a: a.detected_at + timedelta(hours=1))

    def value(rule: str, severity: str) -> float | None:
        return metrics.registry.get_sample_value("churnwatch_open_alerts", {"rule": rule, "severity": severity})

    gauge.opened(alert("w1"), NOW)
    gauge.opened(alert("w2", detected=NOW + timedelta(minutes=30)), NOW)
    assert value("purchase-overdue", "warning") == 2
    gauge.opened(
        alert("c1", "critical", rule="nps-detractor", detected=NOW + timedelta(hours=1)), NOW + timedelta(hours=1)
    )
    assert value("purchase-overdue", "warning") == 1 and value("nps-detractor", "critical") == 1
    gauge.closed(resolution_of(alert("c1", "critical", rule="nps-detractor")), NOW + timedelta(hours=1))
    assert value("nps-detractor", "critical") == 0
