"""SlackWebApiNotifier through the real slack_sdk AsyncWebClient, against a local server standing in
for Slack's Web API (it answers ``{"ok": true, "channel": ..., "ts": ...}`` as Slack does)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement, ContextBlock, HeaderBlock, SectionBlock

from alerts.dispatch import AlertDispatcher, DeliveryOutcome, InMemoryDeliveryLog
from alerts.message_refs import InMemoryMessageRefs, MessageRef
from alerts.model import Alert, alert_id_for
from alerts.notifier import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from alerts.slack_format import slack_blocks
from alerts.slack_web import SlackWebApiNotifier
from rules.base import Severity
from stream.app import build_notifiers
from stream.settings import Settings
from tests.unit.http_receiver import LocalReceiver, ReceivedRequest, Reply

TOKEN = "xoxb-1111-2222-SecretBotTokenValue9f8e"
CHANNEL = "#churn-alerts"
CHANNEL_ID = "C0CHURN01"
"""Slack answers with the channel's id even when posted to by name; chat.update needs the id."""
ALERTED = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
RETURNED = ALERTED + timedelta(days=12)
JSON = {"Content-Type": "application/json; charset=utf-8"}


def slack_ok(ts: str, channel: str = CHANNEL_ID) -> Reply:
    return Reply(200, JSON, json.dumps({"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts}}))


def slack_error(error: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, {**JSON, **(headers or {})}, json.dumps({"ok": False, "error": error}))


def firing() -> Alert:
    return Alert(
        alert_id=alert_id_for("cust-42", "purchase-overdue", "claim-1"),
        customer_id="cust-42",
        rule_id="purchase-overdue",
        severity=Severity.WARNING,
        message="No purchase for 42.4 days, overdue for this customer.",
        evidence={"days_since_purchase": 42.4, "threshold_days": 30.0},
        customer={"lifetime_spend": 1840.5, "segment": "smb"},
        evaluated_at=ALERTED,
        detected_at=ALERTED,
        trigger_event_id="evt-1",
        trigger_topic="churnwatch.purchases",
    )


def resolution() -> Alert:
    return Alert.resolution(
        customer_id="cust-42",
        rule_id="purchase-overdue",
        claim_key="claim-1",
        severity=Severity.WARNING,
        alerted_at=ALERTED,
        returned_at=RETURNED,
        trigger_event_id="evt-9",
        trigger_topic="churnwatch.purchases",
        detected_at=RETURNED,
    )


def notifier(
    receiver: LocalReceiver, refs: Any = None, **options: Any
) -> tuple[SlackWebApiNotifier, InMemoryMessageRefs]:
    refs = refs if refs is not None else InMemoryMessageRefs()
    options = {"messages_per_second": 100.0, **options}
    return SlackWebApiNotifier(SecretStr(TOKEN), CHANNEL, refs, base_url=receiver.url, **options), refs


def assert_valid_blocks(blocks: list[dict[str, Any]]) -> list[Block]:
    """slack_sdk's own Block Kit models read the blocks back unchanged (to_dict validates limits)."""
    parsed = Block.parse_all(blocks)
    assert len(parsed) == len(blocks)
    assert [block.to_dict() for block in parsed] == blocks
    return parsed


def header_text(request: ReceivedRequest) -> str:
    header = request.json["blocks"][0]
    assert header["type"] == "header"
    return str(header["text"]["text"])


async def test_posts_the_block_kit_alert_with_the_bot_token_and_remembers_where() -> None:
    async with LocalReceiver([slack_ok("1733100000.000100")]) as receiver:
        slack, refs = notifier(receiver)
        await slack.notify(firing())

    [request] = receiver.requests
    assert request.path == "/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"].startswith("application/json")
    assert TOKEN not in json.dumps(request.json)  # the token travels in the header only
    expected = slack_blocks(firing(), buttons=True)
    assert request.json["channel"] == CHANNEL
    assert request.json["text"] == expected["text"]
    assert request.json["blocks"] == expected["blocks"]
    assert "thread_ts" not in request.json
    parsed = assert_valid_blocks(request.json["blocks"])
    assert isinstance(parsed[0], HeaderBlock) and isinstance(parsed[1], SectionBlock)
    assert isinstance(parsed[-2], ContextBlock)
    # The Web API's messages can be updated, so they carry the feedback buttons.
    assert isinstance(parsed[-1], ActionsBlock)
    assert all(isinstance(e, ButtonElement) for e in parsed[-1].elements)
    assert [e.text.text for e in parsed[-1].elements] == [
        "Acknowledge",
        "Snooze 7 days",
        "False alarm",
        "Customer saved",
    ]
    assert await refs.lookup(firing().alert_id) == MessageRef(CHANNEL_ID, "1733100000.000100")


async def test_without_buttons_the_message_is_the_webhooks() -> None:
    async with LocalReceiver([slack_ok("1733100000.000100")]) as receiver:
        slack, _ = notifier(receiver, buttons=False)
        await slack.notify(firing())

    assert receiver.requests[0].json["blocks"] == slack_blocks(firing())["blocks"]
    assert all(b["type"] != "actions" for b in receiver.requests[0].json["blocks"])


async def test_a_resolution_updates_the_original_message_and_replies_in_its_thread() -> None:
    original_ts, reply_ts = "1733100000.000100", "1734136800.000200"
    replies = [slack_ok(original_ts), slack_ok(original_ts), slack_ok(reply_ts)]
    async with LocalReceiver(replies) as receiver:
        slack, refs = notifier(receiver)
        await slack.notify(firing())
        await slack.notify(resolution())

    assert [r.path for r in receiver.requests] == ["/chat.postMessage", "/chat.update", "/chat.postMessage"]
    _, update, reply = receiver.requests
    expected = slack_blocks(resolution())
    # The original, found by the channel id Slack answered with (not the configured name), marked resolved.
    assert update.json["channel"] == CHANNEL_ID
    assert update.json["ts"] == original_ts
    assert update.json["blocks"] == expected["blocks"]
    assert update.json["text"].startswith("[RESOLVED]")
    assert header_text(update).startswith(":white_check_mark: Resolved")
    assert f"Resolves alert `{firing().alert_id}`" in update.json["blocks"][-1]["elements"][0]["text"]
    assert update.headers["Authorization"] == f"Bearer {TOKEN}"
    assert_valid_blocks(update.json["blocks"])
    # The reply, in the original's thread, so whoever followed it is told.
    assert reply.json["channel"] == CHANNEL_ID
    assert reply.json["thread_ts"] == original_ts
    assert reply.json["blocks"] == expected["blocks"]
    assert_valid_blocks(reply.json["blocks"])
    assert await refs.lookup(resolution().alert_id) == MessageRef(CHANNEL_ID, reply_ts)
    assert await refs.lookup(firing().alert_id) == MessageRef(CHANNEL_ID, original_ts)


async def test_a_resolution_whose_original_is_unknown_is_posted_as_a_new_message() -> None:
    async with LocalReceiver([slack_ok("1734136800.000300")]) as receiver:
        slack, refs = notifier(receiver)
        await slack.notify(resolution())

    [request] = receiver.requests
    assert request.path == "/chat.postMessage"
    assert request.json["channel"] == CHANNEL
    assert "thread_ts" not in request.json
    assert request.json["blocks"] == slack_blocks(resolution())["blocks"]
    assert await refs.lookup(resolution().alert_id) == MessageRef(CHANNEL_ID, "1734136800.000300")


async def test_a_resolution_whose_original_was_deleted_is_posted_as_a_new_message() -> None:
    refs = InMemoryMessageRefs()
    await refs.remember(firing().alert_id, CHANNEL_ID, "1733100000.000100")
    async with LocalReceiver([slack_error("message_not_found"), slack_ok("1734136800.000400")]) as receiver:
        slack, _ = notifier(receiver, refs)
        await slack.notify(resolution())

    update, post = receiver.requests
    assert update.path == "/chat.update"
    assert post.path == "/chat.postMessage"
    assert post.json["channel"] == CHANNEL
    assert "thread_ts" not in post.json


async def test_an_alert_already_posted_is_not_posted_again() -> None:
    """A redelivery whose delivery-log mark was lost: the remembered message says it was sent."""
    async with LocalReceiver([slack_ok("1733100000.000100")]) as receiver:
        slack, _ = notifier(receiver)
        await slack.notify(firing())
        await slack.notify(firing())

    assert len(receiver.requests) == 1


async def test_ratelimited_429_with_retry_after_is_retryable_with_the_servers_wait() -> None:
    limited = slack_error("ratelimited", status=429, headers={"Retry-After": "7"})
    async with LocalReceiver(default=limited) as receiver:
        slack, refs = notifier(receiver, max_retry_after=1.0)
        with pytest.raises(RetryableDeliveryError) as caught:
            await slack.notify(firing())

    assert len(receiver.requests) == 1  # a wait longer than max_retry_after is left to the dispatcher
    assert caught.value.status == 429
    assert caught.value.retry_after == 7
    assert str(caught.value) == "slack_web: chat.postMessage: ratelimited (HTTP 429)"
    assert await refs.lookup(firing().alert_id) is None


async def test_a_short_retry_after_is_waited_out_in_the_client() -> None:
    limited = slack_error("ratelimited", status=429, headers={"Retry-After": "0.2"})
    async with LocalReceiver([limited, slack_ok("1733100000.000500")]) as receiver:
        slack, refs = notifier(receiver)
        await slack.notify(firing())

    assert len(receiver.requests) == 2
    assert receiver.requests[0].json == receiver.requests[1].json
    assert await refs.lookup(firing().alert_id) == MessageRef(CHANNEL_ID, "1733100000.000500")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (slack_error("invalid_auth"), "invalid_auth (HTTP 200)"),
        (slack_error("channel_not_found"), "channel_not_found (HTTP 200)"),
        (slack_error("not_in_channel"), "not_in_channel (HTTP 200)"),
        (slack_error("invalid_blocks"), "invalid_blocks (HTTP 200)"),
        (slack_error("invalid_arguments", status=400), "invalid_arguments (HTTP 400)"),
        (Reply(404, body="no such method"), "no error code (HTTP 404)"),
    ],
)
async def test_refusals_are_permanent_and_say_why(reply: Reply, reason: str) -> None:
    async with LocalReceiver(default=reply) as receiver:
        slack, refs = notifier(receiver)
        with pytest.raises(PermanentDeliveryError) as caught:
            await slack.notify(firing())

    assert len(receiver.requests) == 1
    assert str(caught.value) == f"slack_web: chat.postMessage: {reason}"
    assert await refs.lookup(firing().alert_id) is None


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (Reply(500, body="upstream broke"), 500),
        (slack_error("fatal_error", status=500), 500),
        (Reply(503, {"Content-Type": "text/html"}, "<html>maintenance</html>"), 503),
        (slack_error("internal_error"), 200),
        (slack_error("service_unavailable"), 200),
    ],
)
async def test_slacks_own_trouble_is_retryable_in_one_request(reply: Reply, status: int) -> None:
    async with LocalReceiver(default=reply) as receiver:
        slack, _ = notifier(receiver)
        with pytest.raises(RetryableDeliveryError) as caught:
            await slack.notify(firing())

    assert len(receiver.requests) == 1  # the client never retries these: the dispatcher does
    assert caught.value.status == status
    assert receiver.url not in str(caught.value)


