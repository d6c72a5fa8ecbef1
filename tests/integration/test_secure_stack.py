"""A secure local stack (Kafka's client listener SASL_SSL with SCRAM-SHA-512 and PLAIN; Redis over TLS
with a password) and churnwatch end to end on it, its secrets never in a worker's output."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from click.testing import CliRunner
from pydantic import SecretStr

from stream.connections import aiokafka_security, kafka_client_kwargs, kafka_ssl_context, redis_client
from stream.localstack import StackInfo, running_stack
from stream.localstack.cli import stack_group
from stream.localstack.processes import pid_alive, read_cmdline
from stream.localstack.worker import start_worker
from stream.settings import Settings
from stream.windows import keys
from tests.events_factory import feedback, interaction, unique_customer, weekly_purchases
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import produce, produce_events, read_topic

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[StackInfo]:
    """Its own stack beside the session's plaintext one; downed with purge even on failure."""
    started = time.monotonic()
    with running_stack(f"pytest-{os.getpid()}-secure", purge=True, secure=True) as info:
        print(f"secure stack up in {time.monotonic() - started:.1f}s")
        yield info
    leaked = [pid for pid in (info.kafka_pid, info.redis_pid) if pid_alive(pid)]
    assert not leaked, f"secure stack processes still alive after down: {leaked}"


@pytest.fixture(scope="module")
def secure_deployment(secure_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(secure_stack, tmp_path_factory.mktemp("secure-worker")) as running:
        yield running


def _secrets_of(info: StackInfo) -> list[str]:
    secret_values = [info.kafka_sasl_password, info.redis_password]
    assert all(secret_values)
    return [s for s in secret_values if s]


def _assert_no_secret(text: str, *secret_values: str) -> None:
    leaked = [f"{s[:3]}…" for s in secret_values if s in text]
    assert not leaked, f"secret(s) {leaked} found in the output"


def test_stack_records_what_a_client_needs_and_keeps_secrets_private(secure_stack: StackInfo) -> None:
    info, sdir = secure_stack, secure_stack.stack_dir
    assert (info.kafka_security_protocol, info.kafka_sasl_mechanism, info.kafka_sasl_username) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "churnwatch",
    )
    assert info.redis_url == f"rediss://127.0.0.1:{info.redis_port}/0"
    assert info.ca_file is not None and info.ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert info.secrets_dir is not None
    assert StackInfo.from_json(json.loads((sdir / "stack.json").read_text())) == info
    private = [
        sdir / "stack.json",
        info.secrets_dir / "churnwatch_kafka_sasl_password",
        info.secrets_dir / "churnwatch_redis_password",
        sdir / "kafka" / "server.properties",
        sdir / "redis" / "redis.conf",
        sdir / "tls" / "server.key",
        sdir / "tls" / "server-keystore.pem",
    ]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in private} == {p.name: "0o600" for p in private}
    assert not (sdir / "tls" / "ca.key").exists(), "the throw-away CA's key is deleted once it signed"
    kafka_password, redis_password = _secrets_of(info)
    for pid in (info.kafka_pid, info.redis_pid):
        assert pid is not None
        _assert_no_secret("\0".join(read_cmdline(pid)), kafka_password, redis_password)
    _assert_no_secret((sdir / "kafka" / "broker.log").read_text(), kafka_password, redis_password)
    _assert_no_secret((sdir / "redis" / "redis.log").read_text(), kafka_password, redis_password)


def test_cli_up_secure_reuses_the_stack_and_env_names_no_password(secure_stack: StackInfo) -> None:
    runner = CliRunner()
    up = runner.invoke(stack_group, ["up", "--name", secure_stack.name, "--secure", "--json"])
    assert up.exit_code == 0, up.output
    shown = json.loads(up.stdout)
    assert shown["kafka_pid"] == secure_stack.kafka_pid and shown["secure"] is True  # healthy: not restarted
    env = runner.invoke(stack_group, ["env", "--name", secure_stack.name])
    assert env.exit_code == 0, env.output
    assert f"export CHURNWATCH_SECRETS_DIR={secure_stack.secrets_dir}" in env.stdout
    assert "export CHURNWATCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in env.stdout
    _assert_no_secret(up.output + env.output, *_secrets_of(secure_stack))


