"""Receivers: what a routes file may name, and the registry that turns each into a notifier.

A receiver type is a frozen pydantic model (its fields in the routes file, with a ``type`` tag)
plus a builder that makes its :class:`~alerts.notifier.Notifier` from it. Adding a type is one
module holding both and one line in :data:`RECEIVER_REGISTRY`: the routes file's schema (the
discriminated union :data:`Receiver`), :data:`RECEIVER_TYPES` and the worker's builder lookup are
all derived from that registry.

Builders get what only the worker has (secrets, Redis, Kafka) through :class:`ReceiverResources`,
so this module stays free of ``stream``: the worker implements it (:mod:`stream.receiver_resources`).
The receiver's ``name`` becomes the notifier's name, which keys the notification log and labels the
delivery metrics.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, Protocol, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator
from slack_sdk.web.async_client import AsyncWebClient

from alerts.links import LinkTemplate
from alerts.log_sink import LogNotifier
from alerts.message_refs import MessageRefs
from alerts.notifier import Notifier
from alerts.slack import SlackNotifier
from alerts.slack_web import SlackWebApiNotifier
from alerts.webhook import WebhookNotifier

EnvName = Annotated[
    str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Environment variable that holds the secret")
]
ReceiverName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
_INLINE_SECRETS = {"url": "url_env", "token": "token_env", "signing_secret": "signing_secret_env"}
SECRET_SUFFIX = "_env"
"""A receiver field named ``*_env`` names the environment variable of a secret: checked at start."""


class ReceiverConfig(BaseModel):
    """What every receiver has; each type adds a ``type`` tag and its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ReceiverName
    type: str

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:
        """A URL or token written into the file would be committed with it: say where it belongs."""
        if isinstance(data, dict):
            for key, env in _INLINE_SECRETS.items():
                if key in data and env in cls.model_fields:
                    raise ValueError(
                        f"'{key}' would put a secret in the file: name its environment variable in '{env}'"
                    )
        return data

    def secret_variables(self) -> Iterator[tuple[str, str]]:
        """``(field, variable)`` of each secret this receiver needs from the environment."""
        for field in type(self).model_fields:
            value = getattr(self, field)
            if field.endswith(SECRET_SUFFIX) and isinstance(value, str):
                yield field, value


class SlackWebhookReceiver(ReceiverConfig):
    """A Slack incoming webhook (posts to the channel it was created for)."""

    type: Literal["slack_webhook"]
    url_env: EnvName


class SlackApiReceiver(ReceiverConfig):
    """Slack's Web API (``chat.postMessage`` with a bot token), so messages can be updated and threaded."""

    type: Literal["slack_api"]
    token_env: EnvName
    channel: str = Field(min_length=1, description="'#name' or a channel id such as C0123456789")
    api_url: HttpUrl | None = Field(
        default=None,
        description="The Web API's base URL, such as GovSlack's https://slack-gov.com/api/; "
        "unset: Slack's https://slack.com/api/",
    )

    @field_validator("api_url")
    @classmethod
    def _a_base_url(cls, url: HttpUrl | None) -> HttpUrl | None:
        """The methods are joined onto it (``chat.postMessage``), so it ends with ``/``: added if missing."""
        if url is None:
            return None
        if url.username is not None or url.password is not None:
            raise ValueError("credentials in the URL would put a secret in the file: the token is in 'token_env'")
        if url.query is not None or url.fragment is not None:
            raise ValueError("a base URL has no query or fragment: the API methods are appended to it")
        return url if (url.path or "").endswith("/") else HttpUrl(f"{url}/")


class WebhookReceiver(ReceiverConfig):
    """A generic HTTP endpoint; with ``signing_secret_env`` the body is signed (HMAC-SHA256)."""

    type: Literal["webhook"]
    url_env: EnvName
    signing_secret_env: EnvName | None = None


class KafkaReceiver(ReceiverConfig):
    """A Kafka topic, for systems (a CRM, a data warehouse) that consume alerts themselves."""

    type: Literal["kafka"]
    topic: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")


class LogReceiver(ReceiverConfig):
    """The worker's log."""

    type: Literal["log"]


