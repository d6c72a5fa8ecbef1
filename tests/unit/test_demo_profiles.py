"""The demo traffic: valid events, deterministic, and shaped so the default rules fire where they should."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from rules.base import Mode
from rules.evaluation import evaluate, next_due
from rules.ruleset import load_rule_set
from rules.state import CustomerState, DayWindow, day_number
from rules.windows import count_in_last
from stream import demo
from stream.demo_profiles import (
    CustomerProfile,
    Persona,
    backfill_events,
    live_events,
    make_profiles,
)
from stream.events import EVENT_MODELS, AnyEvent, FeedbackEvent, InteractionEvent, PurchaseEvent
from stream.settings import Topics
from stream.windows.memory import MemoryWindows
from stream.windows.store import WindowPolicy

NOW = datetime(2025, 3, 14, 15, 30, 12, 345678, tzinfo=UTC)
SEEDS = (1, 7, 42, 2024)
RULES = load_rule_set(Path(__file__).resolve().parents[2] / "rules" / "defaults").rules
REQUIRED = {
    Persona.HEALTHY: set(),
    Persona.NEW: set(),
    Persona.OCCASIONAL: set(),
    Persona.FADING: set(),
    Persona.DETRACTOR: {"nps-detractor"},
}
"""Rules that must fire for each persona (at the end of its history). purchase-frequency-drop, which
the fading persona is made for, ships disabled (below chance on real baskets): see FREQUENCY_DROP."""
FREQUENCY_DROP = next(r for r in RULES if r.id == "purchase-frequency-drop").model_copy(update={"enabled": True})
"""The shipped frequency rule switched on: it must fire for every fading customer, as the demo says."""
STOPPED_REQUIRED = {"purchase-overdue"}
"""And for a fading customer with no purchase in the last 30 days (about half of them): their weekly
rhythm makes a silence of 35-45 days overdue (after 4 times their long gap, at least 30 days)."""
ALLOWED = {
    Persona.HEALTHY: set(),
    Persona.NEW: set(),
    Persona.OCCASIONAL: set(),
    Persona.FADING: {"purchase-overdue", "interaction-drop"},
    Persona.DETRACTOR: {"nps-detractor", "support-spike"},
}
"""Rules that may fire too: a fading customer also logs in less; a detractor often files tickets.
Quiet personas must never fire anything (false alarms). No persona is silent for the 45 days of
purchase-inactivity. The rules shipped disabled (purchase-frequency-drop, spend-drop, health-score)
never fire."""


def assert_verdicts(
    seen: set[str], persona: Persona, who: object, *, complete: bool = True, stopped: bool = False
) -> None:
    assert seen <= ALLOWED[persona], (who, seen - ALLOWED[persona])
    if complete:
        required = REQUIRED[persona] | (STOPPED_REQUIRED if stopped else set())
        assert required <= seen, (who, required - seen)


def generate(seed: int, customers: int = 40) -> tuple[list[CustomerProfile], list[AnyEvent]]:
    rng = random.Random(seed)
    profiles = make_profiles(customers, rng)
    return profiles, backfill_events(profiles, NOW, 120, rng)


@pytest.fixture(scope="module", params=SEEDS)
def traffic(request: pytest.FixtureRequest) -> tuple[list[CustomerProfile], dict[str, list[AnyEvent]]]:
    profiles, events = generate(request.param)
    by_customer: dict[str, list[AnyEvent]] = defaultdict(list)
    for event in events:
        by_customer[event.customer_id].append(event)
    return profiles, by_customer


SCAN = timedelta(seconds=5)
"""The worker's default due-scan interval: a due customer is judged within it."""
POLICY = WindowPolicy(
    retention=timedelta(days=150), dedupe_ttl=timedelta(days=7), idle_ttl=timedelta(days=180), feedback_history=10
)


def windows() -> MemoryWindows:
    """The worker's window semantics (update.lua), in memory."""
    return MemoryWindows(POLICY)


