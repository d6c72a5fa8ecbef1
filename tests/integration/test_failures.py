"""Failures against the real stack: a worker killed mid-stream, Redis unresponsive for a while.

The guarantee under test: every event counts exactly once in the windows, and every alert is
published (at least once, with a stable id), whatever happens to the worker or to Redis.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from alerts.model import Alert
from rules.state import CustomerState
from stream.events import EventBase
from stream.localstack import StackInfo, running_stack
from stream.localstack.worker import running_worker
from stream.windows import keys
from stream.windows.codec import state_from_hash
from tests.events_factory import interaction, purchase, unique_customer, weekly_purchases
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import produce_events, read_topic
from tests.integration.waiting import wait_for

NOW = datetime.now(UTC).replace(microsecond=0)


def traffic(customers: int, fading_every: int) -> tuple[list[EventBase], dict[str, int], set[str]]:
    """Weekly buyers with daily logins; every ``fading_every``-th stopped buying 40 days ago."""
    events: list[EventBase] = []
    purchases: dict[str, int] = {}
    fading: set[str] = set()
    for n in range(customers):
        cid = unique_customer("crash")
        until = 40 if n % fading_every == 0 else 0
        bought = weekly_purchases(cid, NOW, 119, until)
        events += [*bought, *(interaction(cid, NOW - timedelta(days=d)) for d in range(119, -1, -1))]
        purchases[cid] = len(bought)
        if until:
            fading.add(cid)
    return events, purchases, fading


def _gauge(metrics_text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines() if line.startswith(name + " "))


@pytest.fixture
def deployment(local_stack: StackInfo, tmp_path: Path) -> Iterator[Deployment]:
    # A crashed worker keeps its partitions until its session times out: keep that short here. Small
    # batches: the whole backlog is a few batches of the default size, and the kill must land mid-stream.
    env = {"CHURNWATCH_KAFKA_SESSION_TIMEOUT": "8", "CHURNWATCH_BATCH_MAX_EVENTS": "100"}
    with deploy(local_stack, tmp_path, env) as running:
        yield running


async def test_worker_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    deployment: Deployment, tmp_path: Path
) -> None:
    events, purchases, fading = traffic(customers=40, fading_every=8)
    topics = deployment.topics
    await produce_events(deployment.stack.kafka_bootstrap, topics, events)
    wait_for(lambda: deployment.processed(topics.interactions) > 1000, "the first worker to get going", timeout=120)
    os.kill(deployment.worker.process.pid, signal.SIGKILL)  # our own child: a crash, no clean shutdown
    deployment.worker.process.wait()

    with running_worker(deployment.stack, env=deployment.env, output=tmp_path / "second.log") as second:

        def finished() -> float:
            metrics = second.get("/metrics").splitlines()
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics
                if line.startswith("churnwatch_events_consumed_total") and any(t in line for t in topics.events)
            )

        # The second worker re-reads from the last committed offsets: what the first had processed
        # after its last commit arrives again and must be recognised as duplicates.
        redis = SyncRedis.from_url(deployment.stack.redis_url)

        def everything_read() -> bool:  # every customer's last event (a login today) is in
            states = [state_from_hash(c, redis.hgetall(keys.customer_state(c))) for c in purchases]
            return all(s.watermark is not None and s.watermark >= NOW for s in states)

        wait_for(everything_read, "the second worker to read everything", timeout=180)
        time.sleep(1)
        for cid, count in purchases.items():
            state = state_from_hash(cid, redis.hgetall(keys.customer_state(cid)))
            assert state.lifetime_purchases == count, cid  # exactly once
        redis.close()
        # The second worker took over: it read what the first had not finished (on any input topic: the
        # few purchases may all have been done and committed before the kill).
        assert finished() > 0

        def alerted(records: list) -> set[str]:  # type: ignore[type-arg]
            return {
                Alert.model_validate_json(r.value).customer_id
                for r in records
                if Alert.model_validate_json(r.value).rule_id == "purchase-overdue"
            }

        records = await read_topic(
            deployment.stack.kafka_bootstrap, topics.alerts, until=lambda rs: alerted(rs) >= fading, timeout=60
        )
    alerts = [Alert.model_validate_json(r.value) for r in records]
    drops = [a for a in alerts if a.rule_id == "purchase-overdue"]
    assert {a.customer_id for a in drops} == fading  # every fading customer, and only them
    ids_per_customer = {cid: {a.alert_id for a in drops if a.customer_id == cid} for cid in fading}
    assert all(len(ids) == 1 for ids in ids_per_customer.values()), ids_per_customer  # no second alert


async def test_a_worker_killed_in_the_middle_of_a_batch_loses_and_double_counts_nothing(
    local_stack: StackInfo, tmp_path: Path
) -> None:
    """Batches of up to 500 events, one pipelined window update each, acked only once done. Redis's
    writes are paused (CLIENT PAUSE WRITE) while the worker is busy, so the worker is stuck inside a
    batch, waiting on a write, when it is killed -9; Redis drops the dead worker's waiting writes.
    The successor re-reads the unacknowledged batch, and every purchase and every login counts exactly
    once. Offsets are committed every 50 ms, so a batch acked before its window write shows as lost
    counts when the kill finds the worker before that write (the write comes first in a batch, so
    not every run finds it there)."""
    events, purchases, _ = traffic(customers=150, fading_every=10)
    # Offsets committed every 50 ms: a commit past unfinished work would show in the counts.
    env = {"CHURNWATCH_KAFKA_SESSION_TIMEOUT": "8", "CHURNWATCH_KAFKA_COMMIT_INTERVAL": "0.05"}
    with deploy(local_stack, tmp_path, env) as deployment:
        await _kill_mid_batch_then_finish(deployment, events, purchases, tmp_path)


async def _kill_mid_batch_then_finish(
    deployment: Deployment, events: list[EventBase], purchases: dict[str, int], tmp_path: Path
) -> None:
    topics = deployment.topics
    await produce_events(deployment.stack.kafka_bootstrap, topics, events)
    wait_for(lambda: deployment.processed(topics.interactions) > 2000, "the first worker to be busy", timeout=120)
    redis = SyncRedis.from_url(deployment.stack.redis_url)
    # Every write (every script) waits, unexecuted, and a client that disconnects meanwhile loses what
    # waits: the dead worker's last writes never happen (after SIGSTOP, Redis would still run them).
    redis.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        time.sleep(1)  # every batch writes to Redis: the busy worker is now waiting inside one
        os.kill(deployment.worker.process.pid, signal.SIGKILL)  # our own child, mid-batch
        deployment.worker.process.wait()
        time.sleep(0.5)  # Redis notices the closed connection and drops what it was holding
    finally:
        redis.execute_command("CLIENT", "UNPAUSE")

    def states() -> list[CustomerState]:
        return [state_from_hash(c, redis.hgetall(keys.customer_state(c))) for c in purchases]

    assert not all(s.watermark is not None and s.watermark >= NOW for s in states())  # killed mid-backlog

    with running_worker(deployment.stack, env=deployment.env, output=tmp_path / "second.log"):
        wait_for(lambda: all(s.watermark is not None and s.watermark >= NOW for s in states()), "the rest", 180)
        time.sleep(1)
    for state in states():
        assert state.lifetime_purchases == purchases[state.customer_id], state.customer_id
        logins = sum(sum(days.values()) for days in state.interactions_by_kind.values())
        assert logins == 120, state.customer_id  # a login a day for 120 days, each once
    redis.close()


async def test_a_second_worker_joining_mid_backlog_takes_partitions_without_loss_or_double_counts(
    local_stack: StackInfo, tmp_path: Path
) -> None:
    """A rebalance while the first worker has two batches in flight: faust clears the fetched buffer,
    waits for the batches taken to be acked, commits, and the newcomer reads its partitions from the
    committed offsets. Both keep running; every purchase and login counts exactly once, and each
    worker did part of the work."""
    first_wave, purchases, _ = traffic(customers=120, fading_every=10)
    second_wave, later, _ = traffic(customers=40, fading_every=10)  # sent once the newcomer runs
    purchases |= later
    # Small batches, so the first worker is still inside its backlog when the newcomer joins.
    env = {"CHURNWATCH_BATCH_MAX_EVENTS": "20", "CHURNWATCH_KAFKA_COMMIT_INTERVAL": "0.05"}
    with deploy(local_stack, tmp_path, env) as deployment:
        topics = deployment.topics
        await produce_events(deployment.stack.kafka_bootstrap, topics, first_wave)
        wait_for(lambda: deployment.processed(topics.interactions) > 1000, "the first worker to be busy", timeout=120)
        redis = SyncRedis.from_url(deployment.stack.redis_url)

        def states() -> list[CustomerState]:
            return [state_from_hash(c, redis.hgetall(keys.customer_state(c))) for c in purchases]

        with running_worker(deployment.stack, env=deployment.env, output=tmp_path / "second.log") as second:
            # Healthy is not yet a member of the group: the second wave goes out once the newcomer owns
            # partitions, so some of it is surely its to read (CI once saw the first worker read it all).
            wait_for(
                lambda: _gauge(second.get("/metrics"), "churnwatch_assigned_partitions") > 0,
                "an assignment",
                timeout=120,
            )
            await produce_events(deployment.stack.kafka_bootstrap, topics, second_wave)
            wait_for(lambda: all(s.watermark is not None and s.watermark >= NOW for s in states()), "the rest", 180)
            time.sleep(1)
            owned = (
                deployment.metric("churnwatch_assigned_partitions"),
                _gauge(second.get("/metrics"), "churnwatch_assigned_partitions"),
            )
            assert sum(owned) == 4 and min(owned) > 0, owned  # the four partitions of each topic, split
            second_did = sum(
                float(line.rsplit(" ", 1)[1])
                for line in second.get("/metrics").splitlines()
                if line.startswith("churnwatch_events_consumed_total") and any(t in line for t in topics.events)
            )
        assert deployment.worker.process.poll() is None  # the first worker kept running throughout
        for state in states():
            assert state.lifetime_purchases == purchases[state.customer_id], state.customer_id
            logins = sum(sum(days.values()) for days in state.interactions_by_kind.values())
            assert logins == 120, state.customer_id  # a login a day for 120 days, each once
        redis.close()
    assert second_did > 0  # the newcomer was given partitions and read from them


async def test_redis_unresponsive_stalls_processing_then_resumes_without_loss(tmp_path: Path) -> None:
    """Redis stops answering (SIGSTOP) while events arrive; the worker retries, then catches up."""
    with (
        running_stack(f"pytest-{os.getpid()}-redis-pause", purge=True) as stack,
        deploy(stack, tmp_path, {"CHURNWATCH_APP_ID": "redis-pause"}) as running,
    ):
        cid = unique_customer("pause")
        first = [purchase(cid, NOW - timedelta(days=d)) for d in range(30, 20, -1)]
        await produce_events(stack.kafka_bootstrap, running.topics, first)
        running.wait_processed(running.topics.purchases, len(first))

        assert stack.redis_pid is not None
        os.kill(stack.redis_pid, signal.SIGSTOP)  # the redis-server this test started
        try:
            second = [purchase(cid, NOW - timedelta(days=d)) for d in range(20, 10, -1)]
            await produce_events(stack.kafka_bootstrap, running.topics, second)

            def retried() -> float:  # Redis calls that timed out and were retried, any operation
                lines = running.worker.get("/metrics").splitlines()
                prefix = "churnwatch_dependency_errors_total"
                return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith(prefix))

            wait_for(lambda: retried() >= 1, "a Redis call to time out and be retried", timeout=60)
            assert running.processed(running.topics.purchases) == len(first)  # stalled, not skipped
        finally:
            os.kill(stack.redis_pid, signal.SIGCONT)
        running.wait_processed(running.topics.purchases, len(first) + len(second))
        redis = SyncRedis.from_url(stack.redis_url)
        state = state_from_hash(cid, redis.hgetall(keys.customer_state(cid)))
        redis.close()
        assert state.lifetime_purchases == len(first) + len(second)
