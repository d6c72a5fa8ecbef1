import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from alerts.dispatch import AlertDispatcher, DeliveryOutcome, DispatchResult, InMemoryDeliveryLog
from alerts.log_sink import LogNotifier, format_line
from alerts.model import Alert
from alerts.notifier import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from rules.base import Severity
from tests import alerts_factory


def make_alert(alert_id: str = "alert-1") -> Alert:
    return alerts_factory.make_alert(
        alert_id=alert_id, customer_id="cust-42", rule_id="nps-detractor", severity=Severity.CRITICAL
    )


@dataclass
class ScriptedNotifier:
    """Raises the scripted errors in order, then succeeds; records every call."""

    name: str
    errors: list[Exception] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    delay: float = 0.0

    async def notify(self, alert: Alert) -> None:
        self.calls.append(alert.alert_id)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.errors:
            raise self.errors.pop(0)


@dataclass
class Recorder:
    outcomes: list[tuple[str, str, float]] = field(default_factory=list)

    def __call__(self, sink: str, outcome: str, seconds: float) -> None:
        self.outcomes.append((sink, outcome, seconds))


def retryable(sink: str, retry_after: float | None = None) -> RetryableDeliveryError:
    return RetryableDeliveryError(sink, "HTTP 503", status=503, retry_after=retry_after)


def dispatcher(
    *notifiers: ScriptedNotifier | LogNotifier,
    log: InMemoryDeliveryLog | None = None,
    attempts: int = 3,
    recorder: Recorder | None = None,
) -> AlertDispatcher:
    return AlertDispatcher(
        list(notifiers),
        log or InMemoryDeliveryLog(),
        attempts=attempts,
        backoff_max=0.01,
        backoff_initial=0.001,
        on_outcome=recorder,
    )


@pytest.mark.asyncio
async def test_retryable_error_is_retried_then_delivered_and_logged() -> None:
    sink = ScriptedNotifier("slack", errors=[retryable("slack"), retryable("slack")])
    log, recorder = InMemoryDeliveryLog(), Recorder()

    result = await dispatcher(sink, log=log, recorder=recorder).dispatch(make_alert())

    assert sink.calls == ["alert-1"] * 3
    assert result.ok
    assert result.outcome("slack") is DeliveryOutcome.DELIVERED
    assert result.outcomes[0].attempts == 3
    assert await log.already_delivered(make_alert(), "slack")
    assert [(s, o) for s, o, _ in recorder.outcomes] == [("slack", "delivered")]
    assert recorder.outcomes[0][2] >= 0


@pytest.mark.asyncio
async def test_permanent_error_is_not_retried() -> None:
    sink = ScriptedNotifier("slack", errors=[PermanentDeliveryError("slack", "HTTP 400: invalid_blocks", status=400)])
    log, recorder = InMemoryDeliveryLog(), Recorder()

    result = await dispatcher(sink, log=log, recorder=recorder).dispatch(make_alert())

    assert sink.calls == ["alert-1"]
    assert result.outcome("slack") is DeliveryOutcome.FAILED_PERMANENT
    assert str(result.undelivered["slack"]) == "failed_permanent (slack: HTTP 400: invalid_blocks)"
    assert not await log.already_delivered(make_alert(), "slack")
    assert [(s, o) for s, o, _ in recorder.outcomes] == [("slack", "failed_permanent")]


@pytest.mark.asyncio
async def test_retries_stop_after_attempts() -> None:
    sink = ScriptedNotifier("webhook", errors=[retryable("webhook") for _ in range(10)])
    log = InMemoryDeliveryLog()

    result = await dispatcher(sink, log=log, attempts=4).dispatch(make_alert())

    assert len(sink.calls) == 4
    assert result.outcome("webhook") is DeliveryOutcome.FAILED_RETRIES_EXHAUSTED
    assert result.outcomes[0].attempts == 4
    assert set(result.undelivered) == {"webhook"}
    assert not await log.already_delivered(make_alert(), "webhook")


@pytest.mark.asyncio
async def test_one_failing_sink_does_not_block_the_others() -> None:
    broken = ScriptedNotifier("slack", errors=[retryable("slack") for _ in range(10)], delay=0.01)
    crashing = ScriptedNotifier("webhook", errors=[RuntimeError("bug in sink")])
    logged = ScriptedNotifier("log")
    recorder = Recorder()

    result = await dispatcher(broken, crashing, logged, recorder=recorder).dispatch(make_alert())

    assert [o.outcome for o in result.outcomes] == [
        DeliveryOutcome.FAILED_RETRIES_EXHAUSTED,
        DeliveryOutcome.FAILED_PERMANENT,
        DeliveryOutcome.DELIVERED,
    ]
    assert logged.calls == ["alert-1"]
    assert set(result.undelivered) == {"slack", "webhook"}
    assert "RuntimeError: bug in sink" in str(result.undelivered["webhook"])
    assert {s for s, _, _ in recorder.outcomes} == {"slack", "webhook", "log"}


@pytest.mark.asyncio
async def test_sinks_run_concurrently() -> None:
    slow = [ScriptedNotifier(f"sink-{i}", delay=0.2) for i in range(5)]
    started = asyncio.get_running_loop().time()
    result = await dispatcher(*slow).dispatch(make_alert())
    assert result.ok
    assert asyncio.get_running_loop().time() - started < 0.6