async def test_settings_from_the_stack_env_and_secrets_dir_reach_both_servers(
    secure_stack: StackInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``eval "$(churnwatch stack env)"`` gives a churnwatch command: passwords from the secrets dir."""
    for key, value in secure_stack.client_env().items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka_sasl_password is not None and settings.redis_password is not None
    assert (settings.kafka_sasl_password.get_secret_value(), settings.redis_password.get_secret_value()) == (
        secure_stack.kafka_sasl_password,
        secure_stack.redis_password,
    )
    client = redis_client(settings)
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        assert isinstance(await admin.list_topics(), list)
    finally:
        await admin.close()


async def test_scram_over_tls_end_to_end_with_no_secret_in_the_output(secure_deployment: Deployment) -> None:
    deployment, stack = secure_deployment, secure_deployment.stack
    cid = unique_customer("secure")
    events = [*weekly_purchases(cid, NOW, 119, 40), interaction(cid, NOW - timedelta(minutes=5)), feedback(cid, NOW, 3)]
    await produce_events(stack.kafka_bootstrap, deployment.topics, events, security=stack.kafka_security())

    alerts = await deployment.alerts_for(cid, 2)
    assert sorted(a.rule_id for a in alerts) == ["nps-detractor", "purchase-overdue"]
    deadline = time.monotonic() + 30
    while len(deployment.slack_posts_for(cid)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert len(deployment.slack_posts_for(cid)) == 2
    state = redis.Redis.from_url(stack.redis_url, **stack.redis_options())
    try:
        assert state.exists(keys.customer_state(cid)), "the windows live in the TLS Redis"
    finally:
        state.close()
    deadline = time.monotonic() + 30
    while json.loads(_readyz(deployment))["status"] != "ready" and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert json.loads(_readyz(deployment))["status"] == "ready"  # its Redis probe goes over TLS with AUTH too

    output = deployment.log.read_text()
    assert "churnwatch worker: kafka " in output
    assert "(SASL_SSL, SCRAM-SHA-512 as 'churnwatch'), redis rediss://127.0.0.1:" in output
    _assert_no_secret(output + deployment.worker.get("/metrics"), *_secrets_of(stack))
    # Nor in its environment: the passwords came from the stack's secrets dir.
    environ = Path(f"/proc/{deployment.worker.process.pid}/environ").read_bytes().decode(errors="replace")
    assert f"CHURNWATCH_SECRETS_DIR={stack.secrets_dir}" in environ
    _assert_no_secret(environ, *_secrets_of(stack))


def _readyz(deployment: Deployment) -> str:
    import urllib.error

    try:
        return deployment.worker.get("/readyz")
    except urllib.error.HTTPError as exc:  # 503 while not ready
        return str(exc.read().decode())


async def test_plain_over_tls_round_trip(secure_stack: StackInfo) -> None:
    security = secure_stack.kafka_security(mechanism="PLAIN")
    assert security["sasl_mechanism"] == "PLAIN"
    topic = f"plain-{uuid.uuid4().hex[:8]}"
    await produce(secure_stack.kafka_bootstrap, [(topic, b"k", b"over PLAIN")], security=security)
    records = await read_topic(
        secure_stack.kafka_bootstrap, topic, until=lambda rs: len(rs) >= 1, timeout=30, security=security
    )
    assert [(r.key, r.value) for r in records] == [(b"k", b"over PLAIN")]


def _refusals(info: StackInfo) -> dict[str, dict[str, Any]]:
    trusted = kafka_ssl_context(cafile=info.ca_file)
    wrong = SecretStr("wrong-" + secrets.token_urlsafe(8))

    def sasl(mechanism: str, username: str, password: SecretStr, context: Any = trusted) -> dict[str, Any]:
        return aiokafka_security(
            "SASL_SSL", mechanism=mechanism, username=username, password=password, ssl_context=context
        )

    real = SecretStr(info.kafka_sasl_password or "")
    return {
        "plaintext": {"security_protocol": "PLAINTEXT"},
        "TLS without SASL": aiokafka_security("SSL", ssl_context=trusted),
        "SASL without TLS": aiokafka_security(
            "SASL_PLAINTEXT", mechanism="PLAIN", username="churnwatch", password=real
        ),
        "wrong SCRAM password": sasl("SCRAM-SHA-512", "churnwatch", wrong),
        "wrong PLAIN password": sasl("PLAIN", "churnwatch", wrong),
        "unknown user": sasl("SCRAM-SHA-512", "mallory", real),
        "broker certificate not trusted": sasl("SCRAM-SHA-512", "churnwatch", real, kafka_ssl_context()),
    }


@pytest.mark.parametrize(
    "how",
    [
        "plaintext",
        "TLS without SASL",
        "SASL without TLS",
        "wrong SCRAM password",
        "wrong PLAIN password",
        "unknown user",
        "broker certificate not trusted",
    ],
)
async def test_kafka_refuses(secure_stack: StackInfo, how: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=secure_stack.kafka_bootstrap, request_timeout_ms=5000, **_refusals(secure_stack)[how]
    )
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.start()
    finally:
        await producer.stop()


def test_worker_with_a_wrong_kafka_password_exits_with_a_clear_error(secure_stack: StackInfo, tmp_path: Path) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    log = tmp_path / "worker.log"
    worker = start_worker(
        secure_stack,
        env={"CHURNWATCH_KAFKA_SASL_PASSWORD": wrong, "CHURNWATCH_APP_ID": f"wrong-{uuid.uuid4().hex[:6]}"},
        output=log,
    )
    try:
        code = worker.process.wait(timeout=90)
    finally:
        worker.stop()
    output = log.read_text()
    assert code != 0, output
    assert "SaslAuthenticationFailed" in output, output
    assert "KafkaUnavailableError: cannot connect to Kafka at" in output, output
    assert "(SASL_SSL, SCRAM-SHA-512 as 'churnwatch')" in output, output
    _assert_no_secret(output, wrong, *_secrets_of(secure_stack))


def test_worker_with_a_wrong_redis_password_is_not_ready(secure_stack: StackInfo, tmp_path: Path) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    log = tmp_path / "worker.log"
    worker = start_worker(
        secure_stack,
        env={"CHURNWATCH_REDIS_PASSWORD": wrong, "CHURNWATCH_APP_ID": f"wrong-redis-{uuid.uuid4().hex[:6]}"},
        output=log,
    )
    try:
        worker.wait_healthy()
        import urllib.error

        with pytest.raises(urllib.error.HTTPError) as refused:
            worker.get("/readyz")
        answer = json.loads(refused.value.read().decode())
    finally:
        worker.stop()
    assert refused.value.code == 503
    assert answer == {"status": "redis unavailable", "error": "AuthenticationError"}
    _assert_no_secret(log.read_text(), wrong, *_secrets_of(secure_stack))


def test_redis_takes_tls_with_its_password_only(secure_stack: StackInfo) -> None:
    url, ca_file, password = secure_stack.redis_url, str(secure_stack.ca_file), secure_stack.redis_password

    def ping(target: str = url, **options: Any) -> bool:
        client = redis.Redis.from_url(target, socket_timeout=3, socket_connect_timeout=3, **options)
        try:
            return bool(client.ping())
        finally:
            client.close()

    assert ping(password=password, ssl_ca_certs=ca_file)
    for options in ({}, {"password": "wrong-" + secrets.token_urlsafe(8)}):
        with pytest.raises(redis.AuthenticationError):
            ping(ssl_ca_certs=ca_file, **options)
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        ping(password=password)  # the system's CAs do not know the stack's throw-away CA
    with pytest.raises(redis.ConnectionError):
        ping(url.replace("rediss://", "redis://"), password=password)  # no plaintext port at all
