"""Service settings, read once from the environment (``CHURNWATCH_*``) by the composition root."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from alerts.links import LinkTemplate, parse_link_templates
from rules.base import Duration
from stream.decoding import DecodePolicy
from stream.events import EVENT_MODELS, EventBase
from stream.kafka_sinks import HEADERS_MAX_BYTES as DEADLETTER_HEADERS_MAX_BYTES
from stream.windows.dedupe import DEFAULT_IDS_KEPT
from stream.windows.store import WindowPolicy

DEFAULT_RULES_DIR = Path(__file__).resolve().parent.parent / "rules" / "defaults"
RECORD_BATCH_OVERHEAD = 128
"""Bytes of a one-record batch besides key, value and headers (61 of batch header, varints): generous."""
KAFKA_REQUEST_ALLOWANCE = 64 * 1024
"""What the producer's and the fetcher's limits get above the broker's: framing, with a wide margin."""


class Topics(BaseSettings):
    """Kafka topic names. One topic per event stream, keyed by customer id."""

    model_config = SettingsConfigDict(env_prefix="CHURNWATCH_TOPIC_", frozen=True, extra="forbid")

    purchases: str = "churnwatch.purchases"
    interactions: str = "churnwatch.interactions"
    feedback: str = "churnwatch.feedback"
    alerts: str = "churnwatch.alerts"
    deadletter: str = "churnwatch.deadletter"

    @property
    def events(self) -> tuple[str, str, str]:
        return (self.purchases, self.interactions, self.feedback)

    @property
    def event_kinds(self) -> dict[str, str]:
        """Topic name -> the event kind it carries (``purchase``, ``interaction``, ``feedback``)."""
        return {self.purchases: "purchase", self.interactions: "interaction", self.feedback: "feedback"}

    def for_event(self, event: EventBase) -> str:
        """The topic an event belongs on."""
        kind = next(k for k, model in EVENT_MODELS.items() if isinstance(event, model))
        return next(topic for topic, k in self.event_kinds.items() if k == kind)


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SECRETS_DIR_ENV = "CHURNWATCH_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/run/secrets")
"""Where Docker and Compose mount secrets: read when it exists and ``CHURNWATCH_SECRETS_DIR`` is unset."""
_EMPTY_MEANS_UNSET = (
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "kafka_ssl_key_password",
    "redis_password",
    "redis_ssl_ca_file",
    "routes_file",
)


