"""The Redis window store against a real redis-server: idempotency, event time, bounds, claims."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from alerts.cooldown import Claim, ClaimOutcome
from rules.state import day_number
from stream.events import EventBase
from stream.windows import keys
from stream.windows.dedupe import RECORD
from stream.windows.memory import MemoryWindows
from stream.windows.store import RedisWindowStore, UpdateOutcome, WindowPolicy, WindowUpdate
from tests.events_factory import feedback, interaction, purchase, unique_customer

NOW = datetime(2026, 6, 30, 12, tzinfo=UTC)
POLICY = WindowPolicy(
    retention=timedelta(days=150), dedupe_ttl=timedelta(days=7), idle_ttl=timedelta(days=180), feedback_history=5
)


@pytest.fixture
def store(redis: Redis) -> RedisWindowStore:
    return RedisWindowStore(redis, POLICY)


async def test_redelivered_event_changes_nothing(store: RedisWindowStore) -> None:
    cid = unique_customer()
    event = purchase(cid, NOW, amount="12.50")
    first = await store.apply(event)
    again = await store.apply(event)
    assert first.outcome is UpdateOutcome.OK and again.outcome is UpdateOutcome.DUPLICATE
    assert again.state.lifetime_purchases == 1 and again.state.lifetime_spend == 12.5
    assert again.state.purchases_by_day == {day_number(NOW): 1}


async def test_out_of_order_event_lands_in_its_own_day(store: RedisWindowStore) -> None:
    cid = unique_customer()
    await store.apply(purchase(cid, NOW))
    late = await store.apply(purchase(cid, NOW - timedelta(days=10)))
    assert late.outcome is UpdateOutcome.OK
    assert late.state.purchases_by_day == {day_number(NOW): 1, day_number(NOW - timedelta(days=10)): 1}
    assert late.state.watermark == NOW  # the watermark never goes back
    assert late.state.first_purchase_at == NOW - timedelta(days=10)
    assert late.state.last_purchase_at == NOW


async def test_event_beyond_the_horizon_is_dropped(store: RedisWindowStore) -> None:
    cid = unique_customer()
    await store.apply(purchase(cid, NOW))
    update = await store.apply(purchase(cid, NOW - timedelta(days=151)))
    assert update.outcome is UpdateOutcome.LATE
    assert (await store.read(cid)).lifetime_purchases == 1


async def test_old_buckets_are_pruned_as_time_moves_on(store: RedisWindowStore) -> None:
    cid = unique_customer()
    await store.apply(purchase(cid, NOW - timedelta(days=140)))
    await store.apply(interaction(cid, NOW - timedelta(days=140)))
    state = (await store.apply(purchase(cid, NOW + timedelta(days=20)))).state
    assert set(state.purchases_by_day) == {day_number(NOW + timedelta(days=20))}
    assert state.interactions_by_kind == {}
    assert state.lifetime_purchases == 2  # lifetime totals are kept


async def test_feedback_keeps_the_latest_answers_in_event_time_order(store: RedisWindowStore) -> None:
    cid = unique_customer()
    for day, score in [(1, 9), (3, 8), (2, 7), (6, 2), (5, 3), (4, 4), (7, 1)]:
        await store.apply(feedback(cid, NOW + timedelta(days=day), score))
    state = await store.read(cid)
    assert [a.score for a in state.answers("nps")] == [8, 4, 3, 2, 1]  # days 3..7, oldest first


async def test_customer_keys_share_a_hash_tag_and_expire(store: RedisWindowStore, redis: Redis) -> None:
    cid = unique_customer()
    event = interaction(cid, NOW, kind="support_ticket")
    await store.apply(event)
    state_key, seen_key = keys.customer_state(cid), keys.seen_event(cid, event.event_id)
    assert state_key.split("}")[0] == seen_key.split("}")[0] == f"cw:{{{cid}"
    assert 0 < await redis.ttl(state_key) <= POLICY.idle_ttl.total_seconds()
    # The dedupe lives in the state hash (bounded): no marker key per event any more.
    assert not await redis.exists(seen_key)
    assert [k async for k in redis.scan_iter(match=f"cw:{{{cid}}}:*")] == [state_key.encode()]


async def test_batch_is_one_pipeline_with_the_same_semantics(store: RedisWindowStore) -> None:
    cid = unique_customer()
    first = purchase(cid, NOW)
    updates = await store.apply_batch([first, interaction(cid, NOW), first])
    assert [u.outcome for u in updates] == [UpdateOutcome.OK, UpdateOutcome.OK, UpdateOutcome.DUPLICATE]
    assert updates[-1].state.lifetime_purchases == 1


async def test_alert_claims(store: RedisWindowStore) -> None:
    cid = unique_customer()

    async def claim(at: datetime, event_id: str, episode: str | None = None) -> Claim:
        return await store.claim_alert(
            customer_id=cid, rule_id="r", at=at, cooldown=timedelta(days=7), event_id=event_id, episode=episode
        )

    async def confirm(key: str) -> None:
        await store.confirm_published(customer_id=cid, rule_id="r", claim_key=key)

    first = await claim(NOW, "e1")
    assert first.outcome is ClaimOutcome.CLAIMED
    # Not confirmed (a crash before publishing): any later evaluation sends it again, same key.
    assert await claim(NOW, "e1") == Claim(ClaimOutcome.RECLAIMED, first.key)
    assert await claim(NOW + timedelta(hours=1), "e9") == Claim(ClaimOutcome.RECLAIMED, first.key)
    await confirm(first.key)
    assert (await claim(NOW, "e1")).outcome is ClaimOutcome.PUBLISHED  # a redelivery after publishing
    assert (await claim(NOW + timedelta(days=3), "e2")).outcome is ClaimOutcome.COOLDOWN
    later = await claim(NOW + timedelta(days=8), "e3", "ep")
    assert later.outcome is ClaimOutcome.CLAIMED and later.key != first.key
    await confirm(later.key)
    assert (await claim(NOW + timedelta(days=30), "e4", "ep")).outcome is ClaimOutcome.EPISODE
    assert (await claim(NOW + timedelta(days=30), "e|5", "other")).outcome is ClaimOutcome.CLAIMED


async def test_memory_per_customer_is_bounded(store: RedisWindowStore, redis: Redis) -> None:
    """A busy customer: a purchase and 3 logins every day for the whole horizon, 10 NPS answers.

    Day buckets, not one entry per event, so memory does not grow with the event count.
    """
    cid = unique_customer()

    def busy_days(first: int, last: int) -> list[EventBase]:
        events: list[EventBase] = []
        for day in range(first, last + 1):
            at = NOW + timedelta(days=day)
            events += [purchase(cid, at), *(interaction(cid, at + timedelta(minutes=m)) for m in range(3))]
            if day % 15 == 0:
                events.append(feedback(cid, at, 8))
        return events

    first_horizon = busy_days(-149, 0)
    await store.apply_batch(first_horizon)
    usage = await redis.memory_usage(keys.customer_state(cid), samples=0)
    print(f"\nbusy customer ({len(first_horizon)} events in 150 days): state hash {usage} bytes")
    assert usage is not None and usage < 16_000
    await store.apply_batch(busy_days(1, 150))  # as many events again, one horizon later
    after = await redis.memory_usage(keys.customer_state(cid), samples=0) or 0
    print(f"after another {len(first_horizon)} events: {after} bytes")
    assert after < usage * 1.15


async def test_segment_comes_from_the_newest_event_that_has_one(store: RedisWindowStore) -> None:
    cid = unique_customer()
    await store.apply(purchase(cid, NOW, segment="smb"))
    await store.apply(purchase(cid, NOW - timedelta(days=3), segment="enterprise"))  # older: ignored
    await store.apply(interaction(cid, NOW + timedelta(hours=1)))  # no segment: keeps the last one
    assert (await store.read(cid)).segment == "smb"
    await store.apply(interaction(cid, NOW + timedelta(hours=2), segment="vip"))
    assert (await store.read(cid)).segment == "vip"


async def test_segment_survives_an_older_event_arriving_after_a_newer_one_without_segment(
    store: RedisWindowStore,
) -> None:
    cid = unique_customer()
    await store.apply(interaction(cid, NOW))  # newest, no segment
    await store.apply(interaction(cid, NOW - timedelta(days=5), segment="vip"))  # older, arrives late
    assert (await store.read(cid)).segment == "vip"


async def test_lifetime_purchase_days_count_distinct_days_and_outlive_the_horizon(store: RedisWindowStore) -> None:
    cid = unique_customer()
    for moment in (NOW - timedelta(days=140), NOW - timedelta(days=140, hours=2), NOW - timedelta(days=3)):
        await store.apply(purchase(cid, moment))
    assert (await store.read(cid)).lifetime_purchase_days == 2  # two purchases on one day count once

    moved_on = (await store.apply(purchase(cid, NOW + timedelta(days=30)))).state  # day -140 leaves the horizon
    assert moved_on.purchases_by_day.keys() == {
        day_number(NOW - timedelta(days=3)),
        day_number(NOW + timedelta(days=30)),
    }
    assert moved_on.lifetime_purchase_days == 3
    assert moved_on.lifetime_purchases == 4


SMALL = dataclasses.replace(POLICY, dedupe_ids=8)


def _purchases(cid: str, count: int, start: datetime = NOW) -> list[EventBase]:
    return [purchase(cid, start + timedelta(minutes=m)) for m in range(count)]


@pytest.mark.parametrize("policy", [POLICY, SMALL], ids=["256 ids", "8 ids"])
async def test_duplicates_within_and_beyond_the_bound_count_once(redis: Redis, policy: WindowPolicy) -> None:
    """Redelivered in order (as after a crash) and in reverse, on Redis and in memory alike: whether
    the id is still kept or was evicted (then it is at or before the floor), nothing counts twice."""
    cid = unique_customer()
    events = _purchases(cid, 20)
    store, memory = RedisWindowStore(redis, policy), MemoryWindows(policy)
    for fold in (store.apply_batch, _async(memory.apply_all)):
        first = await fold(events)
        again = await fold([*events, *reversed(events)])
        assert {u.outcome for u in first} == {UpdateOutcome.OK}
        assert {u.outcome for u in again} == {UpdateOutcome.DUPLICATE}
        assert again[-1].state.lifetime_purchases == 20
    assert await store.read(cid) == memory.read(cid)
    assert (await redis.hget(keys.customer_state(cid), "dd") or b"").decode() == memory.fields(cid)["dd"]
    assert len(memory.fields(cid)["dd"]) == 20 * min(20, policy.dedupe_ids)


async def test_a_new_event_older_than_every_kept_id_is_taken_for_a_redelivery(redis: Redis) -> None:
    """The one case the bound costs (documented in stream/windows/dedupe.py): a genuinely new event
    at or before the floor cannot be told from an evicted one; an event after it counts."""
    cid = unique_customer()
    store, memory = RedisWindowStore(redis, SMALL), MemoryWindows(SMALL)
    # Of 20 purchases a minute apart the last 8 (minutes 12-19) are kept: the floor is minute 11.
    late_new = purchase(cid, NOW + timedelta(minutes=3, seconds=30))
    after_floor = purchase(cid, NOW + timedelta(minutes=11, seconds=30))
    for fold in (store.apply_batch, _async(memory.apply_all)):
        await fold(_purchases(cid, 20))
        updates = await fold([late_new, after_floor])
        assert [u.outcome for u in updates] == [UpdateOutcome.DUPLICATE, UpdateOutcome.OK]
        assert updates[-1].state.lifetime_purchases == 21
    # Accepted, it was the oldest of 9 and evicted at once: it is the floor now.
    floor = int((await redis.hget(keys.customer_state(cid), "df")) or 0)
    assert floor == int(after_floor.occurred_at.timestamp()) == int(memory.fields(cid)["df"])


async def test_dedupe_memory_is_bounded_per_customer(redis: Redis) -> None:
    """MEMORY USAGE of the state hash (state and dedupe together) after 100, 300 and 1,000 events on
    the same days: past the bound it no longer grows; no other key of the customer exists."""
    sizes: dict[tuple[int, int], int] = {}
    for ids in (64, 256):
        policy = dataclasses.replace(POLICY, dedupe_ids=ids)
        store, cid, done = RedisWindowStore(redis, policy), unique_customer(), 0
        for total in (100, 300, 1000):
            batch = [
                interaction(cid, NOW + timedelta(days=n % 10, seconds=n))
                if n % 2
                else purchase(cid, NOW + timedelta(days=n % 10, seconds=n))
                for n in range(done, total)
            ]
            await store.apply_batch(batch)
            done = total
            sizes[ids, total] = await redis.memory_usage(keys.customer_state(cid), samples=0) or 0
        assert [k async for k in redis.scan_iter(match=f"cw:{{{cid}}}:*")] == [keys.customer_state(cid).encode()]
    print(f"\nstate hash bytes (dedupe ids kept, events): {sizes}")
    assert sizes[64, 1000] <= sizes[64, 100] * 1.05
    assert sizes[256, 1000] <= sizes[256, 300] * 1.05
    # From 100 ids to the 256 kept: at most the 156 records more, with the allocator's rounding.
    assert sizes[256, 1000] - sizes[256, 100] <= 2 * 256 * RECORD


async def test_an_event_applied_before_the_upgrade_still_counts_once(redis: Redis) -> None:
    """Migration: a state written by the marker version (no ``dd``, one ``:seen:`` key per event).
    A redelivery across the upgrade is a duplicate while its marker lives; new events start ``dd``."""
    cid = unique_customer()
    store = RedisWindowStore(redis, POLICY)
    old = _purchases(cid, 3)
    await store.apply_batch(old)
    state_key = keys.customer_state(cid)
    await redis.hdel(state_key, "dd", "df")  # as the marker version left it ...
    for event in old:  # ... with its markers (SET NX EX <dedupe ttl>)
        await redis.set(keys.seen_event(cid, event.event_id), "1", nx=True, ex=POLICY.dedupe_ttl)
    new = purchase(cid, NOW + timedelta(hours=1))
    updates = await store.apply_batch([*old, new, *old, new])
    assert [u.outcome for u in updates] == [UpdateOutcome.DUPLICATE] * 3 + [UpdateOutcome.OK] + [
        UpdateOutcome.DUPLICATE
    ] * 4
    assert updates[-1].state.lifetime_purchases == 4
    assert len(await redis.hget(state_key, "dd") or b"") == 20  # only the new event's record
    assert [await redis.ttl(keys.seen_event(cid, e.event_id)) > 0 for e in old] == [True] * 3  # left to expire


def _async(
    fold: Callable[[list[EventBase]], list[WindowUpdate]],
) -> Callable[[list[EventBase]], Awaitable[list[WindowUpdate]]]:
    async def run(events: list[EventBase]) -> list[WindowUpdate]:
        return fold(events)

    return run