def build_state(customer_id: str, events: Iterable[AnyEvent]) -> CustomerState:
    store = windows()
    store.apply_all(events)
    return store.read(customer_id)


def fired(state: CustomerState, now: datetime) -> set[str]:
    return {f.rule_id for f in evaluate(RULES, state, now)}


def alarms(state: CustomerState, now: datetime) -> set[str]:
    """What a person would be told: the active rules' findings (an enabled shadow rule is judged
    and tells nobody)."""
    return {f.rule_id for f in evaluate(RULES, state, now) if f.mode is Mode.ACTIVE}


def purchase_days(events: Iterable[AnyEvent]) -> list[int]:
    return [day_number(e.occurred_at) for e in events if isinstance(e, PurchaseEvent)]


# --- the events themselves -------------------------------------------------------------------------------


def test_every_event_round_trips_through_json(traffic):
    profiles, by_customer = traffic
    kinds = {"purchase": PurchaseEvent, "interaction": InteractionEvent, "feedback": FeedbackEvent}
    ids = set()
    for event in itertools.chain.from_iterable(by_customer.values()):
        name = next(n for n, cls in kinds.items() if isinstance(event, cls))
        assert EVENT_MODELS[name].model_validate_json(event.model_dump_json()) == event
        assert EVENT_MODELS[name].model_validate(json.loads(event.model_dump_json())) == event
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", event.event_id)
        assert re.fullmatch(r"cust-\d{4}", event.customer_id)
        ids.add(event.event_id)
        if isinstance(event, PurchaseEvent):
            assert event.currency == "USD"
            assert event.amount == event.amount.quantize(Decimal("0.01")) and event.amount >= 1
            assert event.order_id.startswith("ord-") and event.item_count >= 1
    assert len(ids) == sum(len(v) for v in by_customer.values()), "event ids are unique"
    assert set(by_customer) == {p.customer_id for p in profiles}


def test_events_are_time_ordered_per_customer_and_in_the_past(traffic):
    _, by_customer = traffic
    for events in by_customer.values():
        times = [e.occurred_at for e in events]
        assert times == sorted(times)
        assert times[-1] < NOW
        assert times[0] >= NOW - timedelta(days=121)


def test_backfill_is_in_global_time_order():
    _, events = generate(3)
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)


def test_same_seed_same_traffic_and_other_seed_other_traffic():
    def dump(seed: int) -> list[str]:
        rng = random.Random(seed)
        profiles = make_profiles(12, rng)
        events = backfill_events(profiles, NOW, 120, rng)
        live = itertools.islice(live_events(profiles, NOW, rng), 50)
        return [e.model_dump_json() for e in [*events, *live]]

    assert dump(5) == dump(5)
    assert dump(5) != dump(6)


def test_persona_mix():
    counts = {p: 0 for p in Persona}
    for profile in make_profiles(40, random.Random(1)):
        counts[profile.persona] += 1
    assert counts == {
        Persona.HEALTHY: 24,
        Persona.FADING: 6,
        Persona.DETRACTOR: 6,
        Persona.NEW: 2,
        Persona.OCCASIONAL: 2,
    }
    small = [p.persona for p in make_profiles(5, random.Random(1))]
    assert len(small) == 5 and Persona.FADING in small and Persona.DETRACTOR in small
    assert [p.customer_id for p in make_profiles(3, random.Random(1))] == ["cust-0001", "cust-0002", "cust-0003"]


def test_bad_arguments_are_rejected():
    profiles = make_profiles(2, random.Random(0))
    with pytest.raises(ValueError, match="days"):
        backfill_events(profiles, NOW, 30, random.Random(0))
    with pytest.raises(ValueError, match="timezone"):
        backfill_events(profiles, NOW.replace(tzinfo=None), 120, random.Random(0))
    with pytest.raises(ValueError):
        make_profiles(0, random.Random(0))


# --- the personas' shapes --------------------------------------------------------------------------------