@pytest.mark.asyncio
async def test_already_delivered_sink_is_skipped_as_duplicate() -> None:
    log, recorder = InMemoryDeliveryLog(), Recorder()
    slack, webhook = ScriptedNotifier("slack"), ScriptedNotifier("webhook")
    await log.mark_delivered(make_alert(), "slack")

    result = await dispatcher(slack, webhook, log=log, recorder=recorder).dispatch(make_alert())

    assert slack.calls == []
    assert webhook.calls == ["alert-1"]
    assert [o.outcome for o in result.outcomes] == [DeliveryOutcome.DUPLICATE, DeliveryOutcome.DELIVERED]
    assert result.ok
    assert ("slack", "duplicate", 0.0) in recorder.outcomes


@pytest.mark.asyncio
async def test_redelivered_alert_is_sent_again_only_where_it_failed() -> None:
    log = InMemoryDeliveryLog()
    flaky = ScriptedNotifier("slack", errors=[PermanentDeliveryError("slack", "HTTP 404")])
    steady = ScriptedNotifier("log")
    d = dispatcher(flaky, steady, log=log)

    first = await d.dispatch(make_alert())
    second = await d.dispatch(make_alert())

    assert set(first.undelivered) == {"slack"}
    assert second.ok
    assert [o.outcome for o in second.outcomes] == [DeliveryOutcome.DELIVERED, DeliveryOutcome.DUPLICATE]
    assert steady.calls == ["alert-1"]


@pytest.mark.asyncio
async def test_retry_after_is_honoured_but_capped_by_backoff_max() -> None:
    sink = ScriptedNotifier("slack", errors=[retryable("slack", retry_after=0.3)])
    d = AlertDispatcher(
        [sink], InMemoryDeliveryLog(), attempts=2, backoff_max=timedelta(seconds=0.5), backoff_initial=0.001
    )
    started = asyncio.get_running_loop().time()
    assert (await d.dispatch(make_alert())).ok
    assert 0.3 <= asyncio.get_running_loop().time() - started < 0.5

    capped = ScriptedNotifier("slack", errors=[retryable("slack", retry_after=3600)])
    d = AlertDispatcher([capped], InMemoryDeliveryLog(), attempts=2, backoff_max=0.05, backoff_initial=0.001)
    started = asyncio.get_running_loop().time()
    assert (await d.dispatch(make_alert())).ok
    assert asyncio.get_running_loop().time() - started < 0.5


@pytest.mark.asyncio
async def test_failed_delivery_log_write_still_counts_as_delivered() -> None:
    class WriteOnceBrokenLog(InMemoryDeliveryLog):
        async def mark_delivered(self, alert: Alert, sink: str) -> None:
            raise ConnectionError("redis down")

    sink = ScriptedNotifier("slack")
    result = await dispatcher(sink, log=WriteOnceBrokenLog()).dispatch(make_alert())
    assert result.outcome("slack") is DeliveryOutcome.DELIVERED


@pytest.mark.asyncio
async def test_unreadable_delivery_log_raises_before_anything_is_sent() -> None:
    class UnreadableLog(InMemoryDeliveryLog):
        async def already_delivered(self, alert: Alert, sink: str) -> bool:
            raise ConnectionError("redis down")

    sink = ScriptedNotifier("slack")
    with pytest.raises(ConnectionError):
        await dispatcher(sink, log=UnreadableLog()).dispatch(make_alert())
    assert sink.calls == []


@pytest.mark.asyncio
async def test_broken_outcome_callback_does_not_break_delivery() -> None:
    def explode(sink: str, outcome: str, seconds: float) -> None:
        raise ValueError("metrics bug")

    d = AlertDispatcher(
        [ScriptedNotifier("log")], InMemoryDeliveryLog(), attempts=1, backoff_max=0.01, on_outcome=explode
    )
    assert (await d.dispatch(make_alert())).ok


def test_sink_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        dispatcher(ScriptedNotifier("slack"), ScriptedNotifier("slack"))


def test_in_memory_log_forgets_the_oldest_entries() -> None:
    async def scenario() -> list[bool]:
        log = InMemoryDeliveryLog(max_entries=2)
        for alert_id in ("a", "b", "c"):
            await log.mark_delivered(make_alert(alert_id), "log")
        return [await log.already_delivered(make_alert(i), "log") for i in ("a", "b", "c")]

    assert asyncio.run(scenario()) == [False, True, True]


@pytest.mark.asyncio
async def test_log_notifier_writes_one_readable_line(caplog: pytest.LogCaptureFixture) -> None:
    alert = make_alert().model_copy(update={"message": "NPS answer 3/10.\nFake line\r\x1b[31m"})
    caplog.set_level(logging.INFO, logger="churnwatch.alerts")

    result = await dispatcher(LogNotifier()).dispatch(alert)

    assert result.ok
    [record] = [r for r in caplog.records if r.name == "churnwatch.alerts"]
    assert record.levelno == logging.CRITICAL
    line = record.getMessage()
    assert line == format_line(alert)
    assert line.startswith("CRITICAL churn alert · customer cust-42 · rule nps-detractor · NPS answer 3/10.")
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert record.__dict__["alert_id"] == "alert-1"


def test_errors_form_a_small_tree() -> None:
    assert issubclass(RetryableDeliveryError, DeliveryError)
    assert issubclass(PermanentDeliveryError, DeliveryError)
    assert not issubclass(PermanentDeliveryError, RetryableDeliveryError)
    assert isinstance(DispatchResult("a", ()).ok, bool)
