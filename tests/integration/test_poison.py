"""The worker against a customer it cannot judge: the found crash-loop of the hardening issue.

A purchase timed 0001-01-01T00:00:00+05:00 used to be accepted, its time stored as the first
purchase, and every later read of that customer raised in the codec: from the evaluation timer
nothing caught it, the worker exited 1, and every restart crashed again on the same waiting entry.
Now the contract refuses such a time, and state that still cannot be read (written before, or by a
bug) costs only that customer: counted, quarantined, the worker and everyone else go on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis as SyncRedis

from stream.kafka_sinks import dead_letter_headers
from stream.localstack import StackInfo
from stream.windows import keys
from tests.events_factory import feedback, purchase, unique_customer, weekly_purchases, wire
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import produce, produce_events, read_topic
from tests.integration.waiting import wait_for

NOW = datetime.now(UTC).replace(microsecond=0)
YEAR_ZERO_MS = -62_200_000_000_000


@pytest.fixture
def deployment(local_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"CHURNWATCH_EVALUATION_DELAY": "1s", "CHURNWATCH_EVALUATION_MAX_FAILURES": "3"}
    with deploy(local_stack, tmp_path_factory.mktemp("worker"), env) as running:
        yield running


async def test_a_year_one_purchase_is_dead_lettered_not_stored(deployment: Deployment) -> None:
    cid = unique_customer("year-one")
    ancient = wire(purchase(cid, NOW)).replace(
        NOW.isoformat().replace("+00:00", "Z").encode(), b"0001-01-01T00:00:00+05:00"
    )
    assert b"0001-01-01" in ancient, ancient
    await produce(deployment.stack.kafka_bootstrap, [(deployment.topics.purchases, cid.encode(), ancient)])

    records = await read_topic(
        deployment.stack.kafka_bootstrap,
        deployment.topics.deadletter,
        until=lambda rs: any(r.key == cid.encode() for r in rs),
    )
    [record] = [r for r in records if r.key == cid.encode()]
    assert dead_letter_headers(record.headers)["reason"] == "timestamp_out_of_range"
    assert record.value == ancient
    assert not SyncRedis.from_url(deployment.stack.redis_url).exists(keys.customer_state(cid))


async def test_state_that_cannot_be_read_quarantines_that_customer_and_nothing_else(deployment: Deployment) -> None:
    poisoned, fading = unique_customer("poisoned"), unique_customer("fading")
    redis = SyncRedis.from_url(deployment.stack.redis_url)
    await produce_events(
        deployment.stack.kafka_bootstrap, deployment.topics, [purchase(poisoned, NOW - timedelta(days=2))]
    )
    wait_for(lambda: redis.exists(keys.customer_state(poisoned)), "the first purchase", timeout=30)
    redis.hset(keys.customer_state(poisoned), "fp", YEAR_ZERO_MS)

    await produce_events(
        deployment.stack.kafka_bootstrap,
        deployment.topics,
        [feedback(poisoned, NOW, 2), *weekly_purchases(fading, NOW, 119, 40), feedback(fading, NOW, 3)],
    )

    alerts = await deployment.alerts_for(fading, 2)
    assert sorted(a.rule_id for a in alerts) == ["nps-detractor", "purchase-overdue"]
    wait_for(lambda: deployment.metric("churnwatch_quarantined_customers") == 1, "the quarantine", timeout=30)
    assert deployment.metric("churnwatch_evaluation_errors_total", stage="deferred") == 3
    assert deployment.worker.process.poll() is None  # alive
    assert deployment.worker.get("/healthz")
    assert await deployment.alerts_for(poisoned, 1, timeout=2) == []
    entries = redis.hgetall(keys.quarantine(deployment.env["CHURNWATCH_APP_ID"]))
    assert list(entries) == [poisoned.encode()]
