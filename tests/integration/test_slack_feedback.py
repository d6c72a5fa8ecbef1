"""The feedback buttons end to end: clicks signed exactly as Slack signs them, posted to a real
worker's ``/slack/interactions``, recorded in the real Redis, counted in its /metrics, a snooze
turned into a silence, the message updated through the click's ``response_url`` (the local
receiver standing in for Slack), and ``churnwatch rules stats`` reading it all back."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from alerts.feedback import Outcome
from alerts.model import Alert
from alerts.silence import Listing
from alerts.slack_format import slack_blocks
from stream.cli import main
from stream.feedback_store import RedisFeedbackStore
from stream.localstack import StackInfo
from stream.silence_store import RedisSilenceStore
from tests.alerts_factory import make_alert
from tests.integration.deployment import Deployment, deploy
from tests.integration.waiting import wait_for

SECRET = "e2e-signing-secret-" + uuid.uuid4().hex
RESPONSE_PATH = "/actions/T9TK3CUKW/1/response-url-token"


@pytest.fixture(scope="module")
def deployment(local_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"CHURNWATCH_SLACK_SIGNING_SECRET": SECRET}
    with deploy(local_stack, tmp_path_factory.mktemp("worker"), env) as running:
        yield running


def alert(customer_id: str) -> Alert:
    # A fresh UUID each: buttons need one, and answers are kept per alert id in the Redis tests share.
    return make_alert(alert_id=str(uuid.uuid4()), customer_id=customer_id, rule_id="purchase-overdue")


def click_body(deployment: Deployment, shown: Alert, action_id: str, user: str = "U024BE7LH") -> bytes:
    """The form Slack posts for a click on a button of the message churnwatch built for ``shown``."""
    message = slack_blocks(shown, buttons=True)
    button = next(e for e in message["blocks"][-1]["elements"] if e["action_id"] == action_id)
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": "ana", "name": "ana", "team_id": "T9TK3CUKW"},
        "container": {"type": "message", "message_ts": "1733100000.000100", "channel_id": "C0CHURN01"},
        "channel": {"id": "C0CHURN01", "name": "churn-alerts"},
        "message": {"type": "message", "ts": "1733100000.000100", **message},
        "response_url": deployment.slack.url_for(RESPONSE_PATH),
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": button["value"]}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, *, timestamp: float | None = None, secret: str = SECRET) -> dict[str, str]:
    """As Slack documents it: X-Slack-Signature = v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def post(deployment: Deployment, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        f"{deployment.worker.base_url}/slack/interactions",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def updates(deployment: Deployment) -> list[Any]:
    return [r.json for r in deployment.slack.requests if r.path == RESPONSE_PATH]


def test_a_forged_signature_and_a_stale_timestamp_get_401_and_are_counted(deployment: Deployment) -> None:
    shown = alert(f"cust-{uuid.uuid4().hex[:8]}")
    body = click_body(deployment, shown, "churnwatch_saved")
    forged_before = deployment.metric("churnwatch_slack_requests_rejected_total", reason="bad_signature")
    stale_before = deployment.metric("churnwatch_slack_requests_rejected_total", reason="stale_timestamp")

    assert post(deployment, body, signed(body, secret="not-our-secret")) == 401
    assert post(deployment, body, signed(body, timestamp=time.time() - 6 * 60)) == 401
    assert post(deployment, body, {}) == 401

    assert deployment.metric("churnwatch_slack_requests_rejected_total", reason="bad_signature") == forged_before + 1
    assert deployment.metric("churnwatch_slack_requests_rejected_total", reason="stale_timestamp") == stale_before + 1
    assert deployment.metric("churnwatch_slack_requests_rejected_total", reason="unsigned") >= 1
    assert deployment.metric("churnwatch_alert_feedback_total", rule="purchase-overdue", outcome="saved") == 0


async def test_a_signed_snooze_is_recorded_counted_silences_and_updates_the_message(
    deployment: Deployment, redis: Redis
) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    shown = alert(customer)
    app_id = deployment.env["CHURNWATCH_APP_ID"]
    body = click_body(deployment, shown, "churnwatch_snooze_7d")
    seen = len(updates(deployment))

    assert post(deployment, body, signed(body)) == 200
    assert post(deployment, body, signed(body)) == 200  # Slack's retry, or a second click: recorded once

    recorded = await RedisFeedbackStore(redis, app_id).feedback(shown.alert_id)
    assert recorded is not None and (recorded.rule, recorded.customer_id) == ("purchase-overdue", customer)
    assert [(a.user_id, a.user_name, a.outcome) for a in recorded.answers] == [("U024BE7LH", "ana", Outcome.SNOOZED)]
    assert deployment.metric("churnwatch_alert_feedback_total", rule="purchase-overdue", outcome="snoozed") == 1

    now = datetime.now(UTC)
    mine = [
        s
        for s in await RedisSilenceStore(redis, app_id).silences(Listing.CURRENT, now)
        if s.describe() == f"customer_id={customer} rule=purchase-overdue"
    ]
    assert len(mine) == 1
    [silence] = mine
    assert (silence.created_by, silence.comment) == ("ana (U024BE7LH)", "snoozed from Slack")
    assert timedelta(days=7) - timedelta(minutes=1) < silence.ends_at - now <= timedelta(days=7)
    assert silence.matches(shown)

    wait_for(
        lambda: len(updates(deployment)) >= seen + 2, "the message updates through response_url", timeout=10, every=0.1
    )
    update = updates(deployment)[-1]
    assert update["replace_original"] is True
    assert update["blocks"][-1]["elements"][0]["text"].startswith("*Snoozed 7 days* by <@U024BE7LH>")
    assert update["blocks"][-2]["type"] == "actions"  # the buttons stay


def test_rules_stats_reads_the_shares_back(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in deployment.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CHURNWATCH_REDIS_URL", deployment.stack.redis_url)

    def stats() -> dict[str, Any]:
        result = CliRunner().invoke(main, ["rules", "stats", "--since", "1d", "--json"])
        assert result.exit_code == 0, result.output
        rows = {row["rule"]: row for row in json.loads(result.stdout)}
        return rows.get("purchase-overdue", {"alerts": 0, **{o.value: 0 for o in Outcome}})

    before = stats()
    clicks = [("churnwatch_false_alarm", "U0ANA"), ("churnwatch_acknowledge", "U0ANA"), ("churnwatch_saved", "U0BO")]
    first, second = alert(f"cust-{uuid.uuid4().hex[:8]}"), alert(f"cust-{uuid.uuid4().hex[:8]}")
    for shown, (action, user) in zip([first, second, second], clicks, strict=True):
        body = click_body(deployment, shown, action, user=user)
        assert post(deployment, body, signed(body)) == 200
    after = stats()

    # Two more answered alerts: the first a false alarm, the second saved (its latest answer, by bo).
    assert after["alerts"] == before["alerts"] + 2
    assert after["false_alarm"] == before["false_alarm"] + 1
    assert after["saved"] == before["saved"] + 1
    assert after["acknowledged"] == before["acknowledged"]
    table = CliRunner().invoke(main, ["rules", "stats"])
    assert table.exit_code == 0, table.output
    row = next(line.split() for line in table.stdout.splitlines() if line.startswith("purchase-overdue"))
    shares = [f"{after[o] / after['alerts']:.0%}" for o in ("acknowledged", "false_alarm", "saved", "snoozed")]
    assert row == ["purchase-overdue", str(after["alerts"]), *shares]


async def test_the_store_writes_a_persons_answer_once_even_from_concurrent_retries(redis: Redis) -> None:
    import asyncio

    from alerts.feedback import click_of

    app_id = f"feedback-{uuid.uuid4().hex[:8]}"
    store = RedisFeedbackStore(redis, app_id)
    shown = alert("cust-concurrent")

    def click(action: str) -> Any:
        message = slack_blocks(shown, buttons=True)
        button = next(e for e in message["blocks"][-1]["elements"] if e["action_id"] == action)
        return click_of(
            {
                "type": "block_actions",
                "user": {"id": "U1"},
                "actions": [{"action_id": action, "value": button["value"]}],
            }
        )

    at = datetime.now(UTC)
    written = await asyncio.gather(*(store.record(click("churnwatch_acknowledge"), at) for _ in range(8)))
    assert sorted(written) == [False] * 7 + [True]
    assert await store.record(click("churnwatch_saved"), at + timedelta(seconds=1)) is True
    answer = await store.answer(shown.alert_id, "U1")
    assert answer is not None and answer.outcome is Outcome.SAVED
    assert [f.alert_id for f in await store.since(at)] == [shown.alert_id]
    assert await store.since(at + timedelta(seconds=2)) == []
    ttl = await redis.ttl(f"cw:feedback:{{{app_id}}}:alert:{shown.alert_id}")
    assert 399 * 86400 < ttl <= 400 * 86400
