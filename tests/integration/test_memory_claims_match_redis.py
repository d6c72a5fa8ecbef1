"""Differential test: the cooldown stage's pure decision (``alerts.cooldown.decide_claim``, which the
in-memory store of replay and ``rules test`` uses) against ``claim.lua`` and ``published.lua`` on a
real redis-server. Random sequences of claims and confirmations (fixed seeds), with redelivered
events, episodes, cooldowns crossed and crashes between claim and confirm, give the same claim, key
and outcome from both."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from alerts.cooldown import Claim, ClaimOutcome
from stream.windows.memory_store import MemoryStore
from stream.windows.store import RedisWindowStore, WindowPolicy
from tests.events_factory import unique_customer

START = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
POLICY = WindowPolicy(
    retention=timedelta(days=150), dedupe_ttl=timedelta(days=7), idle_ttl=timedelta(days=180), feedback_history=10
)


@pytest.mark.parametrize("seed", range(6))
async def test_memory_claims_match_claim_lua(redis: Redis, seed: int) -> None:
    rng = random.Random(seed)
    redis_store, memory_store = RedisWindowStore(redis, POLICY), MemoryStore(POLICY)
    customer = unique_customer("claims")
    seen: set[ClaimOutcome] = set()
    at = START
    events = [f"e{n}" for n in range(6)]
    for _ in range(120):
        at += timedelta(hours=rng.choice((1, 6, 24, 24 * 5, 24 * 9)))
        ask = {
            "customer_id": customer,
            "rule_id": rng.choice(("r1", "r2")),
            "at": at,
            "cooldown": timedelta(days=rng.choice((1, 7))),
            "event_id": rng.choice(events),  # few ids: redeliveries of the same event are frequent
            "episode": rng.choice((None, "a", "b")),
        }
        claims: list[Claim] = [await redis_store.claim_alert(**ask), await memory_store.claim_alert(**ask)]
        assert claims[0] == claims[1], ask
        seen.add(claims[0].outcome)
        if claims[0].outcome.should_send and rng.random() < 0.8:  # otherwise: a crash before the confirm
            for store in (redis_store, memory_store):
                await store.confirm_published(
                    customer_id=customer, rule_id=str(ask["rule_id"]), claim_key=claims[0].key
                )
    assert seen == set(ClaimOutcome)  # every outcome was reached
