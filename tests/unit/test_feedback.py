"""Feedback from Slack's buttons: payload parsing, the "who did what" block, the per-rule shares, and
the interactivity handler on requests signed exactly as Slack signs them (with in-memory stores)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from slack_sdk.models.blocks import Block, ContextBlock

from alerts.feedback import (
    ACTIONS_BLOCK_ID,
    FEEDBACK_BLOCK_ID,
    AlertFeedback,
    Answer,
    FeedbackPayloadError,
    InMemoryFeedbackStore,
    Outcome,
    click_of,
    payload_of,
    rule_stats,
    stats_table,
    with_feedback,
)
from alerts.model import Alert
from alerts.silence import InMemorySilenceStore, Listing
from alerts.slack_format import slack_blocks
from stream.metrics import Metrics
from stream.slack_interactions import SNOOZE_COMMENT, SlackInteractions
from tests.alerts_factory import make_alert

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_733_100_000.0
ALERT_ID = "0b6f6c1e-4d7c-5e59-9b1a-1f0e2c3d4a5b"
T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)


def alert() -> Alert:
    return make_alert(alert_id=ALERT_ID, customer_id="cust-42", rule_id="purchase-overdue")


def block_actions(action_id: str, *, user: str = "U024BE7LH", name: str = "ana", **extra: Any) -> dict[str, Any]:
    """A block_actions payload as Slack sends it for a click on one of the message's buttons."""
    message = slack_blocks(alert(), buttons=True)
    button = next(e for e in message["blocks"][-1]["elements"] if e["action_id"] == action_id)
    return {
        "type": "block_actions",
        "user": {"id": user, "username": name, "name": name, "team_id": "T9TK3CUKW"},
        "api_app_id": "A0CHURN",
        "team": {"id": "T9TK3CUKW", "domain": "example"},
        "container": {"type": "message", "message_ts": "1733100000.000100", "channel_id": "C0CHURN01"},
        "channel": {"id": "C0CHURN01", "name": "churn-alerts"},
        "message": {"type": "message", "ts": "1733100000.000100", **message},
        "response_url": "https://hooks.slack.com/actions/T9TK3CUKW/1/abc",
        "trigger_id": "123.456.789",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": ACTIONS_BLOCK_ID,
                "text": button["text"],
                "value": button["value"],
                "action_ts": "1733100001.123456",
            }
        ],
        **extra,
    }


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, *, timestamp: float = NOW, secret: str = SECRET) -> dict[str, str]:
    """Slack's scheme: v0=hex(HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + raw body))."""
    base = f"v0:{int(timestamp)}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(int(timestamp)), "X-Slack-Signature": f"v0={digest}"}


