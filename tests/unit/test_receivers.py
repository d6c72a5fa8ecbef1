"""The receiver registry: each receiver of a routes file becomes a notifier named after it; a missing
secret or a bad file refuses the worker's start; a resolution carries its customer's figures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError
from click.testing import CliRunner
from pydantic import SecretStr

from alerts.links import LinkTemplate
from alerts.log_sink import LogNotifier
from alerts.message_refs import InMemoryMessageRefs, MessageRefs
from alerts.model import Alert
from alerts.notifier import Notifier, RetryableDeliveryError
from alerts.receivers import (
    RECEIVER_REGISTRY,
    RECEIVER_TYPES,
    MissingSecret,
    ReceiverConfig,
    SlackApiReceiver,
    build_receiver,
)
from alerts.routing import RoutesConfigError, parse_routes
from alerts.slack import SlackNotifier
from alerts.slack_web import SlackWebApiNotifier
from alerts.webhook import WebhookNotifier
from rules.evaluation import CUSTOMER_CONTEXT
from rules.ruleset import load_rule_set
from stream.app import build_notifiers
from stream.cli import main
from stream.decoding import DecodePolicy
from stream.kafka_sinks import KafkaAlertNotifier
from stream.receiver_resources import missing_secrets, read_secret
from stream.replay import build_replay, records_of
from stream.settings import Settings, Topics
from stream.windows.store import WindowPolicy
from tests.alerts_factory import make_alert
from tests.events_factory import interaction, purchase, weekly_purchases
from tests.fakes import RecordingTopic
from tests.rule_files import OVERDUE_RULES
from tests.unit.http_receiver import LocalReceiver, Reply

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
ROUTES_YAML = """
receivers:
  - {name: default, type: log}
  - {name: churn-vip, type: slack_api, token_env: T_VIP_TOKEN, channel: "#churn-vip"}
  - {name: retention-team, type: slack_webhook, url_env: T_RETENTION_URL}
  - {name: crm, type: webhook, url_env: T_CRM_URL, signing_secret_env: T_CRM_SECRET}
  - {name: warehouse, type: kafka, topic: churnwatch.warnings}
route:
  receiver: default
