"""Properties of the decoder over generated input: it never raises, whatever a producer sends; an
event it accepts can be folded, keyed and written back; and every valid event survives its own
JSON (what the demo and the tests produce is what the worker reads)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from unittest.mock import patch

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stream import decoding
from stream.decoding import DecodePolicy, Rejection, RejectReason, decode_event
from stream.events import (
    EVENT_MODELS,
    SURVEY_RANGES,
    EventBase,
    FeedbackEvent,
    InteractionEvent,
    InteractionKind,
    PurchaseEvent,
    occurred_epoch_ms,
)
from stream.windows import keys
from stream.windows.memory import MemoryWindows
from stream.windows.store import WindowPolicy
from tests.unit.test_decoding import FEEDBACK, PURCHASE

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SKEW = timedelta(hours=24)
POLICY = DecodePolicy(max_message_bytes=65_536, max_future_skew=SKEW, currency="USD")
WINDOWS = WindowPolicy(timedelta(days=150), timedelta(days=7), timedelta(days=180), 10)
KINDS = st.sampled_from(sorted(EVENT_MODELS))

# No example database: the suite leaves no files behind, and the shrunk failure is printed anyway.
PROPERTY = settings(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_decodes_or_rejects(kind: str, key: bytes | None, raw: bytes | None) -> EventBase | Rejection:
    result = decode_event(kind, key, raw, now=NOW, policy=POLICY)
    if isinstance(result, Rejection):
        assert isinstance(result.reason, RejectReason) and result.detail
    else:
        assert isinstance(result, EVENT_MODELS[kind])
        assert_usable_downstream(result, key)
    return result


def assert_usable_downstream(event: EventBase, key: bytes | None) -> None:
    """What the worker does next with an accepted event must not fail on anything the decoder let in."""
    assert key == event.customer_id.encode()
    keys.customer_state(event.customer_id).encode()  # redis-py encodes keys as strict UTF-8
    keys.seen_event(event.customer_id, event.event_id).encode()
    assert 0 <= occurred_epoch_ms(event) <= occurred_epoch_ms_bound()
    windows = MemoryWindows(WINDOWS)
    windows.apply(event)
    windows.read(event.customer_id)  # the window codec: it broke on year 0 before
    again = decode_event(type_kind(event), key, event.model_dump_json().encode(), now=NOW, policy=POLICY)
    assert again == event


def occurred_epoch_ms_bound() -> int:
    return int((NOW + SKEW).timestamp() * 1000)


def type_kind(event: EventBase) -> str:
    return next(kind for kind, model in EVENT_MODELS.items() if isinstance(event, model))


# --- any bytes, any key


@PROPERTY
@given(kind=KINDS, key=st.none() | st.binary(max_size=40), raw=st.none() | st.binary(max_size=400))
@example(kind="purchase", key=None, raw=None)
@example(kind="purchase", key=b"c", raw=b"")
@example(kind="feedback", key=b"c", raw=b"[" * 100_000)
@example(kind="feedback", key=b"c", raw=b"{" * 50_000)
@example(kind="feedback", key=b"c", raw=b"9" * 5_000)
@example(kind="feedback", key=b"c", raw=b'"\\ud800"')
def test_any_bytes_and_key_decode_or_reject(kind: str, key: bytes | None, raw: bytes | None) -> None:
    assert_decodes_or_rejects(kind, key, raw)


# --- JSON-shaped input: a valid event with fields replaced, dropped or added, then bytes mutated

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**120), max_value=10**120)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "2026-05-31T10:00:00Z",
            "2026-05-31T10:00:00",
            "1780000000",
            "1_000",
            "19.90",
            "1e3",
            "c1",
        ]
    )
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

BASE: dict[str, dict[str, Any]] = {
    "purchase": PURCHASE,
    "interaction": {
        "event_id": "e2",
        "customer_id": "c1",
        "occurred_at": "2026-05-31T10:00:00Z",
        "kind": "custom",
        "custom_kind": "webinar",
        "channel": "app",
    },
    "feedback": FEEDBACK,
}


@st.composite
def json_shaped(draw: st.DrawFn) -> tuple[str, bytes | None, bytes]:
    kind = draw(KINDS)
    payload = dict(BASE[kind])
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from([*payload, "surprise"]))
        if draw(st.booleans()):
            payload[field] = draw(JSON_VALUES)
        else:
            payload.pop(field, None)
    raw = json.dumps(payload, allow_nan=True).encode()
    if draw(st.integers(0, 3)) == 0:  # sometimes, a few bytes flipped, cut or inserted
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data)))
            choice = draw(st.sampled_from(["insert", "delete", "replace"]))
            if choice == "insert" or at == len(data):
                data[at:at] = draw(st.binary(min_size=1, max_size=3))
            elif choice == "delete":
                del data[at]
            else:
                data[at] = draw(st.integers(0, 255))
        raw = bytes(data)
    key = draw(st.sampled_from([b"c1", b"c1", None, b"c2", b""]))
    return kind, key, raw


@PROPERTY
@given(json_shaped())
def test_json_shaped_input_decodes_or_rejects(message: tuple[str, bytes | None, bytes]) -> None:
    assert_decodes_or_rejects(*message)


# --- valid events round-trip


IDENTIFIERS = st.text(min_size=1, max_size=128).filter(lambda s: s.strip() == s and s != "")
OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
EVENT_TIMES = st.builds(
    lambda instant, zone: instant.astimezone(zone),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=(NOW + SKEW).replace(tzinfo=None), timezones=st.just(UTC)),
    OFFSETS,
)
AMOUNTS = st.decimals(min_value=0, max_value=Decimal("9999999999.9999"), places=4, allow_nan=False) | st.decimals(
    min_value=0, max_value=Decimal("9999999999.9999"), places=2, allow_nan=False
).map(Decimal.normalize)  # exponent forms such as 1E+3


@st.composite
def common_fields(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "event_id": draw(IDENTIFIERS),
        "customer_id": draw(IDENTIFIERS),
        "occurred_at": draw(EVENT_TIMES),
        "segment": draw(st.none() | st.text(max_size=64)),
    }


@st.composite
def valid_events(draw: st.DrawFn) -> EventBase:
    common = draw(common_fields())
    kind = draw(KINDS)
    if kind == "purchase":
        return PurchaseEvent(
            **common,
            order_id=draw(IDENTIFIERS),
            amount=draw(AMOUNTS),
            currency="USD",
            item_count=draw(st.none() | st.integers(0, 1_000_000)),
        )
    if kind == "interaction":
        interaction_kind = draw(st.sampled_from(list(InteractionKind)))
        custom = draw(st.from_regex(r"[a-z][a-z0-9_]{0,31}", fullmatch=True))
        return InteractionEvent(
            **common,
            kind=interaction_kind,
            custom_kind=custom if interaction_kind is InteractionKind.CUSTOM else None,
            channel=draw(st.text(min_size=1, max_size=32)),
        )
    survey = draw(st.sampled_from(sorted(SURVEY_RANGES)))
    low, high = SURVEY_RANGES[survey]
    return FeedbackEvent(
        **common,
        kind=survey,  # type: ignore[arg-type]
        score=draw(st.integers(low, high)),
        comment=draw(st.none() | st.text(max_size=200)),
    )


@PROPERTY
@given(valid_events())
def test_valid_events_round_trip(event: EventBase) -> None:
    key = event.customer_id.encode()
    decoded = decode_event(type_kind(event), key, event.model_dump_json().encode(), now=NOW, policy=POLICY)
    assert decoded == event
    assert_usable_downstream(event, key)


@PROPERTY
@given(valid_events(), st.none() | st.binary(max_size=20))
def test_any_other_key_is_a_key_mismatch(event: EventBase, key: bytes | None) -> None:
    decoded = decode_event(type_kind(event), key, event.model_dump_json().encode(), now=NOW, policy=POLICY)
    if key == event.customer_id.encode():
        assert decoded == event
    else:
        assert isinstance(decoded, Rejection) and decoded.reason is RejectReason.KEY_MISMATCH


# --- the straight read from bytes (pydantic-core's parser) gives what the bounded reading gives


def read_by_the_reference(kind: str, key: bytes | None, raw: bytes | None) -> EventBase | Rejection:
    with patch.dict(decoding._READ_STRAIGHT_FROM_BYTES, clear=True):
        return decode_event(kind, key, raw, now=NOW, policy=POLICY)


def assert_read_as_the_reference_reads(kind: str, key: bytes | None, raw: bytes | None) -> None:
    straight = decode_event(kind, key, raw, now=NOW, policy=POLICY)
    reference = read_by_the_reference(kind, key, raw)
    assert straight == reference
    if not isinstance(straight, Rejection):  # the same values, and of the same types
        assert straight.model_dump() == reference.model_dump()
        assert [type(v) for v in vars(straight).values()] == [type(v) for v in vars(reference).values()]


@PROPERTY
@given(json_shaped())
@example(("feedback", b"c1", json.dumps({**FEEDBACK, "score": "x"}).encode()[:-1] + b', "score": 3}'))
@example(("feedback", b"c1", b"\xef\xbb\xbf" + json.dumps(FEEDBACK).encode()))  # a UTF-8 byte order mark
@example(("purchase", b"c1", json.dumps({**PURCHASE, "amount": 1.5}).replace("1.5", "19.99999999999999999").encode()))
@example(("feedback", b"c1", json.dumps({**FEEDBACK, "comment": "\ud800"}).encode()))  # a lone surrogate
@example(("interaction", b"c1", json.dumps({**BASE["interaction"], "channel": "a\tb"}, ensure_ascii=False).encode()))
def test_json_shaped_input_reads_straight_as_the_reference_reads(message: tuple[str, bytes | None, bytes]) -> None:
    assert_read_as_the_reference_reads(*message)


@PROPERTY
@given(kind=KINDS, key=st.none() | st.binary(max_size=40), raw=st.none() | st.binary(max_size=400))
def test_any_bytes_read_straight_as_the_reference_reads(kind: str, key: bytes | None, raw: bytes | None) -> None:
    assert_read_as_the_reference_reads(kind, key, raw)


@PROPERTY
@given(valid_events(), st.booleans(), st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
def test_valid_events_in_any_json_spelling_read_straight_as_the_reference_reads(
    event: EventBase, ascii_only: bool, separators: tuple[str, str]
) -> None:
    fields = json.loads(event.model_dump_json())
    raw = json.dumps(fields, ensure_ascii=ascii_only, separators=separators).encode()
    assert_read_as_the_reference_reads(type_kind(event), event.customer_id.encode(), raw)
