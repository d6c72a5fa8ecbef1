"""The state guard: marker present / absent, history consumed or not -> ok / initialise / lost, and
what the worker does about each (the gate, /readyz, the metrics, one log line), with in-memory fakes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.metrics import Metrics
from stream.settings import Settings
from stream.state_guard import (
    EpochMarker,
    StateGuard,
    Verdict,
    accept_loss,
    decide,
    durability_problems,
    recovery_steps,
)
from stream.windows import keys


class MemoryEpochStore:
    def __init__(self, marker: EpochMarker | None = None, config: Mapping[str, str] | None = None) -> None:
        self.marker = marker
        self.config = config
        self.failing = False

    def _maybe_fail(self) -> None:
        if self.failing:
            raise ConnectionError("redis unreachable")

    async def marker_exists(self) -> bool:
        self._maybe_fail()
        return self.marker is not None

    async def create_marker(self, marker: EpochMarker) -> bool:
        self._maybe_fail()
        if self.marker is not None:
            return False
        self.marker = marker
        return True

    async def read_marker(self) -> EpochMarker | None:
        return self.marker

    async def durability_config(self) -> Mapping[str, str] | None:
        return self.config


class FixedHistory:
    def __init__(self, committed: Sequence[str] = ()) -> None:
        self.offsets = list(committed)
        self.asked = 0

    async def committed(self) -> Sequence[str]:
        self.asked += 1
        return self.offsets


def make_guard(store: MemoryEpochStore, history: FixedHistory) -> tuple[StateGuard, Metrics]:
    metrics = Metrics(CollectorRegistry())
    guard = StateGuard(
        store,
        history,
        metrics,
        app_id="churnwatch",
        recovery=recovery_steps(app_id="churnwatch", topics=Settings().topics.events, interval=5),
        marker_key=keys.epoch_marker("churnwatch"),
    )
    return guard, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def admitted(guard: StateGuard) -> bool:
    """Would the event agent get past the gate now?"""
    try:
        await asyncio.wait_for(guard.admit(), 0.05)
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize(
    ("marker_present", "offsets_committed", "processed_here", "verdict"),
    [
        (True, False, False, Verdict.OK),
        (True, True, False, Verdict.OK),
        (True, True, True, Verdict.OK),
        (False, False, False, Verdict.INITIALISE),  # a first start: nothing to lose
        (False, True, False, Verdict.LOST),  # emptied behind the offsets
        (False, False, True, Verdict.LOST),  # emptied under this worker before its first commit
        (False, True, True, Verdict.LOST),
    ],
)
def test_decide(marker_present: bool, offsets_committed: bool, processed_here: bool, verdict: Verdict) -> None:
    assert (
        decide(marker_present=marker_present, offsets_committed=offsets_committed, processed_here=processed_here)
        is verdict
    )


def test_marker_round_trips_through_json() -> None:
    marker = EpochMarker.new("accepted-loss", datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    assert EpochMarker.from_json(marker.to_json()) == marker
    assert EpochMarker.new("first-start").epoch != EpochMarker.new("first-start").epoch


def test_the_marker_key_is_per_app_and_meets_no_other_key() -> None:
    assert keys.epoch_marker("churnwatch") == "cw:epoch:{churnwatch}"
    assert keys.epoch_marker("a") != keys.epoch_marker("b")
    assert keys.epoch_marker("x}y") != keys.epoch_marker("x")
    others = {keys.customer_state("epoch"), keys.pending_index("churnwatch"), keys.quarantine("churnwatch")}
    assert keys.epoch_marker("churnwatch") not in others


@pytest.mark.parametrize(
    ("config", "complaints"),
    [
        ({"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}, []),
        ({"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}, []),
        ({"appendonly": "no", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}, ["appendonly"]),
        ({"appendonly": "yes", "appendfsync": "no", "maxmemory-policy": "noeviction"}, ["appendfsync"]),
        ({"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "allkeys-lru"}, ["maxmemory-policy"]),
        ({}, []),  # CONFIG refused: nothing known, nothing claimed
    ],
)
def test_durability_problems(config: dict[str, str], complaints: list[str]) -> None:
    problems = durability_problems(config)
    assert [p.split(" ")[0] for p in problems] == complaints


async def test_first_start_writes_the_marker_and_opens_the_gate() -> None:
    store, history = MemoryEpochStore(), FixedHistory()
    guard, metrics = make_guard(store, history)
    assert not await admitted(guard)  # unchecked: the agent waits
    assert guard.readiness() == {"status": "starting", "reason": "the Redis state has not been checked yet"}

    assert await guard.check() is Verdict.OK
    assert store.marker is not None and store.marker.origin == "first-start"
    assert await admitted(guard) and guard.readiness() is None
    assert sample(metrics, "churnwatch_state_lost") == 0


async def test_a_present_marker_costs_one_exists_and_no_kafka_call() -> None:
    store, history = MemoryEpochStore(EpochMarker.new("first-start")), FixedHistory(["t[0]@5"])
    guard, _ = make_guard(store, history)
    for _ in range(3):
        assert await guard.check() is Verdict.OK
    assert history.asked == 0


async def test_marker_missing_behind_committed_offsets_stops_processing(caplog: pytest.LogCaptureFixture) -> None:
    store, history = MemoryEpochStore(), FixedHistory(["churnwatch.purchases[0]@42"])
    guard, metrics = make_guard(store, history)
    with caplog.at_level(logging.ERROR, logger="churnwatch.state_guard"):
        assert await guard.check() is Verdict.LOST
        assert await guard.check() is Verdict.LOST

    assert store.marker is None  # not papered over
    assert not await admitted(guard) and not guard.processing_allowed
    readiness = guard.readiness()
    assert readiness is not None and readiness["status"] == "state lost"
    assert "churnwatch.purchases[0]@42" in readiness["reason"] and "'churnwatch'" in readiness["reason"]
    assert "accept-loss" in readiness["recovery"]
    assert sample(metrics, "churnwatch_state_lost") == 1
    assert sample(metrics, "churnwatch_state_losses_total") == 1  # one loss, however many checks
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "state lost" in message and "AOF" in message and "replay" in message and "accept-loss" in message
    assert history.asked == 1  # Kafka is not asked again while the loss stands


async def test_redis_emptied_under_a_running_worker_is_lost_even_before_a_commit() -> None:
    store, history = MemoryEpochStore(), FixedHistory()  # no offset committed yet
    guard, _ = make_guard(store, history)
    await guard.check()
    await asyncio.wait_for(guard.done_with_batch(), 1)  # an event applied to this epoch's state
    store.marker = None  # FLUSHALL
    assert await guard.check() is Verdict.LOST
    readiness = guard.readiness()
    assert readiness is not None and "this worker applied events" in readiness["reason"]


async def test_a_marker_gone_before_anything_was_consumed_is_written_again() -> None:
    store, history = MemoryEpochStore(), FixedHistory()
    guard, _ = make_guard(store, history)
    await guard.check()
    assert await admitted(guard)  # the agent waiting for its first event has applied nothing
    first = store.marker
    store.marker = None  # an idle worker's Redis restarted empty: nothing to lose
    assert await guard.check() is Verdict.OK
    assert store.marker is not None and first is not None and store.marker.epoch != first.epoch


async def test_accepting_the_loss_resumes_processing(caplog: pytest.LogCaptureFixture) -> None:
    store, history = MemoryEpochStore(), FixedHistory(["churnwatch.feedback[3]@7"])
    guard, metrics = make_guard(store, history)
    await guard.check()
    waiting = asyncio.create_task(guard.admit())  # the agent, held before its next event
    await asyncio.sleep(0.01)
    assert not waiting.done()

    written, marker = await accept_loss(store)
    assert written and marker is not None and marker.origin == "accepted-loss"
    with caplog.at_level(logging.WARNING, logger="churnwatch.state_guard"):
        assert await guard.check() is Verdict.OK
    await asyncio.wait_for(waiting, 1)
    assert guard.readiness() is None and sample(metrics, "churnwatch_state_lost") == 0
    assert any("is back" in r.getMessage() for r in caplog.records)

    again, existing = await accept_loss(store)  # a second run changes nothing
    assert not again and existing == marker


async def test_an_unreachable_redis_keeps_the_last_verdict_and_is_counted() -> None:
    store, history = MemoryEpochStore(), FixedHistory()
    guard, metrics = make_guard(store, history)
    store.failing = True
    assert await guard.check() is None
    assert not await admitted(guard) and guard.readiness() is not None  # never checked: still waiting
    store.failing = False
    assert await guard.check() is Verdict.OK
    store.failing = True
    assert await guard.check() is Verdict.OK and await admitted(guard)  # the data path stalls on its own
    assert sample(metrics, "churnwatch_dependency_errors_total", operation="state_check") == 2


async def test_a_redis_that_is_not_durable_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryEpochStore(config={"appendonly": "no", "maxmemory-policy": "allkeys-lru"})
    guard, _ = make_guard(store, FixedHistory())
    with caplog.at_level(logging.WARNING, logger="churnwatch.state_guard"):
        await guard.check()
        await guard.check()
    warnings = [r.getMessage() for r in caplog.records if "not configured for durable state" in r.getMessage()]
    assert len(warnings) == 1 and "appendonly" in warnings[0] and "allkeys-lru" in warnings[0]


def test_recovery_steps_name_the_group_and_only_the_event_topics() -> None:
    topics = Settings().topics
    steps = recovery_steps(app_id="cw-prod", topics=topics.events, interval=5)
    assert "--group cw-prod" in steps and "AOF" in steps and "churnwatch state accept-loss" in steps
    assert all(f"--topic {t}" in steps for t in topics.events)
    assert topics.alerts not in steps  # replaying alerts would notify support again


def test_the_check_interval_defaults_to_five_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().state_check_interval.total_seconds() == 5
    monkeypatch.setenv("CHURNWATCH_STATE_CHECK_INTERVAL", "1s")
    assert Settings().state_check_interval.total_seconds() == 1


def test_the_compose_files_redis_is_what_production_needs() -> None:
    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    redis = compose["services"]["redis"]
    args = redis["command"][1:]
    config = {flag.removeprefix("--"): value for flag, value in zip(args[::2], args[1::2], strict=True)}
    assert durability_problems(config) == [] and config["appendfsync"] == "everysec"
    volume = next(v for v in redis["volumes"] if v.endswith(":/data"))  # the image's working directory
    assert volume.split(":")[0] in compose["volumes"]  # a named volume: it outlives the container
