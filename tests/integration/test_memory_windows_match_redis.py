"""Differential test: the in-memory fold (``stream/windows/memory.py``) against ``update.lua`` on a real
redis-server. Random event streams (fixed seeds) go to both in the same arrival order; every per-event
outcome and state, and every customer's final state, must be equal.

The streams are built to hit each rule of the script: out-of-order times, several events in one
millisecond, redeliveries (same event id) of recent and of long-past events (beyond the ids kept, with
a policy keeping 8), new events older than every kept id, events beyond the retention horizon, jumps of the watermark
over many days (pruning), all three streams, custom interaction kinds, every survey kind with more
answers than are kept, segments on some events only, odd amounts (cents rounding).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from stream.events import (
    SURVEY_RANGES,
    EventBase,
    FeedbackEvent,
    InteractionEvent,
    InteractionKind,
    PurchaseEvent,
    occurred_epoch_ms,
)
from stream.windows.dedupe import RECORD, event_digest
from stream.windows.memory import MemoryWindows
from stream.windows.store import RedisWindowStore, UpdateOutcome, WindowPolicy
from tests.events_factory import unique_customer

LATE = UpdateOutcome.LATE

START = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
SEGMENTS = [None, None, None, "smb", "vip", "enterprise", ""]
KINDS = [k.value for k in InteractionKind if k is not InteractionKind.CUSTOM]

POLICIES = {
    "defaults": WindowPolicy(
        retention=timedelta(days=150), dedupe_ttl=timedelta(days=7), idle_ttl=timedelta(days=180), feedback_history=10
    ),
    "short horizon, 2 answers": WindowPolicy(
        retention=timedelta(days=12), dedupe_ttl=timedelta(days=7), idle_ttl=timedelta(days=180), feedback_history=2
    ),
    "8 ids kept": WindowPolicy(  # most redeliveries are of evicted ids; out-of-order events meet the floor
        retention=timedelta(days=150),
        dedupe_ttl=timedelta(days=7),
        idle_ttl=timedelta(days=180),
        feedback_history=10,
        dedupe_ids=8,
    ),
}


def random_events(rng: random.Random, customers: list[str], count: int, horizon_days: int) -> list[EventBase]:
    """``count`` events in arrival order; about one in eight is a redelivery of an earlier one."""
    events: list[EventBase] = []
    clock = {c: START for c in customers}  # each customer's "live" time moves forward, with jumps
    newest_ms = {c: 0 for c in customers}  # the script's watermark, to aim at the horizon's edge
    for n in range(count):
        if events and rng.random() < 0.12:
            # Redelivery, the very same event: of a recent one, or of one far back (as after a long outage).
            events.append(rng.choice(events[-10:] if rng.random() < 0.5 else events))
            continue
        customer = rng.choice(customers)
        step = rng.choice([0, 0, 1, 5, 60, 3600, 6 * 3600, 86_400, 3 * 86_400, 20 * 86_400])
        clock[customer] += timedelta(seconds=step * rng.random())
        roll = rng.random()
        if roll < 0.5:
            at = clock[customer]  # live
        elif roll < 0.8:
            at = clock[customer] - timedelta(days=rng.uniform(0, horizon_days * 0.9))  # out of order, kept
        elif roll < 0.93 or not newest_ms[customer]:
            at = clock[customer] - timedelta(days=rng.uniform(horizon_days * 0.9, horizon_days * 1.6))  # near/late
        else:  # exactly on the horizon's edge, or one millisecond either side of it
            edge_ms = newest_ms[customer] - horizon_days * 86_400_000 + rng.choice([-1, 0, 0, 1])
            at = datetime.fromtimestamp(edge_ms / 1000, tz=UTC)
        if roll < 0.93:
            at += timedelta(microseconds=rng.randrange(1_000_000))  # sub-millisecond parts are truncated alike
        same_kind_answers = [e for e in events if isinstance(e, FeedbackEvent) and e.customer_id == customer]
        base = {
            "event_id": f"e-{n}",
            "customer_id": customer,
            "occurred_at": at.astimezone(UTC if rng.random() < 0.7 else _zone(rng)),
            "segment": rng.choice(SEGMENTS),
        }
        stream = rng.random()
        if stream < 0.4:
            cents = rng.choice([0, 1, 999, 2000, 12_345])
            amount = Decimal(cents) / 100 + Decimal(rng.choice(["0", "0.005", "0.0049", "0.0051", "0.0150"]))
            events.append(PurchaseEvent(**base, order_id=f"o-{n}", amount=amount, currency="USD"))
        elif stream < 0.7:
            if rng.random() < 0.15:
                events.append(
                    InteractionEvent(**base, kind="custom", custom_kind=rng.choice(["webinar", "demo"]), channel="web")
                )
            else:
                events.append(InteractionEvent(**base, kind=rng.choice(KINDS), channel="app"))
        else:
            kind = rng.choice(list(SURVEY_RANGES))
            if same_kind_answers and rng.random() < 0.3:  # the same instant as an earlier answer
                earlier = rng.choice(same_kind_answers)
                kind, base["occurred_at"] = earlier.kind, earlier.occurred_at
            low, high = SURVEY_RANGES[kind]
            events.append(FeedbackEvent(**base, kind=kind, score=rng.randint(low, high)))  # type: ignore[arg-type]
        newest_ms[customer] = max(newest_ms[customer], occurred_epoch_ms(events[-1]))
    return events


def _zone(rng: random.Random) -> timezone:
    return timezone(timedelta(hours=rng.choice([-8, -3, 1, 2, 5.5, 9])))


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_memory_fold_matches_update_lua(redis: Redis, seed: int, policy_name: str) -> None:
    policy = POLICIES[policy_name]
    rng = random.Random(seed)
    customers = [unique_customer(f"diff{seed}") for _ in range(5)]
    events = random_events(rng, customers, 300, policy.retention.days)

    store = RedisWindowStore(redis, policy)
    redis_updates = [await store.apply(event) for event in events]  # every event's state, to compare
    memory = MemoryWindows(policy)
    memory_updates = memory.apply_all(events)

    outcomes = [u.outcome for u in redis_updates]
    # The stream really does exercise every branch of the script.
    assert {UpdateOutcome.OK, UpdateOutcome.DUPLICATE, UpdateOutcome.LATE} <= set(outcomes)
    for n, (event, want, got) in enumerate(zip(events, redis_updates, memory_updates, strict=True)):
        context = f"event #{n} {type(event).__name__} {event.event_id} at {event.occurred_at.isoformat()}"
        assert got.outcome is want.outcome, context
        assert got.state == want.state, context

    for customer in customers:
        assert memory.read(customer) == await store.read(customer), customer


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("seed", [5, 6])
async def test_batches_of_runs_give_what_one_event_at_a_time_gives(redis: Redis, seed: int, policy_name: str) -> None:
    """``apply_batch`` sends one script call per customer, which folds their events of the batch in
    Lua tables and writes once: batches of random sizes (redeliveries within one batch included) must
    give every event the outcome the one-at-a-time fold gives it, and each customer's state after
    their last counted event of the batch."""
    policy = POLICIES[policy_name]
    rng = random.Random(seed)
    customers = [unique_customer(f"runs{seed}") for _ in range(6)]
    events = random_events(rng, customers, 400, policy.retention.days)
    store, memory = RedisWindowStore(redis, policy), MemoryWindows(policy)
    at = 0
    while at < len(events):
        batch = events[at : at + rng.choice([1, 2, 7, 40, 150])]
        at += len(batch)
        got, want = await store.apply_batch(batch), memory.apply_all(batch)
        assert [u.outcome for u in got] == [u.outcome for u in want]
        for customer in {e.customer_id for e in batch}:
            counted = [n for n, e in enumerate(batch) if e.customer_id == customer and got[n].outcome is not LATE]
            if counted:
                assert got[counted[-1]].state == memory.read(customer), (customer, at)
    for customer in customers:
        assert await store.read(customer) == memory.read(customer), customer


def test_the_streams_reach_the_interesting_cases() -> None:
    """Guard against a generator that silently stops producing what the comparison relies on."""
    policy = POLICIES["short horizon, 2 answers"]
    customers = [unique_customer("diffcheck") for _ in range(5)]
    events = random_events(random.Random(1), customers, 300, policy.retention.days)
    memory = MemoryWindows(policy)
    memory.apply_all(events)
    states = [memory.read(c) for c in customers]
    assert any(len(s.answers(k)) == 2 for s in states for k in SURVEY_RANGES)  # answers trimmed
    assert any(s.lifetime_purchases > sum(s.purchases_by_day.values()) for s in states)  # buckets pruned
    assert any(s.segment for s in states)
    assert any("webinar" in s.interactions_by_kind or "demo" in s.interactions_by_kind for s in states)


def test_the_streams_reach_past_the_dedupe_bound() -> None:
    """With 8 ids kept: redeliveries of evicted ids (caught by the floor) and new events at or before
    the floor (taken for redeliveries) both occur, besides redeliveries of kept ids."""
    policy = POLICIES["8 ids kept"]
    customers = [unique_customer("diffbound") for _ in range(5)]
    memory, applied, cases = MemoryWindows(policy), set[str](), set[str]()
    for event in random_events(random.Random(1), customers, 300, policy.retention.days):
        dd = memory.fields(event.customer_id).get("dd", "")
        kept = {dd[at + 8 : at + RECORD] for at in range(0, len(dd), RECORD)}
        if memory.apply(event).outcome is UpdateOutcome.DUPLICATE:
            if event.event_id not in applied:
                cases.add("new, at or before the floor")
            else:
                cases.add("kept" if event_digest(event.event_id) in kept else "evicted")
        applied.add(event.event_id)
    assert cases == {"kept", "evicted", "new, at or before the floor"}