def test_fading_customers_have_a_baseline_and_nearly_stopped(traffic):
    profiles, by_customer = traffic
    today = day_number(NOW)
    recent, baseline = DayWindow.ending(today, 30), DayWindow.ending(today, 90, end_offset=30)
    for p in (p for p in profiles if p.persona is Persona.FADING):
        days = purchase_days(by_customer[p.customer_id])
        assert sum(baseline.first_day <= d <= baseline.last_day for d in days) >= 4
        assert sum(recent.first_day <= d <= recent.last_day for d in days) <= 1
        last_touch = max(e.occurred_at for e in by_customer[p.customer_id] if isinstance(e, InteractionEvent))
        assert NOW - last_touch < timedelta(days=3), "still around, so the service evaluates them near now"


def test_healthy_customers_have_no_30_day_gap(traffic):
    profiles, by_customer = traffic
    for p in (p for p in profiles if p.persona is Persona.HEALTHY):
        times = [
            NOW - timedelta(days=120),
            *(e.occurred_at for e in by_customer[p.customer_id] if isinstance(e, PurchaseEvent)),
            NOW,
        ]
        assert max(b - a for a, b in itertools.pairwise(times)) < timedelta(days=14)


def test_detractors_answered_nps_0_to_6_in_the_last_week(traffic):
    profiles, by_customer = traffic
    for p in (p for p in profiles if p.persona is Persona.DETRACTOR):
        nps = [e for e in by_customer[p.customer_id] if isinstance(e, FeedbackEvent) and e.kind == "nps"]
        assert nps[-1].score <= 6 and NOW - nps[-1].occurred_at <= timedelta(days=7)
        assert all(e.score >= 7 for e in nps[:-1])


def test_nobody_else_is_a_detractor(traffic):
    profiles, by_customer = traffic
    for p in (p for p in profiles if p.persona is not Persona.DETRACTOR):
        assert all(e.score >= 7 for e in by_customer[p.customer_id] if isinstance(e, FeedbackEvent) and e.kind == "nps")


# --- the real rules over the generated history -----------------------------------------------------------


def stopped_buying(persona: Persona, state: CustomerState, now: datetime) -> bool:
    return persona is Persona.FADING and count_in_last(state.purchases_by_day, now, 30) == 0


def test_default_rules_fire_for_exactly_the_right_personas(traffic):
    profiles, by_customer = traffic
    stopped = 0
    for p in profiles:
        state = build_state(p.customer_id, by_customer[p.customer_id])
        assert state.watermark is not None
        for at in (NOW, state.watermark):
            assert_verdicts(fired(state, at), p.persona, p, stopped=stopped_buying(p.persona, state, at))
            if p.persona is Persona.FADING:
                assert [f.rule_id for f in evaluate([FREQUENCY_DROP], state, at)] == [FREQUENCY_DROP.id], p
        stopped += stopped_buying(p.persona, state, NOW)
    assert stopped, "some fading customer stopped buying altogether"


def test_no_false_alarm_at_the_due_moments(traffic):
    """The worker also judges a silent customer when a rule's next_check says so (the due scan, a
    few seconds after the due moment): quiet personas stay quiet then too."""
    profiles, by_customer = traffic
    judged = Counter[Persona]()
    for p in profiles:
        store, seen, events = windows(), set(), by_customer[p.customer_id]
        for i, event in enumerate(events):
            state = store.apply(event).state
            assert state.watermark is not None
            following = events[i + 1].occurred_at if i + 1 < len(events) else NOW
            due = next_due(RULES, state, state.watermark)
            while due is not None and due + SCAN < following:
                seen |= alarms(state, due + SCAN)
                judged[p.persona] += 1
                due = next_due(RULES, state, due + SCAN)
        assert_verdicts(seen, p.persona, p, complete=False)
    assert judged[Persona.FADING], "fading customers went silent past a threshold"


