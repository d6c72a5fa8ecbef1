"""A Redis that lost its data must not go unnoticed: the worker stops, says so, and waits for the operator.

Each test runs its own redis-server (started and stopped by this module, by its own process
handle), so emptying, killing or pausing it touches no other test's state.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from redis import Redis as SyncRedis

from stream.localstack import StackInfo
from stream.localstack.ports import LOOPBACK, free_ports
from stream.localstack.redis_server import ensure_redis_server, wait_ready
from stream.localstack.worker import running_worker
from stream.windows import keys
from tests.events_factory import purchase, unique_customer
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import produce_events

NOW = datetime.now(UTC).replace(microsecond=0)
CHECK_INTERVAL = "1s"  # the worker's state check, short so the tests are quick (default 5 s)


@dataclass
class OwnRedis:
    """A redis-server of this test's own: (re)started, killed and paused by its Popen handle only."""

    directory: Path
    port: int = field(default_factory=lambda: free_ports(1)[0])
    aof: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else ["--appendonly", "no"]
        argv = [
            ensure_redis_server(),
            "--bind", LOOPBACK,
            "--port", str(self.port),
            "--save", "",
            *persistence,
            "--maxmemory-policy", "noeviction",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_ready(self.url, timeout=15, pid=self.process.pid, log_path=self.directory / "redis.log")

    def kill(self) -> None:
        """SIGKILL: a crash, no shutdown save."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case a test paused it
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self) -> SyncRedis:
        return SyncRedis.from_url(self.url, socket_timeout=5)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def worker_on(local_stack: StackInfo, tmp_path: Path, redis: OwnRedis) -> Any:
    return deploy(
        local_stack, tmp_path, {"CHURNWATCH_REDIS_URL": redis.url, "CHURNWATCH_STATE_CHECK_INTERVAL": CHECK_INTERVAL}
    )


def readyz(deployment: Deployment, timeout: float = 5) -> tuple[int, dict[str, Any], float]:
    """Status, JSON body and seconds taken by the worker's /readyz."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{deployment.worker.base_url}/readyz", timeout=timeout) as reply:
            status, body = reply.status, reply.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except TimeoutError:  # no answer at all within ``timeout``
        return 0, {}, time.monotonic() - started
    return status, json.loads(body), time.monotonic() - started


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30) -> float:
    """Seconds it took ``predicate`` to hold."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.2)
    return time.monotonic() - started


async def wait_committed(deployment: Deployment, topic: str, timeout: float = 30) -> None:
    """Until the worker's consumer group has committed an offset past the start of ``topic``."""
    group = deployment.env["CHURNWATCH_APP_ID"]
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.stack.kafka_bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            offsets = await admin.list_consumer_group_offsets(group)
            if any(tp.topic == topic and meta.offset > 0 for tp, meta in offsets.items()):
                return
            assert time.monotonic() < deadline, f"no offset committed on {topic} within {timeout:.0f} s"
            await asyncio.sleep(0.3)
    finally:
        await admin.close()


def has_state(redis: OwnRedis, customer_id: str) -> bool:
    client = redis.client()
    try:
        return bool(client.exists(keys.customer_state(customer_id)))
    finally:
        client.close()


def accept_loss(deployment: Deployment, redis: OwnRedis) -> subprocess.CompletedProcess[str]:
    """The operator's command, run as they would: ``churnwatch state accept-loss``."""
    env = {**os.environ, "CHURNWATCH_REDIS_URL": redis.url, "CHURNWATCH_APP_ID": deployment.env["CHURNWATCH_APP_ID"]}
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", "state", "accept-loss"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def empty_by_flushall(redis: OwnRedis) -> None:
    client = redis.client()
    client.flushall()
    client.close()


def empty_by_restart(redis: OwnRedis) -> None:
    """Kill redis-server and start it again on the same port with no data (no AOF, no snapshot)."""
    redis.kill()
    redis.start()


