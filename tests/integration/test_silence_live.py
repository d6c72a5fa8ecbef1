"""Silence against the customer's own rhythm, through the real worker: judged by the due scan, on time.

Every customer here last bought weeks ago, so no event makes them due: the worker judges each
purchase at its own event time (not overdue then), writes when the customer must next be judged,
and its scan timer finds the ones whose silence has since crossed the threshold.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from stream.localstack import StackInfo
from stream.localstack.worker import running_worker
from tests.events_factory import purchase, unique_customer, weekly_purchases
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import produce_events
from tests.integration.waiting import wait_for

NOW = datetime.now(UTC).replace(microsecond=0)
RULES = """
rules:
  - id: purchase-overdue
    kind: overdue
    multiple: 3.0
    min_purchase_days: 4
    min_silence: 14d
    message: "no purchase for {{ days_since_last_purchase }} days; usually every {{ typical_gap_days }} days"
"""


@pytest.fixture(scope="module")
def deployment(local_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    rules = tmp_path_factory.mktemp("rules")
    (rules / "overdue.yaml").write_text(RULES)
    env = {"CHURNWATCH_RULES_DIR": str(rules), "CHURNWATCH_DUE_SCAN_INTERVAL": "1s"}
    with deploy(local_stack, tmp_path_factory.mktemp("worker"), env) as running:
        yield running


async def test_a_weekly_buyer_gone_quiet_is_alerted_once_by_the_scan_and_others_are_not(
    deployment: Deployment,
) -> None:
    silent, recent, yearly = unique_customer("silent"), unique_customer("recent"), unique_customer("yearly")
    events = [
        *weekly_purchases(silent, NOW, 119, 25),  # the last purchase 28 days ago: 4 weekly gaps of silence
        *weekly_purchases(recent, NOW, 119, 0),  # the last one within the week
        *(purchase(yearly, NOW - timedelta(days=28 + 365 * n)) for n in range(3, -1, -1)),  # same silence, yearly
    ]
    await produce_events(deployment.stack.kafka_bootstrap, deployment.topics, events)

    (alert,) = await deployment.alerts_for(silent, 1, timeout=60)
    assert alert.rule_id == "purchase-overdue"
    assert alert.trigger_topic == "churnwatch.due"
    assert alert.evidence["typical_gap_days"] == 7.0
    assert 27.5 < float(alert.evidence["days_since_last_purchase"]) < 29  # type: ignore[arg-type]
    wait_for(lambda: deployment.metric("churnwatch_due_judged_total") >= 1, "the due scan's counter", timeout=10)

    deployment.wait_processed(deployment.topics.purchases, len(events))
    assert await deployment.alerts_for(recent, 1, timeout=3) == []
    assert await deployment.alerts_for(yearly, 1, timeout=1) == []
    assert await deployment.alerts_for(silent, 2, timeout=3) == [alert]  # the scans go on; once per silence


async def test_the_silent_customer_who_comes_back_gets_a_resolution_in_slack(deployment: Deployment) -> None:
    silent = unique_customer("returning")
    await produce_events(deployment.stack.kafka_bootstrap, deployment.topics, weekly_purchases(silent, NOW, 119, 25))
    (alert,) = await deployment.alerts_for(silent, 1, timeout=60)

    await produce_events(deployment.stack.kafka_bootstrap, deployment.topics, [purchase(silent, datetime.now(UTC))])

    firing, resolution = await deployment.alerts_for(silent, 2, timeout=30)
    assert firing == alert
    assert (resolution.status, resolution.resolves) == ("resolved", alert.alert_id)
    wait_for(lambda: len(deployment.slack_posts_for(silent)) == 2, "the alert and its resolution in Slack", timeout=10)
    posted = deployment.slack_posts_for(silent)[1]
    assert posted["blocks"][0]["text"]["text"].startswith(":white_check_mark: Resolved")
    assert alert.alert_id in posted["blocks"][-1]["elements"][0]["text"]


async def test_two_workers_sharing_the_due_index_alert_each_silence_once(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    log = tmp_path_factory.mktemp("second") / "worker.log"
    with running_worker(deployment.stack, env=deployment.env, output=log) as second:
        silent = [unique_customer("two-workers") for _ in range(12)]
        events = [event for cid in silent for event in weekly_purchases(cid, NOW, 119, 25)]
        await produce_events(deployment.stack.kafka_bootstrap, deployment.topics, events)

        alerts = {cid: await deployment.alerts_for(cid, 1, timeout=60) for cid in silent}
        time.sleep(4)  # several scans of both workers
        again = {cid: await deployment.alerts_for(cid, 2, timeout=0.5) for cid in silent}
        scanned = deployment.metric("churnwatch_due_judged_total") + metric(second.get("/metrics"))

    assert all(len(found) == 1 for found in alerts.values())
    assert {cid: len(found) for cid, found in again.items()} == dict.fromkeys(silent, 1)
    assert scanned >= len(silent)


def metric(exposition: str, name: str = "churnwatch_due_judged_total") -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
