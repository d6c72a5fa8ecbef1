"""Service settings, read once from the environment (``CHURNWATCH_*``) by the composition root."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rules.base import Duration
from stream.decoding import DecodePolicy
from stream.events import EVENT_MODELS, EventBase
from stream.kafka_sinks import HEADERS_MAX_BYTES as DEADLETTER_HEADERS_MAX_BYTES
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


class Settings(BaseSettings):
    """Everything configurable, from ``CHURNWATCH_*`` variables (topic names: ``CHURNWATCH_TOPIC_*``)."""

    model_config = SettingsConfigDict(env_prefix="CHURNWATCH_", frozen=True, extra="ignore")

    app_id: str = Field(default="churnwatch", description="Kafka consumer group / faust app id")
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    topics: Topics = Field(default_factory=Topics)
    kafka_session_timeout: Duration = Field(
        default=timedelta(seconds=30),
        description="A worker that stops heartbeating (crashed) loses its partitions to the others after this",
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

    web_host: str = "127.0.0.1"
    web_port: int = 6066

    slack_webhook_url: SecretStr | None = Field(default=None, description="Slack incoming webhook; empty = off")
    currency: str = Field(default="USD", description="Spend is summed in this currency; others are rejected")

    webhook_url: SecretStr | None = Field(
        default=None, description="Generic webhook: each alert is POSTed as JSON with an Idempotency-Key; empty = off"
    )

    @field_validator("slack_webhook_url", "webhook_url", "alert_max_lag", mode="before")
    @classmethod
    def _empty_means_off(cls, value: object) -> object:
        return None if value == "" else value

    retention: Duration = Field(
        default=timedelta(days=150),
        description="Event-time horizon kept per customer; older events are dropped as late",
    )
    dedupe_ttl: Duration = Field(
        default=timedelta(days=7), description="How long an event id is remembered to drop redeliveries"
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

    def window_policy(self) -> WindowPolicy:
        """What the Redis window script needs from the settings."""
        return WindowPolicy(
            retention=self.retention,
            dedupe_ttl=self.dedupe_ttl,
            idle_ttl=self.idle_ttl,
            feedback_history=self.feedback_history,
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
