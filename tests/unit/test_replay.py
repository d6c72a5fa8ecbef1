"""churnwatch replay: the worker's processor on in-memory adapters, with a clock that follows the events."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from rules.ruleset import RuleSet, load_rule_set
from stream.cli import main
from stream.contracts import SourceRecord
from stream.decoding import DecodePolicy
from stream.events import EventBase
from stream.replay import (
    ProgressLine,
    Replay,
    ReplayClock,
    ReplayDeadLetters,
    build_replay,
    drive,
    problem_lines,
    read_jsonl,
    records_of,
    summarise,
)
from stream.settings import Topics
from stream.windows.memory_store import MemoryDueIndex
from stream.windows.store import WindowPolicy
from tests.events_factory import interaction, purchase, weekly_purchases, wire_dict
from tests.rule_files import OVERDUE_RULES

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
TOPICS = Topics()
POLICY = WindowPolicy(timedelta(days=150), timedelta(days=7), timedelta(days=180), 10)
DECODE = DecodePolicy(max_message_bytes=65536, max_future_skew=timedelta(hours=1), currency="USD")
KIND = {"PurchaseEvent": "purchase", "InteractionEvent": "interaction", "FeedbackEvent": "feedback"}


@pytest.fixture
def overdue_rules(tmp_path: Path) -> RuleSet:
    (tmp_path / "overdue.yaml").write_text(OVERDUE_RULES)
    return load_rule_set(tmp_path)


def replay_of(rules: RuleSet) -> Replay:
    return build_replay(rules, topics=TOPICS, window_policy=POLICY, decode_policy=DECODE)


def history() -> list[EventBase]:
    """A weekly buyer who stops at T0 and comes back at T0 + 30d; someone else active until T0 + 60d."""
    return [
        *weekly_purchases("weekly", T0, 119, 0),
        *(interaction("other", T0 + timedelta(days=n, hours=1)) for n in range(61)),
        purchase("weekly", T0 + timedelta(days=30)),
    ]


async def test_a_weekly_buyer_who_goes_silent_is_alerted_three_gaps_later_and_resolved_on_return(
    overdue_rules: RuleSet,
) -> None:
    replay = replay_of(overdue_rules)
    await replay.run(records_of(history(), TOPICS), until=T0 + timedelta(days=40))

    firing, resolution = replay.publisher.alerts
    assert (firing.customer_id, firing.rule_id, firing.status) == ("weekly", "purchase-overdue", "firing")
    # at the simulated moment the worker's timer would have fired it, not at the end of the input
    assert firing.evaluated_at == firing.detected_at == T0 + timedelta(days=21)
    assert firing.trigger_topic == "churnwatch.due" and firing.evidence["typical_gap_days"] == 7.0
    assert resolution.status == "resolved" and resolution.resolves == firing.alert_id
    assert resolution.evaluated_at == T0 + timedelta(days=30)
    assert resolution.trigger_topic == TOPICS.purchases


async def test_the_input_is_replayed_in_event_time_order_whatever_its_order(overdue_rules: RuleSet) -> None:
    events = history()
    ordered, shuffled = replay_of(overdue_rules), replay_of(overdue_rules)
    await ordered.run(records_of(events, TOPICS), until=None)
    random.Random(3).shuffle(events)
    await shuffled.run(records_of(events, TOPICS), until=None)
    assert shuffled.publisher.alerts == ordered.publisher.alerts
    # until defaults to the last event time (T0 + 60d 1h): the second silence, from T0 + 30d, fired too
    assert [a.evaluated_at for a in ordered.publisher.alerts if a.status == "firing"] == [
        T0 + timedelta(days=21),
        T0 + timedelta(days=51),
    ]


async def test_nothing_after_until_is_replayed_and_due_moments_up_to_it_fire(overdue_rules: RuleSet) -> None:
    exactly = replay_of(overdue_rules)
    await exactly.run(records_of(history(), TOPICS), until=T0 + timedelta(days=21))
    assert [a.evaluated_at for a in exactly.publisher.alerts] == [T0 + timedelta(days=21)]  # inclusive

    before = replay_of(overdue_rules)
    await before.run(records_of(history(), TOPICS), until=T0 + timedelta(days=21) - timedelta(milliseconds=1))
    assert before.publisher.alerts == []
    assert (await before.store.read("other")).watermark == T0 + timedelta(days=20, hours=1)


class ScanRecorder:
    """Stands in for the processor: records what the driver asked when, claims from a real index."""

    def __init__(self, clock: ReplayClock, index: MemoryDueIndex, limit: int) -> None:
        self.clock, self.index, self.limit = clock, index, limit
        self.calls: list[tuple[str, datetime]] = []

    async def process(self, record: SourceRecord) -> object:
        self.calls.append((f"event {record.offset}", self.clock.now))
        return None

    async def scan_due(self, partitions: Iterable[int]) -> int:
        self.calls.append(("scan", self.clock.now))
        claimed = await self.index.claim_due(0, self.clock.now, self.limit)
        for customer in claimed:
            await self.index.schedule(0, customer, None)
        return len(claimed)


async def test_the_driver_scans_each_due_moment_before_the_next_event_and_until_inclusive() -> None:
    clock, index = ReplayClock(T0), MemoryDueIndex()
    recorder = ScanRecorder(clock, index, limit=2)
    for n, hours in enumerate([1, 5, 5, 5, 30]):  # three due at 5h: over the claim limit of 2
        await index.schedule(0, f"c{n}", T0 + timedelta(hours=hours))
    records = [purchase("x", T0 + timedelta(hours=h), event_id=f"e{h}") for h in (0, 10, 6)]

    async def earliest() -> datetime | None:
        return await index.earliest_due(0)

    scans = await drive(records_of(records, TOPICS), recorder, clock, earliest, until=T0 + timedelta(hours=30))

    h = timedelta(hours=1)
    assert recorder.calls == [
        ("event 0", T0),
        ("scan", T0 + 1 * h),
        ("scan", T0 + 5 * h),
        ("scan", T0 + 5 * h + timedelta(milliseconds=1)),  # the third one due at 5h, a millisecond on
        ("event 2", T0 + 6 * h),
        ("event 1", T0 + 10 * h),
        ("scan", T0 + 30 * h),
    ]
    assert scans == 4


def envelope(event: EventBase) -> bytes:
    return json.dumps({"topic": KIND[type(event).__name__], "event": wire_dict(event)}).encode()


def test_every_invalid_line_is_reported_with_its_number_and_reason() -> None:
    good = purchase("c", T0, event_id="ok")
    lines = [
        envelope(good),
        b"",
        b"not json",
        b'{"topic": "refund", "event": {}}',
        b'["purchase"]',
        json.dumps({"topic": "purchase", "event": {**wire_dict(good), "amount": True}}).encode(),
        json.dumps({"topic": "purchase", "event": {**wire_dict(good), "currency": "EUR"}}).encode(),
        json.dumps({"topic": "feedback", "event": wire_dict(good)}).encode(),
        b"\xff\xfe",
        b'{"topic": ["purchase"], "event": {}}',
        b"[" * 100_000 + b"]" * 100_000,
    ]
    read = read_jsonl(lines, TOPICS, DECODE)
    assert read.lines == 10 and len(read.records) == 1
    assert read.records[0].record.offset == 1 and read.records[0].at == T0
    assert [(p.line, p.reason) for p in read.problems] == [
        (3, "not_json"),
        (4, "envelope"),
        (5, "envelope"),
        (6, "schema"),
        (7, "currency"),
        (8, "schema"),
        (9, "not_json"),
        (10, "envelope"),
        (11, "not_json"),
    ]
    assert read.problem_counts()["schema"] == 2


def test_the_problem_report_counts_every_line_and_quotes_the_first_twenty() -> None:
    text = problem_lines(read_jsonl([b"x"] * 25, TOPICS, DECODE), ReplayDeadLetters())
    assert text[0] == "25 invalid line(s), not replayed: 25 not_json"
    assert text[1].startswith("  line 1: not_json") and text[20].startswith("  line 20:")
    assert text[21] == "  ... and 5 more" and len(text) == 22


async def test_the_summary_counts_alerts_customers_resolutions_and_alerts_per_week(overdue_rules: RuleSet) -> None:
    replay = replay_of(overdue_rules)
    await replay.run(records_of(history(), TOPICS), until=None)
    (summary,) = summarise(replay.publisher.alerts, T0, T0 + timedelta(weeks=4))
    assert (summary.rule_id, summary.alerts, summary.customers, summary.resolved) == ("purchase-overdue", 2, 1, 1)
    assert summary.per_week == 0.5
    assert summarise(replay.publisher.alerts, T0, T0 + timedelta(days=1))[0].per_week == 2.0  # at least a week


def test_the_progress_line_shows_events_per_second_at_most_twice_a_second() -> None:
    written: list[str] = []
    now = [0.0]
    progress = ProgressLine(written.append, lambda: now[0])
    now[0] = 0.2
    progress(1000, 3000)  # too soon
    now[0] = 1.0
    progress(2000, 3000)
    now[0] = 1.5
    progress(3000, 3000)
    assert written == [
        "\rreplayed 2,000 / 3,000 events, 2,000 events/s",
        "\rreplayed 3,000 / 3,000 events, 2,000 events/s",
        "\n",
    ]


def test_replay_command_writes_the_alerts_and_reports_the_bad_line(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "overdue.yaml").write_text(OVERDUE_RULES)
    events = history()
    lines = [envelope(e) for e in events]
    lines.insert(3, b'{"topic": "purchase", "event": {"customer_id": "weekly"}}')
    (tmp_path / "history.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    args = ["replay", str(tmp_path / "history.jsonl"), "--rules", str(tmp_path / "rules"), "--until", "2026-04-10"]
    result = CliRunner().invoke(main, args)

    assert result.exit_code == 0, result.output
    firing, resolved = [json.loads(line) for line in result.stdout.splitlines()]
    assert firing["time"] == "2026-03-22T12:00:00+00:00" and firing["status"] == "firing"
    assert (firing["customer"], firing["rule"], firing["severity"]) == ("weekly", "purchase-overdue", "warning")
    assert firing["evidence"]["threshold_days"] == 21.0
    assert resolved["status"] == "resolved" and resolved["resolves"] == firing["alert_id"]
    assert "1 invalid line(s), not replayed: 1 schema" in result.stderr
    assert "line 4: schema: event_id: Field required" in result.stderr
    replayed = sum(e.occurred_at < datetime(2026, 4, 10, tzinfo=UTC) for e in events)
    assert f"replayed {replayed:,} of {len(events) + 1:,} lines" in result.stderr
    assert "purchase-overdue" in result.stderr.splitlines()[-1]
    assert "\r" not in result.stderr  # no progress line off a terminal

    out = tmp_path / "alerts.jsonl"
    again = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert again.exit_code == 0 and again.stdout == ""
    assert out.read_text() == result.stdout


def test_replay_command_refuses_an_until_without_a_timezone(tmp_path: Path) -> None:
    (tmp_path / "h.jsonl").write_text("")
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "h.jsonl"), "--until", "2026-04-10T00:00"])
    assert result.exit_code == 2 and "no timezone" in result.output
