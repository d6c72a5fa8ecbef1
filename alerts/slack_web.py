"""Slack Web API receiver: ``chat.postMessage`` with a bot token, so an alert's message can be
updated and threaded later, which an incoming webhook cannot do.

The Web API answers with the message's channel id and ``ts``; they are remembered per alert id
(:class:`~alerts.message_refs.MessageRefs`). A **resolution** (``status == "resolved"``, naming the
alert it resolves in ``resolves``) uses them: ``chat.update`` turns the original message into the
resolution (header "Resolved", when the alert fired and when the customer came back), so nobody
acts on it from the channel any more, and a reply in its thread notifies whoever follows it (an
edit notifies nobody). When the original is unknown (posted before this receiver was set up, or
forgotten) or was deleted in Slack, the resolution is posted as a new message instead.

A firing alert's message carries the feedback buttons (Acknowledge, Snooze 7 days, False alarm,
Customer saved; :mod:`alerts.feedback`) unless ``buttons=False``: their clicks reach churnwatch's
interactivity endpoint (:mod:`stream.slack_interactions`), which updates the message itself through
the click's ``response_url``. A resolution replaces the message with one without buttons.

A remembered alert id also means "already posted": an alert delivered again because its
delivery-log mark was lost is not posted a second time.

slack_sdk is tamed as in :mod:`alerts.slack`: the same retry handlers (connection errors once, a
429 after a short ``Retry-After``, never a 5xx: that is the dispatcher's to retry) and the same
logger pinned at WARNING. The token travels only in the ``Authorization`` header; error text is
passed through :func:`~alerts.notifier.redact` all the same.

Slack answers most failures with HTTP 200 and ``{"ok": false, "error": ...}``, so the error code
decides as much as the status::

    HTTP 429, "ratelimited"                                 retryable, after Retry-After
    HTTP 5xx, internal_error, fatal_error, service_unavailable, request_timeout, network errors
                                                            retryable
    invalid_auth, channel_not_found, not_in_channel, any other error or 4xx
                                                            permanent
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from alerts.digest_format import slack_digest
from alerts.grouping import Digest
from alerts.links import LinkTemplate
from alerts.message_refs import MessageRef, MessageRefs
from alerts.model import Alert
from alerts.notifier import (
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    parse_retry_after,
    redact,
)
from alerts.slack import rate_limiter, sdk_client_options
from alerts.slack_format import slack_blocks

log = logging.getLogger("churnwatch.delivery.slack_web")

_RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
"""Slack's error codes for its own trouble: the same request may succeed later."""
_ORIGINAL_GONE = frozenset({"message_not_found"})
"""``chat.update`` errors after which the resolution is posted as a new message."""


