"""The in-memory adapters' semantics: the alert ledger of claim.lua / published.lua / resolve.lua, the
due index's lease of claim_due.lua, the pending and quarantine ledgers. The Redis originals are held
to the same answers by tests/integration/test_replay_matches_worker.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.cooldown import ClaimOutcome
from stream.evaluation_queue import Trigger
from stream.quarantine import QuarantineEntry
from stream.windows.memory import MemoryWindows
from stream.windows.memory_store import MemoryDueIndex, MemoryPendingLedger, MemoryQuarantineLedger, MemoryStore
from stream.windows.store import UpdateOutcome, WindowPolicy, _digest
from tests.events_factory import purchase

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
POLICY = WindowPolicy(timedelta(days=150), timedelta(days=7), timedelta(days=180), 10)
COOLDOWN = timedelta(days=7)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def claim(
    store: MemoryStore, at: datetime, event_id: str, episode: str | None = None, rule: str = "r"
) -> tuple[ClaimOutcome, str]:
    got = await store.claim_alert(
        customer_id="c", rule_id=rule, at=at, cooldown=COOLDOWN, event_id=event_id, episode=episode
    )
    return got.outcome, got.key


async def test_a_claim_is_sent_until_confirmed_then_never_again_for_the_same_event() -> None:
    store = MemoryStore(POLICY)
    assert await claim(store, T0, "e1") == (ClaimOutcome.CLAIMED, _digest("e1"))
    # not confirmed (a crash before publishing): whatever event comes next sends it again, same key
    assert await claim(store, T0 + timedelta(days=1), "e2") == (ClaimOutcome.RECLAIMED, _digest("e1"))
    await store.confirm_published(customer_id="c", rule_id="r", claim_key=_digest("e1"))
    assert await claim(store, T0, "e1") == (ClaimOutcome.PUBLISHED, _digest("e1"))  # a redelivery
    assert await claim(store, T0 + timedelta(days=6), "e3") == (ClaimOutcome.COOLDOWN, _digest("e1"))
    assert await claim(store, T0 + COOLDOWN, "e4") == (ClaimOutcome.CLAIMED, _digest("e4"))


async def test_an_episode_alerts_once_even_after_the_cooldown() -> None:
    store = MemoryStore(POLICY)
    await claim(store, T0, "e1", episode="nps@1")
    await store.confirm_published(customer_id="c", rule_id="r", claim_key=_digest("e1"))
    assert (await claim(store, T0 + timedelta(days=30), "e2", episode="nps@1"))[0] is ClaimOutcome.EPISODE
    assert (await claim(store, T0 + timedelta(days=30), "e3", episode="nps@2"))[0] is ClaimOutcome.CLAIMED


async def test_confirming_another_claim_changes_nothing() -> None:
    store = MemoryStore(POLICY)
    await claim(store, T0, "e1")
    await store.confirm_published(customer_id="c", rule_id="r", claim_key=_digest("other"))
    await store.confirm_published(customer_id="c", rule_id="nope", claim_key=_digest("e1"))
    assert (await claim(store, T0, "e2"))[0] is ClaimOutcome.RECLAIMED


async def test_the_ledger_lives_in_the_customers_hash_as_in_redis_and_the_state_reads_the_same() -> None:
    store, windows = MemoryStore(POLICY), MemoryWindows(POLICY)
    first = purchase("c", T0, event_id="p1")
    await store.apply(first)
    windows.apply(first)
    await claim(store, T0, "e1", episode="ep|with|bars")
    await store.confirm_published(customer_id="c", rule_id="r", claim_key=_digest("e1"))
    await store.resolve_open_alerts("c", T0 + timedelta(days=1), ["r"])

    fields = store.hash_fields("c")
    assert fields["a:r"] == f"{ms(T0)}|{_digest('e1')}|1|ep|with|bars"
    assert fields["r:r"] == f"{_digest('e1')}|0"
    assert {k: v for k, v in fields.items() if not k.startswith(("a:", "r:"))} == windows.fields("c")
    assert await store.read("c") == windows.read("c")

    second = purchase("c", T0 + timedelta(days=2), event_id="p2")
    update, expected = await store.apply(second), windows.apply(second)
    assert update.outcome is UpdateOutcome.OK and update.state == expected.state
    assert (await store.apply(second)).outcome is UpdateOutcome.DUPLICATE


async def test_a_late_event_returns_no_state_whatever_the_ledger_holds() -> None:
    store = MemoryStore(POLICY)
    await store.apply(purchase("c", T0, event_id="p1"))
    await claim(store, T0, "e1")
    late = await store.apply(purchase("c", T0 - timedelta(days=200), event_id="p0"))
    assert late.outcome is UpdateOutcome.LATE and late.watermark is None


async def test_a_published_alert_is_resolved_once_and_again_until_the_resolution_is_confirmed() -> None:
    store = MemoryStore(POLICY)
    back = T0 + timedelta(days=3)
    await claim(store, T0, "e1")
    assert await store.resolve_open_alerts("c", back, ["r"]) == []  # never published: nothing to resolve
    await store.confirm_published(customer_id="c", rule_id="r", claim_key=_digest("e1"))
    assert await store.resolve_open_alerts("c", T0, ["r"]) == []  # made at the same moment: not before it

    (open_alert,) = await store.resolve_open_alerts("c", back, ["r", "other"])
    assert (open_alert.rule_id, open_alert.claim_key, open_alert.alerted_at) == ("r", _digest("e1"), T0)
    assert await store.resolve_open_alerts("c", back, ["r"]) == [open_alert]  # not confirmed: again
    await store.confirm_resolved("c", "r", _digest("e1"))
    assert await store.resolve_open_alerts("c", back + timedelta(days=1), ["r"]) == []
    assert await store.resolve_open_alerts("c", back, []) == []

    later = T0 + timedelta(days=20)  # a new silence, a new alert: resolvable in its turn
    await claim(store, later, "e2")
    await store.confirm_published(customer_id="c", rule_id="r", claim_key=_digest("e2"))
    assert [a.claim_key for a in await store.resolve_open_alerts("c", later + timedelta(days=1), ["r"])] == [
        _digest("e2")
    ]


async def test_the_due_index_claims_the_due_oldest_first_ties_by_id_and_leases_them() -> None:
    index = MemoryDueIndex(lease=timedelta(minutes=1))
    await index.schedule(0, "b", T0)
    await index.schedule(0, "a", T0)
    await index.schedule(0, "early", T0 - timedelta(hours=1))
    await index.schedule(0, "later", T0 + timedelta(days=1))
    await index.schedule(1, "elsewhere", T0)
    assert await index.earliest_due(0) == T0 - timedelta(hours=1)

    assert await index.claim_due(0, T0, 2) == ["early", "a"]
    assert await index.claim_due(0, T0, 10) == ["b"]
    assert await index.claim_due(0, T0, 10) == []  # leased
    assert await index.earliest_due(0) == T0 + timedelta(minutes=1)
    assert await index.claim_due(0, T0 + timedelta(minutes=1), 10) == ["a", "b", "early"]  # lease over; one moment
    assert await index.claim_due(1, T0, 10) == ["elsewhere"]


async def test_rescheduling_replaces_the_moment_and_none_leaves_the_index() -> None:
    index = MemoryDueIndex()
    await index.schedule(0, "c", T0)
    await index.schedule(0, "c", T0)  # the same moment twice: still one claim
    await index.schedule(0, "d", T0 + timedelta(days=5))
    await index.schedule(0, "d", T0 + timedelta(days=1))
    await index.schedule(0, "gone", T0)
    await index.schedule(0, "gone", None)
    assert index.size(0) == 2
    assert await index.claim_due(0, T0, 10) == ["c"]
    await index.schedule(0, "c", None)  # judged: nothing to wait for
    assert await index.earliest_due(0) == T0 + timedelta(days=1)
    assert await index.claim_due(0, T0 + timedelta(days=10), 10) == ["d"]
    assert await MemoryDueIndex().earliest_due(0) is None


async def test_the_due_index_stays_small_when_customers_are_rescheduled_often() -> None:
    index = MemoryDueIndex()
    for n in range(10_000):
        await index.schedule(0, f"c{n % 10}", T0 + timedelta(seconds=n))
    assert len(index._heaps[0]) < 2 * 10 + 1024 + 1
    assert await index.claim_due(0, T0 + timedelta(days=1), 100) == [f"c{n}" for n in range(10)]


async def test_the_pending_ledger_keeps_a_customers_place_and_their_latest_trigger() -> None:
    ledger = MemoryPendingLedger()
    await ledger.mark_pending([Trigger("a", "e1", "t", 0)])
    await ledger.mark_pending([Trigger("b", "e2", "t", 1)])
    await ledger.mark_pending([Trigger("a", "e3", "t", 0)])
    assert await ledger.load_pending(10) == [Trigger("a", "e3", "t", 0), Trigger("b", "e2", "t", 1)]
    await ledger.clear_pending(["a"])
    assert [t.customer_id for t in await ledger.load_pending(1)] == ["b"]


async def test_the_quarantine_ledger_lists_oldest_first_and_releases() -> None:
    ledger = MemoryQuarantineLedger()
    await ledger.add(QuarantineEntry("late", "due", "boom", 3, "2026-03-02T00:00:00+00:00"))
    await ledger.add(QuarantineEntry("early", "event", "boom", 3, "2026-03-01T00:00:00+00:00"))
    assert [e.customer_id for e in await ledger.entries()] == ["early", "late"]
    assert await ledger.release("early") and not await ledger.release("early")
    assert [e.customer_id for e in await ledger.entries()] == ["late"]
