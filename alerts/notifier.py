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
from urllib.parse import urlsplit

from alerts.model import Alert

REDACTED = "<redacted>"
_BODY_SNIPPET = 200
_TOKEN_LIKE = 16


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

    def __init__(self, sink: str, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(sink, reason, status=status)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """The same request will fail the same way: retrying only delays the dead letter."""


def redact(text: str, secret_url: str) -> str:
    """Remove the URL, its path and query, and any token-like path segment from ``text``.

    Segments are scrubbed one by one too, because HTTP libraries may re-quote a URL in their errors.
    """
    try:
        parts = urlsplit(secret_url)
    except ValueError:
        return text.replace(secret_url, REDACTED) if secret_url else text
    path_qs = parts.path + (f"?{parts.query}" if parts.query else "")
    forms = {secret_url, path_qs, parts.query, parts.password or ""}
    forms.update(segment for segment in parts.path.split("/") if len(segment) >= _TOKEN_LIKE)
    for form in sorted((f for f in forms if len(f) > 1), key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return text


def public_url(secret_url: str) -> str:
    """Scheme and host only, for log lines that should say where a sink points."""
    try:
        parts = urlsplit(secret_url)
    except ValueError:
        return REDACTED
    return f"{parts.scheme}://{parts.hostname}/{REDACTED}" if parts.hostname else REDACTED


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
