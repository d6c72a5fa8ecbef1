from datetime import UTC, datetime
from decimal import Decimal

from rules.state import DayWindow, day_number
from stream.windows.codec import state_from_hash, to_cents


def test_hash_fields_become_state() -> None:
    state = state_from_hash(
        "c",
        {
            b"wm": b"1767225600000",
            b"p": b'{"20454": [2, 2550]}',
            b"fp": b"1767225600000",
            b"lp": b"1767225600000",
            b"pn": b"7",
            b"ps": b"12345",
            b"i:login": b'{"20454": 3}',
            b"i:support_ticket": b'{"20450": 1}',
            b"f:nps": b"[[1767225600000,3],[1767312000000,9]]",
            b"a:rule": b"1|x|0|",
            b"pd": b"20454",
        },
    )
    assert state.watermark == datetime(2026, 1, 1, tzinfo=UTC)
    assert state.purchases_by_day == {20454: 2}
    assert state.spend_by_day == {20454: 25.5}
    assert state.lifetime_purchases == 7 and state.lifetime_spend == 123.45
    assert state.interactions_by_kind == {"login": {20454: 3}, "support_ticket": {20450: 1}}
    assert [a.score for a in state.answers("nps")] == [3, 9]


def test_empty_hash_is_an_unknown_customer() -> None:
    state = state_from_hash("c", {})
    assert state.watermark is None and state.first_purchase_at is None and state.purchases_by_day == {}


def test_cents_round_half_even() -> None:
    assert to_cents(Decimal("12.345")) == 1234
    assert to_cents(Decimal("12.355")) == 1236
    assert to_cents(Decimal("0")) == 0


def test_day_windows() -> None:
    today = day_number(datetime(2026, 1, 31, 23, 59, tzinfo=UTC))
    recent = DayWindow.ending(today, 30)
    baseline = DayWindow.ending(today, 90, end_offset=30)
    assert recent.days == 30 and baseline.days == 90
    assert baseline.last_day == recent.first_day - 1
    assert baseline.clipped_from(recent.first_day) is None
    clipped = baseline.clipped_from(baseline.first_day + 10)
    assert clipped is not None and clipped.days == 80
    assert recent.total({today: 2, today - 29: 1, today - 30: 5}) == 3
