"""A digest as each receiver sends it: Slack Block Kit within its limits (read back by slack_sdk's
models), the webhook's signed JSON with the digest id as Idempotency-Key, the Slack Web API posting a
digest once, Kafka's one record and the log's one line."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from slack_sdk.models.blocks import Block

from alerts.digest_format import digest_document, slack_digest
from alerts.grouping import Digest, GroupSettings, GroupState, Pending, plan_digest
from alerts.log_sink import LogNotifier
from alerts.message_refs import InMemoryMessageRefs
from alerts.model import Alert
from alerts.slack_format import BLOCKS_MAX, HEADER_MAX, PAYLOAD_BUDGET, SECTION_TEXT_MAX
from alerts.slack_web import SlackWebApiNotifier
from alerts.webhook import WebhookNotifier
from alerts.webhook_signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from rules.base import Severity
from stream.kafka_sinks import KafkaAlertNotifier
from tests.alerts_factory import make_alert
from tests.fakes import RecordingTopic
from tests.unit.http_receiver import LocalReceiver, Reply

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def settings(size: int = 10, limit: int | None = 50) -> GroupSettings:
    return GroupSettings(
        receiver="storm",
        route="route.routes[1]",
        digest=True,
        group_wait=timedelta(seconds=30),
        group_interval=timedelta(minutes=5),
        repeat_interval=timedelta(hours=4),
        max_alerts_per_hour=limit,
        digest_size=size,
    )


def alert(n: int, *, customer_id: str | None = None, message: str = "no purchase for 40 days") -> Alert:
    return make_alert(
        alert_id=f"alert-{n:04d}",
        customer_id=customer_id or f"cust-{n}",
        rule_id="purchase-overdue",
        severity=Severity.CRITICAL if n % 3 == 0 else Severity.WARNING,
        message=message,
        customer={"lifetime_spend": 100.0 * n, "segment": "smb"},
    )


def digest(alerts: list[Alert], *, size: int = 10, granted: int | None = None) -> Digest:
    pending = [Pending(alert=a, since=NOW) for a in alerts]
    made, _ = plan_digest("storm@route.routes[1]", settings(size), GroupState(), pending, granted or len(alerts), NOW)
    return made


def assert_within_slack_limits(payload: dict[str, Any]) -> None:
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= BLOCKS_MAX
    for block in blocks:
        if block["type"] == "header":
            assert 0 < len(block["text"]["text"]) <= HEADER_MAX
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= SECTION_TEXT_MAX
    assert len(json.dumps(payload, ensure_ascii=False)) <= PAYLOAD_BUDGET
    assert [b.to_dict() for b in Block.parse_all(blocks)] == blocks


def test_the_slack_digest_shows_the_top_alerts_counts_the_rest_and_names_the_full_list() -> None:
    made = digest([alert(n) for n in range(1, 13)], size=5, granted=8)
    payload = slack_digest(made)
    assert_within_slack_limits(payload)
    types = [b["type"] for b in payload["blocks"]]
    assert types == ["header", *["section"] * 5, "context", "context", "context"]
    assert payload["blocks"][0]["text"]["text"] == ":bell: 8 churn alerts for storm"
    first = payload["blocks"][1]["text"]["text"]
    assert first.startswith(":rotating_light: *cust-12* (smb) · 1,200.00 lifetime · `purchase-overdue` CRITICAL")
    footer = [b["elements"][0]["text"] for b in payload["blocks"][-3:]]
    assert (
        footer[0] == f"…and 3 more: every alert of this digest with `churnwatch alerts list --digest {made.digest_id}`"
    )
    assert footer[1].startswith(":hourglass: 4 more over this route's storm limit (50 an hour) wait")
    assert "cust-12" in payload["text"]


@pytest.mark.parametrize("message", ["m" * 5_000, "\x01" * 5_000, '"\\' * 2_500, "<!channel>&" * 500])
def test_the_largest_digest_stays_within_every_limit(message: str) -> None:
    alerts = [alert(n, customer_id=f"<!channel>{'x' * 300}{n}", message=message) for n in range(1, 41)]
    payload = slack_digest(digest(alerts, size=20))
    assert_within_slack_limits(payload)
    assert len([b for b in payload["blocks"] if b["type"] == "section"]) == 20
    assert "<!channel>" not in json.dumps(payload)


def test_the_json_digest_has_the_top_alerts_in_full_and_every_alert_listed() -> None:
    made = digest([alert(n) for n in range(1, 13)], size=3)
    document = digest_document(made)
    assert document["type"] == "digest" and document["digest_id"] == made.digest_id
    assert [Alert.model_validate(a).alert_id for a in document["alerts"]] == ["alert-0012", "alert-0011", "alert-0010"]
    assert [a["alert_id"] for a in document["all"]] == [f"alert-{n:04d}" for n in range(12, 0, -1)]
    assert (document["count"], document["rest"], document["held_back"]) == (12, 9, 0)


async def test_the_webhook_posts_the_digest_signed_with_its_id_as_idempotency_key() -> None:
    made = digest([alert(1), alert(2)])
    secret = SecretStr("s3cret-signing-key")
    async with LocalReceiver() as receiver:
        await WebhookNotifier(SecretStr(receiver.url_for("/hook")), secret=secret).notify_digest(made)
    [request] = receiver.requests
    assert request.headers["Idempotency-Key"] == made.digest_id
    assert request.json == digest_document(made)
    raw = json.dumps(digest_document(made), separators=(",", ":")).encode()
    assert verify_signature(
        secret,
        request.headers[TIMESTAMP_HEADER],
        raw,
        request.headers[SIGNATURE_HEADER],
        now=datetime.now(UTC).timestamp(),
    )


async def test_the_slack_web_api_posts_a_digest_once_per_id() -> None:
    made = digest([alert(1), alert(2)])
    ok = Reply(200, {"Content-Type": "application/json"}, json.dumps({"ok": True, "channel": "C1", "ts": "1.2"}))
    async with LocalReceiver([ok, ok]) as receiver:
        refs = InMemoryMessageRefs()
        slack = SlackWebApiNotifier(SecretStr("xoxb-1-2-token"), "#storm", refs, base_url=receiver.url)
        await slack.notify_digest(made)
        await slack.notify_digest(made)  # sent again after a crash: found remembered
    [request] = receiver.requests
    assert request.path == "/chat.postMessage" and request.json["blocks"] == slack_digest(made)["blocks"]
    assert await refs.lookup(made.digest_id) is not None


async def test_kafka_gets_one_record_keyed_by_group_and_the_log_one_line(caplog: pytest.LogCaptureFixture) -> None:
    made = digest([alert(n) for n in range(1, 4)], size=2)
    topic = RecordingTopic()
    await KafkaAlertNotifier(topic, name="warehouse").notify_digest(made)
    [(key, value, _)] = topic.sent
    assert key == b"storm@route.routes[1]" and json.loads(value or b"") == digest_document(made)

    with caplog.at_level(logging.INFO, logger="churnwatch.alerts"):
        await LogNotifier().notify_digest(made)
    [record] = caplog.records
    assert record.levelno == logging.CRITICAL  # alert 3 is critical
    assert record.getMessage().startswith(f"digest {made.digest_id} · 3 alerts for storm (route.routes[1]); top: ")
    assert record.getMessage().endswith(f"all: churnwatch alerts list --digest {made.digest_id}")


def readme_example() -> Digest:
    """The digest the README renders: seven alerts waiting for retention-team, five allowed, three shown."""
    at = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
    people = [
        ("cust-1042", 2140.5, "enterprise", "purchase-overdue", Severity.WARNING,
         "No purchase for 63 days, overdue for this customer: alerted after 30 days."),
        ("cust-0318", 1875.0, "enterprise", "nps-detractor", Severity.CRITICAL, "NPS answer 2/10 (previous answer 8)."),
        ("cust-2207", 960.25, "smb", "spend-drop", Severity.WARNING,
         "Spent 40.00 in the last 30 days, 22% of their usual 180.00."),
        ("cust-0871", 655.0, "smb", "purchase-overdue", Severity.WARNING,
         "No purchase for 41 days, overdue for this customer: alerted after 30 days."),
        ("cust-1730", 120.0, "trial", "purchase-overdue", Severity.WARNING,
         "No purchase for 35 days, overdue for this customer: alerted after 30 days."),
        ("cust-0099", 80.0, "trial", "spend-drop", Severity.WARNING,
         "Spent 0.00 in the last 30 days, 0% of their usual 35.00."),
        ("cust-1555", 45.5, "trial", "purchase-overdue", Severity.WARNING,
         "No purchase for 33 days, overdue for this customer: alerted after 30 days."),
    ]  # fmt: skip
    alerts = [
        make_alert(
            alert_id=f"00000000-0000-5000-8000-00000000000{i}",
            customer_id=customer,
            rule_id=rule,
            severity=severity,
            message=message,
            customer={"lifetime_spend": spend, "segment": segment},
        )
        for i, (customer, spend, segment, rule, severity, message) in enumerate(people)
    ]
    group_settings = GroupSettings(
        receiver="retention-team", route="route.routes[3]", digest=True, group_wait=timedelta(minutes=1),
        group_interval=timedelta(minutes=10), repeat_interval=timedelta(hours=4), max_alerts_per_hour=5, digest_size=3,
    )  # fmt: skip
    pending = [Pending(alert=a, since=at) for a in alerts]
    made, _ = plan_digest("retention-team@route.routes[3]", group_settings, GroupState(), pending, 5, at)
    return made


def test_the_readme_digest_is_what_the_formatter_sends() -> None:
    from tests.unit.test_readme_examples import ROOT, as_text

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Digests and the storm limit") :]
    shown = re.search(r"```text\n(.*?)\n```", section, re.S)
    assert shown is not None
    payload = slack_digest(readme_example())
    assert_within_slack_limits(payload)
    assert shown[1] == as_text(payload["blocks"])
    assert f"alerts list --digest {readme_example().digest_id}" in section.split("```")[1]
