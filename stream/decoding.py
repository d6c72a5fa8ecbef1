"""Turning a Kafka message's key and bytes into a validated event, or a reason it cannot be one.

Every reason is one of a small fixed set (a metric label) plus a human-readable detail that goes
to the dead-letter topic with the original bytes. Nothing a producer sends makes this raise: the
JSON is bounded before it is parsed (depth, number length), so hostile input is ``not_json`` rather
than a ``RecursionError`` or an int-conversion ``ValueError`` dead-lettered as ``processing_error``.

The order of the checks decides which reason a message with several faults gets: the value's
presence and size, then JSON, then the schema, then the key, then the event time, then the currency.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NoReturn

from pydantic import ValidationError

from stream.events import EVENT_MODELS, EventBase, PurchaseEvent

MAX_JSON_DEPTH = 32
"""Arrays and objects nested in one another, the event's own object included (events use 1)."""
MAX_NUMBER_CHARS = 100
"""Characters of one JSON number, sign, point and exponent included."""
EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
"""Older event times are mistakes (0001-01-01 is a common null); the window codec works in epoch ms."""


class RejectReason(StrEnum):
    TOMBSTONE = "tombstone"
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    SCHEMA = "schema"
    KEY_MISMATCH = "key_mismatch"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    FUTURE_TIMESTAMP = "future_timestamp"
    CURRENCY = "currency"


REASON_MEANINGS: dict[RejectReason, str] = {
    RejectReason.TOMBSTONE: "the value is null (a Kafka tombstone); events are never deleted by key",
    RejectReason.TOO_LARGE: "the value is longer than `CHURNWATCH_MAX_MESSAGE_BYTES`",
    RejectReason.NOT_JSON: (
        f"empty, not UTF-8, not JSON, nested deeper than {MAX_JSON_DEPTH} levels, a number longer than "
        f"{MAX_NUMBER_CHARS} characters, or `NaN`/`Infinity`"
    ),
    RejectReason.SCHEMA: "JSON, but not the stream's event: a field missing, unknown, wrongly typed or out of range",
    RejectReason.KEY_MISMATCH: "the message key is null or not the event's `customer_id`",
    RejectReason.TIMESTAMP_OUT_OF_RANGE: "`occurred_at` is before 1970-01-01T00:00:00Z",
    RejectReason.FUTURE_TIMESTAMP: "`occurred_at` is more than `CHURNWATCH_MAX_FUTURE_SKEW` ahead of the clock",
    RejectReason.CURRENCY: "a purchase in another currency than `CHURNWATCH_CURRENCY`",
}


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str


@dataclass(frozen=True)
class DecodePolicy:
    max_message_bytes: int
    max_future_skew: timedelta
    currency: str


def decode_event(
    stream_kind: str, key: bytes | None, raw: bytes | None, *, now: datetime, policy: DecodePolicy
) -> EventBase | Rejection:
    """Validate ``raw`` as an event of ``stream_kind`` (``purchase``, ``interaction``, ``feedback``)
    whose Kafka message key is ``key``.

    The key must be the customer id because it decides the partition: a customer's events must all
    land on one partition to stay in order and to be folded by one worker at a time."""
    if raw is None:
        return Rejection(RejectReason.TOMBSTONE, "null value (a tombstone): an event must have a JSON value")
    if len(raw) > policy.max_message_bytes:
        return Rejection(RejectReason.TOO_LARGE, f"message is {len(raw)} bytes, limit {policy.max_message_bytes}")
    event = _read_straight(stream_kind, raw)
    if event is None:
        checked = decode_payload(stream_kind, raw)
        if isinstance(checked, Rejection):
            return checked
        event = checked
    if key != event.customer_id.encode():
        return Rejection(RejectReason.KEY_MISMATCH, _key_mismatch(key, event.customer_id))
    if event.occurred_at < EARLIEST_EVENT_TIME:
        return Rejection(
            RejectReason.TIMESTAMP_OUT_OF_RANGE,
            f"occurred_at {event.occurred_at.isoformat()} is before {EARLIEST_EVENT_TIME.isoformat()}",
        )
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


