"""Flap damping through the real worker: a customer whose alert fires, resolves and fires again
within the route's flap_span gives the receiver (a local HTTP server as a generic webhook) one
firing message; their resolution is held for the span, then sent once, naming the first alert.

The alert records are produced straight onto the alerts topic (the delivery agent's input), in the
order a flapping customer's would be published."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from alerts.model import Alert
from rules.base import Severity
from stream.localstack import StackInfo
from tests.integration.deployment import WEBHOOK_PATH, Deployment, deploy
from tests.integration.kafka_io import produce
from tests.integration.waiting import wait_for_async

SPAN_SECONDS = 4
ROUTES = f"""
receivers:
  - {{name: support, type: webhook, url_env: CHURNWATCH_WEBHOOK_URL}}
route:
  receiver: support
  flap_span: {SPAN_SECONDS}s
"""


@pytest.fixture(scope="module")
def deployment(local_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    config = tmp_path_factory.mktemp("config")
    (config / "routes.yaml").write_text(ROUTES)
    with deploy(
        local_stack, tmp_path_factory.mktemp("worker"), {"CHURNWATCH_ROUTES_FILE": str(config / "routes.yaml")}
    ) as running:
        yield running


def firing(customer: str, claim: str) -> Alert:
    now = datetime.now(UTC)
    return Alert(
        alert_id=f"alert-{claim}-{uuid.uuid4().hex[:6]}",
        customer_id=customer,
        rule_id="purchase-overdue",
        severity=Severity.WARNING,
        message="no purchase for 30 days; usually every 7",
        evidence={"days_since_last_purchase": 30},
        evaluated_at=now,
        detected_at=now,
        trigger_event_id=f"evt-{claim}",
        trigger_topic="churnwatch.purchases",
    )


def resolution_of(alert: Alert) -> Alert:
    return alert.model_copy(
        update={"alert_id": f"resolved-{alert.alert_id}", "status": "resolved", "resolves": alert.alert_id}
    )


async def test_a_flapping_customer_is_one_alert_and_one_resolution_after_the_span(deployment: Deployment) -> None:
    customer = f"flapper-{uuid.uuid4().hex[:6]}"

    async def publish(alert: Alert) -> None:
        record = (deployment.topics.alerts, customer.encode(), alert.model_dump_json().encode())
        await produce(deployment.stack.kafka_bootstrap, [record])

    def posts() -> list[dict[str, object]]:
        return [r.json for r in deployment.slack.requests if r.path == WEBHOOK_PATH and customer in str(r.json)]

    def counted(outcome: str) -> float:
        return deployment.metric("churnwatch_alert_deliveries_total", sink="support", outcome=outcome)

    first = firing(customer, "a")
    await publish(first)
    await wait_for_async(lambda: len(posts()) == 1, "the first alert", timeout=60, every=0.1)

    await publish(resolution_of(first))
    await wait_for_async(lambda: counted("resolution_held") == 1, "the resolution held", timeout=60, every=0.1)
    assert [p["alert_id"] for p in posts()] == [first.alert_id]  # held, not sent
    again = firing(customer, "b")
    await publish(again)  # within the span: the same story
    await wait_for_async(lambda: counted("flapping") == 1, "the flap absorbed", timeout=60, every=0.1)
    await asyncio.sleep(SPAN_SECONDS + 2)  # the span passes: nothing may go out
    assert [p["alert_id"] for p in posts()] == [first.alert_id]

    await publish(resolution_of(again))
    await wait_for_async(lambda: counted("resolution_held") == 2, "the second resolution held", timeout=60, every=0.1)
    assert len(posts()) == 1  # not before its span
    await wait_for_async(lambda: len(posts()) == 2, "the resolution after the span", timeout=60, every=0.1)
    await asyncio.sleep(2)  # time for a second copy to show
    firing_posts = [p for p in posts() if p["status"] == "firing"]
    resolved_posts = [p for p in posts() if p["status"] == "resolved"]
    assert [p["alert_id"] for p in firing_posts] == [first.alert_id]
    assert [(p["alert_id"], p["resolves"]) for p in resolved_posts] == [(f"resolved-{again.alert_id}", first.alert_id)]
    assert counted("delivered") == 2
