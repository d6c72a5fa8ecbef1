import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from stream.decoding import DecodePolicy, Rejection, RejectReason, decode_event
from stream.events import FeedbackEvent, InteractionEvent, PurchaseEvent

NOW = datetime(2026, 6, 1, tzinfo=UTC)
POLICY = DecodePolicy(max_message_bytes=2048, max_future_skew=timedelta(hours=24), currency="USD")
ROOMY = DecodePolicy(max_message_bytes=1_000_000, max_future_skew=timedelta(hours=24), currency="USD")
KEY = b"c1"

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


def decode(kind: str, payload: object, key: bytes | None = KEY, policy: DecodePolicy = POLICY) -> object:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_event(kind, key, raw, now=NOW, policy=policy)


def reason(kind: str, payload: object, key: bytes | None = KEY, policy: DecodePolicy = POLICY) -> RejectReason:
    result = decode(kind, payload, key, policy)
    assert isinstance(result, Rejection), result
    return result.reason


def rejection(kind: str, payload: object, key: bytes | None = KEY, policy: DecodePolicy = POLICY) -> Rejection:
    result = decode(kind, payload, key, policy)
    assert isinstance(result, Rejection), result
    return result


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


def test_custom_interaction_kind() -> None:
    event = decode("interaction", {**INTERACTION, "kind": "custom", "custom_kind": "webinar"})
    assert isinstance(event, InteractionEvent) and event.counted_kind == "webinar"


@pytest.mark.parametrize(("kind", "low", "high"), [("nps", 0, 10), ("csat", 1, 5), ("ces", 1, 7)])
def test_score_ranges_per_kind(kind: str, low: int, high: int) -> None:
    for score in (low, high):
        assert isinstance(decode("feedback", {**FEEDBACK, "kind": kind, "score": score}), FeedbackEvent)
    for score in (low - 1, high + 1):
        assert reason("feedback", {**FEEDBACK, "kind": kind, "score": score}) is RejectReason.SCHEMA


# --- event time: an aware ISO 8601 string, from the Unix epoch to max_future_skew ahead of now


@pytest.mark.parametrize(
    "occurred_at",
    [
        "0001-01-01T00:00:00+05:00",  # accepted before, then broke the window codec (year 0 in UTC)
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:59:59+01:00",  # 1969 in UTC
    ],
)
def test_event_time_before_the_epoch_is_out_of_range(occurred_at: str) -> None:
    result = rejection("purchase", {**PURCHASE, "occurred_at": occurred_at})
    assert result.reason is RejectReason.TIMESTAMP_OUT_OF_RANGE
    assert "1970-01-01T00:00:00+00:00" in result.detail and occurred_at[:4] in result.detail


@pytest.mark.parametrize("occurred_at", ["1970-01-01T00:00:00Z", "1970-01-01T01:00:00+01:00", "2026-06-02T00:00:00Z"])
def test_event_time_range_is_inclusive(occurred_at: str) -> None:
    assert isinstance(decode("purchase", {**PURCHASE, "occurred_at": occurred_at}), PurchaseEvent)


def test_event_time_just_past_the_future_skew_is_rejected() -> None:
    late = {**PURCHASE, "occurred_at": "2026-06-02T00:00:00.000001Z"}
    assert reason("purchase", late) is RejectReason.FUTURE_TIMESTAMP
    far = {**PURCHASE, "occurred_at": "9999-12-31T23:59:59-05:00"}  # past year 9999 in UTC
    assert reason("purchase", far) is RejectReason.FUTURE_TIMESTAMP


@pytest.mark.parametrize(
    "occurred_at",
    [
        1780000000,  # epoch seconds: accepted before
        1780000000.5,
        "1780000000",  # pydantic reads a numeric string as epoch seconds too
        "2026-05-31",
        "31/05/2026 10:00 +02:00",
        True,
        None,
    ],
)
def test_event_time_is_an_iso_8601_string_only(occurred_at: object) -> None:
    result = rejection("purchase", {**PURCHASE, "occurred_at": occurred_at})
    assert result.reason is RejectReason.SCHEMA and "occurred_at" in result.detail