class ReceiverResources(Protocol):
    """What builders need from the worker."""

    @property
    def messages_per_second(self) -> float:
        """The Slack client-side rate limit (``CHURNWATCH_SLACK_MESSAGES_PER_SECOND``)."""
        ...

    @property
    def slack_buttons(self) -> bool:
        """Whether Slack Web API messages carry feedback buttons: only with the interactivity endpoint
        served (``CHURNWATCH_SLACK_SIGNING_SECRET``), or a click would show Slack's error."""
        ...

    @property
    def alert_links(self) -> tuple[LinkTemplate, ...]:
        """The links every Slack message carries (``CHURNWATCH_ALERT_LINKS``)."""
        ...

    def secret(self, variable: str) -> SecretStr:
        """The secret in ``variable``; raises :class:`MissingSecret` when it is unset or empty."""
        ...

    def message_refs(self, receiver: str) -> MessageRefs:
        """Where ``receiver`` keeps the Slack messages it posted (kept apart from other receivers')."""
        ...

    def kafka_notifier(self, name: str, topic: str) -> Notifier:
        """A notifier producing each alert to ``topic`` and waiting for the broker's ack."""
        ...


class MissingSecret(LookupError):
    def __init__(self, variable: str) -> None:
        super().__init__(f"environment variable {variable} is not set (or empty)")
        self.variable = variable


C = TypeVar("C", bound=ReceiverConfig)


@dataclass(frozen=True)
class ReceiverType(Generic[C]):
    config: type[C]
    build: Callable[[C, ReceiverResources], Notifier]

    @property
    def tag(self) -> str:
        (tag,) = get_args(self.config.model_fields["type"].annotation)
        return str(tag)


def _slack_webhook(config: SlackWebhookReceiver, resources: ReceiverResources) -> Notifier:
    url = resources.secret(config.url_env)
    return SlackNotifier(
        url, name=config.name, messages_per_second=resources.messages_per_second, links=resources.alert_links
    )


def _slack_api(config: SlackApiReceiver, resources: ReceiverResources) -> Notifier:
    return SlackWebApiNotifier(
        resources.secret(config.token_env),
        config.channel,
        resources.message_refs(config.name),
        name=config.name,
        base_url=AsyncWebClient.BASE_URL if config.api_url is None else str(config.api_url),
        messages_per_second=resources.messages_per_second,
        buttons=resources.slack_buttons,
        links=resources.alert_links,
    )


def _webhook(config: WebhookReceiver, resources: ReceiverResources) -> Notifier:
    signing = None if config.signing_secret_env is None else resources.secret(config.signing_secret_env)
    return WebhookNotifier(resources.secret(config.url_env), name=config.name, secret=signing)


def _kafka(config: KafkaReceiver, resources: ReceiverResources) -> Notifier:
    return resources.kafka_notifier(config.name, config.topic)


def _log(config: LogReceiver, resources: ReceiverResources) -> Notifier:
    return LogNotifier(name=config.name)


RECEIVER_REGISTRY: tuple[ReceiverType[Any], ...] = (
    ReceiverType(SlackWebhookReceiver, _slack_webhook),
    ReceiverType(SlackApiReceiver, _slack_api),
    ReceiverType(WebhookReceiver, _webhook),
    ReceiverType(KafkaReceiver, _kafka),
    ReceiverType(LogReceiver, _log),
)
"""Every receiver type, in the order the routes schema lists them: one line registers a type."""

RECEIVER_TYPES = tuple(t.tag for t in RECEIVER_REGISTRY)
_BY_TAG = {t.tag: t for t in RECEIVER_REGISTRY}

if TYPE_CHECKING:
    Receiver = ReceiverConfig
else:  # the registry's models, told apart by their ``type`` tag
    Receiver = Annotated[
        functools.reduce(operator.or_, (t.config for t in RECEIVER_REGISTRY)), Field(discriminator="type")
    ]


def build_receiver(config: ReceiverConfig, resources: ReceiverResources) -> Notifier:
    """The notifier of one receiver, named after it; raises :class:`MissingSecret` for an unset secret."""
    return _BY_TAG[config.type].build(config, resources)
