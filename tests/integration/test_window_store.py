"""The Redis window store against a real redis-server: idempotency, event time, bounds, claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from rules.state import day_number
from stream.events import EventBase
from stream.windows import keys
from stream.windows.store import Claim, ClaimOutcome, RedisWindowStore, UpdateOutcome, WindowPolicy
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
    assert 0 < await redis.ttl(seen_key) <= POLICY.dedupe_ttl.total_seconds()


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