def decode_payload(stream_kind: str, raw: bytes) -> EventBase | Rejection:
    """The message's JSON, bounded, then its schema: the reference reading of every message, and
    the one that names what is wrong with one."""
    payload = _parse_json(raw)
    if isinstance(payload, Rejection):
        return payload
    try:
        return EVENT_MODELS[stream_kind].model_validate(payload)
    except ValidationError as exc:
        return Rejection(RejectReason.SCHEMA, _summarise(exc))


_READ_STRAIGHT_FROM_BYTES = {kind: EVENT_MODELS[kind] for kind in ("interaction", "feedback")}
"""The models pydantic-core reads from the bytes (its own JSON parser) to the same event as
:func:`decode_payload`, at twice its speed. A message read that way has nothing for the bounds to
refuse: it is a flat object of the model's fields (extra fields are refused), the only number is a
survey score in range, and the parser takes UTF-8 only, without NaN. Purchases are not among them:
there the JSON amount would reach its validator as a float (``19.99999999999999999`` as 20).
A message this way refuses is read again by :func:`decode_payload`, which says why."""


def _read_straight(stream_kind: str, raw: bytes) -> EventBase | None:
    model = _READ_STRAIGHT_FROM_BYTES.get(stream_kind)
    if model is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None


class _Unbounded(ValueError):
    """JSON the standard library would parse, but this contract does not accept."""


_ESCAPE = re.compile(r"\\.", re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _parse_json(raw: bytes) -> object:
    """The parsed value, or a ``not_json`` Rejection. UTF-8 only (RFC 8259); ``json.loads`` on bytes
    would also guess UTF-16 and UTF-32. A UTF-8 byte order mark is ignored."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.NOT_JSON, f"not UTF-8: {exc}")
    if not text.strip():
        return Rejection(RejectReason.NOT_JSON, "empty value: no JSON document")
    if _nested_deeper_than(text, MAX_JSON_DEPTH):
        return Rejection(RejectReason.NOT_JSON, f"not JSON this service accepts: nested deeper than {MAX_JSON_DEPTH}")
    try:
        return _DECODER.decode(text)
    except _Unbounded as exc:
        return Rejection(RejectReason.NOT_JSON, f"not JSON this service accepts: {exc}")
    except json.JSONDecodeError as exc:
        return Rejection(RejectReason.NOT_JSON, f"not JSON: {exc}")


def _nested_deeper_than(text: str, limit: int) -> bool:
    if text.count("[") + text.count("{") <= limit:  # every event: no scan at all
        return False
    # Without its escapes (\" among them), every other quote opens a string: brackets between an
    # odd and the next even quote are text, not structure. Linear in the message, however hostile.
    depth = 0
    for outside_strings in _ESCAPE.sub("", text).split('"')[::2]:
        for bracket in _BRACKET.findall(outside_strings):
            depth += 1 if bracket in "[{" else -1
            if depth > limit:
                return True
    return False


def _integer(text: str) -> int:
    _check_length(text)
    return int(text)


def _decimal(text: str) -> Decimal:
    _check_length(text)
    return Decimal(text)


def _check_length(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Unbounded(f"a number is {len(text)} characters long, longer than {MAX_NUMBER_CHARS} characters")


def _no_constant(name: str) -> NoReturn:
    raise _Unbounded(f"{name} is not a JSON value")


# One decoder: json.loads with hooks would build a new one (and its scanner) per message.
_DECODER = json.JSONDecoder(parse_int=_integer, parse_float=_decimal, parse_constant=_no_constant)


def _key_mismatch(key: bytes | None, customer_id: str) -> str:
    if key is None:
        return f"the message has no key; it must be the customer_id {customer_id!r}"
    shown = key[:200].decode("utf-8", "backslashreplace")
    return f"message key {shown!r} is not the customer_id {customer_id!r}; producers must key events by customer_id"


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{field}: {error['msg']}")
    return "; ".join(parts)
