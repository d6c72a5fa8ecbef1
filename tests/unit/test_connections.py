"""Connection security settings: validation, secret files, redaction, and the client options built from
them (no servers: the real SASL_SSL broker and TLS Redis are in tests/integration/test_secure_stack.py)."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import pytest
from click.testing import CliRunner
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError
from pydantic_settings import SettingsError
from redis.asyncio.connection import SSLConnection

import stream.settings as settings_module
from rules.ruleset import load_rule_set
from stream.cli import main
from stream.connections import (
    describe_kafka,
    describe_redis,
    faust_broker_settings,
    kafka_client_kwargs,
    redis_client,
    redis_options,
)
from stream.localstack.stack import StackInfo
from stream.settings import DEFAULT_RULES_DIR, Settings, redact_url

KAFKA_PASSWORD = "kafka-pw-Zq81"
REDIS_PASSWORD = "redis-pw-Xy42"
UNIT_TEST_CA = """\
-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIULvmO4FE4XkAw3/LGUP5YE9UH2NwwCgYIKoZIzj0EAwIw
IjEgMB4GA1UEAwwXY2h1cm53YXRjaCB1bml0LXRlc3QgQ0EwIBcNMjYxMjAxMTgx
MTQ1WhgPMjEyNjExMDcxODExNDVaMCIxIDAeBgNVBAMMF2NodXJud2F0Y2ggdW5p
dC10ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEECxtX9JamYEmplxD
v3NZiSkI6YJxp6a4OSbU4dt+hNHss9OBCAtq9hj/DdIeXcEgMfBFovphdrSSOvjs
EQc1k6NTMFEwHQYDVR0OBBYEFAd7eg8Rzq+kiGJfMjawu5Wz8oLeMB8GA1UdIwQY
MBaAFAd7eg8Rzq+kiGJfMjawu5Wz8oLeMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSAAwRQIgYx7Saxwu7OlGqBRNIw2nbDx/ctLf9pADCuFHkBzQZDsCIQCB
85+OKvzXlYYJg2ZSKJx51qngi+jkoAqW/8Y4LR3gKw==
-----END CERTIFICATE-----
"""
"""A self-signed CA certificate (its key was thrown away): something ssl can load, trusted by nothing."""


@pytest.fixture(autouse=True)
def _no_ambient_secrets_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's /run/secrets or CHURNWATCH_SECRETS_DIR must not leak into these tests."""
    monkeypatch.delenv("CHURNWATCH_SECRETS_DIR", raising=False)
    monkeypatch.setattr(settings_module, "DEFAULT_SECRETS_DIR", tmp_path / "no-such-dir")


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text(UNIT_TEST_CA)
    return path


def sasl_ssl(**extra: Any) -> dict[str, Any]:
    return {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "churnwatch",
        "kafka_sasl_password": KAFKA_PASSWORD,
        **extra,
    }