async def test_a_failed_update_is_retried_whole_by_the_dispatcher() -> None:
    """update 500, then update + reply: the resolution lands once the update goes through."""
    refs = InMemoryMessageRefs()
    await refs.remember(firing().alert_id, CHANNEL_ID, "1733100000.000100")
    replies = [Reply(500, body="oops"), slack_ok("1733100000.000100"), slack_ok("1734136800.000600")]
    async with LocalReceiver(replies) as receiver:
        slack, _ = notifier(receiver, refs)
        dispatcher = AlertDispatcher([slack], InMemoryDeliveryLog(), attempts=3, backoff_max=0.05)
        result = await dispatcher.dispatch(resolution())

    assert result.outcome("slack_web") is DeliveryOutcome.DELIVERED
    assert result.outcomes[0].attempts == 2
    assert [r.path for r in receiver.requests] == ["/chat.update", "/chat.update", "/chat.postMessage"]
    assert receiver.requests[2].json["thread_ts"] == "1733100000.000100"


async def test_connection_refused_is_retryable_and_redacted() -> None:
    async with LocalReceiver() as receiver:
        url = receiver.url
    slack = SlackWebApiNotifier(SecretStr(TOKEN), CHANNEL, InMemoryMessageRefs(), base_url=url, connection_retries=0)
    with pytest.raises(RetryableDeliveryError) as caught:
        await slack.notify(firing())
    assert "ClientConnectorError" in str(caught.value)
    assert TOKEN not in str(caught.value)