@pytest.mark.parametrize("empty", [empty_by_flushall, empty_by_restart], ids=["flushall", "kill-and-restart-empty"])
async def test_redis_emptied_behind_the_offsets_stops_processing_until_the_loss_is_accepted(
    local_stack: StackInfo, tmp_path: Path, own_redis: OwnRedis, empty: Callable[[OwnRedis], None]
) -> None:
    with worker_on(local_stack, tmp_path, own_redis) as deployment:
        topics = deployment.topics
        before = unique_customer("before")
        history = [purchase(before, NOW - timedelta(days=d)) for d in range(20, 15, -1)]
        await produce_events(local_stack.kafka_bootstrap, topics, history)
        deployment.wait_processed(topics.purchases, len(history))
        await wait_committed(deployment, topics.purchases)
        assert readyz(deployment)[0] == 200

        empty(own_redis)

        def state_lost() -> bool:  # not just 503: a restarting Redis is briefly unavailable too
            return readyz(deployment)[1].get("status") == "state lost"

        noticed = wait_for(state_lost, "/readyz to say the state is lost", timeout=20)
        status, body, _ = readyz(deployment)
        assert status == 503 and body["status"] == "state lost", body
        assert "accept-loss" in body["recovery"] and body["reason"]
        print(f"noticed {noticed:.1f} s after Redis was emptied")
        assert deployment.metric("churnwatch_state_lost") == 1
        assert deployment.metric("churnwatch_state_losses_total") == 1

        # An event sent now must not be applied to the empty Redis.
        after = unique_customer("after")
        await produce_events(local_stack.kafka_bootstrap, topics, [purchase(after, NOW - timedelta(days=1))])
        time.sleep(4)
        assert not has_state(own_redis, after), "an event was processed against the emptied Redis"
        assert deployment.processed(topics.purchases) == len(history)
        errors = [ln for ln in deployment.log.read_text().splitlines() if "ERROR" in ln and "state lost" in ln]
        assert len(errors) == 1, errors  # one clear message, not one per check
        assert "accept-loss" in errors[0] and "replay" in errors[0] and "AOF" in errors[0]

        accepted = accept_loss(deployment, own_redis)
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        wait_for(lambda: has_state(own_redis, after), "the held event to be applied after accept-loss", timeout=20)
        deployment.wait_processed(topics.purchases, len(history) + 1)
        wait_for(lambda: readyz(deployment)[0] == 200, "/readyz to turn 200 again")
        assert deployment.metric("churnwatch_state_lost") == 0
        client = own_redis.client()
        marker = json.loads(client.get(keys.epoch_marker(deployment.env["CHURNWATCH_APP_ID"])) or b"{}")
        client.close()
        assert marker["origin"] == "accepted-loss" and marker["epoch"]


async def test_a_worker_starting_on_an_emptied_redis_behind_committed_offsets_processes_nothing(
    local_stack: StackInfo, tmp_path: Path, own_redis: OwnRedis
) -> None:
    """The startup check: no worker saw the loss happen; the group's committed offsets tell."""
    with worker_on(local_stack, tmp_path, own_redis) as deployment:
        topics = deployment.topics
        history = [purchase(unique_customer("before"), NOW - timedelta(days=d)) for d in range(9, 4, -1)]
        await produce_events(local_stack.kafka_bootstrap, topics, history)
        deployment.wait_processed(topics.purchases, len(history))
        await wait_committed(deployment, topics.purchases)
        assert deployment.worker.stop() == 0
        empty_by_flushall(own_redis)  # while no worker runs

        after = unique_customer("after")
        await produce_events(local_stack.kafka_bootstrap, topics, [purchase(after, NOW - timedelta(days=1))])
        with running_worker(local_stack, env=deployment.env, output=tmp_path / "second.log") as second:
            restarted = Deployment(
                deployment.stack, topics, second, deployment.slack, tmp_path / "second.log", deployment.env
            )
            wait_for(lambda: readyz(restarted)[1].get("status") == "state lost", "the second worker to refuse")
            reason = readyz(restarted)[1]["reason"]
            assert "committed offsets on" in reason and topics.purchases in reason, reason
            assert restarted.metric("churnwatch_state_lost") == 1
            time.sleep(3)
            assert not has_state(own_redis, after) and restarted.processed(topics.purchases) == 0

            stopping = time.monotonic()
            assert second.stop() == 0  # a stopped worker still shuts down cleanly, committing nothing
            assert time.monotonic() - stopping < 15
        await wait_not_committed_past(deployment, topics.purchases, len(history))


