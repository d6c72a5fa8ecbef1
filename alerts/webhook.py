"""Generic JSON webhook sink: the alert record as is, for ticketing tools and in-house receivers.

``Idempotency-Key`` carries the stable alert id, so a receiver can drop the copy that at-least-once
delivery sends after a crash between sending and recording the delivery. With a ``secret`` each
POST is signed (:mod:`alerts.webhook_signing`), so the receiver can tell churnwatch's requests from
anyone else's that learned the URL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import aiohttp
from pydantic import SecretStr

from alerts.digest_format import digest_bytes
from alerts.grouping import Digest
from alerts.model import Alert
from alerts.notifier import (
    PermanentDeliveryError,
    RetryableDeliveryError,
    error_for_status,
    public_url,
    redact,
)
from alerts.webhook_signing import signature_headers


class WebhookNotifier:
    """POSTs ``alert.model_dump(mode="json")``; one attempt per call, the dispatcher retries."""

    def __init__(
        self,
        url: str | SecretStr,
        *,
        name: str = "webhook",
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        secret: SecretStr | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Without ``session`` each call opens a short-lived one: nothing to close, fine at alert rates.

        ``clock`` (unix seconds) dates the signature; it is read again for every attempt, so a retry
        is never sent with a stale timestamp."""
        self._name = name
        self._url = url.get_secret_value() if isinstance(url, SecretStr) else url
        self._timeout = timeout
        self._headers = {"User-Agent": "churnwatch", **(headers or {})}
        self._session = session
        self._secret = secret
        self._clock = clock

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self._name!r}, url={public_url(self._url)!r})"

    async def notify(self, alert: Alert) -> None:
        # Serialized here, not by aiohttp's json=: the signature must cover exactly the bytes sent.
        await self._send(alert.model_dump_json().encode(), alert.alert_id)

    async def notify_digest(self, digest: Digest) -> None:
        """The digest as JSON (``"type": "digest"``), its ``digest_id`` the ``Idempotency-Key``."""
        await self._send(digest_bytes(digest), digest.digest_id)

    async def _send(self, payload: bytes, idempotency_key: str) -> None:
        headers = {**self._headers, "Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        if self._secret is not None:
            headers.update(signature_headers(self._secret, payload, now=self._clock()))
        try:
            if self._session is not None and not self._session.closed:
                status, answer_headers, body = await self._post(self._session, payload, headers)
            else:
                async with aiohttp.ClientSession() as session:
                    status, answer_headers, body = await self._post(session, payload, headers)
        except aiohttp.InvalidURL:
            raise PermanentDeliveryError(self._name, "invalid webhook URL") from None
        except TimeoutError:
            raise RetryableDeliveryError(self._name, f"no answer within {self._timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise RetryableDeliveryError(self._name, self._describe(exc)) from None
        except Exception as exc:  # anything else could quote the URL: never let it out unredacted
            raise PermanentDeliveryError(self._name, self._describe(exc)) from None
        error = error_for_status(self._name, status, answer_headers, body, secret_url=self._url)
        if error is not None:
            raise error

    async def _post(
        self, session: aiohttp.ClientSession, payload: bytes, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], str]:
        async with session.post(
            self._url,
            data=payload,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        ) as response:
            body = await response.text(errors="replace")
            return response.status, response.headers, body

    def _describe(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._url)
