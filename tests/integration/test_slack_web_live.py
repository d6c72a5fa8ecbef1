"""A resolution updates the original Slack message, through the real worker: a routes file's
``slack_api`` receiver whose ``api_url`` points at a local HTTP server answering as Slack's Web API
does. A fading customer's purchase-overdue alert is posted (``chat.postMessage``); when the customer
buys again, the worker's resolution turns that same message (its ``ts``) into "Resolved"
(``chat.update``) and replies in its thread (``chat.postMessage`` with ``thread_ts``).

What is asserted is what the stand-in received: request paths and bodies, and the ``ts`` it gave."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from stream.events import PurchaseEvent
from stream.localstack import StackInfo
from tests.events_factory import purchase, unique_customer
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import produce_events
from tests.integration.threaded_receiver import ThreadedReceiver
from tests.integration.waiting import wait_for_async
from tests.rule_files import OWNED_OVERDUE_RULES
from tests.unit.http_receiver import LocalReceiver, ReceivedRequest

NOW = datetime.now(UTC).replace(microsecond=0)
API_PATH = "/slack/api/"
CHANNEL = "#churn-alerts"
CHANNEL_ID = "C0CHURN01"
TOKEN_VARIABLE = "SLACK_WEB_LIVE_BOT_TOKEN"  # not CHURNWATCH_SLACK_BOT_TOKEN: that one wants _CHANNEL too
TOKEN = "xoxb-1-2-live-test-token"
ROUTES = """
receivers:
  - name: churn-slack
    type: slack_api
    token_env: {token_variable}
    channel: "{channel}"
    api_url: {api_url}
route:
  receiver: churn-slack
"""


class SlackStandIn(LocalReceiver):
    """Answers as Slack's Web API: ``chat.postMessage`` with the channel id and a new ``ts`` for each
    message, ``chat.update`` with the channel and ``ts`` it was asked to update; any other method
    with ``unknown_method``. Keeps every request and, by its index, the answer it got."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[dict[str, Any]] = []
        self._ts = (f"1733100000.{n:06d}" for n in itertools.count(100, 100))

    async def _handle(self, request: web.Request) -> web.Response:
        if request.content_type == "application/x-www-form-urlencoded":
            body: Any = dict(await request.post())
        else:
            text = await request.text()
            body = json.loads(text) if text else None
        method = request.path.removeprefix(API_PATH) if request.path.startswith(API_PATH) else None
        answer: dict[str, Any]
        if method == "chat.postMessage":
            answer = {"ok": True, "channel": CHANNEL_ID, "ts": next(self._ts), "message": {"text": body["text"]}}
        elif method == "chat.update":
            answer = {"ok": True, "channel": body["channel"], "ts": body["ts"], "text": body["text"]}
        else:
            answer = {"ok": False, "error": "unknown_method"}
        self.requests.append(ReceivedRequest(request.path_qs, CIMultiDict(request.headers), body))
        self.answers.append(answer)
        return web.json_response(answer)


def header(request: ReceivedRequest) -> str:
    """The text of a message's header block."""
    [text] = [block["text"]["text"] for block in request.json["blocks"] if block["type"] == "header"]
    return str(text)


def weekly(customer_id: str) -> list[PurchaseEvent]:
    """14 weekly purchases, the last 28 days ago: overdue now (4 weekly gaps of silence)."""
    return [purchase(customer_id, NOW - timedelta(days=d)) for d in range(119, 24, -7)]


@pytest.fixture(scope="module")
def slack() -> Iterator[tuple[ThreadedReceiver, SlackStandIn]]:
    threaded = ThreadedReceiver()
    threaded.receiver = stand_in = SlackStandIn()
    threaded.start()
    try:
        yield threaded, stand_in
    finally:
        threaded.stop()


@pytest.fixture(scope="module")
def deployment(
    local_stack: StackInfo, slack: tuple[ThreadedReceiver, SlackStandIn], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    threaded, _ = slack
    config = tmp_path_factory.mktemp("config")
    (config / "overdue.yaml").write_text(OWNED_OVERDUE_RULES)
    api_url = threaded.url_for(API_PATH).rstrip("/")  # without its slash: the receiver adds it
    (config / "routes.yaml").write_text(ROUTES.format(token_variable=TOKEN_VARIABLE, channel=CHANNEL, api_url=api_url))
    env = {
        "CHURNWATCH_RULES_DIR": str(config / "overdue.yaml"),
        "CHURNWATCH_ROUTES_FILE": str(config / "routes.yaml"),
        "CHURNWATCH_DUE_SCAN_INTERVAL": "1s",
        TOKEN_VARIABLE: TOKEN,
    }
    with deploy(local_stack, tmp_path_factory.mktemp("worker"), env) as running:
        yield running


async def test_a_resolution_updates_the_alerts_message_and_replies_in_its_thread(
    deployment: Deployment, slack: tuple[ThreadedReceiver, SlackStandIn]
) -> None:
    threaded, stand_in = slack
    customer = unique_customer("fading")

    def calls() -> list[tuple[ReceivedRequest, dict[str, Any]]]:
        """The requests about this customer, each with the answer it got."""
        answered = list(zip(threaded.requests, list(stand_in.answers), strict=False))
        return [(r, a) for r, a in answered if customer in json.dumps(r.json)]

    def delivered() -> float:
        return deployment.metric("churnwatch_alert_deliveries_total", sink="churn-slack", outcome="delivered")

    await produce_events(deployment.stack.kafka_bootstrap, deployment.topics, weekly(customer))
    (alert,) = await deployment.alerts_for(customer, 1)
    assert alert.rule_id == "purchase-overdue" and alert.status == "firing"
    await wait_for_async(lambda: delivered() == 1, "the alert delivered", timeout=60)

    [(post, posted)] = calls()
    assert post.path == f"{API_PATH}chat.postMessage"
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"  # the token from its variable, in the header only
    assert post.json["channel"] == CHANNEL and post.json.get("thread_ts") is None
    assert alert.alert_id in json.dumps(post.json["blocks"])
    assert not post.json["text"].startswith("[RESOLVED]")
    assert "Resolved" not in header(post)
    original_ts = posted["ts"]

    # The customer comes back: the worker resolves the alert, and the receiver updates its message.
    await produce_events(deployment.stack.kafka_bootstrap, deployment.topics, [purchase(customer, datetime.now(UTC))])
    _, resolution = await deployment.alerts_for(customer, 2)
    assert resolution.status == "resolved" and resolution.resolves == alert.alert_id
    await wait_for_async(lambda: delivered() == 2, "the resolution delivered", timeout=60)

    post_path, update_path = f"{API_PATH}chat.postMessage", f"{API_PATH}chat.update"
    assert [r.path for r, _ in calls()] == [post_path, update_path, post_path]  # posted, updated, replied to
    (_, _), (update, _), (reply, replied) = calls()
    assert (update.json["channel"], update.json["ts"]) == (CHANNEL_ID, original_ts)  # the same message
    assert header(update) == ":white_check_mark: Resolved: purchase-overdue"  # the message now says resolved
    assert update.json["text"].startswith(f"[RESOLVED] purchase-overdue · customer {customer}")
    assert f"Resolves alert `{alert.alert_id}`" in json.dumps(update.json["blocks"])

    assert (reply.json["channel"], reply.json["thread_ts"]) == (CHANNEL_ID, original_ts)  # in its thread
    assert (reply.json["text"], reply.json["blocks"]) == (update.json["text"], update.json["blocks"])
    assert replied["ts"] != original_ts

    assert len(threaded.requests) == 3  # and nothing else reached the stand-in
