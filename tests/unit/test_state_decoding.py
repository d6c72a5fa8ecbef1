"""The state decoder against the plain one it replaced: the same state, value for value and in the
same order (spend is summed in its order), whatever the hash holds; unchanged series decoded once."""

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from rules.state import CustomerState, FeedbackAnswer, from_epoch_ms
from stream.windows.codec import as_text, forget_decoded_series, state_from_hash


def plain_state(customer_id: str, fields: dict[Any, Any]) -> CustomerState:
    """The decoder as it was before it was made faster (json.loads and a loop per series)."""
    purchases: dict[int, int] = {}
    spend: dict[int, float] = {}
    interactions: dict[str, dict[int, int]] = {}
    feedback: dict[str, tuple[FeedbackAnswer, ...]] = {}
    scalars: dict[str, int] = {}
    segment = None
    for raw_name, raw_value in fields.items():
        name, value = as_text(raw_name), as_text(raw_value)
        kind, _, rest = name.partition(":")
        if name == "p":
            for day, (count, cents) in json.loads(value).items():
                purchases[int(day)] = int(count)
                spend[int(day)] = int(cents) / 100
        elif kind == "i" and rest:
            interactions[rest] = {int(day): int(count) for day, count in json.loads(value).items()}
        elif kind == "f" and rest:
            feedback[rest] = tuple(
                FeedbackAnswer(from_epoch_ms(int(ms)), int(score)) for ms, score in json.loads(value)
            )
        elif name == "sg":
            segment = value
        elif not rest and name in ("wm", "fp", "lp", "pn", "pdn", "ps", "li"):
            scalars[name] = int(value)

    def moment(name: str) -> Any:
        return from_epoch_ms(scalars[name]) if scalars.get(name) else None

    return CustomerState(
        customer_id, moment("wm"), purchases, spend, moment("fp"), moment("lp"), scalars.get("pn", 0),
        scalars.get("pdn") or len(purchases), scalars.get("ps", 0) / 100, interactions, moment("li"), feedback,
        segment,
    )  # fmt: skip


def as_lists(state: CustomerState) -> tuple[object, ...]:
    """Every value of a state, mappings as item lists (their order counts)."""
    return (
        state.customer_id, state.watermark, list(state.purchases_by_day.items()), list(state.spend_by_day.items()),
        state.first_purchase_at, state.last_purchase_at, state.lifetime_purchases, state.lifetime_purchase_days,
        state.lifetime_spend, [(k, list(v.items())) for k, v in state.interactions_by_kind.items()],
        state.last_interaction_at, list(state.feedback_by_kind.items()), state.segment,
    )  # fmt: skip


days = st.integers(min_value=0, max_value=30_000)
times = st.integers(min_value=1, max_value=2_000_000_000_000)
kinds = st.sampled_from(["login", "session", "support_ticket", "webinar"])


@st.composite
def hashes(draw: st.DrawFn) -> dict[Any, Any]:
    fields: dict[str, str] = {}
    compact = draw(st.booleans())  # cjson writes compact JSON, json.dumps with spaces
    separators = (",", ":") if compact else (", ", ": ")
    if draw(st.booleans()):
        buckets = draw(st.dictionaries(days, st.tuples(st.integers(0, 50), st.integers(0, 10**9)), max_size=40))
        fields["p"] = json.dumps({str(d): list(b) for d, b in buckets.items()}, separators=separators)
    for kind in draw(st.lists(kinds, unique=True, max_size=4)):
        counts = draw(st.dictionaries(days, st.integers(0, 1000), max_size=40))
        fields[f"i:{kind}"] = json.dumps({str(d): n for d, n in counts.items()}, separators=separators)
    if draw(st.booleans()):
        answers = draw(st.lists(st.tuples(times, st.integers(0, 10)), max_size=5))
        fields["f:nps"] = json.dumps([list(a) for a in answers], separators=separators)
    for name in draw(st.lists(st.sampled_from(["wm", "fp", "lp", "pn", "pdn", "ps", "li", "pd", "sgt"]), unique=True)):
        fields[name] = str(draw(st.integers(0, 2_000_000_000_000)))
    if draw(st.booleans()):
        fields["sg"] = draw(st.sampled_from(["consumer", "enterprise", ""]))
    fields["dd"], fields["a:rule"] = "x" * draw(st.integers(0, 50)), "1|x|0|"
    names = list(fields)
    order = draw(st.permutations(names))
    as_bytes = draw(st.booleans())
    return {(n.encode() if as_bytes else n): (fields[n].encode() if as_bytes else fields[n]) for n in order}


@given(hashes())
def test_the_same_state_as_the_plain_decoder(fields: dict[Any, Any]) -> None:
    assert as_lists(state_from_hash("c", fields)) == as_lists(plain_state("c", fields))
    forget_decoded_series()
    assert as_lists(state_from_hash("c", fields)) == as_lists(plain_state("c", fields))


def test_an_unchanged_series_is_decoded_once() -> None:
    fields = {b"p": b'{"20454":[2,2550]}', b"i:login": b'{"20454":3}', b"wm": b"1767225600000"}
    first = state_from_hash("a", fields)
    changed = state_from_hash("a", {**fields, b"i:login": b'{"20454":4}'})
    assert changed.purchases_by_day is first.purchases_by_day and changed.spend_by_day is first.spend_by_day
    assert changed.interactions_by_kind["login"] == {20454: 4} and first.interactions_by_kind["login"] == {20454: 3}


def test_a_bad_series_still_raises() -> None:
    for bad in (b'{"1":[2]}', b'{"x":[1,2]}', b"[1,2]", b'{"1":[1,2]} x'):
        try:
            state_from_hash("c", {b"p": bad})
        except (ValueError, TypeError, AttributeError):
            continue
        raise AssertionError(f"{bad!r} decoded")