class BrokenRefs:
    def __init__(self, *, lookup_fails: bool = False, remember_fails: bool = False) -> None:
        self.lookup_fails, self.remember_fails = lookup_fails, remember_fails

    async def remember(self, alert_id: str, channel: str, ts: str) -> None:
        if self.remember_fails:
            raise ConnectionError("redis went away")

    async def lookup(self, alert_id: str) -> MessageRef | None:
        if self.lookup_fails:
            raise ConnectionError("redis went away")
        return None


async def test_refs_that_cannot_be_read_send_nothing_and_are_retryable() -> None:
    async with LocalReceiver(default=slack_ok("1733100000.000100")) as receiver:
        slack, _ = notifier(receiver, BrokenRefs(lookup_fails=True))
        with pytest.raises(RetryableDeliveryError, match="redis went away"):
            await slack.notify(firing())

    assert receiver.requests == []


async def test_a_post_whose_ref_cannot_be_written_still_counts_as_delivered(caplog: pytest.LogCaptureFixture) -> None:
    """Failing it would post it again; its resolution becomes a new message instead."""
    async with LocalReceiver(default=slack_ok("1733100000.000100")) as receiver:
        slack, _ = notifier(receiver, BrokenRefs(remember_fails=True))
        await slack.notify(firing())

    assert len(receiver.requests) == 1
    assert "not remembered" in caplog.text


