"""The window update of ``update.lua``, folded in memory: same events in, same states out, no Redis.

Rule unit tests (``churnwatch rules test``) build customer states with it, so a test sees exactly
what the worker would have seen. It is a second implementation of the same semantics, kept honest by
``tests/integration/test_memory_windows_match_redis.py``, which feeds random event streams to both
and compares every outcome and state. Step by step, as in the script:

1. an event id among the customer's kept ids changes nothing (``duplicate``; the current state);
2. an event older than the retention horizon behind the customer's latest event time is dropped
   (``late``; an empty state), its id not recorded (a redelivery of it is late again: the
   watermark never moves back);
2b. an event at or before the dedupe floor (the latest second evicted from the kept ids) is taken
   for a redelivery (``duplicate``); any other is recorded among the kept ids, the oldest beyond
   ``dedupe_ids`` evicted: :class:`stream.windows.dedupe.DedupeWindow`, where the guarantee is
   stated (never counted twice; counted once unless late by the horizon or by ``dedupe_ids``);
3. purchases (count and cents) and interactions (per kind) land in the UTC day of their event time,
   after the touched series is pruned to the horizon; survey answers are kept in event-time order,
   the last ``feedback_history`` per kind; lifetime count and spend, first/last purchase and last
   interaction follow every accepted event;
4. the watermark only moves forward, the segment comes from the newest event carrying one, by event
   time (a later arrival with the same time wins), and on the first event of a new watermark day
   every series is pruned to the horizon.

The state is built straight from the fold, without the hash's JSON round trip (encoding and
decoding every day series on every event was most of a replay's time): :meth:`_Customer.state` is
what :func:`stream.windows.codec.state_from_hash`, the decoder the Redis store uses, reads from
:meth:`_Customer.fields`, value for value and in the same order (float sums follow it), which
``tests/unit/test_memory_windows_state.py`` checks on random folds, and the integration test checks
against Redis. A series' read-only copy (a :class:`rules.state.DaySeries`) is kept until the
series changes, so an event rebuilds only what it touched, and what the rules derive from an
unchanged series (window sums, merged series) carries over to the next state.

Wall-clock expiries (``idle_ttl``) are not modelled: within one fold a customer is kept for ever.
The script also reads the per-event markers of the versions before the bounded dedupe (migration);
this fold never wrote any, so it has no such check.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from rules.state import CustomerState, DaySeries, FeedbackAnswer, from_epoch_ms
from stream.events import EventBase, FeedbackEvent, InteractionEvent, PurchaseEvent, occurred_epoch_ms
from stream.windows import keys
from stream.windows.codec import state_from_hash, to_cents
from stream.windows.dedupe import DedupeWindow, event_digest, event_second
from stream.windows.store import UpdateOutcome, WindowPolicy, WindowUpdate

DAY_MS = 86_400_000
_V = TypeVar("_V")


@dataclass
class _Customer:
    """One customer's hash, field for field (see the codec's docstring for the layout)."""

    wm: int = 0
    purchases: dict[int, list[int]] = field(default_factory=dict)
    """``p``: day -> [purchases, cents]."""
    interactions: dict[str, dict[int, int]] = field(default_factory=dict)
    """``i:<kind>``: day -> count."""
    feedback: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """``f:<kind>``: [(ms, score)], oldest first."""
    fp: int = 0
    lp: int = 0
    pn: int = 0
    pdn: int = 0
    ps: int = 0
    li: int = 0
    sg: str | None = None
    sgt: int = 0
    pd: int = 0
    purchase_views: tuple[DaySeries[int], DaySeries[float]] | None = None
    interaction_views: dict[str, DaySeries[int]] = field(default_factory=dict)
    feedback_views: dict[str, tuple[FeedbackAnswer, ...]] = field(default_factory=dict)
    """Read-only copies of the series for :meth:`state`, each dropped when its series changes."""
    snapshot: CustomerState | None = None
    dedupe: DedupeWindow = field(default_factory=DedupeWindow)
    """``dd`` and ``df``: the kept event ids and the floor."""

    def state(self, customer_id: str) -> CustomerState:
        """What ``state_from_hash(customer_id, self.fields())`` decodes, without the JSON."""
        if self.snapshot is not None and self.snapshot.customer_id == customer_id:
            return self.snapshot
        if self.purchase_views is None:
            self.purchase_views = (
                DaySeries({day: count for day, (count, _) in self.purchases.items()}),
                DaySeries({day: cents / 100 for day, (_, cents) in self.purchases.items()}),
            )
        interactions: dict[str, Mapping[int, int]] = {}
        for kind, series in self.interactions.items():
            view = self.interaction_views.get(kind)
            if view is None:
                view = self.interaction_views[kind] = DaySeries(dict(series))
            interactions[kind] = view
        feedback: dict[str, tuple[FeedbackAnswer, ...]] = {}
        for kind, answers in self.feedback.items():
            got = self.feedback_views.get(kind)
            if got is None:
                got = self.feedback_views[kind] = tuple(
                    FeedbackAnswer(from_epoch_ms(ms), score) for ms, score in answers
                )
            feedback[kind] = got
        purchases, spend = self.purchase_views
        self.snapshot = CustomerState(
            customer_id=customer_id,
            watermark=_moment(self.wm),
            purchases_by_day=purchases,
            spend_by_day=spend,
            first_purchase_at=_moment(self.fp),
            last_purchase_at=_moment(self.lp),
            lifetime_purchases=self.pn,
            lifetime_purchase_days=self.pdn or len(self.purchases),
            lifetime_spend=self.ps / 100,
            interactions_by_kind=interactions,
            last_interaction_at=_moment(self.li),
            feedback_by_kind=feedback,
            segment=self.sg,
        )
        return self.snapshot

    def fields(self) -> dict[str, str]:
        """The hash as ``HGETALL`` would return it (absent fields are absent)."""
        out: dict[str, str] = {}
        if self.purchases:
            out["p"] = json.dumps({str(d): bucket for d, bucket in self.purchases.items()})
        for kind, series in self.interactions.items():
            out[f"i:{kind}"] = json.dumps({str(d): n for d, n in series.items()})
        for kind, answers in self.feedback.items():
            out[f"f:{kind}"] = json.dumps([list(a) for a in answers])
        for name in ("wm", "fp", "lp", "pn", "pdn", "ps", "li", "pd", "sgt"):
            value: int = getattr(self, name)
            if value:  # the decoder reads an absent scalar as 0 / None, as it reads a 0
                out[name] = str(value)
        if self.sg is not None:
            out["sg"] = self.sg
        out.update(self.dedupe.fields())
        return out


def _moment(ms: int) -> datetime | None:
    return from_epoch_ms(ms) if ms else None


def _prune(series: dict[int, _V], oldest: int) -> bool:
    """Drop the days before ``oldest``; whether any was dropped."""
    old = [d for d in series if d < oldest]
    for day in old:
        del series[day]
    return bool(old)


class MemoryUpdate(WindowUpdate):
    """A :class:`WindowUpdate` whose state comes straight from the fold (no hash to decode)."""

    def __init__(self, outcome: UpdateOutcome, customer_id: str, state: CustomerState) -> None:
        super().__init__(outcome, customer_id, {})
        self._state = state

    @property
    def state(self) -> CustomerState:
        return self._state

    @property
    def watermark(self) -> datetime | None:
        return self._state.watermark


class MemoryWindows:
    """Per-customer windows in a dict: :meth:`apply` events in arrival order, :meth:`read` a state."""

    def __init__(self, policy: WindowPolicy) -> None:
        self._policy = policy
        self._horizon_days = max(1, policy.retention.days)  # as RedisWindowStore passes it to the script
        self._customers: dict[str, _Customer] = {}

    def apply(self, event: EventBase) -> WindowUpdate:
        # Keyed like the Redis keys, so even two ids that map to one hash tag behave the same.
        state_key = keys.customer_state(event.customer_id)
        c = self._customers.get(state_key) or _Customer()
        digest = event_digest(event.event_id)
        if c.dedupe.seen(digest):
            return MemoryUpdate(UpdateOutcome.DUPLICATE, event.customer_id, self._state(event.customer_id, state_key))
        t = occurred_epoch_ms(event)
        if c.wm > 0 and t < c.wm - self._horizon_days * DAY_MS:
            return WindowUpdate(UpdateOutcome.LATE, event.customer_id, {})
        second = event_second(t)
        if c.dedupe.too_old(second):
            return MemoryUpdate(UpdateOutcome.DUPLICATE, event.customer_id, self._state(event.customer_id, state_key))
        c.dedupe.record(digest, second, self._policy.dedupe_ids)
        self._customers[state_key] = c
        c.snapshot = None
        new_wm = max(c.wm, t)
        oldest = new_wm // DAY_MS - self._horizon_days + 1
        day = t // DAY_MS

        if isinstance(event, PurchaseEvent):
            cents = to_cents(event.amount)
            c.purchase_views = None
            _prune(c.purchases, oldest)
            bucket = c.purchases.get(day)
            if bucket:
                bucket[0] += 1
                bucket[1] += cents
            else:
                c.purchases[day] = [1, cents]
                if day >= oldest:
                    c.pdn += 1
            c.pn += 1
            c.ps += cents
            if c.fp == 0 or t < c.fp:
                c.fp = t
            c.lp = max(c.lp, t)
        elif isinstance(event, InteractionEvent):
            series = c.interactions.setdefault(event.counted_kind, {})
            c.interaction_views.pop(event.counted_kind, None)
            _prune(series, oldest)
            series[day] = series.get(day, 0) + 1
            c.li = max(c.li, t)
        elif isinstance(event, FeedbackEvent):
            answers = c.feedback.setdefault(event.kind, [])
            c.feedback_views.pop(event.kind, None)
            pos = len(answers)
            while pos > 0 and answers[pos - 1][0] > t:  # after any answer with the same time
                pos -= 1
            answers.insert(pos, (t, event.score))
            del answers[: max(0, len(answers) - self._policy.feedback_history)]
        else:  # pragma: no cover - the event union is closed
            raise TypeError(f"unknown event type {type(event).__name__}")

        if event.segment and t >= c.sgt:
            c.sg, c.sgt = event.segment, t
        c.wm = new_wm
        wm_day = new_wm // DAY_MS
        if c.pd < wm_day:
            if _prune(c.purchases, oldest):
                c.purchase_views = None
            for kind in list(c.interactions):
                if _prune(c.interactions[kind], oldest):
                    c.interaction_views.pop(kind, None)
                if not c.interactions[kind]:
                    del c.interactions[kind]
                    c.interaction_views.pop(kind, None)
            c.pd = wm_day
        return MemoryUpdate(UpdateOutcome.OK, event.customer_id, c.state(event.customer_id))

    def apply_all(self, events: Iterable[EventBase]) -> list[WindowUpdate]:
        return [self.apply(event) for event in events]

    def read(self, customer_id: str) -> CustomerState:
        return self._state(customer_id, keys.customer_state(customer_id))

    def fields(self, customer_id: str) -> dict[str, str]:
        """The customer's window fields as the script leaves them in the hash, for a store that keeps
        other fields in the same hash (the alert ledger: :mod:`stream.windows.memory_store`)."""
        return self._fields(keys.customer_state(customer_id))

    def _fields(self, state_key: str) -> dict[str, str]:
        customer = self._customers.get(state_key)
        return customer.fields() if customer else {}

    def _state(self, customer_id: str, state_key: str) -> CustomerState:
        customer = self._customers.get(state_key)
        return customer.state(customer_id) if customer else state_from_hash(customer_id, {})