class Endpoint:
    def __init__(self) -> None:
        self.feedback = InMemoryFeedbackStore()
        self.silences = InMemorySilenceStore()
        self.metrics = Metrics(CollectorRegistry())
        self.updates: list[tuple[str, dict[str, Any]]] = []
        self.now = NOW

        async def respond(url: str, message: dict[str, Any]) -> None:
            self.updates.append((url, message))

        self.handler = SlackInteractions(
            SecretStr(SECRET), self.feedback, self.silences, self.metrics, clock=lambda: self.now, respond=respond
        )

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        reply = await self.handler.handle(body, headers)
        await self.handler.drain()
        return reply.status

    def counted(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


# --- parsing ---------------------------------------------------------------------------------------


def test_a_click_is_read_from_the_form_encoded_payload() -> None:
    click = click_of(payload_of(form(block_actions("churnwatch_false_alarm"))))

    assert click is not None
    assert (click.alert_id, click.rule, click.customer_id) == (ALERT_ID, "purchase-overdue", "cust-42")
    assert click.outcome is Outcome.FALSE_ALARM
    assert (click.user_id, click.user_name, click.author) == ("U024BE7LH", "ana", "ana (U024BE7LH)")
    assert click.response_url == "https://hooks.slack.com/actions/T9TK3CUKW/1/abc"
    assert click.blocks[-1]["block_id"] == ACTIONS_BLOCK_ID


@pytest.mark.parametrize(
    ("action_id", "outcome"),
    [
        ("churnwatch_acknowledge", Outcome.ACKNOWLEDGED),
        ("churnwatch_snooze_7d", Outcome.SNOOZED),
        ("churnwatch_false_alarm", Outcome.FALSE_ALARM),
        ("churnwatch_saved", Outcome.SAVED),
    ],
)
def test_each_button_is_its_outcome(action_id: str, outcome: Outcome) -> None:
    click = click_of(block_actions(action_id))
    assert click is not None and click.outcome is outcome


def test_other_interactions_are_not_ours() -> None:
    assert click_of({"type": "view_submission", "user": {"id": "U1"}}) is None
    other_app = block_actions("churnwatch_acknowledge")
    other_app["actions"][0]["action_id"] = "approve_deploy"
    assert click_of(other_app) is None


@pytest.mark.parametrize(
    "body",
    [b"", b"payload=", b"payload=%7Bnot+json", b"other=1", urlencode({"payload": "[1, 2]"}).encode(), b"\xff\xfe"],
)
def test_a_body_without_a_json_payload_is_refused(body: bytes) -> None:
    with pytest.raises(FeedbackPayloadError):
        payload_of(body)


@pytest.mark.parametrize("value", ["", "{}", '{"a": "not-a-uuid", "r": "x", "c": "y"}', f'{{"a": "{ALERT_ID}"}}'])
def test_a_button_value_naming_no_alert_is_refused(value: str) -> None:
    payload = block_actions("churnwatch_saved")
    payload["actions"][0]["value"] = value
    with pytest.raises(FeedbackPayloadError, match="names no alert"):
        click_of(payload)


def test_a_block_actions_payload_without_a_user_is_refused() -> None:
    payload = block_actions("churnwatch_saved")
    del payload["user"]
    with pytest.raises(FeedbackPayloadError):
        click_of(payload)


# --- the message update ------------------------------------------------------------------------------


def test_the_updated_message_says_who_did_what_latest_first_and_keeps_the_buttons() -> None:
    blocks = slack_blocks(alert(), buttons=True)["blocks"]
    answers = [
        Answer("U024BE7LH", "ana", Outcome.ACKNOWLEDGED, T0),
        Answer("W0BOB", "bo", Outcome.SAVED, T0 + timedelta(hours=2)),
        Answer("not an id <!channel>", "<!channel>", Outcome.FALSE_ALARM, T0 + timedelta(hours=1)),
    ]

    updated = with_feedback(blocks, answers)

    assert updated[: len(blocks)] == blocks  # the alert and its buttons, unchanged
    feedback = updated[-1]
    assert feedback["block_id"] == FEEDBACK_BLOCK_ID
    assert feedback["elements"][0]["text"].splitlines() == [
        "*Customer saved* by <@W0BOB> · 2025-03-01 11:30 UTC",
        "*Marked a false alarm* by &lt;!channel&gt; · 2025-03-01 10:30 UTC",
        "*Acknowledged* by <@U024BE7LH> · 2025-03-01 09:30 UTC",
    ]
    assert isinstance(Block.parse_all(updated)[-1], ContextBlock)
    assert [b.to_dict() for b in Block.parse_all(updated)] == updated
    # Updating again replaces the block rather than adding a second one.
    again = with_feedback(updated, answers[:1])
    assert [b.get("block_id") for b in again].count(FEEDBACK_BLOCK_ID) == 1
    assert again[-1]["elements"][0]["text"].startswith("*Acknowledged*")


def test_many_answers_are_cut_to_ten_lines() -> None:
    answers = [Answer(f"U{i:04d}", f"u{i}", Outcome.ACKNOWLEDGED, T0 + timedelta(minutes=i)) for i in range(25)]
    text = with_feedback(slack_blocks(alert(), buttons=True)["blocks"], answers)[-1]["elements"][0]["text"]
    assert len(text.splitlines()) == 11 and text.endswith("… and 15 more")


# --- the arithmetic of `rules stats` -----------------------------------------------------------------


def answered(alert_id: str, rule: str, *answers: tuple[str, Outcome, int]) -> AlertFeedback:
    return AlertFeedback(
        alert_id, rule, "cust", tuple(Answer(u, u, o, T0 + timedelta(minutes=m)) for u, o, m in answers)
    )


def test_each_alert_counts_once_by_its_latest_answer_and_shares_add_up() -> None:
    feedback = [
        answered("a1", "spend-drop", ("ana", Outcome.ACKNOWLEDGED, 0), ("bo", Outcome.FALSE_ALARM, 5)),
        answered("a2", "spend-drop", ("ana", Outcome.FALSE_ALARM, 1)),
        answered("a3", "spend-drop", ("ana", Outcome.ACKNOWLEDGED, 2)),
        answered("a4", "spend-drop", ("bo", Outcome.SNOOZED, 3)),
        answered("b1", "nps-detractor", ("ana", Outcome.SAVED, 9), ("bo", Outcome.ACKNOWLEDGED, 4)),
        answered("b2", "nps-detractor"),  # no answer: not an answered alert
    ]

    stats = {s.rule: s for s in rule_stats(feedback)}

    assert list(stats) == ["nps-detractor", "spend-drop"]
    spend = stats["spend-drop"]
    assert spend.alerts == 4
    assert spend.counts == {Outcome.ACKNOWLEDGED: 1, Outcome.FALSE_ALARM: 2, Outcome.SNOOZED: 1, Outcome.SAVED: 0}
    assert (spend.share(Outcome.FALSE_ALARM), spend.share(Outcome.ACKNOWLEDGED)) == (0.5, 0.25)
    assert sum(spend.share(o) for o in Outcome) == 1.0
    assert stats["nps-detractor"].alerts == 1 and stats["nps-detractor"].share(Outcome.SAVED) == 1.0
    assert stats_table(rule_stats(feedback)) == [
        "rule           alerts  acknowledged   false alarm         saved       snoozed",
        "nps-detractor       1            0%            0%          100%            0%",
        "spend-drop          4           25%           50%            0%           25%",
    ]


def test_no_feedback_is_an_empty_table() -> None:
    assert rule_stats([]) == []
    assert stats_table([]) == ["rule  alerts  acknowledged   false alarm         saved       snoozed"]


# --- the handler ----------------------------------------------------------------------------------------


async def test_a_signed_click_is_recorded_counted_and_the_message_updated() -> None:
    endpoint = Endpoint()
    body = form(block_actions("churnwatch_acknowledge"))

    assert await endpoint.post(body, signed(body)) == 200

    recorded = await endpoint.feedback.feedback(ALERT_ID)
    assert recorded is not None and recorded.rule == "purchase-overdue"
    assert [(a.user_id, a.outcome) for a in recorded.answers] == [("U024BE7LH", Outcome.ACKNOWLEDGED)]
    assert endpoint.counted("churnwatch_alert_feedback_total", rule="purchase-overdue", outcome="acknowledged") == 1
    [(url, message)] = endpoint.updates
    assert url == "https://hooks.slack.com/actions/T9TK3CUKW/1/abc"
    assert message["replace_original"] is True
    assert message["blocks"][-1]["elements"][0]["text"].startswith("*Acknowledged* by <@U024BE7LH>")
    assert await endpoint.silences.silences(Listing.ALL, T0) == []  # only a snooze silences


async def test_a_retried_or_repeated_click_is_recorded_and_counted_once() -> None:
    endpoint = Endpoint()
    body = form(block_actions("churnwatch_false_alarm"))
    for _ in range(3):  # Slack's retries carry the same body, signed anew
        endpoint.now += 1
        assert await endpoint.post(body, signed(body, timestamp=endpoint.now)) == 200

    assert endpoint.counted("churnwatch_alert_feedback_total", rule="purchase-overdue", outcome="false_alarm") == 1
    recorded = await endpoint.feedback.feedback(ALERT_ID)
    assert recorded is not None and len(recorded.answers) == 1
    assert len(endpoint.updates) == 3  # each attempt gets the (same) message back


async def test_a_changed_answer_replaces_the_persons_answer_and_others_keep_theirs() -> None:
    endpoint = Endpoint()
    for action, user in [
        ("churnwatch_acknowledge", "U1ANA"),
        ("churnwatch_saved", "U2BO"),
        ("churnwatch_saved", "U1ANA"),
    ]:
        body = form(block_actions(action, user=user, name=user.lower()))
        assert await endpoint.post(body, signed(body)) == 200

    recorded = await endpoint.feedback.feedback(ALERT_ID)
    assert recorded is not None
    assert sorted((a.user_id, a.outcome) for a in recorded.answers) == [
        ("U1ANA", Outcome.SAVED),
        ("U2BO", Outcome.SAVED),
    ]
    assert endpoint.counted("churnwatch_alert_feedback_total", rule="purchase-overdue", outcome="saved") == 2
    assert endpoint.counted("churnwatch_alert_feedback_total", rule="purchase-overdue", outcome="acknowledged") == 1


async def test_a_snooze_silences_that_customer_and_rule_for_seven_days_once() -> None:
    endpoint = Endpoint()
    body = form(block_actions("churnwatch_snooze_7d"))
    assert await endpoint.post(body, signed(body)) == 200
    assert await endpoint.post(body, signed(body)) == 200  # a retry: the same silence, not a second

    now = datetime.fromtimestamp(NOW, UTC)
    [silence] = await endpoint.silences.silences(Listing.ALL, now)
    assert silence.describe() == "customer_id=cust-42 rule=purchase-overdue"
    assert (silence.starts_at, silence.ends_at) == (now, now + timedelta(days=7))
    assert (silence.created_by, silence.comment) == ("ana (U024BE7LH)", SNOOZE_COMMENT)
    assert silence.matches(alert())
    assert endpoint.counted("churnwatch_alert_feedback_total", rule="purchase-overdue", outcome="snoozed") == 1


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "unsigned"),
        ({"X-Slack-Request-Timestamp": str(int(NOW))}, "unsigned"),
        ({"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}, "bad_timestamp"),
    ],
)
async def test_unsigned_requests_get_401_and_are_counted(headers: dict[str, str], reason: str) -> None:
    endpoint = Endpoint()
    assert await endpoint.post(form(block_actions("churnwatch_saved")), headers) == 401
    assert endpoint.counted("churnwatch_slack_requests_rejected_total", reason=reason) == 1
    assert endpoint.feedback.alerts == {}


