"""Slack's interactivity endpoint (``POST /slack/interactions`` on the worker's web server): the
feedback buttons' clicks.

Every request is checked before its body is read as anything: Slack signs ``v0:<timestamp>:<body>``
with the app's signing secret (HMAC-SHA256, ``X-Slack-Signature: v0=<hex>``,
``X-Slack-Request-Timestamp``), and :class:`slack_sdk.signature.SignatureVerifier` checks it in
constant time. A request without those headers, with a timestamp more than five minutes from our
clock (a captured request replayed later) or with a wrong signature is answered 401 and counted
(``churnwatch_slack_requests_rejected_total{reason}``); a signed body that is no interaction
payload, 400.

A click on one of churnwatch's buttons, in order:

1. a **snooze** adds a 7-day silence for that customer and rule (author: the Slack user; comment
   "snoozed from Slack"), under an id derived from the alert and the user, so adding it again
   (Slack's retry, a second click) rewrites the same silence rather than stacking copies;
2. the answer is recorded in Redis (:mod:`stream.feedback_store`) as that person's latest, and
   counted in ``churnwatch_alert_feedback_total{rule,outcome}`` only when it changed: a retried or
   repeated click records and counts nothing twice;
3. Slack gets its 200 at once (it shows the user an error after 3 s), and the message is then
   updated through the click's ``response_url`` with ``replace_original`` (Slack's documented way
   to update the message an interaction came from; no bot token needed, and each click brings a
   fresh URL): the message as clicked plus a line per person saying what they answered and when.

Redis failing in steps 1-2 answers 500: Slack shows the user an error, and their next click (or
Slack's retry) does the work, as nothing was half-counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr
from redis.asyncio import Redis
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.webhook.async_client import AsyncWebhookClient

from alerts.feedback import (
    Click,
    FeedbackPayloadError,
    FeedbackStore,
    Outcome,
    click_of,
    payload_of,
    with_feedback,
)
from alerts.silence import Matcher, Silence, SilenceStore, new_silence
from alerts.slack import SDK_LOGGER
from stream.feedback_store import RedisFeedbackStore
from stream.metrics import Metrics
from stream.settings import Settings
from stream.silence_store import RedisSilenceStore

log = logging.getLogger("churnwatch.slack_interactions")

PATH = "/slack/interactions"
SNOOZE = timedelta(days=7)
SNOOZE_COMMENT = "snoozed from Slack"
TOLERANCE_SECONDS = 300
"""Slack's own advice, and what SignatureVerifier enforces: five minutes either way."""
_SILENCE_NAMESPACE = uuid.UUID("0e8c7a52-3f5e-4c1b-9d61-7b2f4a9e5c30")

Responder = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Posts a message update to a click's ``response_url``."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


class _FixedClock(Clock):
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


async def post_to_response_url(url: str, message: dict[str, Any]) -> None:
    """slack_sdk's webhook client, which speaks ``response_url``'s dialect (``replace_original``), with
    its logger pinned at WARNING: below that it logs the URL, which holds the click's token."""
    sdk_logger = logging.getLogger(SDK_LOGGER)
    sdk_logger.setLevel(logging.WARNING)
    response = await AsyncWebhookClient(url, timeout=10, logger=sdk_logger).send_dict(message)
    if response.status_code != 200:
        log.warning("Slack refused the message update (HTTP %s: %s)", response.status_code, response.body[:200])