async def test_a_worker_stopped_while_holding_an_event_after_a_loss_commits_nothing_past_it(
    local_stack: StackInfo, tmp_path: Path, own_redis: OwnRedis
) -> None:
    with worker_on(local_stack, tmp_path, own_redis) as deployment:
        topics = deployment.topics
        history = [purchase(unique_customer("before"), NOW - timedelta(days=d)) for d in range(9, 4, -1)]
        await produce_events(local_stack.kafka_bootstrap, topics, history)
        deployment.wait_processed(topics.purchases, len(history))
        await wait_committed(deployment, topics.purchases)
        empty_by_flushall(own_redis)
        wait_for(lambda: readyz(deployment)[1].get("status") == "state lost", "the loss to be noticed")
        after = unique_customer("after")
        await produce_events(local_stack.kafka_bootstrap, topics, [purchase(after, NOW - timedelta(days=1))])
        time.sleep(4)  # taken by the idle agent, held unacked
        # faust's shutdown waits for it to be acked; the worker exits at its shutdown bound instead (70)
        assert deployment.worker.stop() in (0, 70)
        assert not has_state(own_redis, after)
        await wait_not_committed_past(deployment, topics.purchases, len(history))


async def wait_not_committed_past(deployment: Deployment, topic: str, offsets: int) -> None:
    """The group's committed offsets on ``topic`` add up to no more than ``offsets``: nothing was skipped."""
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.stack.kafka_bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(deployment.env["CHURNWATCH_APP_ID"])
    finally:
        await admin.close()
    assert sum(meta.offset for tp, meta in committed.items() if tp.topic == topic) == offsets


async def test_a_first_start_writes_the_marker_and_a_restart_from_the_aof_keeps_going(
    local_stack: StackInfo, tmp_path: Path
) -> None:
    """Production's Redis (AOF, everysec): killed and restarted, it comes back with the marker and the windows."""
    redis = OwnRedis(tmp_path / "redis-aof", aof=True)
    redis.start()
    try:
        with worker_on(local_stack, tmp_path, redis) as deployment:
            topics = deployment.topics
            cid = unique_customer("aof")
            history = [purchase(cid, NOW - timedelta(days=d)) for d in range(10, 5, -1)]
            await produce_events(local_stack.kafka_bootstrap, topics, history)
            deployment.wait_processed(topics.purchases, len(history))
            await wait_committed(deployment, topics.purchases)
            marker_key = keys.epoch_marker(deployment.env["CHURNWATCH_APP_ID"])
            client = redis.client()
            marker = json.loads(client.get(marker_key) or b"{}")
            client.close()
            assert marker["origin"] == "first-start" and marker["epoch"]
            time.sleep(1.5)  # appendfsync everysec: what is a second old is on disk

            redis.kill()
            redis.start()

            await produce_events(local_stack.kafka_bootstrap, topics, [purchase(cid, NOW - timedelta(days=1))])
            deployment.wait_processed(topics.purchases, len(history) + 1, timeout=60)
            time.sleep(2)  # several state checks
            assert readyz(deployment)[0] == 200
            assert deployment.metric("churnwatch_state_lost") == 0
            client = redis.client()
            assert json.loads(client.get(marker_key) or b"{}")["epoch"] == marker["epoch"]
            client.close()
    finally:
        redis.stop()


def test_readyz_answers_within_a_second_while_redis_is_paused(
    local_stack: StackInfo, tmp_path: Path, own_redis: OwnRedis
) -> None:
    with worker_on(local_stack, tmp_path, own_redis) as deployment:
        wait_for(lambda: readyz(deployment)[0] == 200, "the worker to be ready")
        own_redis.signal(signal.SIGSTOP)  # our own redis-server stops answering
        try:
            for _ in range(3):
                status, body, seconds = readyz(deployment, timeout=5)
                assert seconds < 1.0, f"/readyz took {seconds:.2f} s with Redis paused"
                assert status == 503 and body["status"] == "redis unavailable", body
        finally:
            own_redis.signal(signal.SIGCONT)
        wait_for(lambda: readyz(deployment)[0] == 200, "/readyz to recover once Redis answers again")
