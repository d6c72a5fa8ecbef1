"""Link templates (CHURNWATCH_ALERT_LINKS): checked at start, rendered with every value URL-quoted."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from alerts.links import LinkTemplate, parse_link_templates
from alerts.model import Alert
from rules.base import Severity
from stream.settings import Settings
from tests.alerts_factory import make_alert


def alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "alert_id": "0b6f6c1e-4d7c-5e59-9b1a-1f0e2c3d4a5b",
        "customer_id": "cust-42",
        "rule_id": "purchase-overdue",
        "severity": Severity.WARNING,
        "customer": {"segment": "enterprise"},
        "owner": "retention",
    }
    return make_alert(**(fields | overrides))


def test_name_template_pairs_and_json_give_the_same_links_in_order() -> None:
    pairs = parse_link_templates(
        "CRM=https://crm.example/customers/{customer_id}, Dashboard=https://grafana.example/d/x?var-customer={customer_id}"
    )
    as_json = parse_link_templates(
        '{"CRM": "https://crm.example/customers/{customer_id}", '
        '"Dashboard": "https://grafana.example/d/x?var-customer={customer_id}"}'
    )
    assert (
        pairs
        == as_json
        == (
            LinkTemplate("CRM", "https://crm.example/customers/{customer_id}"),
            LinkTemplate("Dashboard", "https://grafana.example/d/x?var-customer={customer_id}"),
        )
    )
    assert parse_link_templates("  ") == ()


def test_every_placeholder_renders_and_values_are_quoted_whole() -> None:
    (link,) = parse_link_templates(
        "All=https://x.example/{customer_id}?r={rule_id}&a={alert_id}&s={severity}&g={segment}&o={owner}"
    )
    url = link.render(alert(customer_id="a/b?c=d#e|f>g <h> &i ü"))
    assert url == (
        "https://x.example/a%2Fb%3Fc%3Dd%23e%7Cf%3Eg%20%3Ch%3E%20%26i%20%C3%BC?r=purchase-overdue"
        "&a=0b6f6c1e-4d7c-5e59-9b1a-1f0e2c3d4a5b&s=warning&g=enterprise&o=retention"
    )


def test_a_link_whose_value_is_missing_is_left_out() -> None:
    (link,) = parse_link_templates("Segment=https://x.example/segments/{segment}")
    assert link.render(alert(customer={})) is None
    assert link.render(alert(customer={"segment": ""})) is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("CRM=https://crm.example/{customr_id}", "link 'CRM': unknown placeholder {customr_id}; known: {customer_id}"),
        ("CRM=https://crm.example/{}", "unknown placeholder {}"),
        ("CRM=https://crm.example/{customer_id!r}", "placeholder {customer_id} takes no format spec"),
        ("CRM=https://crm.example/{customer_id:>9}", "placeholder {customer_id} takes no format spec"),
        ("CRM=https://crm.example/{customer_id.upper}", "unknown placeholder {customer_id.upper}"),
        ("CRM=https://crm.example/{customer_id", "expected '}'"),
        ("CRM=crm.example/{customer_id}", "must be an absolute http:// or https:// URL"),
        ("CRM=javascript:alert(1)", "must be an absolute http:// or https:// URL"),
        ("CRM=https://crm.example/a|b", "are not allowed in a URL template"),
        ("CRM=https://crm.example/<b>", "are not allowed in a URL template"),
        ("https://crm.example/x", "is not Name=template"),
        ("=https://crm.example/x", "link name ''"),
        ("A=https://a.example,A=https://b.example", "two links have the same name"),
        ('{"CRM": 3}', "strings"),
        ("{not json", "not a JSON object"),
    ],
)
def test_bad_templates_are_rejected_naming_the_link(text: str, error: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_link_templates(text)
    assert error in str(caught.value)


def test_the_setting_is_checked_when_the_worker_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNWATCH_ALERT_LINKS", "CRM=https://crm.example/customers/{customer_id}")
    assert Settings().alert_links == (LinkTemplate("CRM", "https://crm.example/customers/{customer_id}"),)
    monkeypatch.setenv("CHURNWATCH_ALERT_LINKS", "CRM=https://crm.example/customers/{customer}")
    with pytest.raises(ValidationError, match=r"CHURNWATCH_ALERT_LINKS: link 'CRM': unknown placeholder \{customer\}"):
        Settings()
    monkeypatch.delenv("CHURNWATCH_ALERT_LINKS")
    assert Settings().alert_links == ()


async def test_the_worker_s_slack_notifiers_post_the_configured_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways the worker builds Slack notifiers: from the settings, and from a routes file."""
    from alerts.routing import parse_routes
    from alerts.slack import SlackNotifier
    from alerts.slack_format import slack_blocks
    from stream.app import build_notifiers
    from tests.unit.http_receiver import LocalReceiver

    links = "CRM=https://crm.example/customers/{customer_id}"
    routes = parse_routes(
        "receivers:\n  - {name: team, type: slack_webhook, url_env: T_TEAM_URL}\nroute:\n  receiver: team\n", "r.yaml"
    )
    async with LocalReceiver() as receiver:
        monkeypatch.setenv("CHURNWATCH_ALERT_LINKS", links)
        monkeypatch.setenv("CHURNWATCH_SLACK_WEBHOOK_URL", receiver.url_for("/hooks/settings"))
        monkeypatch.setenv("T_TEAM_URL", receiver.url_for("/hooks/routes"))
        settings = Settings()
        built = [*build_notifiers(settings), *build_notifiers(settings, routes)]
        for notifier in built:
            if isinstance(notifier, SlackNotifier):
                await notifier.notify(alert())

    expected = slack_blocks(alert(), links=parse_link_templates(links))
    assert [path for path, _, _ in receiver.requests] == ["/hooks/settings", "/hooks/routes"]
    assert all(body == expected for _, _, body in receiver.requests)
    assert "<https://crm.example/customers/cust-42|CRM>" in str(expected["blocks"])
