"""The alert groups on the real Redis (stream.alert_groups): the dispatcher and flusher of the unit
tests over RedisAlertGroups: a storm goes out within the limit, ranked, counted once, none lost or
sent twice; a crash after the send re-sends the same digest; one flusher per group across workers;
an unreadable waiting alert is kept, not dropped; ``churnwatch alerts list`` reads a sent digest."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from alerts.digests import DigestFlusher
from alerts.dispatch import AlertDispatcher, InMemoryDeliveryLog
from alerts.notify import RetryingSender
from stream.alert_groups import RedisAlertGroups, key
from stream.cli import main
from stream.localstack import StackInfo
from tests.unit.test_digests import ROUTES, START, STORM, Clock, DigestRecorder, alert, in_digests


class CrashingGroups(RedisAlertGroups):
    crash_on_finish = False

    async def finish_digest(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        if self.crash_on_finish:
            raise RuntimeError("worker killed after the send")
        await super().finish_digest(*args, **kwargs)  # type: ignore[arg-type]


def rig(
    redis: Redis, app: str
) -> tuple[Clock, CrashingGroups, AlertDispatcher, DigestFlusher, DigestRecorder, Counter[str]]:
    clock = Clock()
    groups = CrashingGroups(redis, app)
    sinks = {name: DigestRecorder(name) for name in ("default", "storm", "capped")}
    outcomes: Counter[str] = Counter()
    dispatcher = AlertDispatcher(
        list(sinks.values()),
        InMemoryDeliveryLog(),
        attempts=1,
        backoff_max=0.01,
        routes=ROUTES,
        clock=clock,
        groups=groups,
        on_outcome=lambda sink, outcome, _: outcomes.update([f"{sink}:{outcome}"]),
    )
    flusher = DigestFlusher(
        groups,
        sinks,
        RetryingSender(attempts=1, backoff_max=0.01),
        clock=clock,
        on_outcome=lambda sink, outcome, _: outcomes.update([f"{sink}:{outcome}"]),
    )
    return clock, groups, dispatcher, flusher, sinks["storm"], outcomes


def app_id() -> str:
    return f"groups-{uuid.uuid4().hex[:8]}"


async def test_a_storm_goes_out_within_the_limit_ranked_counted_once_none_lost_or_twice(redis: Redis) -> None:
    clock, _, dispatcher, flusher, storm, outcomes = rig(redis, app_id())
    for n in range(1, 121):
        await dispatcher.dispatch(alert(n))
    assert outcomes["storm:grouped"] == 120
    for minutes in (0.6, 5, 30, 62, 70, 124):
        clock.now = START + timedelta(minutes=minutes)
        await flusher.flush_due()
    sizes = [(len(d.alerts), d.held_back) for d in storm.digests]
    assert sizes == [(50, 70), (50, 20), (20, 0)]
    assert in_digests(storm) == [f"alert-{n:04d}" for n in range(120, 0, -1)]
    assert outcomes["storm:rate_limited"] == 70


async def test_a_crash_after_the_send_resends_the_same_digest(redis: Redis) -> None:
    clock, groups, dispatcher, flusher, storm, _ = rig(redis, app_id())
    for n in (1, 2, 3):
        await dispatcher.dispatch(alert(n))
    clock.advance(seconds=31)
    groups.crash_on_finish = True
    await flusher.flush_due()
    groups.crash_on_finish = False
    await dispatcher.dispatch(alert(4))
    await redis.delete(key(groups._app, "lock", STORM))  # the killed worker's lock lapsed
    await flusher.flush_due()
    clock.advance(minutes=5)
    await flusher.flush_due()
    first, again, later = storm.digests
    assert first == again and [a.alert_id for a in later.alerts] == ["alert-0004"]


async def test_one_flusher_per_group_across_workers(redis: Redis) -> None:
    app = app_id()
    one, two = RedisAlertGroups(redis, app), RedisAlertGroups(redis, app)
    assert await one.lock("g", timedelta(seconds=30))
    assert not await two.lock("g", timedelta(seconds=30))
    await two.unlock("g")  # not its lock: it stays
    assert not await two.lock("g", timedelta(seconds=30))
    await one.unlock("g")
    assert await two.lock("g", timedelta(seconds=30))


async def test_an_unreadable_waiting_alert_is_kept_and_the_others_go_out(redis: Redis) -> None:
    app = app_id()
    clock, _, dispatcher, flusher, storm, _ = rig(redis, app)
    await dispatcher.dispatch(alert(1))
    await redis.hset(key(app, "pending", STORM), "broken", b"{not json")
    clock.advance(seconds=31)
    await flusher.flush_due()
    assert in_digests(storm) == ["alert-0001"]
    assert await redis.hget(key(app, "pending", STORM), "broken") == b"{not json"


def test_alerts_list_prints_every_alert_of_a_digest(local_stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_id()

    async def send() -> str:
        client = Redis.from_url(local_stack.redis_url)
        try:
            clock, _, dispatcher, flusher, storm, _ = rig(client, app)
            for n in range(1, 13):
                await dispatcher.dispatch(alert(n))
            clock.advance(seconds=31)
            await flusher.flush_due()
            return storm.digests[0].digest_id
        finally:
            await client.aclose()

    digest_id = asyncio.run(send())
    monkeypatch.setenv("CHURNWATCH_REDIS_URL", local_stack.redis_url)
    monkeypatch.setenv("CHURNWATCH_APP_ID", app)
    result = CliRunner().invoke(main, ["alerts", "list", "--digest", digest_id])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"digest {digest_id} · storm (route.routes[1]) · sent ")
    assert [line.split()[1] for line in lines[2:]] == [f"cust-{n}" for n in range(12, 0, -1)]
    missing = CliRunner().invoke(main, ["alerts", "list", "--digest", "nope"])
    assert missing.exit_code == 1 and "no digest nope" in missing.output
    both = CliRunner().invoke(main, ["alerts", "list", "--digest", digest_id, "--group", STORM])
    assert both.exit_code == 2 and "exactly one of --digest and --group" in both.output


def test_alerts_list_prints_what_waits_in_a_group(local_stack: StackInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_id()

    async def hold_back() -> None:
        client = Redis.from_url(local_stack.redis_url)
        try:
            _, _, dispatcher, _, _, _ = rig(client, app)
            for n in (3, 9, 5):
                await dispatcher.dispatch(alert(n))  # group_wait not over: they wait
        finally:
            await client.aclose()

    asyncio.run(hold_back())
    monkeypatch.setenv("CHURNWATCH_REDIS_URL", local_stack.redis_url)
    monkeypatch.setenv("CHURNWATCH_APP_ID", app)
    result = CliRunner().invoke(main, ["alerts", "list", "--group", STORM, "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["alert_id"] for line in result.output.splitlines()] == [
        "alert-0009",
        "alert-0005",
        "alert-0003",
    ]
