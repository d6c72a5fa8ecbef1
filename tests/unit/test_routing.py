"""The routing tree: Alertmanager's matching semantics, inherited timing, and routes-file errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.model import Alert
from alerts.routing import (
    RECEIVER_TYPES,
    Matchers,
    RoutesConfig,
    RoutesConfigError,
    RouteSettings,
    load_routes,
    parse_routes,
    route_alert,
)
from rules.base import EvidenceValue, Severity
from rules.evaluation import CUSTOMER_CONTEXT
from tests.alerts_factory import make_alert

EXAMPLE = Path(__file__).resolve().parents[2] / "alerts" / "routes.example.yaml"
AT = datetime(2026, 3, 1, tzinfo=UTC)

TREE = """
receivers:
  - {name: default, type: log}
  - {name: vip, type: slack_api, token_env: VIP_TOKEN, channel: "#churn-vip"}
  - {name: retention, type: slack_webhook, url_env: RETENTION_URL}
  - {name: warnings, type: kafka, topic: churnwatch.warnings}
  - {name: enterprise, type: webhook, url_env: ENTERPRISE_URL}
route:
  receiver: default
  group_wait: 1m
  routes:
    - receiver: vip
      matchers: {lifetime_spend: {gt: 1000}}
      continue: true
      group_wait: 0s
    - receiver: retention
      matchers: {team: retention}
      max_alerts_per_hour: 20
      routes:
        - matchers: {severity: critical}
          repeat_interval: 1h
        - receiver: enterprise
          matchers: {segment: [enterprise, strategic], lifetime_purchases: {ge: 10}}
    - receiver: warnings
      matchers: {severity: [warning, info]}
      send_resolved: false
"""
CONFIG = parse_routes(TREE, "routes.yaml")
EXAMPLE_CONFIG = load_routes(EXAMPLE)


def alert(rule: str = "purchase-overdue", severity: str = "warning", **customer: EvidenceValue) -> Alert:
    return make_alert(rule_id=rule, severity=Severity(severity), customer=customer)


def reached(config: RoutesConfig, a: Alert, team: str | None = None) -> list[tuple[str, str]]:
    return [(m.receiver, m.path) for m in route_alert(config.route, a, team=team)]


@pytest.mark.parametrize(
    ("case", "a", "team", "expected"),
    [
        ("nothing matches: the default route", alert(severity="critical"), None, [("default", "route")]),
        ("first match wins: retention before warnings", alert(), "retention", [("retention", "route.routes[2]")]),
        ("no team given: a team route does not match", alert(), None, [("warnings", "route.routes[3]")]),
        (
            "continue fans out: VIP and the team",
            alert(lifetime_spend=2500.0),
            "retention",
            [("vip", "route.routes[1]"), ("retention", "route.routes[2]")],
        ),
        (
            "VIP only above 1000, not at it",
            alert(severity="critical", lifetime_spend=1000.0),
            None,
            [("default", "route")],
        ),
        ("VIP above 1000", alert(severity="critical", lifetime_spend=1000.5), None, [("vip", "route.routes[1]")]),
        (
            "an integer figure compares too",
            alert(severity="critical", lifetime_spend=1001),
            None,
            [("vip", "route.routes[1]")],
        ),
        (
            "a figure that is not a number never matches",
            alert(severity="critical", lifetime_spend="lots"),
            None,
            [("default", "route")],
        ),
        (
            "a missing figure never matches",
            alert(severity="critical", lifetime_spend=None),
            None,
            [("default", "route")],
        ),
        (
            "a child without receiver inherits its parent's",
            alert(severity="critical"),
            "retention",
            [("retention", "route.routes[2].routes[1]")],
        ),
        (
            "a list of values means any of them; all matchers must hold",
            alert(segment="strategic", lifetime_purchases=12),
            "retention",
            [("enterprise", "route.routes[2].routes[2]")],
        ),
        (
            "one matcher failing is enough to pass a route by",
            alert(segment="strategic", lifetime_purchases=3),
            "retention",
            [("retention", "route.routes[2]")],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_matching(case: str, a: Alert, team: str | None, expected: list[tuple[str, str]]) -> None:
    assert reached(CONFIG, a, team) == expected, case


def test_a_continuing_child_that_matched_alone_takes_the_alert_from_its_parent() -> None:
    """As in Alertmanager: the parent route delivers only when none of its children matched."""
    config = parse_routes(
        """
        receivers: [{name: default, type: log}, {name: vip, type: log}]
        route:
          receiver: default
          routes: [{receiver: vip, matchers: {lifetime_spend: {gt: 1000}}, continue: true}]
        """,
        "routes.yaml",
    )
    assert reached(config, alert(lifetime_spend=5000.0)) == [("vip", "route.routes[1]")]
    assert reached(config, alert(lifetime_spend=10.0)) == [("default", "route")]


def test_matchers_on_rule_and_severity() -> None:
    config = parse_routes(
        """
        receivers: [{name: default, type: log}, {name: nps, type: log}]
        route:
          receiver: default
          routes: [{receiver: nps, matchers: {rule: [nps-detractor, csat-low], severity: critical}}]
        """,
        "routes.yaml",
    )
    assert reached(config, alert("nps-detractor", "critical")) == [("nps", "route.routes[1]")]
    assert reached(config, alert("csat-low", "critical")) == [("nps", "route.routes[1]")]
    assert reached(config, alert("csat-low", "warning")) == [("default", "route")]
    assert reached(config, alert("purchase-overdue", "critical")) == [("default", "route")]


def test_settings_are_inherited_unless_overridden() -> None:
    def settings(a: Alert, team: str | None = None) -> list[RouteSettings]:
        return [m.settings for m in route_alert(CONFIG.route, a, team=team)]

    root = RouteSettings(group_wait=timedelta(minutes=1))
    assert settings(alert(severity="critical")) == [root]
    vip, team_route = settings(alert(lifetime_spend=5000.0), "retention")
    assert vip == RouteSettings(group_wait=timedelta(0))
    assert team_route == RouteSettings(group_wait=timedelta(minutes=1), max_alerts_per_hour=20)
    [critical] = settings(alert(severity="critical"), "retention")
    assert critical == RouteSettings(
        group_wait=timedelta(minutes=1), max_alerts_per_hour=20, repeat_interval=timedelta(hours=1)
    )
    [warnings] = settings(alert())
    assert warnings == RouteSettings(group_wait=timedelta(minutes=1), send_resolved=False)


def test_defaults_are_alertmanagers() -> None:
    assert RouteSettings() == RouteSettings(
        group_wait=timedelta(seconds=30),
        group_interval=timedelta(minutes=5),
        repeat_interval=timedelta(hours=4),
        max_alerts_per_hour=None,
        send_resolved=True,
    )
    assert RouteSettings().describe() == (
        "group_wait=30s group_interval=5m repeat_interval=4h max_alerts_per_hour=none send_resolved=true"
    )


def test_a_resolution_carries_no_customer_figures_so_figure_routes_pass_it_by() -> None:
    """A resolution built without figures matches no figure route: hence the processor gives each
    resolution the customer's figures at their return (tests/unit/test_receivers.py)."""
    assert reached(CONFIG, alert(severity="critical", lifetime_spend=5000.0)) == [("vip", "route.routes[1]")]
    resolved = Alert.resolution(
        customer_id="cust-1",
        rule_id="purchase-overdue",
        claim_key="k",
        severity=Severity.CRITICAL,
        alerted_at=AT,
        returned_at=AT + timedelta(days=3),
        trigger_event_id="e-2",
        trigger_topic="churnwatch.purchases",
        detected_at=AT + timedelta(days=3),
    )
    assert resolved.customer == {}
    assert reached(CONFIG, resolved) == [("default", "route")]


