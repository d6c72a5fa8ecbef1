"""Rule kinds and hot reload against the real stack: events through Kafka, windows in Redis, a worker
process evaluating the YAML rules it was given (and re-reading them while it runs)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stream.localstack import StackInfo
from tests.events_factory import feedback, interaction, unique_customer, weekly_purchases
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import produce_events
from tests.integration.waiting import wait_for

NOW = datetime.now(UTC).replace(microsecond=0)

INITIAL_RULES = """
rules:
  - id: vip-buying-less
    kind: expression
    scope: "segment == 'vip'"
    condition: "purchases_90d >= 4.0 && purchases_30d < 0.5 * purchases_90d / 3.0"
    severity: critical
    message: "VIP bought {{ purchases_30d }} times in 30 days ({{ purchases_90d }} in 90)."
  - id: unhappy-and-fading
    kind: all
    conditions:
      - kind: detractor
      - kind: purchase_frequency_drop
        min_history_days: 60
    message: "Detractor ({{ score }}/10) who also buys less: {{ recent_purchases }} vs {{ expected_purchases }}."
"""

HEALTH_RULE = """
rules:
  - id: health-drop
    kind: health_score
    scope: "segment == 'health-test'"
    alert_on_bands: [at_risk, critical]
    max_drop: 30
    lookback: 7d
    message: "Health {{ score }} ({{ band }}, was {{ previous_score }} {{ previous_band }}); moved by {{ movers }}"
"""

HOT_RULE = """
rules:
  - id: hot-detractor
    kind: detractor
    max_score: 4
    message: "NPS {{ score }}"
"""


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules")
    (path / "custom.yaml").write_text(INITIAL_RULES)
    (path / "health.yaml").write_text(HEALTH_RULE)
    return path


@pytest.fixture(scope="module")
def deployment(
    local_stack: StackInfo, rules_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    with deploy(local_stack, tmp_path_factory.mktemp("worker"), {"CHURNWATCH_RULES_DIR": str(rules_dir)}) as running:
        yield running


async def send(deployment: Deployment, events: list) -> None:  # type: ignore[type-arg]
    await produce_events(deployment.stack.kafka_bootstrap, deployment.topics, events)


async def test_expression_rule_with_scope(deployment: Deployment) -> None:
    vip, regular = unique_customer("vip"), unique_customer("regular")
    for cid, segment in ((vip, "vip"), (regular, "smb")):
        await send(deployment, [*weekly_purchases(cid, NOW, 119, 40), interaction(cid, NOW, segment=segment)])
    (alert,) = await deployment.alerts_for(vip, 1)
    assert alert.rule_id == "vip-buying-less" and alert.severity == "critical"
    assert alert.evidence["purchases_30d"] == 0 and alert.evidence["segment"] == "vip"
    assert "VIP bought 0.0 times in 30 days" in alert.message
    assert await deployment.alerts_for(regular, 1, timeout=3) == []  # out of scope


async def test_all_of_two_conditions(deployment: Deployment) -> None:
    both, only_detractor = unique_customer("both"), unique_customer("detractor")
    await send(deployment, [*weekly_purchases(both, NOW, 119, 40), feedback(both, NOW, 3)])
    await send(deployment, [*weekly_purchases(only_detractor, NOW, 119, 0), feedback(only_detractor, NOW, 3)])
    (alert,) = await deployment.alerts_for(both, 1)
    assert alert.rule_id == "unhappy-and-fading"
    assert alert.evidence["score"] == 3 and alert.evidence["recent_purchases"] == 0
    assert await deployment.alerts_for(only_detractor, 1, timeout=3) == []


async def test_hot_reload_valid_invalid_and_deleted(deployment: Deployment, rules_dir: Path) -> None:
    initial = deployment.rule_set_version()
    hot = rules_dir / "hot.yaml"
    hot.write_text(HOT_RULE)
    wait_for(lambda: deployment.rule_set_version() != initial, "the new rule set", timeout=30)
    with_hot = deployment.rule_set_version()
    first = unique_customer("hot")
    await send(deployment, [feedback(first, NOW, 2)])
    (alert,) = await deployment.alerts_for(first, 1)
    assert alert.rule_id == "hot-detractor"

    invalid_before = deployment.metric("churnwatch_rules_reload_total", outcome="invalid")
    (rules_dir / "broken.yaml").write_text(HOT_RULE.replace("hot-detractor", "broken").replace("max_score", "max_scor"))
    wait_for(
        lambda: deployment.metric("churnwatch_rules_reload_total", outcome="invalid") > invalid_before,
        "the invalid reload",
        timeout=30,
    )
    assert deployment.rule_set_version() == with_hot  # the old set stays active
    assert "rule 'broken': field 'max_scor'" in deployment.log.read_text()
    (rules_dir / "broken.yaml").unlink()
    hot.unlink()
    wait_for(lambda: deployment.rule_set_version() == initial, "the rule set without hot.yaml", timeout=30)

    second = unique_customer("after-delete")
    before = deployment.processed(deployment.topics.feedback)
    await send(deployment, [feedback(second, NOW, 2)])
    deployment.wait_processed(deployment.topics.feedback, before + 1)
    assert await deployment.alerts_for(second, 1, timeout=3) == []


async def test_sighup_reloads_when_watching_is_off(local_stack: StackInfo, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "custom.yaml").write_text(INITIAL_RULES)
    env = {"CHURNWATCH_RULES_DIR": str(rules), "CHURNWATCH_RULES_WATCH": "false"}
    with deploy(local_stack, tmp_path, env) as running:
        initial = running.rule_set_version()
        (rules / "hot.yaml").write_text(HOT_RULE)
        await asyncio.sleep(1.5)
        assert running.rule_set_version() == initial  # not watching
        os.kill(running.worker.process.pid, signal.SIGHUP)  # our own child, by its PID
        wait_for(lambda: running.rule_set_version() != initial, "the SIGHUP reload", timeout=30)
        assert running.metric("churnwatch_rules_reload_total", outcome="applied") == 1


async def test_health_score_crossing_into_at_risk(deployment: Deployment) -> None:
    """A regular customer goes quiet this week: the composite score falls from healthy to at risk."""
    fading, steady = unique_customer("fading"), unique_customer("steady")

    def history(cid: str, purchases_until: int, logins_until: int) -> list:  # type: ignore[type-arg]
        return [
            *weekly_purchases(cid, NOW, 119, purchases_until),
            *(
                interaction(cid, NOW - timedelta(days=d), segment="health-test")
                for d in range(119, logins_until - 1, -2)
            ),
        ]

    await send(
        deployment,
        [
            *history(fading, 14, 10),
            feedback(fading, NOW - timedelta(days=40), 8),
            feedback(fading, NOW - timedelta(days=3), 7),
            interaction(fading, NOW, "page_view"),
        ],
    )
    await send(deployment, [*history(steady, 0, 0), feedback(steady, NOW - timedelta(days=40), 9)])
    (alert,) = await deployment.alerts_for(fading, 1)
    assert alert.rule_id == "health-drop"
    assert alert.evidence["band"] == "at_risk" and alert.evidence["previous_band"] == "healthy"
    assert "recency" in str(alert.evidence["movers"])
    assert await deployment.alerts_for(steady, 1, timeout=3) == []
