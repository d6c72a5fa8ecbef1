"""What the due scan costs: judging the customers whose silence crossed a threshold, among many tracked.

Sets up, on a real redis-server (its own stack), ``--tracked`` customers spread over ``--partitions``
due-index shards, ``--due`` of them due now and the rest due over the next 60 days, each with the
state of a weekly buyer (one state hash, copied, so the set-up takes seconds). Then, in one run:

- ``due scan``: :meth:`EventProcessor.scan_due` over every partition, as the worker's timer runs it:
  claim the due customers (one range query per shard), read and judge each with the shipped rules,
  write their next due moment. Its cost should follow the customers due, not the customers tracked.
- ``claim only``: the claim script alone, on a fresh copy of the same index.
- ``judge everyone`` (the baseline): what a timer without an index would do, reading every tracked
  customer's state (pipelined, 500 a round trip) and judging each with the same rules.

Prints the figures and their ratio; asserts nothing. ``python -m bench.due_scan --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from bench.console import say
from bench.phases import CountingDeadLetters, CountingPublisher
from rules.evaluation import evaluate
from rules.ruleset import load_rule_set
from stream.decoding import DecodePolicy
from stream.due_index import RedisDueIndex
from stream.events import PurchaseEvent
from stream.localstack import running_stack
from stream.metrics import Metrics
from stream.pending_ledger import RedisPendingLedger
from stream.processor import EventProcessor
from stream.quarantine import Quarantine, RedisQuarantineLedger
from stream.settings import Settings
from stream.windows import keys
from stream.windows.codec import state_from_hash
from stream.windows.memory import MemoryWindows
from stream.windows.store import RedisWindowStore

NOW = datetime.now(UTC).replace(microsecond=0)
APP_ID = "bench-due"
PIPELINE = 500


def template_fields(settings: Settings) -> dict[str, str]:
    """A weekly buyer's state hash (17 purchases, the last 25 days ago), from the worker's own fold."""
    windows = MemoryWindows(settings.window_policy())
    for n in range(17):
        at = NOW - timedelta(days=25 + 7 * n)
        windows.apply(
            PurchaseEvent(
                event_id=f"t-{n}",
                customer_id="template",
                occurred_at=at,
                order_id=f"o-{n}",
                amount="20",
                currency="USD",
            )
        )
    return windows.fields("template")


async def populate(redis: Redis, tracked: int, due: int, partitions: int, fields: dict[str, str]) -> None:
    rng = random.Random(7)
    now_ms = int(NOW.timestamp() * 1000)
    pipe = redis.pipeline(transaction=False)
    for n in range(tracked):
        customer = f"c-{n:07d}"
        moment = now_ms - rng.randint(0, 3_600_000) if n < due else now_ms + rng.randint(60_000, 60 * 86_400_000)
        pipe.zadd(keys.due_index(APP_ID, n % partitions), {customer: moment})
        pipe.hset(keys.customer_state(customer), mapping=fields)
        if len(pipe) >= 2 * PIPELINE:
            await pipe.execute()
    await pipe.execute()


def processor(redis: Redis, settings: Settings, clock_now: datetime) -> tuple[EventProcessor, CountingPublisher]:
    rule_set = load_rule_set(settings.rules_dir)
    metrics = Metrics(CollectorRegistry())
    publisher = CountingPublisher()
    built = EventProcessor(
        stream_kinds=settings.topics.event_kinds,
        store=RedisWindowStore(redis, settings.window_policy()),
        rules=lambda: rule_set,
        publisher=publisher,
        dead_letters=CountingDeadLetters(),
        metrics=metrics,
        decode_policy=DecodePolicy(65536, timedelta(days=1), "USD"),
        pending=RedisPendingLedger(redis, APP_ID),
        quarantine=Quarantine(RedisQuarantineLedger(redis, APP_ID), metrics, max_failures=3),
        due=RedisDueIndex(redis, APP_ID),
        clock=lambda: clock_now,
    )
    return built, publisher


async def judge_everyone(redis: Redis, settings: Settings, tracked: int) -> tuple[float, int]:
    rules = load_rule_set(settings.rules_dir).enabled
    started = time.perf_counter()
    findings = 0
    for first in range(0, tracked, PIPELINE):
        customers = [f"c-{n:07d}" for n in range(first, min(first + PIPELINE, tracked))]
        pipe = redis.pipeline(transaction=False)
        for customer in customers:
            pipe.hgetall(keys.customer_state(customer))
        for customer, fields in zip(customers, await pipe.execute(), strict=True):
            findings += len(evaluate(rules, state_from_hash(customer, fields), NOW))
    return time.perf_counter() - started, findings


async def run(tracked: int, due: int, partitions: int) -> None:
    settings = Settings()
    with running_stack(f"bench-due-{os.getpid()}", purge=True, log=say) as info:
        redis = Redis.from_url(info.redis_url)
        try:
            say(f"populating {tracked:,} tracked customers ({due:,} due) over {partitions} shards")
            started = time.perf_counter()
            await populate(redis, tracked, due, partitions, template_fields(settings))
            say(f"populated in {time.perf_counter() - started:.1f} s; used_memory {await used_mb(redis):.0f} MB")
            shards = [keys.due_index(APP_ID, p) for p in range(partitions)]
            for shard in shards:  # a copy for the claim-only phase
                await redis.copy(shard, f"{shard}:copy")

            scanner, publisher = processor(redis, settings, NOW)
            started = time.perf_counter()
            judged = 0
            while batch := await scanner.scan_due(range(partitions)):
                judged += batch
            scan_seconds = time.perf_counter() - started

            index = RedisDueIndex(redis, APP_ID)
            for shard in shards:
                await redis.rename(f"{shard}:copy", shard)
            started = time.perf_counter()
            claimed = sum([len(await index.claim_due(p, NOW, 1000)) for p in range(partitions)])
            claim_seconds = time.perf_counter() - started

            say("judging every tracked customer (the baseline)")
            everyone_seconds, everyone_findings = await judge_everyone(redis, settings, tracked)
        finally:
            await redis.aclose()

    print(
        f"\ndue scan benchmark: {tracked:,} tracked customers, {due:,} due, {partitions} shards, "
        f"rules {settings.rules_dir}"
    )
    print(
        f"  due scan (claim, read, judge, reschedule): {judged:,} judged in {scan_seconds * 1000:8.1f} ms "
        f"({judged / scan_seconds:,.0f} customers/s), {publisher.published} alerts"
    )
    print(f"  claim only:                                {claimed:,} claimed in {claim_seconds * 1000:8.1f} ms")
    print(
        f"  judge everyone (baseline):                 {tracked:,} judged in {everyone_seconds * 1000:8.1f} ms "
        f"({tracked / everyone_seconds:,.0f} customers/s), {everyone_findings} findings"
    )
    print(
        f"  a scan costs {scan_seconds / everyone_seconds:.4f} x judging everyone "
        f"({everyone_seconds / scan_seconds:,.0f} times cheaper)"
    )


async def used_mb(redis: Redis) -> float:
    return float((await redis.info("memory"))["used_memory"]) / 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.due_scan", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tracked", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--partitions", type=int, default=4)
    options = parser.parse_args(argv)
    asyncio.run(run(options.tracked, options.due, options.partitions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
