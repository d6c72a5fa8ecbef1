"""Reading the customer state hash written by ``update.lua`` into a :class:`rules.state.CustomerState`.

Pure (no Redis calls), so the field layout is unit-tested without a server. The layout:
``wm`` latest event time (ms); ``p`` JSON ``{day: [purchases, cents]}`` per UTC day number;
``fp``/``lp`` first/last purchase (ms); ``pn``/``ps`` lifetime count and cents; ``pdn`` lifetime
count of distinct purchase days (absent in state written before it existed: the day buckets stand in);
``i:<kind>`` JSON ``{day: count}``; ``li`` last interaction (ms); ``f:<kind>`` JSON
``[[ms, score], ...]`` oldest first; ``sg``/``sgt`` segment of the newest event that had one, and its time;
``a:<rule>`` alert claims; ``pd`` last day the series were pruned.

The day series come back as read-only :class:`rules.state.DaySeries`, each decoded once per raw
value (see :data:`SERIES_CACHE_SIZE`): the fields the state does not need (the dedupe ids) are not
decoded at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from itertools import repeat
from operator import truediv
from typing import Any

from rules.state import CustomerState, DaySeries, FeedbackAnswer, from_epoch_ms

CENTS = Decimal(100)


def to_cents(amount: Decimal) -> int:
    return int((amount * CENTS).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def as_text(value: bytes | str) -> str:
    """A Redis reply value as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else value


_SCALARS = frozenset(("wm", "fp", "lp", "pn", "pdn", "ps", "li"))
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _json(text: str) -> Any:
    """``json.loads(text)``, without its wrapper's per-call work: a state has a dozen JSON fields.
    Anything the scanner does not take whole (leading or trailing whitespace, an error) goes through
    ``json.loads`` itself, so what it accepts and raises is unchanged."""
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _day_counts(series: Mapping[str, Any]) -> dict[int, int]:
    """``{int(day): int(count)}`` of a decoded ``{day: count}`` object, in its order (the loops in C)."""
    return dict(zip(map(int, series), map(int, series.values()), strict=True))


# A customer's hash is decoded after every batch that touched them, and most of its series did not
# change since the last time: each decoded series is kept by its raw value (the same bytes decode
# to the same series), so an unchanged one is neither parsed again nor rebuilt, and it comes back as
# the same read-only DaySeries, whose derived values (prefix sums, first days, merged series) the
# rules then reuse, as they do with the in-memory fold's. Bounded: about 10 KB per kept series.
SERIES_CACHE_SIZE = 2048
_NO_DAYS: DaySeries[int] = DaySeries({})
_NO_AMOUNTS: DaySeries[float] = DaySeries({})


@lru_cache(maxsize=SERIES_CACHE_SIZE)
def _purchase_series(raw: bytes | str) -> tuple[DaySeries[int], DaySeries[float]]:
    """``p`` (``{day: [count, cents]}``) as the purchase counts and the spend per day (cents / 100)."""
    buckets: dict[str, list[int]] = _json(as_text(raw))
    if not buckets:
        return DaySeries({}), DaySeries({})
    days = list(map(int, buckets))
    counts, cents = zip(*buckets.values(), strict=True)  # each bucket is [count, cents]
    return (
        DaySeries(dict(zip(days, map(int, counts), strict=True))),
        DaySeries(dict(zip(days, map(truediv, map(int, cents), repeat(100)), strict=True))),
    )


@lru_cache(maxsize=SERIES_CACHE_SIZE)
def _interaction_series(raw: bytes | str) -> DaySeries[int]:
    """``i:<kind>`` (``{day: count}``)."""
    return DaySeries(_day_counts(_json(as_text(raw))))


@lru_cache(maxsize=SERIES_CACHE_SIZE)
def _answers(raw: bytes | str) -> tuple[FeedbackAnswer, ...]:
    """``f:<kind>`` (``[[ms, score], ...]``, oldest first)."""
    return tuple(
        FeedbackAnswer(answered_at=from_epoch_ms(int(ms)), score=int(score)) for ms, score in _json(as_text(raw))
    )


def forget_decoded_series() -> None:
    """Empty the decoded series' cache (benchmarks timing a cold decode; tests)."""
    for cached in (_purchase_series, _interaction_series, _answers):
        cached.cache_clear()


def state_from_hash(
    customer_id: str, fields: Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]
) -> CustomerState:
    """Only the fields the state needs are decoded (the dedupe ids, ``dd``, are the largest and are not)."""
    purchases: Mapping[int, int] = _NO_DAYS
    spend: Mapping[int, float] = _NO_AMOUNTS
    interactions: dict[str, Mapping[int, int]] = {}
    feedback: dict[str, tuple[FeedbackAnswer, ...]] = {}
    scalars: dict[str, int] = {}
    segment: str | None = None
    for raw_name, raw_value in fields.items():
        name = as_text(raw_name)
        if name == "p":
            purchases, spend = _purchase_series(raw_value)
            continue
        kind, _, rest = name.partition(":")
        if kind == "i" and rest:
            interactions[rest] = _interaction_series(raw_value)
        elif kind == "f" and rest:
            feedback[rest] = _answers(raw_value)
        elif name == "sg":
            segment = as_text(raw_value)
        elif not rest and name in _SCALARS:
            scalars[name] = int(as_text(raw_value))

    def moment(name: str) -> datetime | None:
        return from_epoch_ms(scalars[name]) if scalars.get(name) else None

    return CustomerState(
        customer_id=customer_id,
        watermark=moment("wm"),
        purchases_by_day=purchases,
        spend_by_day=spend,
        first_purchase_at=moment("fp"),
        last_purchase_at=moment("lp"),
        lifetime_purchases=scalars.get("pn", 0),
        lifetime_purchase_days=scalars.get("pdn") or len(purchases),
        lifetime_spend=scalars.get("ps", 0) / 100,
        interactions_by_kind=interactions,
        last_interaction_at=moment("li"),
        feedback_by_kind=feedback,
        segment=segment,
    )
