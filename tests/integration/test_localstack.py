"""The local stack really serves Kafka and Redis, runs side by side, and stops only its own pids."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from click.testing import CliRunner

from stream.localstack import StackInfo, stack_down, stack_status, stack_up
from stream.localstack.cli import stack_group
from stream.localstack.kafka_broker import KafkaStartError, ensure_kafka_libs, kafka_version, wait_ready
from stream.localstack.paths import kafka_home, stack_dir
from stream.localstack.ports import free_ports
from stream.localstack.processes import StopResult, cmdline_marker, pid_alive, stop_process


def _quiet(_: str) -> None:
    """Swallow progress output in tests."""


@pytest.mark.asyncio
async def test_kafka_round_trip(local_stack: StackInfo) -> None:
    """A message produced to an auto-created topic comes back intact via a consumer group."""
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=local_stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b'{"customer_id": "c-1"}', key=b"c-1", headers=[("source", b"test")])
    finally:
        await producer.stop()
    assert meta.offset == 0

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=local_stack.kafka_bootstrap,
        group_id=f"group-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        record = await consumer.getone()
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"c-1", b'{"customer_id": "c-1"}')
    assert list(record.headers) == [("source", b"test")]
    assert committed == 1  # group coordinator (1-partition __consumer_offsets) works


def test_redis_answers_and_stores(local_stack: StackInfo) -> None:
    """Redis is reachable, keeps values, and runs with the configured policies."""
    client = redis.Redis.from_url(local_stack.redis_url, decode_responses=True)
    try:
        assert client.ping()
        client.set("churnwatch:test", "42")
        assert client.get("churnwatch:test") == "42"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
    finally:
        client.close()


def test_up_is_idempotent_and_status_lists_it(local_stack: StackInfo) -> None:
    """`up` on a healthy stack returns the same servers; status and CLI agree."""
    again = stack_up(local_stack.name, log=_quiet)
    assert (again.kafka_pid, again.redis_pid) == (local_stack.kafka_pid, local_stack.redis_pid)
    [status] = stack_status(local_stack.name)
    assert status.state == "running" and status.kafka_alive and status.redis_alive

    result = CliRunner().invoke(stack_group, ["status", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows[local_stack.name]["info"]["kafka_bootstrap"] == local_stack.kafka_bootstrap


def test_second_stack_side_by_side_and_stale_restart(local_stack: StackInfo) -> None:
    """Another stack gets its own ports; a stack with a dead server is cleaned and restarted."""
    name = f"{local_stack.name}-b"
    second = stack_up(name, log=_quiet)
    try:
        ports_a = {local_stack.kafka_port, local_stack.kafka_controller_port, local_stack.redis_port}
        ports_b = {second.kafka_port, second.kafka_controller_port, second.redis_port}
        assert not ports_a & ports_b
        assert redis.Redis.from_url(second.redis_url).ping()
        assert redis.Redis.from_url(local_stack.redis_url).ping()

        # Simulate a crashed broker: kill the pid we started (it is ours: same marker).
        assert stop_process(second.kafka_pid, cmdline_marker(second.stack_dir), exe="java") in (
            StopResult.TERMINATED,
            StopResult.KILLED,
        )
        assert stack_status(name)[0].state == "degraded"
        restarted = stack_up(name, log=_quiet)
        assert restarted.kafka_pid != second.kafka_pid
        assert not pid_alive(second.redis_pid)  # the stale half was stopped, not leaked
        assert stack_status(name)[0].state == "running"
    finally:
        stack_down(name, purge=True, log=_quiet)
    for pid in (second.kafka_pid, second.redis_pid, restarted.kafka_pid, restarted.redis_pid):
        assert not pid_alive(pid)
    assert not stack_dir(name).exists()
    assert pid_alive(local_stack.kafka_pid) and pid_alive(local_stack.redis_pid)


def _write_fake_stack(name: str, pid: int) -> Path:
    """A stack.json claiming ``pid`` for both servers."""
    sdir = stack_dir(name)
    sdir.mkdir(parents=True)
    info = {
        "name": name,
        "kafka_bootstrap": "127.0.0.1:1",
        "redis_url": "redis://127.0.0.1:2/0",
        "kafka_port": 1,
        "kafka_controller_port": 3,
        "redis_port": 2,
        "kafka_pid": pid,
        "redis_pid": pid,
        "stack_dir": str(sdir),
        "started_at": "2020-01-01T00:00:00+00:00",
        "kafka_version": "4.0.0",
        "state": "running",
    }
    (sdir / "stack.json").write_text(json.dumps(info))
    return sdir


def test_down_refuses_to_signal_foreign_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pid in stack.json whose cmdline lacks the stack dir (pid reuse) is never signalled."""
    monkeypatch.setenv("CHURNWATCH_CACHE_DIR", str(tmp_path))
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        sdir = _write_fake_stack("fake", sleeper.pid)
        assert stop_process(sleeper.pid, cmdline_marker(sdir), timeout=0.5) is StopResult.NOT_OURS
        stack_down("fake", log=_quiet, timeout=0.5)
        time.sleep(0.2)
        assert sleeper.poll() is None and pid_alive(sleeper.pid)
        saved = json.loads((sdir / "stack.json").read_text())
        assert saved["kafka_pid"] is None and saved["state"] == "stopped"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stop_terminates_own_process_and_kills_stubborn_one(tmp_path: Path) -> None:
    """Our own process gets SIGTERM; one that ignores it gets SIGKILL after the timeout."""
    marker_dir = tmp_path / "stacks" / "mine"
    marker = cmdline_marker(marker_dir)
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", f"{marker}x"])
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)",
            f"{marker}x",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        # Right marker but wrong executable (e.g. `tail -f <stack>/broker.log`): refused.
        assert stop_process(polite.pid, marker, exe="java") is StopResult.NOT_OURS
        assert stop_process(polite.pid, marker, timeout=5) is StopResult.TERMINATED
        assert stop_process(stubborn.pid, marker, timeout=0.5) is StopResult.KILLED
        assert not pid_alive(polite.pid) and not pid_alive(stubborn.pid)
    finally:
        for proc in (polite, stubborn):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.asyncio
