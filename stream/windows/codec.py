"""Reading the customer state hash written by ``update.lua`` into a :class:`rules.state.CustomerState`.

Pure (no Redis calls), so the field layout is unit-tested without a server. The layout:
``wm`` latest event time (ms); ``p`` JSON ``{day: [purchases, cents]}`` per UTC day number;
``fp``/``lp`` first/last purchase (ms); ``pn``/``ps`` lifetime count and cents; ``pdn`` lifetime
count of distinct purchase days (absent in state written before it existed: the day buckets stand in);
``i:<kind>`` JSON ``{day: count}``; ``li`` last interaction (ms); ``f:<kind>`` JSON
``[[ms, score], ...]`` oldest first; ``sg``/``sgt`` segment of the newest event that had one, and its time;
``a:<rule>`` alert claims; ``pd`` last day the series were pruned.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from rules.state import CustomerState, FeedbackAnswer, from_epoch_ms

CENTS = Decimal(100)


def to_cents(amount: Decimal) -> int:
    return int((amount * CENTS).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def as_text(value: bytes | str) -> str:
    """A Redis reply value as text, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else value


def state_from_hash(
    customer_id: str, fields: Mapping[bytes, bytes] | Mapping[str, str] | Mapping[bytes | str, bytes | str]
) -> CustomerState:
    purchases: dict[int, int] = {}
    spend: dict[int, float] = {}
    interactions: dict[str, dict[int, int]] = {}
    feedback: dict[str, tuple[FeedbackAnswer, ...]] = {}
    scalars: dict[str, int] = {}
    segment: str | None = None
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
                FeedbackAnswer(answered_at=from_epoch_ms(int(ms)), score=int(score)) for ms, score in json.loads(value)
            )
        elif name == "sg":
            segment = value
        elif not rest and name in ("wm", "fp", "lp", "pn", "pdn", "ps", "li"):
            scalars[name] = int(value)

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