"""
ROUTES = parse_routes(ROUTES_YAML, "routes.yaml")
SECRETS = {
    "T_VIP_TOKEN": "xoxb-vip",
    "T_RETENTION_URL": "https://hooks.example/r",
    "T_CRM_URL": "https://crm.example/h",
    "T_CRM_SECRET": "s3cret",
}


class FakeResources:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.refs_for: list[str] = []
        self.topics: list[str] = []

    @property
    def messages_per_second(self) -> float:
        return 2.0

    @property
    def slack_buttons(self) -> bool:
        return False

    @property
    def alert_links(self) -> tuple[LinkTemplate, ...]:
        return ()

    def secret(self, variable: str) -> SecretStr:
        if variable not in self.secrets:
            raise MissingSecret(variable)
        return SecretStr(self.secrets[variable])

    def message_refs(self, receiver: str) -> MessageRefs:
        self.refs_for.append(receiver)
        return InMemoryMessageRefs()

    def kafka_notifier(self, name: str, topic: str) -> Notifier:
        self.topics.append(topic)
        return KafkaAlertNotifier(RecordingTopic(), name=name)


def alert() -> Alert:
    return make_alert(customer_id="cust-42")


def test_every_receiver_type_is_registered_once_with_a_builder() -> None:
    assert RECEIVER_TYPES == ("slack_webhook", "slack_api", "webhook", "kafka", "log")
    assert len({t.config for t in RECEIVER_REGISTRY}) == len(RECEIVER_REGISTRY)


def test_each_receiver_becomes_its_notifier_named_after_the_receiver() -> None:
    resources = FakeResources(SECRETS)
    notifiers = [build_receiver(r, resources) for r in ROUTES.receivers]

    assert [n.name for n in notifiers] == ["default", "churn-vip", "retention-team", "crm", "warehouse"]
    assert [type(n) for n in notifiers] == [
        LogNotifier,
        SlackWebApiNotifier,
        SlackNotifier,
        WebhookNotifier,
        KafkaAlertNotifier,
    ]
    assert resources.refs_for == ["churn-vip"]  # its message refs are kept under its own name
    assert resources.topics == ["churnwatch.warnings"]
    assert "xoxb-vip" not in repr(notifiers) and "s3cret" not in repr(notifiers)


def test_a_missing_secret_is_named_with_its_receiver_and_field(tmp_path: Path) -> None:
    environ = {k: v for k, v in SECRETS.items() if k != "T_CRM_SECRET"} | {"T_RETENTION_URL": ""}
    problems = [str(p) for p in missing_secrets(ROUTES, "routes.yaml", environ)]
    assert problems == [
        "routes.yaml: field 'receivers[3].url_env': receiver 'retention-team': environment variable "
        "T_RETENTION_URL is not set (or empty)",
        "routes.yaml: field 'receivers[4].signing_secret_env': receiver 'crm': environment variable "
        "T_CRM_SECRET is not set (or empty)",
    ]
    with pytest.raises(MissingSecret, match="T_CRM_SECRET"):
        build_receiver(ROUTES.receivers[3], FakeResources(environ))

    (tmp_path / "t_crm_secret").write_text("from-a-file\n")  # as every setting: a secret file in lower case
    assert read_secret("T_CRM_SECRET", environ, tmp_path) == "from-a-file"
    assert read_secret("T_CRM_SECRET", {"T_CRM_SECRET": "env-wins"}, tmp_path) == "env-wins"


def test_the_worker_builds_the_routes_receivers_instead_of_the_settings_notifiers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHURNWATCH_WEBHOOK_URL", "https://ignored.example/h")
    made: list[str] = []

    def topic(name: str) -> RecordingTopic:
        made.append(name)
        return RecordingTopic()

    notifiers = build_notifiers(Settings(), ROUTES, kafka_topic=topic)

    assert [n.name for n in notifiers] == [r.name for r in ROUTES.receivers]
    assert made == ["churnwatch.warnings"]
    assert [n.name for n in build_notifiers(Settings())] == ["log", "webhook"]  # no routes: as before


async def test_a_kafka_receiver_produces_the_alert_json_keyed_by_customer_and_waits_for_the_ack() -> None:
    topic = RecordingTopic(acked=False)
    delivery = asyncio.ensure_future(KafkaAlertNotifier(topic, name="warehouse").notify(alert()))
    await asyncio.sleep(0.05)
    assert topic.sent and not delivery.done()  # sent, but not delivered before the broker's ack
    topic.pending[0].set_result(None)
    await asyncio.wait_for(delivery, 1)
    [(key, value, _)] = topic.sent
    assert key == b"cust-42"
    assert value is not None and Alert.model_validate_json(value) == alert()


async def test_a_broker_that_does_not_acknowledge_is_a_retryable_failure() -> None:
    class Unacknowledged(RecordingTopic):
        async def send(self, **kwargs: object) -> object:  # type: ignore[override]
            raise KafkaTimeoutError()

    with pytest.raises(RetryableDeliveryError, match="warehouse: KafkaTimeoutError"):
        await KafkaAlertNotifier(Unacknowledged(), name="warehouse").notify(alert())


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (
            ROUTES_YAML.replace("matchers", "").replace("receiver: default\n", "receiver: default\n  sevrity: x\n"),
            "field 'route.sevrity': unknown field (misspelt?)",
        ),
        (ROUTES_YAML, "receiver 'churn-vip': environment variable T_VIP_TOKEN is not set (or empty)"),
    ],
)
def test_the_worker_refuses_to_start_on_a_bad_routes_file(tmp_path: Path, routes: str, expected: str) -> None:
    file = tmp_path / "routes.yaml"
    file.write_text(routes)
    result = CliRunner().invoke(main, ["worker"], env={"CHURNWATCH_ROUTES_FILE": str(file)})
    assert result.exit_code == 2
    assert f"invalid routes file {file}; refusing to start" in result.output
    assert expected in result.output


async def test_a_resolution_carries_the_customers_figures_at_their_return(tmp_path: Path) -> None:
    (tmp_path / "overdue.yaml").write_text(OVERDUE_RULES)
    replay = build_replay(
        load_rule_set(tmp_path),
        topics=Topics(),
        window_policy=WindowPolicy(timedelta(days=150), timedelta(days=7), timedelta(days=180), 10),
        decode_policy=DecodePolicy(max_message_bytes=65536, max_future_skew=timedelta(hours=1), currency="USD"),
    )
    history = [
        *weekly_purchases("vip", NOW, 119, 0),  # 18 purchases of 20.00
        *(interaction("other", NOW + timedelta(days=n, hours=1)) for n in range(31)),
        purchase("vip", NOW + timedelta(days=30), amount="1500.00"),
    ]
    await replay.run(records_of(history, Topics()), until=NOW + timedelta(days=31))

    firing, resolution = replay.publisher.alerts
    assert resolution.status == "resolved" and resolution.resolves == firing.alert_id
    assert set(resolution.customer) == set(CUSTOMER_CONTEXT) == set(firing.customer)
    assert firing.customer["lifetime_spend"] == 360.0 and firing.customer["lifetime_purchases"] == 18
    assert resolution.customer["lifetime_spend"] == 1860.0
    assert resolution.customer["lifetime_purchases"] == 19
    assert resolution.customer["days_since_last_purchase"] == 0.0


def slack_api_receiver(api_url: str | None) -> ReceiverConfig:
    line = "{name: gov, type: slack_api, token_env: T_GOV_TOKEN, channel: '#churn'"
    line += "}" if api_url is None else f", api_url: '{api_url}'}}"
    (receiver,) = parse_routes(f"receivers:\n  - {line}\nroute: {{receiver: gov}}\n", "routes.yaml").receivers
    return receiver


@pytest.mark.parametrize(
    ("api_url", "expected"),
    [
        (None, None),  # Slack's own https://slack.com/api/
        ("https://slack-gov.com/api/", "https://slack-gov.com/api/"),
        ("https://slack-gov.com/api", "https://slack-gov.com/api/"),  # the methods are joined onto it
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/"),
        ("http://127.0.0.1:8080/slack/api", "http://127.0.0.1:8080/slack/api/"),
    ],
)
def test_a_slack_api_receiver_takes_an_http_api_url_ending_with_a_slash(api_url: str | None, expected: str) -> None:
    receiver = slack_api_receiver(api_url)
    assert isinstance(receiver, SlackApiReceiver)
    assert (None if receiver.api_url is None else str(receiver.api_url)) == expected


@pytest.mark.parametrize(
    ("api_url", "expected"),
    [
        ("not a url", "Input should be a valid URL"),
        ("slack-gov.com/api", "Input should be a valid URL"),
        ("", "Input should be a valid URL, input is empty"),
        ("ftp://slack-gov.com/api", "URL scheme should be 'http' or 'https'"),
        ("https://bot:xoxb-1@slack-gov.com/api", "credentials in the URL would put a secret in the file"),
        ("https://slack-gov.com/api?team=T1", "a base URL has no query or fragment"),
    ],
)
def test_a_slack_api_receiver_refuses_an_api_url_that_is_no_http_base_url(api_url: str, expected: str) -> None:
    with pytest.raises(RoutesConfigError, match=r"field 'receivers\[1\]\.api_url': ") as raised:
        slack_api_receiver(api_url)
    assert expected in str(raised.value)
    assert "xoxb-1" not in str(raised.value)


async def test_a_slack_api_receiver_posts_to_its_api_url() -> None:
    answer = Reply(200, {"Content-Type": "application/json"}, '{"ok": true, "channel": "C0GOV", "ts": "1.000100"}')
    async with LocalReceiver([answer]) as server:
        notifier = build_receiver(
            slack_api_receiver(server.url_for("/gov/api")), FakeResources({"T_GOV_TOKEN": "xoxb-gov"})
        )
        await notifier.notify(alert())
    [request] = server.requests
    assert request.path == "/gov/api/chat.postMessage"
    assert request.json["channel"] == "#churn"
    assert request.headers["Authorization"] == "Bearer xoxb-gov"