def problems(**values: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        Settings(**values)
    return str(raised.value)


# --- validation ---------------------------------------------------------------------------------


def test_plaintext_is_the_default_and_needs_nothing() -> None:
    settings = Settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert kafka_client_kwargs(settings) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert faust_broker_settings(settings).credentials is None
    assert redis_options(settings) == {}


def test_sasl_without_credentials_names_every_missing_variable() -> None:
    message = problems(kafka_security_protocol="SASL_SSL")
    assert "CHURNWATCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs CHURNWATCH_KAFKA_SASL_MECHANISM" in message
    assert "CHURNWATCH_KAFKA_SASL_USERNAME" in message and "CHURNWATCH_KAFKA_SASL_PASSWORD" in message


def test_credentials_without_a_sasl_protocol_are_refused_not_ignored() -> None:
    message = problems(kafka_sasl_username="churnwatch", kafka_sasl_password=KAFKA_PASSWORD)
    assert "CHURNWATCH_KAFKA_SASL_USERNAME, CHURNWATCH_KAFKA_SASL_PASSWORD set" in message
    assert "PLAINTEXT does not authenticate" in message


def test_tls_files_without_a_tls_protocol_are_refused(ca_file: Path) -> None:
    message = problems(**sasl_ssl(kafka_security_protocol="SASL_PLAINTEXT", kafka_ssl_cafile=ca_file))
    assert "CHURNWATCH_KAFKA_SSL_CAFILE set, but CHURNWATCH_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT" in message


def test_a_key_without_its_certificate_is_refused(ca_file: Path) -> None:
    message = problems(kafka_security_protocol="SSL", kafka_ssl_keyfile=ca_file)
    assert "CHURNWATCH_KAFKA_SSL_KEYFILE/_KEY_PASSWORD need CHURNWATCH_KAFKA_SSL_CERTFILE" in message


def test_a_missing_ca_file_is_refused_at_startup(tmp_path: Path) -> None:
    message = problems(**sasl_ssl(kafka_ssl_cafile=tmp_path / "nope.pem"))
    assert "kafka_ssl_cafile" in message and "does not point to a file" in message


def test_an_unknown_protocol_or_mechanism_is_refused() -> None:
    assert "kafka_security_protocol" in problems(kafka_security_protocol="TLS")
    assert "kafka_sasl_mechanism" in problems(**sasl_ssl(kafka_sasl_mechanism="GSSAPI"))


def test_redis_ca_without_rediss_and_a_password_given_twice_are_refused(ca_file: Path) -> None:
    assert "CHURNWATCH_REDIS_SSL_CA_FILE set, but CHURNWATCH_REDIS_URL is not rediss://" in problems(
        redis_ssl_ca_file=ca_file
    )
    message = problems(redis_url=f"redis://:{REDIS_PASSWORD}@h:6379/0", redis_password="other")
    assert "a Redis password in both CHURNWATCH_REDIS_URL and CHURNWATCH_REDIS_PASSWORD" in message
    assert "must start with redis://, rediss:// or unix://, not http://" in problems(redis_url="http://h/0")


def test_validation_errors_never_echo_the_secrets() -> None:
    """pydantic shows a model validator's whole input by default, passwords included."""
    message = problems(
        kafka_sasl_password=KAFKA_PASSWORD, redis_url=f"redis://:{REDIS_PASSWORD}@h/0", redis_password="x"
    )
    assert KAFKA_PASSWORD not in message and REDIS_PASSWORD not in message
    assert "input_value" not in message


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE",
                 "REDIS_PASSWORD", "REDIS_SSL_CA_FILE"):  # fmt: skip
        monkeypatch.setenv(f"CHURNWATCH_{name}", "")
    settings = Settings()
    assert settings.kafka_sasl_password is None and settings.redis_ssl_ca_file is None


# --- secret files -------------------------------------------------------------------------------


def test_secrets_come_from_files_in_churnwatch_secrets_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "churnwatch_kafka_sasl_password").write_text(KAFKA_PASSWORD + "\n")  # editors add a newline
    (secrets / "churnwatch_redis_password").write_text(REDIS_PASSWORD)
    monkeypatch.setenv("CHURNWATCH_SECRETS_DIR", str(secrets))
    for key, value in sasl_ssl().items():
        if key != "kafka_sasl_password":
            monkeypatch.setenv(f"CHURNWATCH_{key.upper()}", value)
    settings = Settings()
    assert settings.kafka_sasl_password is not None and settings.redis_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == KAFKA_PASSWORD
    assert settings.redis_password.get_secret_value() == REDIS_PASSWORD


def test_a_variable_wins_over_its_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "churnwatch_redis_password").write_text("from-the-file")
    monkeypatch.setenv("CHURNWATCH_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("CHURNWATCH_REDIS_PASSWORD", "from-the-variable")
    password = Settings().redis_password
    assert password is not None and password.get_secret_value() == "from-the-variable"


def test_run_secrets_is_read_when_it_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "churnwatch_redis_password").write_text(REDIS_PASSWORD)
    monkeypatch.setattr(settings_module, "DEFAULT_SECRETS_DIR", tmp_path)
    password = Settings().redis_password
    assert password is not None and password.get_secret_value() == REDIS_PASSWORD