def secrets_dir() -> Path | None:
    """The directory of secret files (one per setting, named ``churnwatch_<setting>``), if any.

    Read at each ``Settings()``, so a test or a launcher can point it elsewhere by the variable."""
    configured = os.environ.get(SECRETS_DIR_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise SettingsError(f"{SECRETS_DIR_ENV}={configured} is not a directory")
        return path
    return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None


def redact_url(url: str) -> str:
    """``url`` with its password (in the user info or a ``password=`` parameter) replaced by ``***``.

    What logs, errors and reprs show of a URL that may carry credentials (``redis://:pw@host``)."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return "<unparseable URL>"
    netloc, query = parts.netloc, parts.query
    if has_password:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key.lower() == "password" for key, _ in pairs):
        query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*/")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class Settings(BaseSettings):
    """Everything configurable, from ``CHURNWATCH_*`` variables (topic names: ``CHURNWATCH_TOPIC_*``)."""

    # hide_input_in_errors: a validation error must not echo the input, which holds the secrets.
    model_config = SettingsConfigDict(env_prefix="CHURNWATCH_", frozen=True, extra="ignore", hide_input_in_errors=True)

    app_id: str = Field(default="churnwatch", description="Kafka consumer group / faust app id")
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis:// or rediss:// (TLS); may carry a password, which is redacted wherever it is shown",
    )
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = Field(default=None, description="Required with SASL_*")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: FilePath | None = Field(
        default=None,
        description="With SSL/SASL_SSL: the CA bundle (PEM) that signed the brokers' certificates; "
        "unset: the system's CAs",
    )
    kafka_ssl_certfile: FilePath | None = Field(default=None, description="Client certificate (PEM) for mutual TLS")
    kafka_ssl_keyfile: FilePath | None = Field(default=None, description="Its private key, if not in the certfile")
    kafka_ssl_key_password: SecretStr | None = None
    redis_password: SecretStr | None = Field(
        default=None, description="Redis AUTH password, instead of one in CHURNWATCH_REDIS_URL"
    )
    redis_ssl_ca_file: FilePath | None = Field(
        default=None, description="With rediss://: the CA (PEM) that signed Redis's certificate; unset: the system's"
    )
    topics: Topics = Field(default_factory=Topics)
    kafka_session_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="A worker that stops heartbeating (crashed) loses its partitions to the others after this",
    )
    kafka_commit_interval: Duration = Field(
        default=timedelta(seconds=2.8),
        gt=timedelta(0),
        description="How often the offsets of finished events are committed (faust's broker_commit_interval): "
        "what a crashed worker's successor reads again, as duplicates, is at most this much work",
    )
    topic_partitions: int = Field(default=4, ge=1, description="Partitions for topics churnwatch creates")
    topic_replicas: int = Field(default=1, ge=1, description="Replication factor for topics churnwatch creates")
    shutdown_timeout: Duration = Field(
        default=timedelta(seconds=15),
        description="After SIGTERM/SIGINT the worker exits within this, even with Kafka or Redis unreachable",
    )
    parent_pid: int | None = Field(
        default=None, description="Set by a launcher (bin/run): the worker stops itself once this process is gone"
    )
    rules_dir: Path = DEFAULT_RULES_DIR
    rules_watch: bool = Field(default=True, description="Reload rules when a file in rules_dir changes")
    routes_file: Path | None = Field(
        default=None,
        description="Routes file (YAML, see `churnwatch routes check`): which receivers get which alerts; "
        "unset or empty: every configured notifier gets every alert",
    )
    data_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "churnwatch",
        description="faust's local directory (its tables live in Redis, so nothing here must survive); "
        "not the working directory, which it would litter with <app_id>-data",
    )

    web_host: str = "127.0.0.1"
    web_port: int = 6066

    slack_webhook_url: SecretStr | None = Field(default=None, description="Slack incoming webhook; empty = off")
    currency: str = Field(default="USD", description="Spend is summed in this currency; others are rejected")

    webhook_url: SecretStr | None = Field(
        default=None, description="Generic webhook: each alert is POSTed as JSON with an Idempotency-Key; empty = off"
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signs every webhook POST (X-Churnwatch-Timestamp, X-Churnwatch-Signature: v1=<HMAC-SHA256>); "
        "empty = unsigned",
    )
    slack_bot_token: SecretStr | None = Field(
        default=None, description="Slack Web API bot token (xoxb-…, scope chat:write); with slack_channel; empty = off"
    )
    slack_channel: str | None = Field(
        default=None, description="Channel the bot posts alerts to (name or id; the bot must be a member)"
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="The Slack app's signing secret: serves POST /slack/interactions (the feedback buttons), "
        "verifying every request's X-Slack-Signature; empty = no endpoint",
    )

    alert_links: Annotated[tuple[LinkTemplate, ...], NoDecode] = Field(
        default=(),
        description="Links in every Slack alert: Name=URL template pairs separated by commas (or a JSON object), "
        "e.g. CRM=https://crm.example/customers/{customer_id}; placeholders: customer_id, rule_id, alert_id, "
        "severity, segment, owner (each URL-quoted); empty = none",
    )

    @field_validator("alert_links", mode="before")
    @classmethod
    def _link_templates(cls, value: object) -> object:
        """Checked at start: an unknown placeholder or a broken URL stops the worker, naming the link."""
        if not isinstance(value, str):
            return value
        try:
            return parse_link_templates(value)
        except ValueError as exc:
            raise ValueError(f"CHURNWATCH_ALERT_LINKS: {exc}") from None

    @field_validator(
        "slack_webhook_url",
        "webhook_url",
        "webhook_secret",
        "slack_bot_token",
        "slack_channel",
        "slack_signing_secret",
        "alert_max_lag",
        mode="before",
    )
    @classmethod
    def _empty_means_off(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _slack_web_api_is_complete(self) -> Settings:
        """A token without a channel (or the reverse) is a half-done setup: say so instead of posting nowhere."""
        if (self.slack_bot_token is None) != (self.slack_channel is None):
            raise ValueError("CHURNWATCH_SLACK_BOT_TOKEN and CHURNWATCH_SLACK_CHANNEL are set together or not at all")
        return self

    retention: Duration = Field(
        default=timedelta(days=150),
        description="Event-time horizon kept per customer; older events are dropped as late",
    )
    dedupe_ttl: Duration = Field(
        default=timedelta(days=7),
        description="How long a delivered alert is remembered per sink (and the per-event markers of versions "
        "before the bounded dedupe lived)",
    )
    dedupe_ids: int = Field(
        default=DEFAULT_IDS_KEPT,
        ge=1,
        le=65536,
        description="Event ids remembered per customer, latest event times first, to drop redeliveries; an "
        "event older than all of them is taken for a redelivery",
    )
    idle_ttl: Duration = Field(
        default=timedelta(days=180), description="A customer with no event for this long is forgotten"
    )
    max_future_skew: Duration = Field(
        default=timedelta(hours=24), description="Events timed further ahead of the wall clock are invalid"
    )
    alert_max_lag: Duration | None = Field(
        default=timedelta(days=2),
        description="Rules firing at an event time older than this (replayed history) are counted, not alerted; "
        "unset (empty) for backtests",
    )
    input_skew_tolerance: Duration = Field(
        default=timedelta(minutes=10),
        description="Rules wait while another input topic is further behind than this and still has unread events",
    )
    evaluation_delay: Duration = Field(
        default=timedelta(0),
        description="Rules judge a customer this long after their event, on everything that arrived meanwhile "
        "(set a few seconds when producers send one customer's streams with some skew)",
    )
    due_scan_interval: Duration = Field(
        default=timedelta(seconds=5),
        gt=timedelta(0),
        description="How often customers whose silence crossed a rule's threshold are looked for and judged",
    )
    evaluation_max_failures: int = Field(
        default=3, ge=1, description="Failed evaluations in a row after which a customer is quarantined"
    )
    batch_max_events: int = Field(
        # 5,000, not 500: in a backlog each customer's run of a batch is one script call and one
        # judgement, so larger batches cost less per event (bench/README.md: 4,672 -> 8,544 events/s).
        default=5000,
        ge=1,
        le=100_000,
        description="The most events processed as one batch: one Redis round trip for their windows, each "
        "customer judged once, acked together once done (batches are what has arrived, never waited for)",
    )
    max_message_bytes: int = Field(default=64 * 1024, description="Larger messages are dead-lettered")
    kafka_message_max_bytes: int = Field(
        default=1_048_588,
        ge=16 * 1024,
        description="The broker's message.max.bytes (Kafka's default): the largest record batch it accepts; "
        "the worker's producer request and per-partition fetch sizes are set above it",
    )
    deadletter_max_bytes: int = Field(
        default=900_000,
        ge=8 * 1024,
        description="A dead letter's key plus value at most: a longer original is cut to this, with its length "
        "and SHA-256 in headers; must leave room for the headers under CHURNWATCH_KAFKA_MESSAGE_MAX_BYTES",
    )
    feedback_history: int = Field(default=10, ge=2, le=100, description="Survey answers kept per kind")

    delivery_attempts: int = Field(default=6, ge=1, description="Tries per alert and sink before giving up")
    delivery_backoff_max: Duration = Field(default=timedelta(seconds=30))
    slack_messages_per_second: float = Field(default=1.0, gt=0, description="Slack's webhook limit")

    state_check_interval: Duration = Field(
        default=timedelta(seconds=5),
        gt=timedelta(0),
        description="How often the worker checks that Redis still holds its epoch marker (one EXISTS); "
        "a Redis emptied behind the committed offsets is noticed within this",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Variables first, then secret files: ``<secrets dir>/churnwatch_kafka_sasl_password`` and so on."""
        return init_settings, env_settings, dotenv_settings, SecretsSettingsSource(settings_cls, secrets_dir())

    @field_validator(*_EMPTY_MEANS_UNSET, mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _connections_are_coherent(self) -> Settings:
        problems = self._connection_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _connection_problems(self) -> list[str]:
        """Security settings that contradict each other, each named by its variable."""
        protocol, problems = self.kafka_security_protocol, []
        chosen = f"CHURNWATCH_KAFKA_SECURITY_PROTOCOL={protocol}"
        sasl = {
            "CHURNWATCH_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "CHURNWATCH_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "CHURNWATCH_KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        tls = {
            "CHURNWATCH_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "CHURNWATCH_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "CHURNWATCH_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
            "CHURNWATCH_KAFKA_SSL_KEY_PASSWORD": self.kafka_ssl_key_password,
        }
        if protocol.startswith("SASL_"):
            missing = [name for name, value in sasl.items() if value is None]
            if missing:
                problems.append(f"{chosen} needs {', '.join(missing)} (a secret may be a file, see the README)")
        elif given := [name for name, value in sasl.items() if value is not None]:
            problems.append(f"{', '.join(given)} set, but {chosen} does not authenticate: use SASL_SSL")
        if protocol not in ("SSL", "SASL_SSL") and (given := [name for name, value in tls.items() if value]):
            problems.append(f"{', '.join(given)} set, but {chosen} does not use TLS: use SSL or SASL_SSL")
        if self.kafka_ssl_certfile is None and (self.kafka_ssl_keyfile or self.kafka_ssl_key_password):
            problems.append("CHURNWATCH_KAFKA_SSL_KEYFILE/_KEY_PASSWORD need CHURNWATCH_KAFKA_SSL_CERTFILE")
        try:
            redis = urlsplit(self.redis_url)
            scheme, url_password = redis.scheme, redis.password
        except ValueError:
            return [*problems, "CHURNWATCH_REDIS_URL is not a URL"]
        if scheme not in ("redis", "rediss", "unix"):
            problems.append(f"CHURNWATCH_REDIS_URL must start with redis://, rediss:// or unix://, not {scheme}://")
        if self.redis_ssl_ca_file is not None and scheme != "rediss":
            problems.append("CHURNWATCH_REDIS_SSL_CA_FILE set, but CHURNWATCH_REDIS_URL is not rediss:// (no TLS)")
        if self.redis_password is not None and url_password is not None:
            problems.append("a Redis password in both CHURNWATCH_REDIS_URL and CHURNWATCH_REDIS_PASSWORD: keep one")
        return problems

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        """What ``repr``/``str`` show: the secrets are ``SecretStr`` already; the Redis URL is redacted."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "redis_url" else value

    def window_policy(self) -> WindowPolicy:
        """What the Redis window script needs from the settings."""
        return WindowPolicy(
            retention=self.retention,
            dedupe_ttl=self.dedupe_ttl,
            idle_ttl=self.idle_ttl,
            feedback_history=self.feedback_history,
            dedupe_ids=self.dedupe_ids,
        )

    @model_validator(mode="after")
    def _dead_letters_fit_the_broker(self) -> Settings:
        room = self.kafka_message_max_bytes - DEADLETTER_HEADERS_MAX_BYTES - RECORD_BATCH_OVERHEAD
        if self.deadletter_max_bytes > room:
            raise ValueError(
                f"deadletter_max_bytes ({self.deadletter_max_bytes}) leaves no room for the dead letter's headers "
                f"under kafka_message_max_bytes ({self.kafka_message_max_bytes}): at most {room}"
            )
        return self

    @property
    def kafka_request_max_bytes(self) -> int:
        """The producer's request size and the consumer's per-partition fetch size: above the broker's
        limit plus the producer's own estimate of a batch's framing, so that the broker alone decides
        what is too big, and any batch it accepted is fetched whole wherever it sits in a fetch."""
        return self.kafka_message_max_bytes + KAFKA_REQUEST_ALLOWANCE

    def decode_policy(self) -> DecodePolicy:
        """What validating an incoming message needs from the settings."""
        return DecodePolicy(
            max_message_bytes=self.max_message_bytes,
            max_future_skew=self.max_future_skew,
            currency=self.currency,
        )
