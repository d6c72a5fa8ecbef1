"""Slack incoming-webhook sink, through the official ``slack_sdk`` client.

What ``slack_sdk``'s ``AsyncWebhookClient`` does, read from its source and relied on by the tests:

- Up to 3.47 retry handlers were consulted for raised exceptions and 429 answers only; from 3.48 a
  5xx answer is offered to them too. The handlers installed here decline every 5xx, so under either
  version a 5xx is one request, becomes :class:`RetryableDeliveryError`, and the dispatcher retries
  it within ``CHURNWATCH_DELIVERY_ATTEMPTS``.
- The default handlers retry connection errors once. The built-in
  ``AsyncRateLimitErrorRetryHandler`` sleeps ``int(Retry-After)`` plus up to a second, unbounded,
  and raises ``ValueError`` on a non-integer ``Retry-After``; :class:`_RetryAfterHandler` parses
  seconds or a date and leaves waits longer than ``max_retry_after`` to the dispatcher.
- The client logs the full webhook URL (INFO when a retry handler fires, DEBUG per request) unless
  its logger's *own* level is above DEBUG, so it gets a logger pinned at WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from pydantic import SecretStr
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerts.digest_format import slack_digest
from alerts.grouping import Digest
from alerts.links import LinkTemplate
from alerts.model import Alert
from alerts.notifier import (
    PermanentDeliveryError,
    RetryableDeliveryError,
    error_for_status,
    parse_retry_after,
    public_url,
    redact,
)
from alerts.slack_format import slack_blocks

SDK_LOGGER = "churnwatch.delivery.slack_sdk"
"""Pinned at WARNING: below that, slack_sdk logs the webhook URL. Not under ``churnwatch.alerts`` (the alert feed)."""


def rate_limiter(messages_per_second: float, burst: int) -> AsyncLimiter:
    """The client-side limit of a Slack sink: ``burst`` messages at once, ``messages_per_second`` on average."""
    if messages_per_second <= 0 or burst < 1:
        raise ValueError("messages_per_second must be > 0 and burst >= 1")
    return AsyncLimiter(max_rate=burst, time_period=burst / messages_per_second)


def sdk_client_options(*, connection_retries: int, rate_limit_retries: int, max_retry_after: float) -> dict[str, Any]:
    """The logger and retry handlers every slack_sdk client of churnwatch gets (see the module
    docstring): a logger that cannot leak the URL or token, and waits the dispatcher bounds."""
    sdk_logger = logging.getLogger(SDK_LOGGER)
    sdk_logger.setLevel(logging.WARNING)
    return {
        "logger": sdk_logger,
        "retry_handlers": [
            AsyncConnectionErrorRetryHandler(max_retry_count=connection_retries),
            _RetryAfterHandler(max_retry_count=rate_limit_retries, max_wait=max_retry_after),
        ],
    }


class SlackNotifier:
    """Posts Block Kit alerts to one incoming webhook, at most ``messages_per_second`` on average.

    Slack allows about one message a second per webhook with short bursts; keeping under that here is
    cheaper than collecting 429s. The limit is per instance, so share one notifier per webhook.
    """

    def __init__(
        self,
        webhook_url: SecretStr,
        *,
        name: str = "slack",
        messages_per_second: float = 1.0,
        burst: int = 3,
        timeout: int = 10,
        max_retry_after: float = 30.0,
        rate_limit_retries: int = 1,
        connection_retries: int = 1,
        session: aiohttp.ClientSession | None = None,
        links: Sequence[LinkTemplate] = (),
    ) -> None:
        """``session``, if given, is used as is (its own timeout applies, not ``timeout``); ``links``
        are the templates every message renders (``CHURNWATCH_ALERT_LINKS``)."""
        self._limiter = rate_limiter(messages_per_second, burst)
        self._name = name
        self._links = tuple(links)
        self._url = webhook_url.get_secret_value()
        self._timeout = timeout
        self._client = AsyncWebhookClient(
            url=self._url,
            timeout=timeout,
            session=session,
            **sdk_client_options(
                connection_retries=connection_retries,
                rate_limit_retries=rate_limit_retries,
                max_retry_after=max_retry_after,
            ),
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"SlackNotifier(name={self._name!r}, url={public_url(self._url)!r})"

    async def notify(self, alert: Alert) -> None:
        await self._send(slack_blocks(alert, links=self._links))

    async def notify_digest(self, digest: Digest) -> None:
        await self._send(slack_digest(digest))

    async def _send(self, payload: dict[str, Any]) -> None:
        async with self._limiter:
            try:
                response = await self._client.send_dict(payload)
            except aiohttp.InvalidURL:
                raise PermanentDeliveryError(self._name, "invalid webhook URL") from None
            except TimeoutError:
                raise RetryableDeliveryError(self._name, f"no answer within {self._timeout} s") from None
            except aiohttp.ClientError as exc:
                raise RetryableDeliveryError(self._name, self._describe(exc)) from None
            except Exception as exc:  # anything else could quote the URL: never let it out unredacted
                raise PermanentDeliveryError(self._name, self._describe(exc)) from None
        error = error_for_status(
            self._name, response.status_code, response.headers, response.body, secret_url=self._url
        )
        if error is not None:
            raise error

    def _describe(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._url)


class _RetryAfterHandler(AsyncRateLimitErrorRetryHandler):
    """Retries a 429 inside the client after ``Retry-After``, if that is at most ``max_wait`` seconds."""

    def __init__(self, *, max_retry_count: int, max_wait: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response)
        return wait is None or wait <= self._max_wait

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        wait = _retry_after(response) if response is not None else None
        # Jitter so that several workers told the same Retry-After do not come back in step.
        await asyncio.sleep((1.0 if wait is None else wait) + random.uniform(0, 0.25))
        state.increment_current_attempt()


def _retry_after(response: HttpResponse) -> float | None:
    for key, values in response.headers.items():
        if key.lower() == "retry-after" and values:
            return parse_retry_after(values[0] if isinstance(values, list) else values)
    return None
