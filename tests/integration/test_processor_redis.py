"""The event processor on a real Redis, with recording sinks: at-least-once without double counts or alerts."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from rules.ruleset import RuleSet, load_rule_set
from stream.contracts import SourceRecord
from stream.decoding import DecodePolicy
from stream.due_index import RedisDueIndex
from stream.events import EventBase
from stream.metrics import Metrics
from stream.pending_ledger import RedisPendingLedger
from stream.processor import EventProcessor, StartedBatch
from stream.progress import InputProgress
from stream.quarantine import Quarantine, RedisQuarantineLedger
from stream.windows import keys
from stream.windows.codec import state_from_hash
from stream.windows.store import RedisWindowStore, UpdateOutcome, WindowPolicy
from tests.events_factory import feedback, interaction, purchase, unique_customer, weekly_purchases, wire
from tests.fakes import FlakyDeadLetters, RecordingDeadLetters, RecordingPublisher
from tests.rule_files import OVERDUE_RULES

DEFAULT_RULES = Path(__file__).resolve().parents[2] / "rules" / "defaults"
KINDS = {"p": "purchase", "i": "interaction", "f": "feedback"}
TOPIC_OF = {"PurchaseEvent": "p", "InteractionEvent": "i", "FeedbackEvent": "f"}
NOW = datetime.now(UTC).replace(microsecond=0)
APP_ID = "churnwatch-processor-tests"
YEAR_ZERO_MS = -62_200_000_000_000
"""Before year 1: what a first purchase at 0001-01-01T00:00:00+05:00 stored, before the contract refused it."""


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing in the processor may swallow it."""


class Harness:
    def __init__(
        self,
        redis: Redis,
        rules: RuleSet,
        progress: InputProgress | None = None,
        delay: timedelta = timedelta(0),
        app_id: str = APP_ID,
        clock: Callable[[], datetime] | None = None,
        lease: timedelta = timedelta(minutes=1),
    ) -> None:
        self.app_id = app_id
        self.publisher = RecordingPublisher()
        self.dead = RecordingDeadLetters()
        self.metrics = Metrics(CollectorRegistry())
        self.offsets: dict[str, int] = {}
        self.processor = EventProcessor(
            stream_kinds=KINDS,
            store=RedisWindowStore(
                redis, WindowPolicy(timedelta(days=150), timedelta(days=7), timedelta(days=180), 10)
            ),
            rules=lambda: rules,
            publisher=self.publisher,
            dead_letters=self.dead,
            metrics=self.metrics,
            decode_policy=DecodePolicy(max_message_bytes=8192, max_future_skew=timedelta(hours=1), currency="USD"),
            pending=RedisPendingLedger(redis, app_id),
            due=RedisDueIndex(redis, app_id, lease=lease),
            **({"clock": clock} if clock else {}),
            quarantine=Quarantine(RedisQuarantineLedger(redis, app_id), self.metrics, max_failures=3),
            progress=progress,
            evaluation_delay=delay,
        )

    def record(self, event: EventBase) -> SourceRecord:
        topic = TOPIC_OF[type(event).__name__]
        offset = self.offsets[topic] = self.offsets.get(topic, -1) + 1
        return SourceRecord(topic, 0, offset, event.customer_id.encode(), wire(event))

    async def feed(self, events: list[EventBase]) -> list[UpdateOutcome | None]:
        return [await self.processor.process(self.record(e)) for e in events]

    def count(self, topic: str, outcome: str) -> float:
        return (
            self.metrics.registry.get_sample_value(
                "churnwatch_events_consumed_total", {"topic": topic, "outcome": outcome}
            )
            or 0.0
        )


@pytest.fixture
def harness(redis: Redis) -> Harness:
    return Harness(redis, load_rule_set(DEFAULT_RULES))


def fading_customer() -> tuple[str, list[EventBase]]:
    cid = unique_customer("fading")
    return cid, [*weekly_purchases(cid, NOW, 119, 40), interaction(cid, NOW)]