def test_a_secrets_dir_that_is_not_a_directory_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHURNWATCH_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match=r"CHURNWATCH_SECRETS_DIR=.*missing is not a directory"):
        Settings()


# --- redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://app:s3cret@h:6380/1", "rediss://app:***@h:6380/1"),
        ("rediss://app:p@ss@h/0", "rediss://app:***@h/0"),
        ("redis://h/0?password=s3cret&db=2", "redis://h/0?password=***&db=2"),
        ("rediss://user@h/0", "rediss://user@h/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_no_secret_in_repr_str_or_descriptions(ca_file: Path) -> None:
    settings = Settings(**sasl_ssl(kafka_ssl_cafile=ca_file), redis_url=f"rediss://:{REDIS_PASSWORD}@h:6380/0")
    for text in (repr(settings), str(settings), describe_kafka(settings), describe_redis(settings)):
        assert KAFKA_PASSWORD not in text and REDIS_PASSWORD not in text, text
    assert describe_kafka(settings) == "127.0.0.1:9092 (SASL_SSL, SCRAM-SHA-512 as 'churnwatch')"
    assert describe_redis(settings) == "rediss://:***@h:6380/0 (AUTH)"
    assert "rediss://:***@h:6380/0" in repr(settings)
    assert KAFKA_PASSWORD not in repr(faust_broker_settings(settings))


# --- client options -----------------------------------------------------------------------------


def test_sasl_ssl_client_kwargs_verify_the_broker_with_the_given_ca(ca_file: Path) -> None:
    settings = Settings(**sasl_ssl(kafka_ssl_cafile=ca_file))
    kwargs = kafka_client_kwargs(settings)
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "churnwatch",
        "sasl_plain_password": KAFKA_PASSWORD,
    }
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert [dict(part[0] for part in ca["subject"]) for ca in context.get_ca_certs()] == [
        {"commonName": "churnwatch unit-test CA"}
    ]


