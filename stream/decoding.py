"""Turning a Kafka message's bytes into a validated event, or a reason it cannot be one.

Every reason is one of a small fixed set (a metric label) plus a human-readable detail that goes
to the dead-letter topic with the original bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import ValidationError

from stream.events import EVENT_MODELS, EventBase, PurchaseEvent


class RejectReason(StrEnum):
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    SCHEMA = "schema"
    FUTURE_TIMESTAMP = "future_timestamp"
    CURRENCY = "currency"


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str


@dataclass(frozen=True)
class DecodePolicy:
    max_message_bytes: int
    max_future_skew: timedelta
    currency: str


def decode_event(stream_kind: str, raw: bytes | None, *, now: datetime, policy: DecodePolicy) -> EventBase | Rejection:
    """Validate ``raw`` as an event of ``stream_kind`` (``purchase``, ``interaction``, ``feedback``)."""
    if raw is None:
        return Rejection(RejectReason.NOT_JSON, "empty message (tombstone)")
    if len(raw) > policy.max_message_bytes:
        return Rejection(RejectReason.TOO_LARGE, f"message is {len(raw)} bytes, limit {policy.max_message_bytes}")
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejection(RejectReason.NOT_JSON, f"not JSON: {exc}")
    try:
        event = EVENT_MODELS[stream_kind].model_validate(payload)
    except ValidationError as exc:
        return Rejection(RejectReason.SCHEMA, _summarise(exc))
    if event.occurred_at - now > policy.max_future_skew:
        return Rejection(
            RejectReason.FUTURE_TIMESTAMP,
            f"occurred_at {event.occurred_at.isoformat()} is more than {policy.max_future_skew} ahead of now",
        )
    if isinstance(event, PurchaseEvent) and event.currency != policy.currency:
        return Rejection(
            RejectReason.CURRENCY,
            f"currency {event.currency} is not the configured {policy.currency}; spend is summed in one currency",
        )
    return event


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)