async def test_fading_customer_alerts_once_with_evidence(harness: Harness) -> None:
    cid, events = fading_customer()
    await harness.feed(events)
    (alert,) = harness.publisher.alerts
    assert alert.customer_id == cid and alert.rule_id == "purchase-overdue"
    assert alert.evidence["typical_gap_days"] == 7.0 and alert.evidence["purchase_days"] == 12
    assert "overdue for this customer" in alert.message
    assert alert.customer["lifetime_purchases"] == 12 and alert.customer["lifetime_spend"] == 240.0
    await harness.feed([interaction(cid, NOW + timedelta(minutes=5))])  # the same silence: alerted once
    assert len(harness.publisher.alerts) == 1


async def test_redelivery_counts_nothing_twice_and_sends_no_second_alert(harness: Harness, redis: Redis) -> None:
    cid, events = fading_customer()
    detractor = feedback(cid, NOW, 3)
    await harness.feed([*events, detractor])
    assert sorted(a.rule_id for a in harness.publisher.alerts) == ["nps-detractor", "purchase-overdue"]
    outcomes = await harness.feed([*events, detractor])  # a whole redelivery, as after a rebalance
    assert set(outcomes) == {UpdateOutcome.DUPLICATE}
    assert len(harness.publisher.alerts) == 2
    state = await harness.processor._store.read(cid)  # type: ignore[attr-defined]
    assert state.lifetime_purchases == len(events) - 1
    assert harness.count("p", "duplicate") == len(events) - 1


async def test_crash_between_claim_and_publish_publishes_on_redelivery(redis: Redis) -> None:
    rules = load_rule_set(DEFAULT_RULES)
    _, events = fading_customer()
    crashing = Harness(redis, rules)

    async def crash(alert: object) -> None:
        raise SimulatedCrash

    crashing.publisher.publish = crash  # type: ignore[method-assign]
    await crashing.feed(events[:-1])
    with pytest.raises(SimulatedCrash):
        await crashing.feed(events[-1:])
    restarted = Harness(redis, rules)  # a new worker gets the same message again
    await restarted.feed(events[-1:])
    (alert,) = restarted.publisher.alerts
    assert alert.rule_id == "purchase-overdue"
    await restarted.feed(events[-1:])  # and once confirmed, never again
    assert len(restarted.publisher.alerts) == 1


async def test_publish_outage_is_retried_not_skipped(harness: Harness) -> None:
    _, events = fading_customer()
    harness.publisher.fail_next = 2
    await harness.feed(events)
    assert len(harness.publisher.alerts) == 1
    assert (
        harness.metrics.registry.get_sample_value("churnwatch_dependency_errors_total", {"operation": "publish"}) == 2
    )


async def test_a_broker_outage_while_dead_lettering_stalls_and_loses_nothing(harness: Harness) -> None:
    from aiokafka.errors import KafkaConnectionError

    harness.processor._dead_letters = harness.dead = FlakyDeadLetters(
        errors=[KafkaConnectionError("broker gone"), KafkaConnectionError("broker gone")]
    )
    record = SourceRecord("f", 0, 1, b"k", b"\x00not json")
    assert await harness.processor.process(record) is None
    assert [(r.offset, reason) for r, reason, _ in harness.dead.records] == [(1, "not_json")]
    errors = harness.metrics.registry.get_sample_value(
        "churnwatch_dependency_errors_total", {"operation": "deadletter"}
    )
    assert errors == 2


async def test_garbage_is_dead_lettered_and_good_events_behind_it_flow(harness: Harness) -> None:
    cid = unique_customer()
    good = feedback(cid, NOW, 2)
    records = [
        SourceRecord("f", 0, 1, b"k", b"\x00not json"),
        SourceRecord("f", 0, 2, b"k", b'{"event_id": "x"}'),
        SourceRecord("f", 0, 3, b"k", wire(good).replace(b'"score":2', b'"score":42')),
        harness.record(good),
    ]
    outcomes = [await harness.processor.process(r) for r in records]
    assert outcomes == [None, None, None, UpdateOutcome.OK]
    assert [(r.offset, reason) for r, reason, _ in harness.dead.records] == [
        (1, "not_json"),
        (2, "schema"),
        (3, "schema"),
    ]
    assert harness.dead.records[0][0].value == b"\x00not json"  # original bytes kept
    assert [a.rule_id for a in harness.publisher.alerts] == ["nps-detractor"]
    assert harness.count("f", "invalid") == 3 and harness.count("f", "ok") == 1