@pytest.mark.parametrize(
    "occurred_at",
    ["2026-05-31T10:00:00Z", "2026-05-31T10:00:00.123+02:00", "2026-05-31 10:00:00-03:30", "2026-05-31T10:00Z"],
)
def test_iso_8601_forms_accepted(occurred_at: str) -> None:
    assert isinstance(decode("purchase", {**PURCHASE, "occurred_at": occurred_at}), PurchaseEvent)


# --- strict numbers: no booleans, no numeric strings for integers, no underscores


@pytest.mark.parametrize("score", [True, False, "2", 2.0, "0x2", None])
def test_score_is_a_json_integer(score: object) -> None:
    result = rejection("feedback", {**FEEDBACK, "score": score})
    assert result.reason is RejectReason.SCHEMA and "score" in result.detail


def test_json_true_is_not_nps_1() -> None:
    # Read as NPS 1 before: a critical detractor alert from a boolean.
    assert reason("feedback", {**FEEDBACK, "score": True}) is RejectReason.SCHEMA
    assert (
        reason(
            "feedback",
            b'{"event_id":"e","customer_id":"c1","occurred_at":"2026-05-31T10:00:00Z","kind":"nps","score":true}',
        )
        is RejectReason.SCHEMA
    )


@pytest.mark.parametrize("item_count", [True, "2", 2.0, 1.5])
def test_item_count_is_a_json_integer(item_count: object) -> None:
    result = rejection("purchase", {**PURCHASE, "item_count": item_count})
    assert result.reason is RejectReason.SCHEMA and "item_count" in result.detail


@pytest.mark.parametrize(
    "amount", [True, False, "1_000", "1e3", "+5", ".5", "5.", " 19.90", "19.90 ", "19.90\n", "NaN", "Infinity"]
)
def test_amount_rejects_booleans_and_non_plain_decimal_strings(amount: object) -> None:
    result = rejection("purchase", {**PURCHASE, "amount": amount})
    assert result.reason is RejectReason.SCHEMA and "amount" in result.detail


def test_amount_rejects_underscores_in_json_numbers() -> None:
    raw = json.dumps(PURCHASE).replace('"19.90"', "1_000").encode()
    assert reason("purchase", raw) is RejectReason.NOT_JSON


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("19.90", Decimal("19.90")),
        ("0", Decimal(0)),
        (20, Decimal(20)),
        (19.9, Decimal("19.9")),
        (1e3, Decimal(1000)),
    ],
)
def test_amount_as_decimal_string_or_json_number(amount: object, expected: Decimal) -> None:
    event = decode("purchase", {**PURCHASE, "amount": amount})
    assert isinstance(event, PurchaseEvent) and event.amount == expected


def test_amount_json_number_is_read_exactly() -> None:
    raw = json.dumps(PURCHASE).replace('"19.90"', "1234567890.1234").encode()
    event = decode("purchase", raw)
    assert isinstance(event, PurchaseEvent) and str(event.amount) == "1234567890.1234"


def test_amount_with_a_huge_exponent_is_a_schema_error() -> None:
    raw = json.dumps(PURCHASE).replace('"19.90"', "1e999999999").encode()
    assert reason("purchase", raw) is RejectReason.SCHEMA


def test_amount_written_back_in_plain_notation() -> None:
    event = decode("purchase", json.dumps(PURCHASE).replace('"19.90"', "1e3").encode())
    assert isinstance(event, PurchaseEvent)
    assert json.loads(event.model_dump_json())["amount"] == "1000"
    assert decode("purchase", event.model_dump_json().encode()) == event


# --- the message key is the customer id


@pytest.mark.parametrize("key", [None, b"", b"c2", b"C1", b" c1", b"c1 ", b"\xff"])
def test_key_must_equal_customer_id(key: bytes | None) -> None:
    result = rejection("feedback", FEEDBACK, key=key)
    assert result.reason is RejectReason.KEY_MISMATCH
    assert "customer_id" in result.detail


def test_key_mismatch_names_both() -> None:
    result = rejection("feedback", FEEDBACK, key=b"c2")
    assert "'c2'" in result.detail and "'c1'" in result.detail
    assert "no key" in rejection("feedback", FEEDBACK, key=None).detail


