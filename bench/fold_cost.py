"""What the window fold (``stream/windows/update.lua``) costs Redis, per event and per call.

On its own redis-server (loopback, a temporary directory, stopped by its pid at the end), the bench
workload (:mod:`bench.workload`, the demo personas' 120-day backfills) is folded twice, as the worker
folds it:

- **backlog**: the whole history in batches of ``--batch`` events (5,000, the worker's default):
  one script call per customer and batch, a few dozen events each;
- **live**: then ``--live-rounds`` rounds of one new event per customer, each customer's alone in
  its call, as live traffic arrives.

For each, Redis's own CPU (``INFO cpu``, user + system) per event and per call, and the same for a
baseline in the same run: ``HGETALL`` of the same customers' states, the least a fold that returns
the state can cost. Asserts nothing; ``--script FILE`` folds with another version of the script
(an older one, to compare). ``python -m bench.fold_cost --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from bench.workload import build_workload, run_topics
from stream.events import AnyEvent, InteractionEvent
from stream.localstack.ports import free_ports
from stream.localstack.processes import StartedProcess, stop_started
from stream.localstack.redis_server import ensure_redis_server, redis_url, start_redis
from stream.windows import keys
from stream.windows.store import RedisWindowStore, WindowPolicy

POLICY = WindowPolicy(timedelta(days=150), timedelta(days=7), timedelta(days=180), 10)


async def _redis_cpu(redis: Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _measured(redis: Redis, work: Callable[[], Awaitable[object]]) -> float:
    before = await _redis_cpu(redis)
    await work()
    return await _redis_cpu(redis) - before


async def run(events: int, batch: int, live_rounds: int, script: Path | None) -> list[str]:
    workload = build_workload(events, None, 7, run_topics("fold-cost"))
    customers = sorted({e.customer_id for e in workload.events})
    with tempfile.TemporaryDirectory(prefix="churnwatch-fold-cost-") as tmp:
        (port,) = free_ports(1)
        pid = start_redis(ensure_redis_server(), port=port, redis_dir=Path(tmp), log_path=Path(tmp) / "redis.log")
        process = StartedProcess.of(pid)
        redis = Redis.from_url(redis_url(port))
        try:
            for _ in range(100):  # until it answers
                try:
                    await redis.ping()
                    break
                except Exception:
                    await asyncio.sleep(0.05)
            store = RedisWindowStore(redis, POLICY)
            if script is not None:
                store._update = redis.register_script(script.read_text())  # the version under comparison
            await store.apply_batch(workload.events[:1])  # the script loaded, outside the figures
            await redis.flushall()

            async def backlog() -> None:
                for at in range(0, len(workload.events), batch):
                    await store.apply_batch(workload.events[at : at + batch])

            async def live() -> None:
                now = datetime.now(UTC)
                for n in range(live_rounds):
                    await store.apply_batch([_page_view(c, n, now) for c in customers])

            async def read_states() -> None:
                pipe = redis.pipeline(transaction=False)
                for customer in customers:
                    pipe.hgetall(keys.customer_state(customer))
                await pipe.execute()

            backlog_cpu = await _measured(redis, backlog)
            calls = sum(
                len({e.customer_id for e in workload.events[at : at + batch]}) for at in range(0, events, batch)
            )
            live_cpu = await _measured(redis, live)
            live_calls = live_rounds * len(customers)
            read_cpu = await _measured(redis, lambda: _repeat(read_states, live_rounds))
        finally:
            await redis.aclose()
            stop_started(process)
    per_read = read_cpu / live_calls * 1e6
    return [
        f"fold cost on redis-server ({script or 'stream/windows/update.lua'}; {events:,} events of "
        f"{len(customers)} customers)",
        f"  backlog, batches of {batch:,}: {backlog_cpu / events * 1e6:.1f} us of Redis CPU per event, "
        f"{backlog_cpu / calls * 1e6:.0f} us per call ({calls:,} calls, {events / calls:.1f} events each)",
        f"  live, one event per call: {live_cpu / live_calls * 1e6:.0f} us per call ({live_calls:,} calls)",
        f"  baseline, HGETALL of the same states: {per_read:.0f} us per customer; live call = "
        f"{live_cpu / live_calls * 1e6 / per_read:.1f}x a read of the state",
    ]


async def _repeat(work: Callable[[], Awaitable[None]], times: int) -> None:
    for _ in range(times):
        await work()


def _page_view(customer_id: str, n: int, at: datetime) -> AnyEvent:
    return InteractionEvent(
        event_id=f"fold-cost-live-{n}-{customer_id}",
        customer_id=customer_id,
        occurred_at=at,
        kind="page_view",
        channel="web",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--live-rounds", type=int, default=10)
    parser.add_argument("--script", type=Path, default=None, help="another update.lua to fold with")
    ns = parser.parse_args()
    for line in asyncio.run(run(ns.events, ns.batch, ns.live_rounds, ns.script)):
        print(line)


if __name__ == "__main__":
    main()