async def test_late_event_beyond_horizon_is_counted_and_dropped(harness: Harness) -> None:
    cid = unique_customer()
    await harness.feed([interaction(cid, NOW)])
    assert await harness.feed([interaction(cid, NOW - timedelta(days=200))]) == [UpdateOutcome.LATE]
    assert harness.count("i", "late") == 1


async def test_shadow_rule_is_counted_but_sends_nothing(redis: Redis, tmp_path: Path) -> None:
    (tmp_path / "shadow.yaml").write_text(
        "rules:\n  - id: shadow-detractor\n    kind: detractor\n    mode: shadow\n    message: 'NPS {{ score }}'\n"
    )
    harness = Harness(redis, load_rule_set(tmp_path))
    cid = unique_customer()
    await harness.feed([feedback(cid, NOW, 2), feedback(cid, NOW + timedelta(minutes=1), 3)])
    assert harness.publisher.alerts == []
    fired = harness.metrics.registry.get_sample_value(
        "churnwatch_alerts_fired_total", {"rule": "shadow-detractor", "severity": "warning", "mode": "shadow"}
    )
    assert fired == 1  # as it would have sent: the second answer falls in the cooldown
    suppressed = harness.metrics.registry.get_sample_value(
        "churnwatch_alerts_suppressed_total", {"rule": "shadow-detractor", "reason": "cooldown"}
    )
    assert suppressed == 1


async def test_scope_limits_a_rule_to_matching_customers(redis: Redis, tmp_path: Path) -> None:
    (tmp_path / "vip.yaml").write_text(
        "rules:\n"
        "  - id: vip-detractor\n"
        "    kind: detractor\n"
        "    scope: \"segment == 'vip'\"\n"
        "    message: 'VIP detractor {{ customer_id }}'\n"
    )
    harness = Harness(redis, load_rule_set(tmp_path))
    vip, regular = unique_customer("vip"), unique_customer("regular")
    await harness.feed([feedback(vip, NOW, 2, segment="vip"), feedback(regular, NOW, 2, segment="smb")])
    assert [a.customer_id for a in harness.publisher.alerts] == [vip]


async def test_evaluation_waits_for_a_lagging_input_then_happens_without_another_event(redis: Redis) -> None:
    """Today's detractor answer is read before the customer's purchases (another topic, behind):
    the evaluation waits, and runs once the purchases are read, though no later event comes."""
    cid = unique_customer("deferred")
    purchases = [*weekly_purchases(cid, NOW, 119, 40), purchase(unique_customer("other"), NOW - timedelta(days=50))]
    highwaters = {"p": len(purchases), "i": 0, "f": 1}
    progress = InputProgress(("p", "i", "f"), tolerance=timedelta(minutes=10), highwater=lambda t, _: highwaters[t])
    harness = Harness(redis, load_rule_set(DEFAULT_RULES), progress)
    await harness.feed(purchases[:1])  # the purchases topic is known to be far behind
    await harness.feed([feedback(cid, NOW, 3)])
    assert harness.publisher.alerts == []
    assert harness.metrics.registry.get_sample_value("churnwatch_evaluations_deferred_total", {"waiting_for": "p"}) == 1

    await harness.feed(purchases[1:-1])
    assert harness.publisher.alerts == []  # still behind
    await harness.feed(purchases[-1:])  # another customer's: now caught up, the waiting evaluation runs
    assert sorted(a.rule_id for a in harness.publisher.alerts) == ["nps-detractor", "purchase-overdue"]
    (overdue,) = [a for a in harness.publisher.alerts if a.rule_id == "purchase-overdue"]
    assert overdue.evidence["purchase_days"] == 12  # judged on every purchase, read after the answer


async def test_evaluation_delay_judges_a_burst_once_on_all_of_it(redis: Redis) -> None:
    """Events produced together on different topics are judged together, once."""
    harness = Harness(redis, load_rule_set(DEFAULT_RULES), delay=timedelta(seconds=0.3))
    cid, events = fading_customer()
    await harness.feed([*events, feedback(cid, NOW, 3)])
    await harness.processor.sweep_deferred()
    assert harness.publisher.alerts == []  # not yet: the delay has not passed
    await asyncio.sleep(0.35)
    await harness.processor.sweep_deferred()
    assert sorted(a.rule_id for a in harness.publisher.alerts) == ["nps-detractor", "purchase-overdue"]
    evaluations = harness.metrics.registry.get_sample_value(
        "churnwatch_rule_evaluations_total", {"rule": "purchase-overdue"}
    )
    assert evaluations == 1  # 14 events, one evaluation