def test_every_receiver_type_is_known_to_the_error_paths() -> None:
    """A receiver type missing from RECEIVER_TYPES would show its tag in field paths (``receivers[1].kafka.topic``)."""
    mapping = RoutesConfig.model_json_schema()["properties"]["receivers"]["items"]["discriminator"]["mapping"]
    assert set(RECEIVER_TYPES) == set(mapping)


def test_every_customer_figure_an_alert_carries_can_be_matched() -> None:
    assert set(CUSTOMER_CONTEXT) <= set(Matchers.model_fields)


@given(
    severity=st.sampled_from(list(Severity)),
    team=st.sampled_from([None, "retention", "support", "other"]),
    spend=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    segment=st.sampled_from(["", "enterprise", "smb"]),
)
def test_every_alert_reaches_at_least_one_known_receiver(
    severity: Severity, team: str | None, spend: float | None, segment: str
) -> None:
    config = EXAMPLE_CONFIG
    matches = route_alert(
        config.route, alert("nps-detractor", severity, lifetime_spend=spend, segment=segment), team=team
    )
    names = {r.name for r in config.receivers}
    assert matches and all(m.receiver in names for m in matches)
    assert len({m.path for m in matches}) == len(matches)


def test_the_shipped_example_loads_and_routes_as_its_comments_say() -> None:
    config = load_routes(EXAMPLE)
    assert {r.name for r in config.receivers} == {"churn-vip", "retention-team", "support-team", "crm", "default"}
    assert reached(config, alert(lifetime_spend=1500.0), "retention") == [
        ("churn-vip", "route.routes[1]"),
        ("retention-team", "route.routes[3]"),
    ]
    assert reached(config, alert("nps-detractor", "critical"), "support") == [
        ("crm", "route.routes[2].routes[1]"),
        ("support-team", "route.routes[2].routes[2]"),
    ]
    assert reached(config, alert("csat-low"), "support") == [("support-team", "route.routes[2]")]
    assert reached(config, alert(lifetime_spend=20.0)) == [("default", "route")]


def problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    with pytest.raises(RoutesConfigError) as caught:
        load_routes(path)
    return [str(p).removeprefix(f"{path}: ") for p in caught.value.problems]


RECEIVERS = "receivers:\n  - {name: default, type: log}\n  - {name: vip, type: slack_webhook, url_env: VIP_URL}\n"


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            "route:\n  receiver: default\n  routes:\n    - receiver: vip\n      matchers: {sevrity: critical}\n",
            ["field 'route.routes[1].matchers.sevrity': unknown field (misspelt?)"],
        ),
        (
            "route:\n  receiver: default\n  routes:\n    - {receiver: vip}\n    - {receiver: vipp}\n",
            ["field 'route.routes[2].receiver': no receiver 'vipp' (known: default, vip)"],
        ),
        (
            "route:\n  receiver: default\n  group_wait: soon\n",
            ["field 'route.group_wait': 'soon' is not a duration; write e.g. '30s', '10m', '12h', '7d' or '2w'"],
        ),
        (
            "route:\n  receiver: default\n  routes: [{receiver: vip, contine: true}]\n",
            ["field 'route.routes[1].contine': unknown field (misspelt?)"],
        ),
        (
            "route:\n  receiver: default\n  routes: [{matchers: {lifetime_spend: {}}}]\n",
            ["field 'route.routes[1].matchers.lifetime_spend': give at least one of gt, ge, lt, le"],
        ),
        (
            "route:\n  receiver: default\n  routes: [{matchers: {severity: fatal}}]\n",
            ["field 'route.routes[1].matchers.severity[1]': Input should be 'info', 'warning' or 'critical'"],
        ),
        (
            "route:\n  matchers: {severity: critical}\n  continue: true\n",
            [
                "field 'route.receiver': the root route needs a receiver: it takes every alert no other route takes",
                "field 'route.matchers': the root route matches every alert; put matchers on its child routes",
                "field 'route.continue': the root route has no siblings to continue to",
            ],
        ),
        (
            "route:\n  receiver: default\n  group_interval: 0s\n  max_alerts_per_hour: 0\n",
            [
                "field 'route.group_interval': must be longer than 0s",
                "field 'route.max_alerts_per_hour': Input should be greater than or equal to 1",
            ],
        ),
    ],
)
def test_a_route_error_names_the_file_and_the_field(route: str, expected: list[str], tmp_path: Path) -> None:
    assert problems(RECEIVERS + route, tmp_path) == expected


@pytest.mark.parametrize(
    ("receivers", "expected"),
    [
        (
            "  - {name: default, type: slack_webhook, url: 'https://hooks.slack.com/services/T/B/x'}\n",
            ["field 'receivers[1]': 'url' would put a secret in the file: name its environment variable in 'url_env'"],
        ),
        ("  - {name: default, type: slack_webhook}\n", ["field 'receivers[1].url_env': Field required"]),
        ("  - {name: default, type: slack_api, token_env: T}\n", ["field 'receivers[1].channel': Field required"]),
        (
            "  - {name: default, type: webhook, url_env: 'not a name'}\n",
            ["field 'receivers[1].url_env': String should match pattern '^[A-Za-z_][A-Za-z0-9_]*$'"],
        ),
        ("  - {name: default, type: log, level: debug}\n", ["field 'receivers[1].level': unknown field (misspelt?)"]),
        (
            "  - {name: default, type: email}\n",
            [
                "field 'receivers[1]': Input tag 'email' found using 'type' does not match any of the expected tags: "
                "'slack_webhook', 'slack_api', 'webhook', 'kafka', 'log'"
            ],
        ),
        (
            "  - {name: default, type: log}\n  - {name: default, type: kafka, topic: t}\n",
            ["field 'receivers[2].name': duplicate receiver name 'default' (also receivers[1])"],
        ),
    ],
)
def test_a_receiver_error_names_the_file_and_the_field(receivers: str, expected: list[str], tmp_path: Path) -> None:
    assert problems("receivers:\n" + receivers + "route: {receiver: default}\n", tmp_path) == expected


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        "receivers:\n  - {name: a, type: log, colour: red}\nroute:\n  receiver: a\n  routes: [{recever: a}]\n", tmp_path
    )
    assert found == [
        "field 'receivers[1].colour': unknown field (misspelt?)",
        "field 'route.routes[1].recever': unknown field (misspelt?)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("route: [unclosed\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping with 'receivers:' and 'route:'"),
        ("receivers: []\nroute: {receiver: a}\n", "field 'receivers': name at least one receiver"),
        ("receivers: [{name: a, type: log}]\n", "field 'route': Field required"),
    ],
)
def test_a_malformed_file_is_named(text: str, expected: str, tmp_path: Path) -> None:
    found = problems(text, tmp_path)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RoutesConfigError) as caught:
        load_routes(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: No such file or directory"