class SlackInteractions:
    def __init__(
        self,
        signing_secret: SecretStr,
        feedback: FeedbackStore,
        silences: SilenceStore,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        respond: Responder = post_to_response_url,
    ) -> None:
        self._secret = signing_secret.get_secret_value()
        self._feedback = feedback
        self._silences = silences
        self._metrics = metrics
        self._clock = clock
        self._respond = respond
        self._updates: set[asyncio.Task[None]] = set()

    async def handle(self, body: bytes, headers: Mapping[str, str]) -> Reply:
        now = self._clock()
        problem = self._signature_problem(body, headers, now)
        if problem is not None:
            return self._reject(401, problem)
        try:
            click = click_of(payload_of(body))
        except FeedbackPayloadError as exc:
            log.warning("Slack interaction refused: %s", exc)
            return self._reject(400, "bad_payload")
        if click is None:
            return Reply(200)  # another kind of interaction: nothing of ours to do
        try:
            await self._apply(click, datetime.fromtimestamp(now, UTC))
        except Exception:
            log.exception("feedback on alert %s by %s not recorded", click.alert_id, click.user_id)
            return Reply(500, {"error": "not recorded, try again"})
        return Reply(200)

    async def drain(self) -> None:
        """Wait for the message updates under way (tests; a stopping worker)."""
        while self._updates:
            await asyncio.gather(*self._updates, return_exceptions=True)

    def _signature_problem(self, body: bytes, headers: Mapping[str, str], now: float) -> str | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        timestamp, signature = lowered.get("x-slack-request-timestamp"), lowered.get("x-slack-signature")
        if not timestamp or not signature:
            return "unsigned"
        try:
            sent = int(timestamp)
        except ValueError:
            return "bad_timestamp"
        if abs(now - sent) > TOLERANCE_SECONDS:
            return "stale_timestamp"
        verifier = SignatureVerifier(self._secret, clock=_FixedClock(now))
        try:
            valid = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        except UnicodeDecodeError:  # Slack sends UTF-8 forms only
            valid = False
        return None if valid else "bad_signature"

    def _reject(self, status: int, reason: str) -> Reply:
        self._metrics.slack_requests_rejected.labels(reason=reason).inc()
        if status == 401:
            log.warning("Slack interaction refused: %s", reason)
        return Reply(status, {"error": reason})

    async def _apply(self, click: Click, now: datetime) -> None:
        previous = await self._feedback.answer(click.alert_id, click.user_id)
        if click.outcome is Outcome.SNOOZED and (previous is None or previous.outcome is not Outcome.SNOOZED):
            await self._silences.add(self._snooze(click, now))
        if await self._feedback.record(click, now):
            self._metrics.alert_feedback.labels(rule=click.rule, outcome=click.outcome.value).inc()
            log.info("alert %s (%s): %s by %s", click.alert_id, click.rule, click.outcome.value, click.author)
        if click.response_url and click.blocks:
            recorded = await self._feedback.feedback(click.alert_id)
            message = {
                "replace_original": True,
                "text": click.text,
                "blocks": with_feedback(click.blocks, recorded.answers if recorded else ()),
            }
            task = asyncio.get_running_loop().create_task(self._update(click.response_url, message))
            self._updates.add(task)
            task.add_done_callback(self._updates.discard)

    def _snooze(self, click: Click, now: datetime) -> Silence:
        matchers = [Matcher(name="customer_id", value=click.customer_id), Matcher(name="rule", value=click.rule)]
        silence = new_silence(matchers, ends_at=now + SNOOZE, created_by=click.author, comment=SNOOZE_COMMENT, now=now)
        stable = uuid.uuid5(_SILENCE_NAMESPACE, f"{click.alert_id}\x1f{click.user_id}")
        return silence.model_copy(update={"id": str(stable)})

    async def _update(self, url: str, message: dict[str, Any]) -> None:
        try:
            await self._respond(url, message)
        except Exception as exc:  # the answer is recorded; only the message lags
            log.warning("message update through response_url failed: %s", type(exc).__name__)


def build_interactions(settings: Settings, redis: Redis, metrics: Metrics) -> SlackInteractions | None:
    """The endpoint's handler, or None without a signing secret (then the worker serves no such page)."""
    if settings.slack_signing_secret is None:
        return None
    return SlackInteractions(
        settings.slack_signing_secret,
        RedisFeedbackStore(redis, settings.app_id),
        RedisSilenceStore(redis, settings.app_id),
        metrics,
    )