class SlackWebApiNotifier:
    """Posts Block Kit alerts to one channel with a bot token; updates and threads resolutions.

    At most ``messages_per_second`` API calls on average (Slack allows about one message a second
    per channel); a resolution of a known message costs two. One call is one attempt: retrying is
    the dispatcher's job, apart from the short in-client waits described in the module docstring.
    """

    def __init__(
        self,
        token: SecretStr,
        channel: str,
        refs: MessageRefs,
        *,
        name: str = "slack_web",
        base_url: str = AsyncWebClient.BASE_URL,
        messages_per_second: float = 1.0,
        burst: int = 3,
        timeout: int = 10,
        max_retry_after: float = 30.0,
        rate_limit_retries: int = 1,
        connection_retries: int = 1,
        session: aiohttp.ClientSession | None = None,
        buttons: bool = True,
        links: Sequence[LinkTemplate] = (),
    ) -> None:
        """``base_url`` is Slack's API unless a test points it elsewhere; ``session`` and ``links`` as in
        :class:`SlackNotifier`; ``buttons=False`` posts alerts without the feedback buttons (no
        interactivity endpoint set up)."""
        self._limiter = rate_limiter(messages_per_second, burst)
        if not channel:
            raise ValueError("a channel is required")
        self._name = name
        self._buttons = buttons
        self._links = tuple(links)
        self._channel = channel
        self._refs = refs
        self._token = token.get_secret_value()
        self._timeout = timeout
        self._client = AsyncWebClient(
            token=self._token,
            base_url=base_url,
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
        return f"SlackWebApiNotifier(name={self._name!r}, channel={self._channel!r})"

    async def notify(self, alert: Alert) -> None:
        if await self._lookup(alert.alert_id) is not None:
            return  # posted before: a redelivery whose delivery-log mark was lost
        payload = slack_blocks(alert, buttons=self._buttons, links=self._links)
        original = None
        if alert.status == "resolved" and alert.resolves is not None:
            original = await self._lookup(alert.resolves)
        if original is not None:
            posted = await self._resolve(original, payload)
        else:
            posted = await self._post(self._channel, payload)
        if posted is not None:
            await self._remember(alert.alert_id, posted)

    async def notify_digest(self, digest: Digest) -> None:
        """Posted once per ``digest_id``: a digest sent again after a crash is found remembered."""
        if await self._lookup(digest.digest_id) is not None:
            return
        posted = await self._post(self._channel, slack_digest(digest))
        if posted is not None:
            await self._remember(digest.digest_id, posted)

    async def _resolve(self, original: MessageRef, payload: dict[str, Any]) -> MessageRef | None:
        """Mark the original resolved, then reply in its thread; a deleted original gets a new message."""
        updated = await self._request(
            "chat.update",
            lambda: self._client.chat_update(
                channel=original.channel, ts=original.ts, text=payload["text"], blocks=payload["blocks"]
            ),
            tolerate=_ORIGINAL_GONE,
        )
        if updated is None:
            return await self._post(self._channel, payload)
        return await self._post(original.channel, payload, thread_ts=original.ts)

    async def _post(self, channel: str, payload: dict[str, Any], *, thread_ts: str | None = None) -> MessageRef | None:
        response = await self._request(
            "chat.postMessage",
            lambda: self._client.chat_postMessage(
                channel=channel, text=payload["text"], blocks=payload["blocks"], thread_ts=thread_ts
            ),
        )
        channel_id, ts = (response.get("channel"), response.get("ts")) if response is not None else (None, None)
        if not isinstance(channel_id, str) or not isinstance(ts, str):
            log.warning("%s: Slack accepted a message without saying where it is (channel, ts)", self._name)
            return None
        return MessageRef(channel_id, ts)

    async def _request(
        self,
        method: str,
        call: Callable[[], Awaitable[AsyncSlackResponse]],
        *,
        tolerate: frozenset[str] = frozenset(),
    ) -> AsyncSlackResponse | None:
        """One API call under the rate limit; None if Slack refused it with an error in ``tolerate``."""
        async with self._limiter:
            try:
                return await call()
            except SlackApiError as exc:
                code = _error_code(exc.response)
                if code in tolerate:
                    return None
                raise self._error_for(method, exc.response, code) from None
            except TimeoutError:
                raise RetryableDeliveryError(self._name, f"{method}: no answer within {self._timeout} s") from None
            except aiohttp.InvalidURL:
                raise PermanentDeliveryError(self._name, f"{method}: invalid API URL") from None
            except aiohttp.ClientError as exc:
                raise RetryableDeliveryError(self._name, self._describe(method, exc)) from None
            except Exception as exc:  # anything else could quote the request: never let it out unredacted
                raise PermanentDeliveryError(self._name, self._describe(method, exc)) from None

    def _error_for(self, method: str, response: Any, code: str | None) -> DeliveryError:
        # The response is slack_sdk's for a JSON answer, aiohttp's for one that is not JSON.
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        status = status if isinstance(status, int) else None
        reason = redact(f"{method}: {code or 'no error code'} (HTTP {status})", self._token)
        if status == 429 or code == "ratelimited":
            headers = getattr(response, "headers", None) or {}
            retry_after = parse_retry_after(headers.get("Retry-After"))
            return RetryableDeliveryError(self._name, reason, status=status, retry_after=retry_after)
        if (status is not None and status >= 500) or code in _RETRYABLE_ERRORS:
            return RetryableDeliveryError(self._name, reason, status=status)
        return PermanentDeliveryError(self._name, reason, status=status)

    async def _lookup(self, alert_id: str) -> MessageRef | None:
        try:
            return await self._refs.lookup(alert_id)
        except Exception as exc:  # nothing was sent yet: trying again later is safe
            raise RetryableDeliveryError(self._name, self._describe("message refs lookup", exc)) from None

    async def _remember(self, alert_id: str, posted: MessageRef) -> None:
        try:
            await self._refs.remember(alert_id, posted.channel, posted.ts)
        except Exception as exc:
            # Posted but not remembered: failing now would post it again. Its resolution, if any,
            # becomes a new message instead of an update.
            log.warning(
                "%s: alert %s posted, its message not remembered (%s)",
                self._name,
                alert_id,
                self._describe("remember", exc),
            )

    def _describe(self, what: str, exc: BaseException) -> str:
        return redact(f"{what}: {type(exc).__name__}: {exc}", self._token)


def _error_code(response: Any) -> str | None:
    """Slack's ``error`` field, if the answer was JSON."""
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None
