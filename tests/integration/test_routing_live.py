"""Routing through the real worker: a routes file sends a big spender's alert, and its resolution, to
the VIP receiver and the default one, a small spender's only to the default (a local HTTP server
stands in for both: the VIP one is a Slack incoming webhook, the default a generic webhook)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from stream.events import PurchaseEvent
from stream.localstack import StackInfo
from tests.events_factory import purchase, unique_customer
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import produce_events
from tests.integration.waiting import wait_for_async
from tests.rule_files import OWNED_OVERDUE_RULES

NOW = datetime.now(UTC).replace(microsecond=0)
ROUTES = """
receivers:
  - {name: default, type: webhook, url_env: CHURNWATCH_WEBHOOK_URL}
  - {name: churn-vip, type: slack_webhook, url_env: CHURNWATCH_SLACK_WEBHOOK_URL}
route:
  receiver: default
  routes:
    - receiver: churn-vip
      matchers: {lifetime_spend: {gt: 1000}}
      continue: true
    - receiver: default          # everyone, the VIPs included
"""


def weekly(customer_id: str, amount: str) -> list[PurchaseEvent]:
    """14 weekly purchases, the last 28 days ago: overdue now (4 weekly gaps of silence)."""
    return [purchase(customer_id, NOW - timedelta(days=d), amount=amount) for d in range(119, 24, -7)]


@pytest.fixture(scope="module")
def deployment(local_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    config = tmp_path_factory.mktemp("config")
    (config / "overdue.yaml").write_text(OWNED_OVERDUE_RULES)
    (config / "routes.yaml").write_text(ROUTES)
    env = {
        "CHURNWATCH_RULES_DIR": str(config / "overdue.yaml"),
        "CHURNWATCH_ROUTES_FILE": str(config / "routes.yaml"),
        "CHURNWATCH_DUE_SCAN_INTERVAL": "1s",
    }
    with deploy(local_stack, tmp_path_factory.mktemp("worker"), env) as running:
        yield running


async def test_a_big_spender_reaches_vip_and_default_and_a_small_one_only_default(deployment: Deployment) -> None:
    big, small = unique_customer("vip"), unique_customer("small")
    await produce_events(
        deployment.stack.kafka_bootstrap, deployment.topics, [*weekly(big, "100.00"), *weekly(small, "20.00")]
    )
    (big_alert,) = await deployment.alerts_for(big, 1)
    (small_alert,) = await deployment.alerts_for(small, 1)
    assert big_alert.customer["lifetime_spend"] == 1400.0 and small_alert.customer["lifetime_spend"] == 280.0

    await wait_for_async(
        lambda: (
            len(deployment.webhook_posts_for(big)) == 1
            and len(deployment.slack_posts_for(big)) == 1
            and len(deployment.webhook_posts_for(small)) == 1
        ),
        "the routed deliveries",
        timeout=30,
    )
    [hook] = deployment.webhook_posts_for(big)
    assert hook.headers["Idempotency-Key"] == big_alert.alert_id
    await asyncio.sleep(2)  # time for a wrong delivery to arrive
    assert deployment.slack_posts_for(small) == []
    assert len(deployment.slack_posts_for(big)) == 1 and len(deployment.webhook_posts_for(big)) == 1
    # the delivery log and metrics are keyed by receiver name
    assert deployment.metric("churnwatch_alert_deliveries_total", sink="churn-vip", outcome="delivered") == 1
    assert deployment.metric("churnwatch_alert_deliveries_total", sink="default", outcome="delivered") >= 2
    assert deployment.metric("churnwatch_alert_deliveries_total", sink="slack") == 0

    # The big spender comes back: the resolution carries their figures, so it takes the VIP route too.
    await produce_events(deployment.stack.kafka_bootstrap, deployment.topics, [purchase(big, datetime.now(UTC))])
    _, resolution = await deployment.alerts_for(big, 2)
    assert resolution.status == "resolved" and resolution.customer["lifetime_spend"] == 1420.0
    await wait_for_async(
        lambda: len(deployment.webhook_posts_for(big)) == 2 and len(deployment.slack_posts_for(big)) == 2,
        "the routed resolution",
        timeout=30,
    )
    assert deployment.webhook_posts_for(big)[1].json["status"] == "resolved"
