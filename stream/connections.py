"""Client options for Kafka and Redis (TLS, SASL, Redis AUTH), built from the settings in one place.

Why one place: the faust app, topic creation, the demo, the benchmarks and the tests all reach the
same broker and Redis, and a security option forgotten in one of them only shows against a secured
deployment. The secrets leave their ``SecretStr`` here alone, on their way into a client; what is
printed about a connection comes from :func:`describe_kafka` and :func:`describe_redis`, which
never include them.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiokafka.helpers import create_ssl_context
from pydantic import SecretStr
from redis.asyncio import Redis

from stream.settings import redact_url

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from stream.settings import Settings


class KafkaUnavailableError(RuntimeError):
    """Kafka could not be reached or refused the connection (TLS or SASL); the message names the
    settings used, never a secret."""


def kafka_ssl_context(
    *,
    cafile: Path | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    key_password: SecretStr | None = None,
) -> ssl.SSLContext:
    """A client TLS context that verifies the broker's certificate and host name (aiokafka's helper);
    ``cafile`` unset means the system's CAs, ``certfile`` adds a client certificate (mutual TLS)."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=cafile,
        certfile=certfile,
        keyfile=keyfile,
        password=key_password.get_secret_value() if key_password is not None else None,
    )
    return context


def aiokafka_security(
    protocol: str,
    *,
    mechanism: str | None = None,
    username: str | None = None,
    password: SecretStr | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """The security keyword arguments every aiokafka client takes (producer, consumer, admin).

    Also used by the local stack's readiness probe, which has no :class:`Settings`."""
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context or kafka_ssl_context()
    if protocol.startswith("SASL_"):
        if mechanism is None or username is None or password is None:
            raise ValueError(f"{protocol} needs a SASL mechanism, user name and password")
        kwargs |= {
            "sasl_mechanism": mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password.get_secret_value(),
        }
    return kwargs


def _ssl_context_of(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return kafka_ssl_context(
        cafile=settings.kafka_ssl_cafile,
        certfile=settings.kafka_ssl_certfile,
        keyfile=settings.kafka_ssl_keyfile,
        key_password=settings.kafka_ssl_key_password,
    )


def kafka_security_kwargs(settings: Settings) -> dict[str, Any]:
    """:func:`aiokafka_security` for the settings' protocol, mechanism, user, password and TLS files."""
    return aiokafka_security(
        settings.kafka_security_protocol,
        mechanism=settings.kafka_sasl_mechanism,
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        ssl_context=_ssl_context_of(settings),
    )


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
    """``bootstrap_servers`` plus security, for ``AIOKafkaProducer``/``AIOKafkaConsumer``/``AIOKafkaAdminClient``."""
    return {"bootstrap_servers": settings.kafka_bootstrap, **kafka_security_kwargs(settings)}


@dataclass(frozen=True)
class FaustBroker:
    """faust.App's ``broker`` and ``broker_credentials`` arguments."""

    url: str
    credentials: CredentialsT | None


def faust_broker_settings(settings: Settings) -> FaustBroker:
    """The broker URL (``kafka://``: faust's aiokafka driver whatever the security) and the credentials
    faust turns into the same aiokafka options as :func:`kafka_client_kwargs`.

    faust's ``SASLCredentials`` repr shows the user name only."""
    import faust  # the app's dependency; topic creation and the demo do without importing it

    url = f"kafka://{settings.kafka_bootstrap}"
    context = _ssl_context_of(settings)
    protocol = settings.kafka_security_protocol
    if protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # the settings' validator requires it with SASL
        credentials: CredentialsT = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
        return FaustBroker(url, credentials)
    if context is not None:
        return FaustBroker(url, faust.SSLCredentials(context))
    return FaustBroker(url, None)


def redis_options(settings: Settings) -> dict[str, Any]:
    """``Redis.from_url`` options beyond the URL: the AUTH password and the CA of a ``rediss://`` server."""
    options: dict[str, Any] = {}
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_ssl_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.redis_ssl_ca_file)
    return options


def redis_client(settings: Settings, **options: Any) -> Redis:
    """An asyncio client of the settings' Redis, with ``options`` (timeouts) on top."""
    return Redis.from_url(settings.redis_url, **redis_options(settings), **options)


def describe_kafka(settings: Settings) -> str:
    """Where and how the worker reaches Kafka, for its startup line and errors: no secret."""
    how: str = settings.kafka_security_protocol
    if how.startswith("SASL_"):
        how += f", {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username!r}"
    return f"{settings.kafka_bootstrap} ({how})"


def describe_redis(settings: Settings) -> str:
    """The Redis URL with any password redacted, and whether AUTH is used."""
    try:
        in_url = urlsplit(settings.redis_url).password is not None
    except ValueError:
        in_url = False
    auth = " (AUTH)" if in_url or settings.redis_password is not None else ""
    return f"{redact_url(settings.redis_url)}{auth}"