async def test_evaluations_left_waiting_by_a_crashed_worker_run_on_the_next(redis: Redis) -> None:
    cid = unique_customer("orphan")
    purchases = weekly_purchases(cid, NOW, 119, 40)
    lagging = InputProgress(("p", "i", "f"), tolerance=timedelta(minutes=10), highwater=lambda t, _: 10_000)
    crashed = Harness(redis, load_rule_set(DEFAULT_RULES), lagging)
    await crashed.feed([*purchases, feedback(cid, NOW, 3)])  # every evaluation waits for 'the rest'
    assert crashed.publisher.alerts == []
    # The worker dies here: its in-memory queue is gone, the events behind it are committed.

    caught_up = InputProgress(("p", "i", "f"), tolerance=timedelta(minutes=10), highwater=lambda t, _: 0)
    successor = Harness(redis, load_rule_set(DEFAULT_RULES), caught_up)
    await successor.processor.sweep_deferred()
    mine = sorted(a.rule_id for a in successor.publisher.alerts if a.customer_id == cid)
    assert mine == ["nps-detractor", "purchase-overdue"]
    await successor.processor.sweep_deferred()  # done: nothing is left waiting for it
    assert sorted(a.rule_id for a in successor.publisher.alerts if a.customer_id == cid) == mine


async def poison(redis: Redis, customer_id: str) -> None:
    """State that cannot be decoded, as the year-0 purchase left it before the contract refused such times."""
    await redis.hset(keys.customer_state(customer_id), "fp", YEAR_ZERO_MS)


def errors(harness: Harness, stage: str) -> float:
    return harness.metrics.registry.get_sample_value("churnwatch_evaluation_errors_total", {"stage": stage}) or 0.0


async def test_a_customer_whose_waiting_evaluation_keeps_failing_is_quarantined_and_others_go_on(redis: Redis) -> None:
    harness = Harness(redis, load_rule_set(DEFAULT_RULES), delay=timedelta(seconds=0.05), app_id=unique_customer("app"))
    bad = unique_customer("poisoned")
    await harness.feed([purchase(bad, NOW - timedelta(days=3))])
    await poison(redis, bad)
    good, events = fading_customer()
    await harness.feed([*events, feedback(good, NOW, 3)])

    for _ in range(4):  # the timer's sweeps: none may raise
        await asyncio.sleep(0.06)
        await harness.processor.sweep_deferred()

    assert sorted(a.rule_id for a in harness.publisher.alerts) == ["nps-detractor", "purchase-overdue"]
    assert errors(harness, "deferred") == 3
    ledger = RedisQuarantineLedger(redis, harness.app_id)
    [entry] = await ledger.entries()
    assert (entry.customer_id, entry.stage, entry.failures) == (bad, "deferred", 3)
    assert "year" in entry.error
    assert harness.metrics.registry.get_sample_value("churnwatch_quarantined_customers") == 1
    assert await RedisPendingLedger(redis, harness.app_id).load_pending(100) == []  # given up, not retried for ever

    applied = harness.count("p", "ok")
    await harness.feed([purchase(bad, NOW - timedelta(days=1))])  # still applied while held, not judged
    await asyncio.sleep(0.06)
    await harness.processor.sweep_deferred()
    assert harness.count("p", "ok") == applied + 1
    assert errors(harness, "deferred") == 3


async def test_without_a_delay_a_failing_evaluation_does_not_dead_letter_the_event_that_was_applied(
    redis: Redis,
) -> None:
    harness = Harness(redis, load_rule_set(DEFAULT_RULES), app_id=unique_customer("app"))
    bad = unique_customer("poisoned")
    await harness.feed([purchase(bad, NOW - timedelta(days=3))])
    await poison(redis, bad)

    outcomes = await harness.feed([purchase(bad, NOW - timedelta(days=2)), feedback(bad, NOW, 2)])
    good, events = fading_customer()
    await harness.feed([*events, feedback(good, NOW, 3)])

    assert outcomes == [UpdateOutcome.OK, UpdateOutcome.OK]
    assert harness.dead.records == []
    assert errors(harness, "event") == 2
    assert {a.customer_id for a in harness.publisher.alerts} == {good}


