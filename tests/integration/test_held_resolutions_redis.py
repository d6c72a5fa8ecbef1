"""Held resolutions on the real Redis (stream.held_resolutions): the flap-damping scenarios of the
unit tests over RedisHeldResolutions, plus what only the store decides: the first hold wins, a
claim is a lease, a release never forgets a newer resolution."""

from __future__ import annotations

import uuid
from datetime import timedelta

from redis.asyncio import Redis

from alerts.dispatch import AlertDispatcher, DeliveryOutcome, InMemoryDeliveryLog
from alerts.flapping import ResolutionReleaser, hold
from alerts.notify import RetryingSender
from stream.held_resolutions import RedisHeldResolutions
from tests.fakes import RecordingNotifier
from tests.unit.test_flapping import ROUTES, START, Clock, firing, resolving


def store(redis: Redis) -> RedisHeldResolutions:
    return RedisHeldResolutions(redis, f"held-{uuid.uuid4().hex[:8]}")


async def test_fire_resolve_fire_is_one_alert_and_a_later_resolution_goes_out_once(redis: Redis) -> None:
    clock, held = Clock(), store(redis)
    support = RecordingNotifier("support")
    dispatcher = AlertDispatcher(
        [RecordingNotifier("default"), support],
        InMemoryDeliveryLog(),
        attempts=1,
        backoff_max=0.01,
        routes=ROUTES,
        clock=clock,
        held=held,
    )
    releaser = ResolutionReleaser(held, {"support": support}, RetryingSender(attempts=1, backoff_max=0.01), clock=clock)
    await dispatcher.dispatch(firing("a"))
    assert (await dispatcher.dispatch(resolving("a"))).outcome("support") is DeliveryOutcome.RESOLUTION_HELD
    assert (await dispatcher.dispatch(firing("b"))).outcome("support") is DeliveryOutcome.FLAPPING
    clock.now = START + timedelta(minutes=30)
    assert await releaser.release_due() == []
    assert support.received == ["alert-a"]

    await dispatcher.dispatch(resolving("b"))
    assert await held.original_of("support", "alert-b") == "alert-a"
    clock.now = START + timedelta(minutes=39)
    assert await releaser.release_due() == []
    clock.now = START + timedelta(minutes=40)
    assert [o.outcome for o in await releaser.release_due()] == [DeliveryOutcome.DELIVERED]
    clock.now = START + timedelta(hours=2)
    assert await releaser.release_due() == []
    assert support.received == ["alert-a", "resolved-b"]


async def test_the_first_hold_wins_a_claim_is_a_lease_and_release_keeps_a_newer_one(redis: Redis) -> None:
    held = store(redis)
    first = hold("support", resolving("a"), timedelta(minutes=10), START, None)
    await held.hold(first)
    await held.hold(hold("support", resolving("a"), timedelta(minutes=10), START + timedelta(minutes=5), None))
    [claimed] = await held.claim_due(START + timedelta(minutes=10), timedelta(minutes=5))
    assert claimed == first
    assert await held.claim_due(START + timedelta(minutes=14), timedelta(minutes=5)) == []  # leased
    [again] = await held.claim_due(START + timedelta(minutes=15), timedelta(minutes=5))  # the lease lapsed
    assert again == first

    assert await held.cancel("support", "cust-7", "purchase-overdue") == resolving("a")
    newer = hold("support", resolving("c"), timedelta(minutes=10), START + timedelta(minutes=20), None)
    await held.hold(newer)
    await held.release(first)  # sent long ago: must not forget the newer one
    [still] = await held.claim_due(START + timedelta(minutes=30), timedelta(minutes=5))
    assert still == newer
    await held.release(newer)
    assert await held.claim_due(START + timedelta(hours=5), timedelta(minutes=5)) == []
    assert await held.cancel("support", "cust-7", "purchase-overdue") is None