async def test_a_forged_signature_gets_401_and_records_nothing() -> None:
    endpoint = Endpoint()
    body = form(block_actions("churnwatch_snooze_7d"))

    assert await endpoint.post(body, signed(body, secret="not-the-secret")) == 401
    tampered = form(block_actions("churnwatch_snooze_7d", user="U0MALLORY"))
    assert await endpoint.post(tampered, signed(body)) == 401  # a valid signature of another body

    assert endpoint.counted("churnwatch_slack_requests_rejected_total", reason="bad_signature") == 2
    assert endpoint.feedback.alerts == {} and endpoint.silences.by_id == {} and endpoint.updates == []


@pytest.mark.parametrize("age", [301, -301, 3600])
async def test_a_stale_timestamp_gets_401_even_correctly_signed(age: int) -> None:
    endpoint = Endpoint()
    body = form(block_actions("churnwatch_saved"))
    assert await endpoint.post(body, signed(body, timestamp=NOW - age)) == 401
    assert endpoint.counted("churnwatch_slack_requests_rejected_total", reason="stale_timestamp") == 1
    assert endpoint.feedback.alerts == {}


async def test_a_signed_body_that_is_no_payload_gets_400_and_other_interactions_200() -> None:
    endpoint = Endpoint()
    garbage = b"payload=%7Bnot+json"
    assert await endpoint.post(garbage, signed(garbage)) == 400
    assert endpoint.counted("churnwatch_slack_requests_rejected_total", reason="bad_payload") == 1
    shortcut = form({"type": "shortcut", "callback_id": "x", "user": {"id": "U1"}})
    assert await endpoint.post(shortcut, signed(shortcut)) == 200
    assert endpoint.feedback.alerts == {}


async def test_a_store_that_fails_answers_500_and_counts_nothing() -> None:
    endpoint = Endpoint()

    async def broken(*args: object) -> None:
        raise ConnectionError("redis down")

    endpoint.feedback.answer = broken  # type: ignore[method-assign,assignment]
    body = form(block_actions("churnwatch_saved"))
    assert await endpoint.post(body, signed(body)) == 500
    assert endpoint.counted("churnwatch_alert_feedback_total", rule="purchase-overdue", outcome="saved") == 0


def test_the_endpoint_exists_only_with_a_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.asyncio import Redis

    from stream.settings import Settings
    from stream.slack_interactions import build_interactions

    metrics, redis = Metrics(CollectorRegistry()), Redis()
    monkeypatch.setenv("CHURNWATCH_SLACK_SIGNING_SECRET", "")
    assert build_interactions(Settings(), redis, metrics) is None  # empty means off
    monkeypatch.setenv("CHURNWATCH_SLACK_SIGNING_SECRET", SECRET)
    settings = Settings()
    assert SECRET not in repr(settings)
    assert isinstance(build_interactions(settings, redis, metrics), SlackInteractions)