async def test_a_batch_claims_in_one_round_trip_and_an_unreadable_claim_fails_only_its_customer(
    harness: Harness, redis: Redis
) -> None:
    """Every finding of a batch is claimed in one call and confirmed in one; a ledger field claim.lua
    cannot read fails that customer's alert alone (counted, their events applied), and the other
    customers are alerted, once."""
    customers = [fading_customer() for _ in range(4)]
    bad = customers[0][0]
    await redis.hset(keys.customer_state(bad), "a:purchase-overdue", "not a claim")
    store = harness.processor._store  # type: ignore[attr-defined]
    calls: list[str] = []
    claim_alerts, confirm_many = store.claim_alerts, store.confirm_published_many

    async def counted_claims(requests: object) -> object:
        calls.append("claim")
        return await claim_alerts(requests)

    async def counted_confirms(claims: object) -> None:
        calls.append("confirm")
        await confirm_many(claims)

    store.claim_alerts, store.confirm_published_many = counted_claims, counted_confirms
    records = [harness.record(e) for _, events in customers for e in events]
    outcomes = await harness.processor.process_batch(records)

    assert set(outcomes) == {UpdateOutcome.OK} and harness.dead.records == []
    assert calls == ["claim", "confirm"]
    assert sorted(a.customer_id for a in harness.publisher.alerts) == sorted(cid for cid, _ in customers[1:])
    assert errors(harness, "event") == 1
    await harness.processor.process_batch(
        [harness.record(interaction(cid, NOW + timedelta(minutes=1))) for cid, _ in customers]
    )
    assert len(harness.publisher.alerts) == 3  # confirmed: not sent again


async def test_waiting_evaluations_of_another_app_id_are_not_this_workers(redis: Redis) -> None:
    lagging = InputProgress(("p", "i", "f"), tolerance=timedelta(minutes=10), highwater=lambda t, _: 10_000)
    cid = unique_customer("other-app")
    other = Harness(redis, load_rule_set(DEFAULT_RULES), lagging, app_id=unique_customer("app-a"))
    await other.feed([purchase(unique_customer("early"), NOW - timedelta(days=50))])  # purchases far behind
    await other.feed([feedback(cid, NOW, 3)])
    assert len(await RedisPendingLedger(redis, other.app_id).load_pending(100)) == 1

    caught_up = InputProgress(("p", "i", "f"), tolerance=timedelta(minutes=10), highwater=lambda t, _: 0)
    mine = Harness(redis, load_rule_set(DEFAULT_RULES), caught_up, app_id=unique_customer("app-b"))
    await mine.processor.sweep_deferred()
    assert mine.publisher.alerts == []
    assert len(await RedisPendingLedger(redis, other.app_id).load_pending(100)) == 1


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def overdue_rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "overdue.yaml").write_text(OVERDUE_RULES)
    return load_rule_set(tmp_path)


def due_judged(harness: Harness) -> float:
    return harness.metrics.registry.get_sample_value("churnwatch_due_judged_total") or 0.0


async def test_a_weekly_buyer_who_stops_is_judged_on_time_once_and_a_yearly_buyer_is_not(
    redis: Redis, tmp_path: Path
) -> None:
    """No event arrives after the last purchase: only the due scan can notice the silence."""
    clock = Clock(NOW)
    harness = Harness(redis, overdue_rules(tmp_path), app_id=unique_customer("app"), clock=clock)
    weekly_buyer, yearly_buyer = unique_customer("weekly"), unique_customer("yearly")
    await harness.feed(weekly_purchases(weekly_buyer, NOW, 119, 0))  # every 7 days, the last one now
    await harness.feed([purchase(yearly_buyer, NOW - timedelta(days=365 * n)) for n in range(3, -1, -1)])
    assert harness.publisher.alerts == []

    clock.now = NOW + timedelta(days=20, hours=23)  # under 3 gaps: not due yet
    assert await harness.processor.scan_due([0]) == 0
    clock.now = NOW + timedelta(days=21, minutes=1)
    assert await harness.processor.scan_due([0]) == 1  # the weekly buyer, and only them
    (alert,) = harness.publisher.alerts
    assert (alert.customer_id, alert.rule_id) == (weekly_buyer, "purchase-overdue")
    assert alert.evidence["typical_gap_days"] == 7.0
    assert alert.trigger_topic == "churnwatch.due"

    clock.now = NOW + timedelta(days=60)  # still silent: the same silence is not alerted again
    await harness.processor.scan_due([0])
    assert len(harness.publisher.alerts) == 1

    clock.now = NOW + timedelta(days=3 * 365 + 2)  # the yearly buyer, three gaps later
    await harness.processor.scan_due([0])
    assert [a.customer_id for a in harness.publisher.alerts] == [weekly_buyer, yearly_buyer]