async def test_the_token_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    replies = [slack_ok("1.1"), slack_error("invalid_auth"), Reply(500, body="oops"), slack_error("token_revoked")]
    async with LocalReceiver(replies) as receiver:
        slack, _ = notifier(receiver)
        await slack.notify(firing())
        for _ in range(2):
            with pytest.raises(DeliveryError) as caught:
                await slack.notify(resolution())
            assert TOKEN not in str(caught.value)
        dispatcher = AlertDispatcher([slack], InMemoryDeliveryLog(), attempts=1, backoff_max=0.05)
        result = await dispatcher.dispatch(resolution())

    assert result.outcome("slack_web") is DeliveryOutcome.FAILED_PERMANENT
    assert "rejected by slack_web" in caplog.text
    assert len(receiver.requests) == 4
    assert TOKEN not in caplog.text
    assert "SecretBotTokenValue" not in caplog.text
    assert TOKEN not in repr(slack)


async def test_the_worker_adds_the_receiver_when_token_and_channel_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNWATCH_SLACK_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("CHURNWATCH_SLACK_CHANNEL", CHANNEL)
    settings = Settings()
    assert TOKEN not in repr(settings)
    [receiver] = [n for n in build_notifiers(settings) if isinstance(n, SlackWebApiNotifier)]
    assert receiver.name == "slack_web"

    monkeypatch.setenv("CHURNWATCH_SLACK_BOT_TOKEN", "")
    monkeypatch.setenv("CHURNWATCH_SLACK_CHANNEL", "")
    assert not [n for n in build_notifiers(Settings()) if isinstance(n, SlackWebApiNotifier)]


@pytest.mark.parametrize("variable", ["CHURNWATCH_SLACK_BOT_TOKEN", "CHURNWATCH_SLACK_CHANNEL"])
def test_a_token_without_a_channel_or_the_reverse_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, TOKEN)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "CHURNWATCH_SLACK_BOT_TOKEN and CHURNWATCH_SLACK_CHANNEL" in str(caught.value)
    assert TOKEN not in str(caught.value)
