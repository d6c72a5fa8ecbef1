"""What the worker gives receiver builders (:class:`alerts.receivers.ReceiverResources`): secrets
from the environment, Redis for Slack message refs, Kafka topics for ``kafka`` receivers.

A receiver's secret is read from its variable, or else (as every setting can be) from the secret
file named after it in lower case in ``CHURNWATCH_SECRETS_DIR`` (``/run/secrets/churnwatch_slack_bot_token``).
Nothing here opens a connection: the Redis client connects on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis

from alerts.links import LinkTemplate
from alerts.message_refs import MessageRefs
from alerts.notifier import Notifier
from alerts.receivers import MissingSecret
from alerts.routing import RoutesConfig
from rules.ruleset import RuleProblem
from stream.connections import redis_client
from stream.kafka_sinks import KafkaAlertNotifier
from stream.settings import Settings, secrets_dir
from stream.slack_message_refs import RedisMessageRefs


def read_secret(variable: str, environ: Mapping[str, str] | None = None, directory: Path | None = None) -> str | None:
    """The value of ``variable``, else of its secret file; None when neither holds a non-empty one."""
    value = (os.environ if environ is None else environ).get(variable, "")
    if not value and directory is not None:
        file = directory / variable.lower()
        if file.is_file():
            value = file.read_text().strip()
    return value or None


def missing_secrets(
    config: RoutesConfig, file: str, environ: Mapping[str, str] | None = None, directory: Path | None = None
) -> Iterator[RuleProblem]:
    """A problem for each receiver secret whose variable is unset: the worker refuses to start on them."""
    for index, receiver in enumerate(config.receivers, start=1):
        for field, variable in receiver.secret_variables():
            if read_secret(variable, environ, directory) is None:
                yield RuleProblem(
                    file, None, f"receivers[{index}].{field}", f"receiver '{receiver.name}': {MissingSecret(variable)}"
                )


class WorkerReceiverResources:
    def __init__(self, settings: Settings, *, kafka_topic: Callable[[str], Any] | None = None) -> None:
        """``kafka_topic`` makes the (raw bytes) topic a ``kafka`` receiver produces to; None: no such receiver."""
        self._settings = settings
        self._kafka_topic = kafka_topic
        self._directory = secrets_dir()
        self._redis: Redis | None = None

    @property
    def messages_per_second(self) -> float:
        return self._settings.slack_messages_per_second

    @property
    def slack_buttons(self) -> bool:
        return self._settings.slack_signing_secret is not None

    @property
    def alert_links(self) -> tuple[LinkTemplate, ...]:
        return self._settings.alert_links

    def secret(self, variable: str) -> SecretStr:
        value = read_secret(variable, directory=self._directory)
        if value is None:
            raise MissingSecret(variable)
        return SecretStr(value)

    def message_refs(self, receiver: str) -> MessageRefs:
        if self._redis is None:  # one lazily connecting client for every Slack API receiver
            self._redis = redis_client(
                self._settings, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
            )
        return RedisMessageRefs(self._redis, receiver=receiver, ttl=self._settings.idle_ttl)

    def kafka_notifier(self, name: str, topic: str) -> Notifier:
        if self._kafka_topic is None:
            raise ValueError(f"receiver '{name}': no Kafka producer here for topic {topic}")
        return KafkaAlertNotifier(self._kafka_topic(topic), name=name)