def test_no_false_alarm_while_the_history_is_replayed_in_order(traffic):
    """The service evaluates after every event at the customer's watermark: quiet personas never fire."""
    profiles, by_customer = traffic
    for p in profiles:
        store, seen = windows(), set()
        for event in by_customer[p.customer_id]:
            state = store.apply(event).state
            assert state.watermark is not None
            seen |= fired(state, state.watermark)
        assert_verdicts(seen, p.persona, p)


def test_live_trickle_keeps_the_verdicts():
    rng = random.Random(11)
    profiles = make_profiles(40, rng)
    history = backfill_events(profiles, NOW, 120, rng)
    store = windows()
    store.apply_all(history)
    clock = itertools.count()
    live = list(itertools.islice(live_events(profiles, lambda: NOW + timedelta(seconds=next(clock)), rng), 600))

    fading = [p.customer_id for p in profiles if p.persona is Persona.FADING]
    assert [e.customer_id for e in live[: len(fading)]] == fading
    assert all(isinstance(e, InteractionEvent) for e in live[: len(fading)])
    persona = {p.customer_id: p.persona for p in profiles}
    for i, event in enumerate(live):
        assert event.occurred_at == (NOW + timedelta(seconds=i)).replace(microsecond=0)
        name = {PurchaseEvent: "purchase", InteractionEvent: "interaction", FeedbackEvent: "feedback"}[type(event)]
        assert EVENT_MODELS[name].model_validate_json(event.model_dump_json()) == event
        assert not (persona[event.customer_id] is Persona.FADING and isinstance(event, PurchaseEvent))
        assert not (isinstance(event, FeedbackEvent) and event.kind == "nps" and event.score <= 6)
        state = store.apply(event).state
        assert_verdicts(fired(state, event.occurred_at), persona[event.customer_id], event, complete=False)
    assert {type(e) for e in live} == {PurchaseEvent, InteractionEvent, FeedbackEvent}


# --- the producer side, with a fake producer -------------------------------------------------------------


class FakeProducer:
    sent: list[tuple[str, bytes, bytes]]

    def __init__(self, **config: object) -> None:
        FakeProducer.config = config
        FakeProducer.sent = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        FakeProducer.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        FakeProducer.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> None:
        await (await self.send(topic, value, key))


async def test_run_demo_sends_backfill_then_live_until_stopped(monkeypatch):
    monkeypatch.setattr(demo, "AIOKafkaProducer", FakeProducer)
    topics, stop, lines = Topics(), asyncio.Event(), []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("live: about"):
            asyncio.get_running_loop().call_later(0.2, stop.set)

    summary = await demo.run_demo("kafka:9092", topics, customers=10, seed=3, rate_per_second=50, stop=stop, log=log)
    assert FakeProducer.config["acks"] == "all" and FakeProducer.stopped
    assert summary.live >= 1 and len(FakeProducer.sent) == summary.backfilled + summary.live
    assert lines[0].startswith(f"backfilled {summary.backfilled} events for 10 customers (")
    backfill = [json.loads(value)["occurred_at"] for _, _, value in FakeProducer.sent[: summary.backfilled]]
    times = [datetime.fromisoformat(t) for t in backfill]
    assert times == sorted(times)  # one event-time order across the three topics, as live producers send
    assert {topic for topic, _, _ in FakeProducer.sent[: summary.backfilled]} == set(topics.events)
    topic_of = {PurchaseEvent: topics.purchases, InteractionEvent: topics.interactions, FeedbackEvent: topics.feedback}
    for topic, key, value in FakeProducer.sent:
        raw = json.loads(value)
        model = next(m for m in (PurchaseEvent, InteractionEvent, FeedbackEvent) if set(raw) == set(m.model_fields))
        event = model.model_validate_json(value)
        assert topic == topic_of[model] and key == event.customer_id.encode()


async def test_run_demo_backfill_only(monkeypatch):
    monkeypatch.setattr(demo, "AIOKafkaProducer", FakeProducer)
    summary = await demo.run_demo("kafka:9092", Topics(), customers=4, seed=1, rate_per_second=0, log=lambda _: None)
    assert summary.live == 0 and len(FakeProducer.sent) == summary.backfilled > 0
