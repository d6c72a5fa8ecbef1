"""Silences without Redis: matching, validation, the dispatcher's silence stage, the delivery agent's
stall on unreadable silences, the cache, and the command's checks that need no Redis."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from alerts.dispatch import AlertDispatcher, DeliveryOutcome, InMemoryDeliveryLog
from alerts.model import Alert
from alerts.silence import (
    InMemorySilenceStore,
    Matcher,
    Silence,
    SilenceError,
    SilenceState,
    labels_of,
    new_silence,
    silence_for,
)
from rules.base import Severity
from stream.cli import main
from stream.contracts import SourceRecord
from stream.delivery import AlertDelivery, Handled
from stream.metrics import Metrics
from stream.silence_store import CachedSilences
from tests.fakes import FlakyDeadLetters, FlakyDeliveryLog, RecordingNotifier

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)


def make_alert(
    customer_id: str = "cust-42",
    rule_id: str = "nps-detractor",
    severity: Severity = Severity.CRITICAL,
    segment: str | None = "enterprise",
    alert_id: str = "alert-1",
) -> Alert:
    return Alert(
        alert_id=alert_id,
        customer_id=customer_id,
        rule_id=rule_id,
        severity=severity,
        message="NPS answer 3/10.",
        evidence={"score": 3},
        customer={"segment": segment} if segment is not None else {},
        evaluated_at=NOW,
        detected_at=NOW,
        trigger_event_id="evt-1",
        trigger_topic="churnwatch.feedback",
    )


def resolution_of(customer_id: str = "cust-42", rule_id: str = "purchase-inactivity") -> Alert:
    return Alert.resolution(
        customer_id=customer_id,
        rule_id=rule_id,
        claim_key="2026-01-01",
        severity=Severity.WARNING,
        alerted_at=NOW - 10 * 24 * HOUR,
        returned_at=NOW,
        trigger_event_id="evt-9",
        trigger_topic="churnwatch.purchases",
        detected_at=NOW,
    )


def silence(*matchers: str, starts: datetime = NOW, ends: datetime = NOW + 24 * HOUR) -> Silence:
    return new_silence(
        [Matcher.parse(m) for m in matchers],
        starts_at=starts,
        ends_at=ends,
        created_by="ana",
        comment="customer on a planned break",
        now=min(starts, NOW),
    )


def problems_of(**overrides: object) -> tuple[str, ...]:
    arguments: dict[str, object] = {
        "matchers": [Matcher.parse("rule=nps-detractor")],
        "ends_at": NOW + HOUR,
        "created_by": "ana",
        "comment": "known issue",
        "now": NOW,
    } | overrides
    with pytest.raises(SilenceError) as raised:
        new_silence(**arguments)  # type: ignore[arg-type]
    return raised.value.problems


# --- matchers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matcher", "alert", "expected"),
    [
        ("customer_id=cust-42", make_alert(), True),
        ("customer_id=cust-4", make_alert(), False),
        ("rule=nps-detractor", make_alert(), True),
        ("rule=spend-drop", make_alert(), False),
        ("severity=critical", make_alert(), True),
        ("severity=warning", make_alert(), False),
        ("segment=enterprise", make_alert(), True),
        ("segment=enterprise", make_alert(segment=None), False),
        ("customer_id=~cust-4\\d", make_alert(), True),
        ("customer_id=~cust-4", make_alert(), False),  # a regex matches the whole value, as Alertmanager's
        ("customer_id=~.*-42|cust-7", make_alert(), True),
        ("severity=~warning|critical", make_alert(), True),
        ("segment=~ent.*", make_alert(segment="smb"), False),
        ("customer_id=a=b", make_alert(customer_id="a=b"), True),  # only the first '=' separates
    ],
)
def test_a_matcher_compares_one_label_of_the_alert(matcher: str, alert: Alert, expected: bool) -> None:
    assert Matcher.parse(matcher).matches(labels_of(alert)) is expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nps-detractor", "write a matcher as key=value or key=~regex"),
        ("=x", "write a matcher as key=value or key=~regex"),
        ("owner=retention", "no label 'owner' to match (one of customer_id, rule, severity, segment, team)"),
        ("severity=critcal", "severity=critcal: no such severity (one of info, warning, critical)"),
        ("customer_id=~cust-(", "customer_id=~cust-(: not a regular expression (missing ), unterminated subpattern"),
        ("rule=~" + "a" * 1001, "longer than 1000 characters"),
    ],
)
def test_a_bad_matcher_is_refused_with_a_clear_reason(text: str, says: str) -> None:
    with pytest.raises(SilenceError) as raised:
        Matcher.parse(text)
    assert says in str(raised.value)


def test_a_silence_needs_every_matcher_to_match() -> None:
    s = silence("customer_id=cust-42", "rule=nps-detractor")
    assert s.matches(make_alert())
    assert not s.matches(make_alert(rule_id="spend-drop"))
    assert not s.matches(make_alert(customer_id="cust-7"))


def test_a_team_matcher_compares_the_owner_the_caller_knows() -> None:
    s = silence("team=retention")
    assert s.matches(make_alert(), team="retention")
    assert not s.matches(make_alert(), team="growth")
    assert not s.matches(make_alert())  # unknown owner: ""


def test_a_resolution_is_matched_on_its_own_labels() -> None:
    """Resolutions carry no customer context: a segment matcher does not match them."""
    assert silence("customer_id=cust-42").matches(resolution_of())
    assert not silence("segment=enterprise").matches(resolution_of())


# --- validation -----------------------------------------------------------------------------------


def test_an_expiry_in_the_past_is_refused() -> None:
    assert problems_of(ends_at=NOW - HOUR) == (
        f"expiry {(NOW - HOUR).isoformat()} is not in the future (now {NOW.isoformat()})",
    )
    assert "is not in the future" in problems_of(ends_at=NOW)[0]


def test_an_expiry_before_the_start_is_refused() -> None:
    assert problems_of(starts_at=NOW + 3 * HOUR, ends_at=NOW + 2 * HOUR) == (
        f"expiry {(NOW + 2 * HOUR).isoformat()} is not after the start {(NOW + 3 * HOUR).isoformat()}",
    )


def test_a_silence_longer_than_90_days_is_refused() -> None:
    assert "longer than the 90 days a silence may last" in problems_of(ends_at=NOW + timedelta(days=91))[0]
    assert new_silence(
        [Matcher.parse("rule=x")], ends_at=NOW + timedelta(days=90), created_by="a", comment="c", now=NOW
    )


def test_an_empty_matcher_set_is_refused() -> None:
    assert problems_of(matchers=[]) == (
        "matchers: no matchers: give --customer, --rule or --matcher key=value (one at least)",
    )


def test_matchers_that_all_accept_an_empty_value_are_refused() -> None:
    (problem,) = problems_of(matchers=[Matcher.parse("segment=~.*"), Matcher.parse("customer_id=")])
    assert problem.startswith("matchers: every matcher (segment=~.*, customer_id=) also matches an empty value")
    assert new_silence(
        [Matcher.parse("segment=~.*"), Matcher.parse("rule=~.+")],
        ends_at=NOW + HOUR,
        created_by="a",
        comment="c",
        now=NOW,
    )


def test_author_and_comment_are_required_and_every_problem_is_listed_at_once() -> None:
    assert problems_of(ends_at=NOW - HOUR, comment="  ", created_by="") == (
        f"expiry {(NOW - HOUR).isoformat()} is not in the future (now {NOW.isoformat()})",
        "created_by: must not be empty: say who silences and why",
        "comment: must not be empty: say who silences and why",
    )


def test_a_silence_round_trips_through_json() -> None:
    s = silence("customer_id=~cust-4\\d", "severity=critical")
    assert Silence.model_validate_json(s.model_dump_json()) == s


# --- which silence applies ------------------------------------------------------------------------


def test_only_an_active_silence_applies_from_its_start_up_to_its_end() -> None:
    s = silence("customer_id=cust-42", starts=NOW + HOUR, ends=NOW + 2 * HOUR)
    assert s.state(NOW) is SilenceState.PENDING and silence_for(make_alert(), [s], NOW) is None
    assert silence_for(make_alert(), [s], NOW + HOUR) == s  # the start is included
    assert silence_for(make_alert(), [s], NOW + 2 * HOUR - timedelta(microseconds=1)) == s
    assert s.state(NOW + 2 * HOUR) is SilenceState.EXPIRED  # the end is not
    assert silence_for(make_alert(), [s], NOW + 2 * HOUR) is None


def test_of_several_matching_silences_the_one_ending_last_is_named() -> None:
    short, long, other = (
        silence("rule=nps-detractor", ends=NOW + HOUR),
        silence("customer_id=cust-42"),
        silence("rule=x"),
    )
    assert silence_for(make_alert(), [short, long, other], NOW) == long
    assert silence_for(make_alert(rule_id="spend-drop"), [short, long, other], NOW) == long
    assert silence_for(make_alert(customer_id="c-1", rule_id="spend-drop"), [short, long, other], NOW) is None


def test_expiring_ends_a_silence_now_and_a_pending_one_before_it_starts() -> None:
    active = silence("rule=x").expired(by="bo", now=NOW + HOUR)
    assert (active.ends_at, active.expired_by, active.state(NOW + HOUR)) == (NOW + HOUR, "bo", SilenceState.EXPIRED)
    pending = silence("rule=x", starts=NOW + 5 * HOUR, ends=NOW + 6 * HOUR).expired(by="bo", now=NOW)
    assert pending.starts_at == pending.ends_at == NOW
    assert Silence.model_validate_json(pending.model_dump_json()) == pending  # still a valid silence


# --- the dispatcher's silence stage ---------------------------------------------------------------


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Outcomes:
    seen: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, sink: str, outcome: str, seconds: float) -> None:
        self.seen.append((sink, outcome))


def silencing_dispatcher(
    store: InMemorySilenceStore, clock: Clock, outcomes: Outcomes | None = None, owners: dict[str, str] | None = None
) -> tuple[AlertDispatcher, RecordingNotifier, RecordingNotifier]:
    slack, hook = RecordingNotifier("slack"), RecordingNotifier("webhook")
    dispatcher = AlertDispatcher(
        [slack, hook], InMemoryDeliveryLog(), attempts=1, backoff_max=0.01, silences=store, clock=clock,
        on_outcome=outcomes, team_of=(owners or {}).get,
    )  # fmt: skip
    return dispatcher, slack, hook


async def test_a_silenced_alert_reaches_no_sink_and_is_recorded_against_its_silence(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, outcomes = InMemorySilenceStore(), Outcomes()
    muting = silence("customer_id=cust-42")
    await store.add(muting)
    dispatcher, slack, hook = silencing_dispatcher(store, Clock(), outcomes)
    with caplog.at_level(logging.INFO, logger="churnwatch.delivery"):
        result = await dispatcher.dispatch(make_alert())
    assert slack.received == hook.received == []
    assert result.ok and result.silenced_by == muting.id
    assert [o.outcome for o in result.outcomes] == [DeliveryOutcome.SILENCED] * 2
    assert outcomes.seen == [("slack", "silenced"), ("webhook", "silenced")]
    assert store.muted == {muting.id: {"alert-1"}}
    (line,) = [r.getMessage() for r in caplog.records if "silenced by" in r.getMessage()]
    assert line.startswith(f"alert alert-1 (customer cust-42, rule nps-detractor, critical) silenced by {muting.id}")


async def test_an_alert_no_silence_matches_is_delivered() -> None:
    store = InMemorySilenceStore()
    await store.add(silence("customer_id=cust-42"))
    dispatcher, slack, hook = silencing_dispatcher(store, Clock())
    result = await dispatcher.dispatch(make_alert(customer_id="cust-7"))
    assert slack.received == hook.received == ["alert-1"]
    assert result.silenced_by is None and result.outcome("slack") is DeliveryOutcome.DELIVERED
    assert store.muted == {}


async def test_a_silence_mutes_until_it_expires_and_expiring_it_by_hand_ends_it_at_once() -> None:
    store, clock = InMemorySilenceStore(), Clock()
    timed, by_hand = silence("rule=nps-detractor", ends=NOW + HOUR), silence("rule=spend-drop")
    await store.add(timed)
    await store.add(by_hand)
    dispatcher, slack, _ = silencing_dispatcher(store, clock)
    assert (await dispatcher.dispatch(make_alert(alert_id="a1"))).silenced_by == timed.id
    clock.now = NOW + HOUR
    assert (await dispatcher.dispatch(make_alert(alert_id="a2"))).silenced_by is None
    assert (await dispatcher.dispatch(make_alert(alert_id="a3", rule_id="spend-drop"))).silenced_by == by_hand.id
    await store.expire(by_hand.id, by="bo", now=clock.now)
    assert (await dispatcher.dispatch(make_alert(alert_id="a4", rule_id="spend-drop"))).silenced_by is None
    assert slack.received == ["a2", "a4"]


async def test_a_resolution_goes_through_the_same_silences() -> None:
    store = InMemorySilenceStore()
    muting = silence("customer_id=cust-42", "rule=purchase-inactivity")
    await store.add(muting)
    dispatcher, slack, _ = silencing_dispatcher(store, Clock())
    resolution = resolution_of()
    assert (await dispatcher.dispatch(resolution)).silenced_by == muting.id
    assert (await dispatcher.dispatch(resolution_of(customer_id="cust-7"))).silenced_by is None
    assert slack.received == [resolution_of(customer_id="cust-7").alert_id]


async def test_a_team_silence_mutes_the_alerts_of_the_rules_that_team_owns() -> None:
    store = InMemorySilenceStore()
    await store.add(silence("team=retention"))
    owners = {"nps-detractor": "retention", "spend-drop": "growth"}
    dispatcher, slack, _ = silencing_dispatcher(store, Clock(), owners=owners)
    assert (await dispatcher.dispatch(make_alert(alert_id="a1"))).silenced_by is not None
    assert (await dispatcher.dispatch(make_alert(alert_id="a2", rule_id="spend-drop"))).silenced_by is None
    assert (await dispatcher.dispatch(make_alert(alert_id="a3", rule_id="unowned"))).silenced_by is None
    assert slack.received == ["a2", "a3"]


class UnrecordableSilences(InMemorySilenceStore):
    async def record_silenced(self, silence: Silence, alert: Alert) -> None:
        raise ResponseError("OOM command not allowed")


async def test_a_silenced_alert_that_cannot_be_recorded_is_still_silenced() -> None:
    store = UnrecordableSilences()
    await store.add(silence("customer_id=cust-42"))
    dispatcher, slack, _ = silencing_dispatcher(store, Clock())
    assert (await dispatcher.dispatch(make_alert())).silenced_by is not None
    assert slack.received == []


# --- the delivery agent ---------------------------------------------------------------------------


@dataclass
class FlakySilences:
    """Silences whose reads raise the scripted errors first, as an unavailable Redis would."""

    silences: list[Silence] = field(default_factory=list)
    read_errors: list[Exception] = field(default_factory=list)
    reads: int = 0

    async def current(self, now: datetime) -> list[Silence]:
        self.reads += 1
        if self.read_errors:
            raise self.read_errors.pop(0)
        return self.silences

    async def record_silenced(self, silence: Silence, alert: Alert) -> None:
        pass


class DeliveryRig:
    def __init__(self, silences: FlakySilences | InMemorySilenceStore) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.log = FlakyDeliveryLog()
        self.dead_letters = FlakyDeadLetters()
        self.slack = RecordingNotifier("slack")
        self.delivery = AlertDelivery(
            [self.slack], self.log, self.dead_letters, self.metrics, attempts=1, backoff_max=0.01,
            retry_max_seconds=0.01, silences=silences,
        )  # fmt: skip

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def handle(self, alert: Alert) -> Handled:
        return await self.delivery.handle(
            SourceRecord("churnwatch.alerts", 0, 7, b"k", alert.model_dump_json().encode())
        )


def live_silence(*matchers: str) -> Silence:
    now = datetime.now(UTC)
    return silence(*matchers, starts=now - HOUR, ends=now + HOUR)


async def test_a_silenced_record_is_handled_and_counted_by_rule_and_status() -> None:
    rig = DeliveryRig(FlakySilences([live_silence("customer_id=cust-42")]))
    assert await rig.handle(make_alert()) is Handled.SILENCED
    assert await rig.handle(resolution_of()) is Handled.SILENCED
    assert await rig.handle(make_alert(customer_id="cust-7", alert_id="a7")) is Handled.DELIVERED
    assert rig.slack.received == ["a7"]
    assert rig.sample("churnwatch_alerts_silenced_total", rule="nps-detractor", status="firing") == 1
    assert rig.sample("churnwatch_alerts_silenced_total", rule="purchase-inactivity", status="resolved") == 1
    assert rig.sample("churnwatch_alert_deliveries_total", sink="slack", outcome="silenced") == 2
    assert rig.dead_letters.records == [] and rig.log.delivered == {("a7", "slack")}


async def test_unreadable_silences_stall_the_alert_then_it_is_judged_once_they_answer() -> None:
    """Neither delivered anyway nor dropped: nothing is sent until the silences could be read."""
    silences = FlakySilences([live_silence("customer_id=cust-42")], read_errors=[RedisConnectionError("refused")] * 4)
    rig = DeliveryRig(silences)
    assert await rig.handle(make_alert()) is Handled.SILENCED
    assert silences.reads == 5 and rig.slack.received == []
    assert rig.sample("churnwatch_dependency_errors_total", operation="silence_lookup") == 4
    silences.read_errors = [RedisConnectionError("refused")] * 2
    assert await rig.handle(make_alert(customer_id="cust-7", alert_id="a7")) is Handled.DELIVERED
    assert rig.slack.received == ["a7"]


async def test_silences_refused_for_good_dead_letter_the_alert_with_nothing_sent() -> None:
    rig = DeliveryRig(FlakySilences(read_errors=[ResponseError("WRONGTYPE")]))
    assert await rig.handle(make_alert()) is Handled.DEAD_LETTERED
    assert [reason for _, reason, _ in rig.dead_letters.records] == ["delivery_error"]
    assert rig.slack.received == []


# --- the cache ------------------------------------------------------------------------------------


async def test_the_cache_reads_the_store_once_per_refresh_interval_and_again_after_a_failed_read() -> None:
    store, ticks = FlakySilences([silence("rule=x")]), [100.0]
    cache = CachedSilences(store, refresh_seconds=5.0, monotonic=lambda: ticks[0])
    assert await cache.current(NOW) == store.silences and store.reads == 1
    ticks[0] = 104.9
    store.silences = []
    assert len(await cache.current(NOW)) == 1 and store.reads == 1  # up to 5 s stale
    ticks[0] = 105.0
    assert await cache.current(NOW) == [] and store.reads == 2
    ticks[0] = 111.0
    store.read_errors = [RedisConnectionError("down")]
    with pytest.raises(RedisConnectionError):
        await cache.current(NOW)
    assert await cache.current(NOW) == [] and store.reads == 4  # the failed read did not count as fresh


# --- the command, where it needs no Redis ---------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--rule", "x", "--author", "a", "--comment", "c"], "give exactly one of --duration and --until"),
        (
            ["--rule", "x", "--duration", "1d", "--until", "2099-01-01", "--author", "a", "--comment", "c"],
            "give exactly one of --duration and --until",
        ),
        (["--duration", "7d", "--author", "a", "--comment", "c"], "no matchers"),
        (["--rule", "x", "--duration", "7d", "--author", "a", "--comment", " "], "comment: must not be empty"),
        (["--rule", "x", "--until", "2020-01-01", "--author", "a", "--comment", "c"], "is not in the future"),
        (["--rule", "x", "--duration", "soon", "--author", "a", "--comment", "c"], "is not a duration"),
        (
            ["--matcher", "severity=~(", "--duration", "7d", "--author", "a", "--comment", "c"],
            "not a regular expression",
        ),
        (["--rule", "x", "--duration", "7d", "--comment", "c"], "Missing option '--author'"),
    ],
)
def test_silence_add_refuses_a_bad_silence_before_touching_redis(arguments: list[str], says: str) -> None:
    result = CliRunner().invoke(
        main, ["silence", "add", *arguments], env={"CHURNWATCH_REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    assert result.exit_code in (1, 2)
    assert says in result.output