async def test_two_workers_scanning_one_partition_judge_each_due_moment_once(redis: Redis, tmp_path: Path) -> None:
    clock = Clock(NOW)
    app_id = unique_customer("app")
    first = Harness(redis, overdue_rules(tmp_path), app_id=app_id, clock=clock)
    second = Harness(redis, overdue_rules(tmp_path), app_id=app_id, clock=clock)
    buyers = [unique_customer("weekly") for _ in range(20)]
    for buyer in buyers:
        await first.feed(weekly_purchases(buyer, NOW, 119, 0))

    clock.now = NOW + timedelta(days=22)
    judged = await asyncio.gather(first.processor.scan_due([0]), second.processor.scan_due([0]))

    assert sum(judged) == len(buyers)
    alerted = [a.customer_id for a in [*first.publisher.alerts, *second.publisher.alerts]]
    assert sorted(alerted) == sorted(buyers)


async def test_a_worker_killed_after_claiming_leaves_the_customer_to_its_successor(
    redis: Redis, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    app_id = unique_customer("app")
    lease = timedelta(seconds=0.3)
    successor = Harness(redis, overdue_rules(tmp_path), app_id=app_id, clock=clock, lease=lease)
    buyer = unique_customer("weekly")
    await successor.feed(weekly_purchases(buyer, NOW, 119, 0))
    clock.now = NOW + timedelta(days=22)

    dead = RedisDueIndex(redis, app_id, lease=lease)
    assert await dead.claim_due(0, clock.now, 10) == [buyer]  # then it dies before judging

    assert await successor.processor.scan_due([0]) == 0  # leased
    clock.now += timedelta(seconds=0.5)  # the lease ran out
    assert await successor.processor.scan_due([0]) == 1
    assert [a.customer_id for a in successor.publisher.alerts] == [buyer]


async def test_a_silent_customer_who_comes_back_resolves_their_absence_alert_once(redis: Redis, tmp_path: Path) -> None:
    clock = Clock(NOW)
    harness = Harness(redis, overdue_rules(tmp_path), app_id=unique_customer("app"), clock=clock)
    buyer = unique_customer("weekly")
    await harness.feed(weekly_purchases(buyer, NOW, 119, 0))
    clock.now = NOW + timedelta(days=22)
    await harness.processor.scan_due([0])
    (alert,) = harness.publisher.alerts

    back = purchase(buyer, NOW + timedelta(days=23))
    clock.now = back.occurred_at
    await harness.feed([back])
    await harness.feed([back])  # redelivered: nothing more to resolve
    await harness.feed([purchase(buyer, NOW + timedelta(days=24))])  # already resolved

    firing, resolution = harness.publisher.alerts
    assert firing == alert
    assert resolution.status == "resolved" and resolution.resolves == alert.alert_id
    assert resolution.rule_id == "purchase-overdue" and resolution.customer_id == buyer
    assert resolution.trigger_event_id == back.event_id
    assert resolution.alert_id != alert.alert_id
    assert "came back on" in resolution.message
    resolved = harness.metrics.registry.get_sample_value(
        "churnwatch_alerts_resolved_total", {"rule": "purchase-overdue"}
    )
    assert resolved == 1


async def test_a_resolution_whose_publication_was_never_confirmed_is_published_again_with_its_id(
    redis: Redis, tmp_path: Path
) -> None:
    clock = Clock(NOW)
    harness = Harness(redis, overdue_rules(tmp_path), app_id=unique_customer("app"), clock=clock)
    buyer = unique_customer("weekly")
    await harness.feed(weekly_purchases(buyer, NOW, 119, 0))
    clock.now = NOW + timedelta(days=22)
    await harness.processor.scan_due([0])

    store = RedisWindowStore(redis, WindowPolicy(timedelta(days=150), timedelta(days=7), timedelta(days=180), 10))
    back = purchase(buyer, NOW + timedelta(days=23))
    pending = await store.resolve_open_alerts(buyer, back.occurred_at, ["purchase-overdue"])
    assert len(pending) == 1  # a worker took it, then died before publishing
    clock.now = back.occurred_at
    await harness.feed([back])

    [resolution] = [a for a in harness.publisher.alerts if a.status == "resolved"]
    assert resolution.resolves == harness.publisher.alerts[0].alert_id


async def test_a_batch_across_partitions_gives_each_record_and_customer_what_one_event_at_a_time_gives(
    redis: Redis,
) -> None:
    """Batches that span partitions, two in flight (one folded while the other is judged): every
    record gets the outcome, and every customer the state, that one event at a time gives them, with
    redeliveries and late events mixed in."""
    rules = load_rule_set(DEFAULT_RULES)
    rng = random.Random(11)

    def history(cid: str) -> list[EventBase]:
        days = sorted(rng.sample(range(1, 90), 12), reverse=True)
        events: list[EventBase] = []
        for day in days:
            at = NOW - timedelta(days=day, minutes=rng.randrange(600))
            maker = rng.choice((purchase, interaction, interaction, lambda c, t: feedback(c, t, rng.randrange(11))))
            events.append(maker(cid, at))
        events.append(events[3])  # redelivered
        events.append(purchase(cid, NOW - timedelta(days=200)))  # late: before the horizon
        return events

    def as_customer(event: EventBase, cid: str) -> EventBase:
        return event.model_copy(update={"customer_id": cid})

    base = [unique_customer("part") for _ in range(12)]
    histories = {cid: history(cid) for cid in base}
    one_at_a_time, batched = (
        Harness(redis, rules, app_id=unique_customer("one")),
        Harness(redis, rules, app_id=unique_customer("many")),
    )

    def record(harness: Harness, event: EventBase, partition: int) -> SourceRecord:
        plain = harness.record(event)
        return SourceRecord(plain.topic, partition, plain.offset, plain.key, plain.value)

    expected: dict[tuple[int, int], UpdateOutcome | None] = {}
    for n, cid in enumerate(base):
        for k, event in enumerate(histories[cid]):
            expected[n, k] = await one_at_a_time.processor.process(
                record(one_at_a_time, as_customer(event, f"{cid}-1"), n % 4)
            )

    # The same histories, interleaved across four partitions, each customer's events in order.
    queues = {n: list(enumerate(histories[cid])) for n, cid in enumerate(base)}
    order: list[tuple[int, int, EventBase]] = []
    while queues:
        n = rng.choice(sorted(queues))
        k, event = queues[n].pop(0)
        order.append((n, k, event))
        if not queues[n]:
            del queues[n]
    records = [record(batched, as_customer(event, f"{base[n]}-2"), n % 4) for n, _, event in order]
    got: dict[tuple[int, int], UpdateOutcome | None] = {}
    # Batches of 40 (each spans several partitions), two in flight as in the worker: the next one's
    # fold is sent before the previous one is judged.
    chunks = [range(start, min(start + 40, len(records))) for start in range(0, len(records), 40)]
    ahead: tuple[range, StartedBatch] | None = None
    for chunk in [*chunks, None]:
        started = (
            None
            if chunk is None
            else batched.processor.start_batch([records[i] for i in chunk], after=ahead and ahead[1])
        )
        if ahead is not None:
            for i, outcome in zip(ahead[0], await batched.processor.finish_batch(ahead[1]), strict=True):
                got[order[i][0], order[i][1]] = outcome
        ahead = None if chunk is None or started is None else (chunk, started)

    assert got == expected
    assert {UpdateOutcome.DUPLICATE, UpdateOutcome.LATE} <= set(got.values())  # both kinds were exercised
    for cid in base:
        single = state_from_hash(f"{cid}-1", await redis.hgetall(keys.customer_state(f"{cid}-1")))
        many = state_from_hash(f"{cid}-2", await redis.hgetall(keys.customer_state(f"{cid}-2")))
        assert dataclasses.replace(many, customer_id=single.customer_id) == single