def test_faust_gets_the_same_aiokafka_options(ca_file: Path) -> None:
    """faust maps its credentials to aiokafka options itself: they must come out as ours do."""
    variants = [
        sasl_ssl(kafka_ssl_cafile=ca_file),
        sasl_ssl(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN"),
        {"kafka_security_protocol": "SSL"},
    ]
    for values in variants:
        settings = Settings(**values)
        ours = kafka_client_kwargs(settings)
        del ours["bootstrap_servers"]
        broker = faust_broker_settings(settings)
        theirs = dict(credentials_to_aiokafka_auth(broker.credentials))
        assert broker.url == "kafka://127.0.0.1:9092"
        assert {k: v for k, v in theirs.items() if v is not None and k != "ssl_context"} == {
            k: v for k, v in ours.items() if k != "ssl_context"
        }
        assert ("ssl_context" in ours) == (theirs.get("ssl_context") is not None)
    sasl = faust_broker_settings(Settings(**sasl_ssl(kafka_ssl_cafile=ca_file))).credentials
    assert isinstance(sasl, faust.SASLCredentials) and KAFKA_PASSWORD not in repr(sasl)


async def test_redis_client_carries_password_and_ca(ca_file: Path) -> None:
    settings = Settings(redis_url="rediss://h:6380/0", redis_password=REDIS_PASSWORD, redis_ssl_ca_file=ca_file)
    client = redis_client(settings, socket_timeout=2)
    try:
        pool = client.connection_pool
        assert pool.connection_class is SSLConnection
        assert pool.connection_kwargs["password"] == REDIS_PASSWORD
        assert pool.connection_kwargs["ssl_ca_certs"] == str(ca_file)
        assert pool.connection_kwargs["socket_timeout"] == 2
    finally:
        await client.aclose()


# --- the local stack's records ------------------------------------------------------------------


def test_a_stack_json_from_before_the_secure_stack_reads_as_plaintext(tmp_path: Path) -> None:
    old = {
        "name": "dev", "kafka_bootstrap": "127.0.0.1:1", "redis_url": "redis://127.0.0.1:2/0", "kafka_port": 1,
        "kafka_controller_port": 3, "redis_port": 2, "kafka_pid": None, "redis_pid": None,
        "stack_dir": str(tmp_path), "started_at": "2020-01-01T00:00:00+00:00", "kafka_version": "4.0.0",
        "state": "stopped",
    }  # fmt: skip
    info = StackInfo.from_json(old)
    assert not info.secure and info.kafka_security() == {} and info.redis_options() == {}
    assert info.client_env() == {"CHURNWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:1", "CHURNWATCH_REDIS_URL": old["redis_url"]}
    assert StackInfo.from_json(json.loads(json.dumps(info.to_json()))) == info


def test_a_secure_stack_info_round_trips_and_hides_its_passwords_from_repr(tmp_path: Path) -> None:
    info = StackInfo(
        name="s", kafka_bootstrap="127.0.0.1:1", redis_url="rediss://127.0.0.1:2/0", kafka_port=1,
        kafka_controller_port=3, redis_port=2, kafka_pid=None, redis_pid=None, stack_dir=tmp_path,
        started_at="2020-01-01T00:00:00+00:00", kafka_version="4.0.0", secure=True,
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="churnwatch",
        kafka_sasl_password=KAFKA_PASSWORD, redis_password=REDIS_PASSWORD, ca_file=tmp_path / "ca.pem",
        secrets_dir=tmp_path / "secrets",
    )  # fmt: skip
    assert StackInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
    assert KAFKA_PASSWORD not in repr(info) and REDIS_PASSWORD not in repr(info)
    env = info.client_env()
    assert env["CHURNWATCH_SECRETS_DIR"] == str(tmp_path / "secrets")
    assert KAFKA_PASSWORD not in json.dumps(env) and REDIS_PASSWORD not in json.dumps(env)


# --- the worker's startup line ------------------------------------------------------------------


@dataclass
class _BuiltWorker:
    app: object

    def rules(self) -> Any:
        return load_rule_set(DEFAULT_RULES_DIR)


class _NoRun:
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def execute_from_commandline(self) -> None:
        pass


def test_the_worker_startup_line_shows_how_it_connects_but_no_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ca_file: Path
) -> None:
    import stream.app
    import stream.lifecycle
    import stream.topics

    async def no_topics(settings: Settings) -> list[str]:
        await asyncio.sleep(0)
        return []

    monkeypatch.setattr(stream.topics, "ensure_topics", no_topics)
    monkeypatch.setattr(stream.app, "build_app", lambda settings, rule_set, **_: _BuiltWorker(app=None))
    monkeypatch.setattr(stream.lifecycle, "BoundedWorker", _NoRun)
    (tmp_path / "churnwatch_kafka_sasl_password").write_text(KAFKA_PASSWORD)
    env = {
        "CHURNWATCH_SECRETS_DIR": str(tmp_path),
        "CHURNWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CHURNWATCH_KAFKA_SASL_MECHANISM": "PLAIN",
        "CHURNWATCH_KAFKA_SASL_USERNAME": "svc-churn",
        "CHURNWATCH_KAFKA_SSL_CAFILE": str(ca_file),
        "CHURNWATCH_REDIS_URL": f"rediss://:{REDIS_PASSWORD}@redis.internal:6380/0",
    }
    result = CliRunner().invoke(main, ["worker"], env=env)
    assert result.exit_code == 0, result.output
    assert (
        "churnwatch worker: kafka 127.0.0.1:9092 (SASL_SSL, PLAIN as 'svc-churn'), "
        "redis rediss://:***@redis.internal:6380/0 (AUTH), "
    ) in result.output
    assert KAFKA_PASSWORD not in result.output and REDIS_PASSWORD not in result.output