async def test_readiness_timeout_reports_broker_log(tmp_path: Path) -> None:
    """When Kafka never answers, the error carries the broker log's tail, not just 'timeout'."""
    log_file = tmp_path / "broker.log"
    log_file.write_text("line 1\nERROR something went wrong: Address already in use\n")
    [port] = free_ports(1)
    with pytest.raises(KafkaStartError, match="Address already in use"):
        await wait_ready(f"127.0.0.1:{port}", timeout=1.0, log_path=log_file)


@pytest.mark.asyncio
async def test_sync_api_is_callable_inside_running_loop(local_stack: StackInfo) -> None:
    """stack_up's Kafka probe must not call asyncio.run on the caller's running loop."""
    again = stack_up(local_stack.name, log=_quiet)
    assert again.kafka_bootstrap == local_stack.kafka_bootstrap


def test_jar_cache_redoes_incomplete_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jars without the completion marker are fetched again; complete ones are reused."""
    monkeypatch.setenv("CHURNWATCH_CACHE_DIR", str(tmp_path))
    home = kafka_home(kafka_version())
    libs = home / "libs"
    libs.mkdir(parents=True)
    (libs / "half-downloaded.jar").write_bytes(b"")
    assert ensure_kafka_libs(log=_quiet) == libs
    assert not (libs / "half-downloaded.jar").exists()
    assert any(libs.glob("kafka_2.13-*.jar")) and any(libs.glob("log4j-slf4j-impl-*.jar"))
    marker = home / ".complete"
    stamp = marker.stat().st_mtime_ns
    assert ensure_kafka_libs(log=_quiet) == libs
    assert marker.stat().st_mtime_ns == stamp  # second call reused the cache


def test_storage_format_accepts_a_cluster_id_starting_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A random base64url id begins with '-' one time in 64; it must not read as an option."""
    from stream.localstack import kafka_broker

    libs = kafka_broker.ensure_kafka_libs(log=lambda _: None)
    config = tmp_path / "server.properties"
    config.write_text(kafka_broker.server_properties(data_dir=tmp_path / "data", port=1, controller_port=2))
    monkeypatch.setattr(kafka_broker, "new_cluster_id", lambda: "-vnKdLLVSHmSy2TVNiPahg")
    kafka_broker.format_storage(libs, config, kafka_dir=tmp_path, log_path=tmp_path / "format.log")
    assert "-vnKdLLVSHmSy2TVNiPahg" in (tmp_path / "data" / "meta.properties").read_text()