def test_non_ascii_key_matches_its_utf8_customer_id() -> None:
    assert isinstance(decode("feedback", {**FEEDBACK, "customer_id": "kundé-7"}, key="kundé-7".encode()), FeedbackEvent)


def test_schema_errors_are_reported_before_the_key() -> None:
    assert reason("feedback", {**FEEDBACK, "score": 11}, key=None) is RejectReason.SCHEMA


# --- bounded JSON: depth, number length, encoding


@pytest.mark.parametrize(
    "raw", [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000]
)
def test_deep_nesting_is_not_json(raw: bytes) -> None:
    result = rejection("purchase", raw, policy=ROOMY)
    assert result.reason is RejectReason.NOT_JSON and "nested deeper than 32" in result.detail


def test_nesting_up_to_the_limit_is_parsed() -> None:
    nested = {**FEEDBACK, "comment": None}
    raw = json.dumps(nested).replace("null", "[" * 31 + "]" * 31).encode()  # depth 32 with the object
    result = rejection("feedback", raw)
    assert result.reason is RejectReason.SCHEMA and "comment" in result.detail
    too_deep = json.dumps(nested).replace("null", "[" * 32 + "]" * 32).encode()
    assert reason("feedback", too_deep) is RejectReason.NOT_JSON


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    comment = "[" * 500 + '{"\\' + "}" * 40
    event = decode("feedback", {**FEEDBACK, "comment": comment})
    assert isinstance(event, FeedbackEvent) and event.comment == comment


@pytest.mark.parametrize("digits", [101, 5000])
def test_long_numbers_are_not_json(digits: int) -> None:
    raw = json.dumps(FEEDBACK).replace('"score": 3', '"score": ' + "9" * digits).encode()
    result = rejection("feedback", raw, policy=ROOMY)
    assert result.reason is RejectReason.NOT_JSON and "longer than 100 characters" in result.detail


def test_long_fractions_are_not_json() -> None:
    raw = json.dumps(PURCHASE).replace('"19.90"', "1." + "0" * 200).encode()
    assert reason("purchase", raw) is RejectReason.NOT_JSON


def test_numbers_up_to_the_limit_reach_the_schema() -> None:
    raw = json.dumps(FEEDBACK).replace('"score": 3', '"score": ' + "9" * 100).encode()
    assert reason("feedback", raw) is RejectReason.SCHEMA


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_constants_are_not_json(constant: str) -> None:
    raw = json.dumps(PURCHASE).replace('"19.90"', constant).encode()
    result = rejection("purchase", raw)
    assert result.reason is RejectReason.NOT_JSON and constant in result.detail


def test_only_utf8_is_json() -> None:
    # json.loads(bytes) guesses UTF-16 and UTF-32; Kafka producers must send UTF-8 (RFC 8259).
    assert reason("feedback", json.dumps(FEEDBACK).encode("utf-16")) is RejectReason.NOT_JSON
    assert reason("feedback", json.dumps(FEEDBACK).encode("utf-32")) is RejectReason.NOT_JSON
    # A UTF-8 byte order mark is tolerated, as before (RFC 8259 lets a parser ignore it).
    assert isinstance(decode("feedback", b"\xef\xbb\xbf" + json.dumps(FEEDBACK).encode()), FeedbackEvent)


def test_lone_surrogate_escape_is_rejected() -> None:
    # Valid JSON grammar, but not Unicode: it could not be written to Redis or Kafka later.
    raw = json.dumps(FEEDBACK).replace('"e3"', '"\\ud800"').encode()
    assert reason("feedback", raw) is RejectReason.SCHEMA


# --- tombstones and empty values


def test_tombstone_is_its_own_reason() -> None:
    result = decode_event("purchase", KEY, None, now=NOW, policy=POLICY)
    assert isinstance(result, Rejection) and result.reason is RejectReason.TOMBSTONE
    assert decode_event("purchase", None, None, now=NOW, policy=POLICY) == result


@pytest.mark.parametrize("raw", [b"", b"   ", b"\n"])
def test_empty_value_is_not_json(raw: bytes) -> None:
    result = rejection("purchase", raw)
    assert result.reason is RejectReason.NOT_JSON and "empty" in result.detail
