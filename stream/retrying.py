"""Stall, never skip: retry a call to an unavailable Redis or Kafka with capped backoff until it answers.

The event processor and the alert delivery share this one mechanism, so both data paths hold the
record they are working on (its offset uncommitted) while a dependency is down, and every failed
attempt is counted in ``churnwatch_dependency_errors_total{operation}`` and logged. Only the errors
below are retried; anything else propagates to the caller, which dead-letters the record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from stream.metrics import Metrics

T = TypeVar("T")

STORE_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
"""Redis unreachable, refusing connections, or not answering within the client's socket timeout."""
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (
    KafkaError,
    ProducerSendError,  # faust's wrapper of a KafkaError raised while queueing a send (no metadata yet)
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
"""A broker unreachable or not acknowledging. Every KafkaError counts, a permanent one included: what
churnwatch writes is bounded in size, so those left are configuration (ACLs, a missing topic) and
stalling visibly until fixed beats skipping the record."""

DEFAULT_MAX_WAIT = 5.0
"""Seconds between attempts at most, once the backoff has grown."""

_log = logging.getLogger("churnwatch.retrying")


async def retry_unavailable(
    operation: str,
    call: Callable[[], Awaitable[T]],
    *,
    metrics: Metrics,
    retry_on: tuple[type[BaseException], ...] = STORE_ERRORS,
    max_wait: float = DEFAULT_MAX_WAIT,
    log: logging.Logger = _log,
) -> T:
    """Return ``call()``'s result, retrying ``retry_on`` errors with backoff (50 ms doubling to
    ``max_wait``, jittered) for as long as it takes; ``operation`` labels the metric and the log.

    Cancellation (a worker shutting down) is never retried, so a stalled agent still stops in time.

    The first attempt runs bare: building tenacity's machinery for every call cost more than most
    calls (a replay makes several per event). Only when it fails with a ``retry_on`` error does the
    tenacity loop start, its first attempt re-raising that error instead of calling again, so the
    attempts, their numbers, the waits, the counting and the logging are exactly tenacity's.
    """
    try:
        return await call()
    except retry_on as exc:
        first_failure: BaseException | None = exc

    async def again() -> T:
        nonlocal first_failure
        if first_failure is not None:
            failure, first_failure = first_failure, None
            raise failure
        return await call()

    def count(state: RetryCallState) -> None:
        metrics.dependency_errors.labels(operation=operation).inc()
        log.error(
            "%s failed (attempt %d), retrying: %s",
            operation,
            state.attempt_number,
            state.outcome.exception() if state.outcome else None,
        )

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        wait=wait_exponential_jitter(multiplier=0.05, max=max_wait, jitter=0.05),
        before_sleep=count,
        reraise=True,
    ):
        with attempt:
            return await again()
    raise AssertionError("unreachable")  # pragma: no cover
