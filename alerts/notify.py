"""The delivery stage: one send to one receiver, retried with backoff, reported as one outcome
(after Alertmanager's ``notify/``: only what may succeed later is retried).

Used for single alerts and for digests alike: the caller passes the send, this module decides how
often and how long it is tried. ``backoff_max`` bounds every wait, a receiver's ``Retry-After``
included, so one receiver holds a send for at most about ``attempts × backoff_max``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from alerts.notifier import PermanentDeliveryError, RetryableDeliveryError

log = logging.getLogger("churnwatch.delivery")


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    FAILED_PERMANENT = "failed_permanent"
    FAILED_RETRIES_EXHAUSTED = "failed_retries_exhausted"
    SILENCED = "silenced"
    """Held back by a silence: not sent, and not due again (the record is done with)."""
    RESOLVED_NOT_SENT = "resolved_not_sent"
    """A resolution the receiver's routes do not send (``send_resolved: false``): done with, not sent."""
    INHIBITED = "inhibited"
    """Held back by an open alert of the customer (an inhibit rule): not sent, and not due again."""
    GROUPED = "grouped"
    """Stored in its route's pending group (Redis): it goes out in the group's next digest."""
    RATE_LIMITED = "rate_limited"
    """Over its route's storm limit (``max_alerts_per_hour``): it waits in the group (Redis) and goes
    out in a later digest, ranked by customer value. Counted once per alert and receiver."""
    FLAPPING = "flapping"
    """Fired again while its customer's resolution for the rule was held (``flap_span``): the held
    resolution is cancelled, this firing is not sent, and the first alert stays the one open alert."""
    RESOLUTION_HELD = "resolution_held"
    """A resolution held for the route's ``flap_span`` (Redis): sent after it unless the alert fires again."""


DONE = frozenset(
    {
        DeliveryOutcome.DELIVERED,
        DeliveryOutcome.DUPLICATE,
        DeliveryOutcome.SILENCED,
        DeliveryOutcome.RESOLVED_NOT_SENT,
        DeliveryOutcome.INHIBITED,
        DeliveryOutcome.GROUPED,
        DeliveryOutcome.RATE_LIMITED,
        DeliveryOutcome.FLAPPING,
        DeliveryOutcome.RESOLUTION_HELD,
    }
)
"""Outcomes after which the record is done with for that receiver (nothing to dead-letter)."""


@dataclass(frozen=True)
class SinkOutcome:
    sink: str
    outcome: DeliveryOutcome
    seconds: float
    attempts: int
    error: str | None = None

    def __str__(self) -> str:
        """``failed_permanent (slack: HTTP 400: invalid_blocks)``: fit for a dead letter's detail."""
        return f"{self.outcome.value} ({self.error})" if self.error else self.outcome.value


OutcomeCallback = Callable[[str, str, float], None]
"""``(sink, outcome, seconds)``: seconds spent on that sink, retries included. Wired to metrics."""


def report_outcome(on_outcome: OutcomeCallback | None, sink: str, outcome: str, seconds: float) -> None:
    """Tell ``on_outcome`` (the metrics); a callback that fails is logged, never raised: counting a
    delivery must not stop it."""
    if on_outcome is None:
        return
    try:
        on_outcome(sink, outcome, seconds)
    except Exception:
        log.exception("on_outcome callback failed for sink %s", sink)


class RetryingSender:
    """Tries one send to one receiver up to ``attempts`` times, retrying only what may succeed later."""

    def __init__(
        self,
        *,
        attempts: int,
        backoff_max: float | timedelta,
        backoff_initial: float = 0.5,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """``on_retry(sink)``: called before each attempt after the first (wired to a metric)."""
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self._attempts = attempts
        self._on_retry = on_retry
        self._backoff_max = backoff_max.total_seconds() if isinstance(backoff_max, timedelta) else float(backoff_max)
        self._backoff = wait_random_exponential(multiplier=backoff_initial, max=self._backoff_max)

    async def send(self, sink: str, what: str, send: Callable[[], Awaitable[None]]) -> SinkOutcome:
        """``what`` names the payload in log lines (``alert <id>``, ``digest <id>``); never raises."""
        started = time.monotonic()
        attempts = 0

        def done(outcome: DeliveryOutcome, error: str | None = None) -> SinkOutcome:
            return SinkOutcome(sink, outcome, time.monotonic() - started, attempts, error)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(RetryableDeliveryError),
            before_sleep=_log_retry(sink, what, self._on_retry),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await send()
        except RetryableDeliveryError as exc:
            log.error("%s not delivered to %s after %d attempts: %s", what, sink, attempts, exc)
            return done(DeliveryOutcome.FAILED_RETRIES_EXHAUSTED, str(exc))
        except PermanentDeliveryError as exc:
            log.error("%s rejected by %s: %s", what, sink, exc)
            return done(DeliveryOutcome.FAILED_PERMANENT, str(exc))
        except Exception as exc:  # a broken sink must not take the others down
            log.exception("%s: sink %s failed unexpectedly", what, sink)
            return done(DeliveryOutcome.FAILED_PERMANENT, f"{type(exc).__name__}: {exc}")
        return done(DeliveryOutcome.DELIVERED)

    def _wait(self, state: RetryCallState) -> float:
        """Exponential backoff with full jitter, at least the receiver's Retry-After, at most backoff_max."""
        wait = self._backoff(state)
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RetryableDeliveryError) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return min(wait, self._backoff_max)


def _log_retry(sink: str, what: str, on_retry: Callable[[str], None] | None) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s to %s: attempt %d failed (%s); retrying in %.1f s", what, sink, state.attempt_number, error, wait
        )
        if on_retry is not None:
            try:
                on_retry(sink)
            except Exception:  # a metric must not stop a delivery
                log.exception("on_retry callback failed for sink %s", sink)

    return before_sleep
