import json
from datetime import UTC, datetime, timedelta

import pytest

from stream.decoding import DecodePolicy, Rejection, RejectReason, decode_event
from stream.events import FeedbackEvent, InteractionEvent, PurchaseEvent

NOW = datetime(2026, 6, 1, tzinfo=UTC)
POLICY = DecodePolicy(max_message_bytes=2048, max_future_skew=timedelta(hours=24), currency="USD")

PURCHASE = {
    "event_id": "e1",
    "customer_id": "c1",
    "occurred_at": "2026-05-31T10:00:00+02:00",
    "order_id": "o1",
    "amount": "19.90",
    "currency": "USD",
    "item_count": 2,
}
INTERACTION = {
    "event_id": "e2",
    "customer_id": "c1",
    "occurred_at": "2026-05-31T10:00:00Z",
    "kind": "login",
    "channel": "app",
}
FEEDBACK = {"event_id": "e3", "customer_id": "c1", "occurred_at": "2026-05-31T10:00:00Z", "kind": "nps", "score": 3}


def decode(kind: str, payload: object) -> object:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_event(kind, raw, now=NOW, policy=POLICY)


def reason(kind: str, payload: object) -> RejectReason:
    result = decode(kind, payload)
    assert isinstance(result, Rejection), result
    return result.reason


def test_valid_events() -> None:
    assert isinstance(decode("purchase", PURCHASE), PurchaseEvent)
    assert isinstance(decode("interaction", INTERACTION), InteractionEvent)
    assert isinstance(decode("feedback", FEEDBACK), FeedbackEvent)


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    [
        ("purchase", b"{not json", RejectReason.NOT_JSON),
        ("purchase", b"\xff\xfe", RejectReason.NOT_JSON),
        ("purchase", {**PURCHASE, "amount": "-1"}, RejectReason.SCHEMA),
        ("purchase", {**PURCHASE, "amount": "lots"}, RejectReason.SCHEMA),
        ("purchase", {k: v for k, v in PURCHASE.items() if k != "order_id"}, RejectReason.SCHEMA),
        ("purchase", {**PURCHASE, "occurred_at": "2026-05-31T10:00:00"}, RejectReason.SCHEMA),  # naive time
        ("purchase", {**PURCHASE, "occurred_at": "2027-01-01T00:00:00Z"}, RejectReason.FUTURE_TIMESTAMP),
        ("purchase", {**PURCHASE, "currency": "EUR"}, RejectReason.CURRENCY),
        ("purchase", {**PURCHASE, "surprise": 1}, RejectReason.SCHEMA),
        ("purchase", {**PURCHASE, "order_id": "x" * 3000}, RejectReason.TOO_LARGE),
        ("feedback", {**FEEDBACK, "score": 11}, RejectReason.SCHEMA),
        ("feedback", {**FEEDBACK, "kind": "csat", "score": 0}, RejectReason.SCHEMA),
        ("feedback", {**FEEDBACK, "kind": "ces", "score": 8}, RejectReason.SCHEMA),
        ("feedback", [], RejectReason.SCHEMA),
        ("interaction", {**INTERACTION, "kind": "telepathy"}, RejectReason.SCHEMA),
        ("interaction", {**INTERACTION, "kind": "custom"}, RejectReason.SCHEMA),
    ],
)
def test_rejections(kind: str, payload: object, expected: RejectReason) -> None:
    assert reason(kind, payload) is expected


def test_schema_rejection_names_the_field() -> None:
    result = decode("feedback", {**FEEDBACK, "score": 11})
    assert isinstance(result, Rejection) and "nps score must be between 0 and 10" in result.detail
    missing = decode("purchase", {k: v for k, v in PURCHASE.items() if k != "order_id"})
    assert isinstance(missing, Rejection) and "order_id" in missing.detail


def test_tombstone_is_rejected() -> None:
    assert isinstance(decode_event("purchase", None, now=NOW, policy=POLICY), Rejection)


def test_custom_interaction_kind() -> None:
    event = decode("interaction", {**INTERACTION, "kind": "custom", "custom_kind": "webinar"})
    assert isinstance(event, InteractionEvent) and event.counted_kind == "webinar"


@pytest.mark.parametrize(("kind", "low", "high"), [("nps", 0, 10), ("csat", 1, 5), ("ces", 1, 7)])
def test_score_ranges_per_kind(kind: str, low: int, high: int) -> None:
    for score in (low, high):
        assert isinstance(decode("feedback", {**FEEDBACK, "kind": kind, "score": score}), FeedbackEvent)
    for score in (low - 1, high + 1):
        assert reason("feedback", {**FEEDBACK, "kind": kind, "score": score}) is RejectReason.SCHEMA
