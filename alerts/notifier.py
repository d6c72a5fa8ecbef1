"""What a sink must do to receive alerts, and how it says that it failed.

The dispatcher only needs to know whether trying again could help, so sinks raise one of two
errors (after alertmanager: only server errors and rate limits are retried)::

    DeliveryError                    base; ``sink`` names the notifier, ``status`` the HTTP status if any
    ├── RetryableDeliveryError       5xx, 429, connection errors, timeouts; ``retry_after`` in seconds
    └── PermanentDeliveryError       any other 4xx, a payload or URL the receiver will never accept

Webhook URLs are credentials (a Slack incoming-webhook URL is all it takes to post to the channel),
so error text is passed through :func:`redact` before it reaches a log line or a dead letter.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Protocol

from alerts.model import Alert

REDACTED = "<redacted>"
_BODY_SNIPPET = 200


class Notifier(Protocol):
    """A sink. ``name`` labels metrics and keys the delivery log, so it must be stable and unique."""

    @property
    def name(self) -> str: ...

    async def notify(self, alert: Alert) -> None:
        """Deliver once (a sink may retry internally); raise a :class:`DeliveryError` on failure."""
        ...


class DeliveryError(Exception):
    def __init__(self, sink: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"{sink}: {reason}")
        self.sink = sink
        self.status = status


class RetryableDeliveryError(DeliveryError):
    """Trying again later may succeed; ``retry_after`` is the receiver's own hint, if it gave one."""

    def __init__(
        self, sink: str, reason: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(sink, reason, status=status)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """The same request will fail the same way: retrying only delays the dead letter."""


def redact(text: str, secret_url: str) -> str:
    """Remove the URL, and its path and query (the secret part of a webhook URL), from ``text``."""
    from yarl import URL  # aiohttp's URL type; it renders URLs the way aiohttp's errors quote them

    try:
        parsed = URL(secret_url)
        forms = {secret_url, str(parsed), parsed.path_qs, parsed.raw_path_qs, parsed.query_string}
    except (ValueError, TypeError):
        forms = {secret_url}
    for form in sorted((f for f in forms if len(f) > 1), key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def public_url(secret_url: str) -> str:
    """Scheme and host only, for log lines that should say where a sink points."""
    from yarl import URL

    try:
        parsed = URL(secret_url)
    except (ValueError, TypeError):
        return REDACTED
    return f"{parsed.scheme}://{parsed.host}/{REDACTED}" if parsed.host else REDACTED


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (int or float) or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def error_for_status(
    sink: str, status: int, headers: Mapping[str, str], body: str, *, secret_url: str
) -> DeliveryError | None:
    """Classify an HTTP answer: None for 2xx, retryable for 429 and 5xx, permanent otherwise."""
    if 200 <= status < 300:
        return None
    snippet = redact(" ".join(body.split())[:_BODY_SNIPPET], secret_url)
    reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return RetryableDeliveryError(sink, reason, status=status, retry_after=retry_after)
    return PermanentDeliveryError(sink, reason, status=status)
