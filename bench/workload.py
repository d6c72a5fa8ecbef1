"""The benchmark's workload: a realistic backlog of exactly N events, and the fresh topics it goes to.

The events are the demo's (:mod:`stream.demo_profiles` personas, a 120-day backfill each), so the
benchmark measures the mix of event kinds, sizes and per-customer histories the worker meets in the
demo, not a synthetic stream. They are encoded as the demo sends them (:func:`stream.demo.encode`)
and put in event-time order, the order they are produced in.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from stream.demo import encode
from stream.demo_profiles import CustomerProfile, backfill_events, make_profiles
from stream.events import AnyEvent
from stream.settings import Topics

BACKFILL_DAYS = 120
EVENTS_PER_CUSTOMER_GUESS = 200
"""A 120-day backfill with the default persona mix gives about 260 events per customer; guess low, trim after."""

Message = tuple[str, bytes, bytes]
"""(topic, key, value) as produced."""


@dataclass(frozen=True)
class Workload:
    events: list[AnyEvent]
    """Validated models, in event-time order (the order they are produced in)."""
    messages: list[Message]
    customers: int
    events_per_customer: list[int]
    profiles: list[CustomerProfile]
    """The customers whose events are in the backlog (the live phase's traffic comes from them too)."""


def run_topics(run_id: str) -> Topics:
    """Fresh topic names for one run (``bench-<run id>.<name>``), so every run reads only its own backlog."""
    return Topics.model_validate({name: f"bench-{run_id}.{name}" for name in Topics.model_fields})


def build_workload(target: int, customers: int | None, seed: int, topics: Topics) -> Workload:
    """Exactly ``target`` events from whole customers' backfills (the last customer may be cut short).

    With ``customers`` given, that many customers are generated; if they produce fewer than
    ``target`` events, all of them are used.
    """
    now = datetime.now(UTC)
    count = customers or max(1, math.ceil(target / EVENTS_PER_CUSTOMER_GUESS))
    while True:
        profiles = make_profiles(count, random.Random(seed))
        history = backfill_events(profiles, now, BACKFILL_DAYS, random.Random(seed + 1))
        if customers is not None or len(history) >= target:
            break
        count = math.ceil(count * target / max(1, len(history)) * 1.1)
    by_customer: dict[str, list[AnyEvent]] = defaultdict(list)
    for event in history:
        by_customer[event.customer_id].append(event)
    kept: list[AnyEvent] = []
    per_customer: list[int] = []
    customers_kept: list[CustomerProfile] = []
    for profile in profiles:
        if len(kept) >= target:
            break
        taken = by_customer[profile.customer_id][: target - len(kept)]
        if taken:
            kept += taken
            per_customer.append(len(taken))
            customers_kept.append(profile)
    kept.sort(key=lambda e: e.occurred_at)  # stable: a customer's own order is kept
    messages = [(topics.for_event(e), *encode(e)) for e in kept]
    return Workload(kept, messages, len(per_customer), per_customer, customers_kept)


def on_topics(messages: list[Message], source: Topics, target: Topics) -> list[Message]:
    """The same messages sent to ``target``'s topics instead of ``source``'s (the same backlog, other topics)."""
    renamed = dict(zip(source.events, target.events, strict=True))
    return [(renamed[topic], key, value) for topic, key, value in messages]
