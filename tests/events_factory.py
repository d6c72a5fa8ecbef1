"""Event builders shared by tests: valid events with sensible defaults, one keyword to vary."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from stream.events import EventBase, FeedbackEvent, InteractionEvent, PurchaseEvent

_counter = itertools.count()


def unique_customer(prefix: str = "cust") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _id() -> str:
    return f"evt-{next(_counter)}-{uuid.uuid4().hex[:8]}"


def purchase(customer_id: str, at: datetime, amount: str = "20.00", **extra: Any) -> PurchaseEvent:
    return PurchaseEvent(
        event_id=extra.pop("event_id", _id()),
        customer_id=customer_id,
        occurred_at=at,
        order_id=extra.pop("order_id", f"o-{uuid.uuid4().hex[:8]}"),
        amount=Decimal(amount),
        currency="USD",
        **extra,
    )


def interaction(customer_id: str, at: datetime, kind: str = "login", **extra: Any) -> InteractionEvent:
    return InteractionEvent(
        event_id=extra.pop("event_id", _id()),
        customer_id=customer_id,
        occurred_at=at,
        kind=kind,
        channel=extra.pop("channel", "app"),
        **extra,
    )


def feedback(customer_id: str, at: datetime, score: int, kind: str = "nps", **extra: Any) -> FeedbackEvent:
    return FeedbackEvent(
        event_id=extra.pop("event_id", _id()),
        customer_id=customer_id,
        occurred_at=at,
        kind=kind,  # type: ignore[arg-type]
        score=score,
        **extra,
    )


def weekly_purchases(customer_id: str, now: datetime, from_days_ago: int, to_days_ago: int) -> list[PurchaseEvent]:
    return [purchase(customer_id, now - timedelta(days=d)) for d in range(from_days_ago, to_days_ago - 1, -7)]


def wire(event: EventBase) -> bytes:
    return event.model_dump_json().encode()


def wire_dict(event: EventBase) -> dict[str, Any]:
    return json.loads(wire(event))
