"""WebhookNotifier against a real local HTTP server."""

import aiohttp
import pytest
from pydantic import SecretStr

from alerts.dispatch import AlertDispatcher, DeliveryOutcome, InMemoryDeliveryLog
from alerts.model import Alert
from alerts.notifier import PermanentDeliveryError, RetryableDeliveryError, parse_retry_after, redact
from alerts.webhook import WebhookNotifier
from tests.alerts_factory import make_alert
from tests.unit.http_receiver import LocalReceiver, Reply

SECRET = "hook-token-5f1d2c3b4a59"
PATH = f"/hooks/churn/{SECRET}?sig=abc123def456"


@pytest.mark.asyncio
async def test_posts_the_alert_json_with_an_idempotency_key() -> None:
    async with LocalReceiver() as receiver:
        await WebhookNotifier(SecretStr(receiver.url_for(PATH))).notify(make_alert())

    [(path, headers, body)] = receiver.requests
    assert path == PATH
    assert headers["Idempotency-Key"] == make_alert().alert_id
    assert headers["Content-Type"] == "application/json"
    assert body == make_alert().model_dump(mode="json")
    assert Alert.model_validate(body) == make_alert()


@pytest.mark.asyncio
async def test_uses_a_given_session() -> None:
    async with LocalReceiver() as receiver, aiohttp.ClientSession() as session:
        webhook = WebhookNotifier(receiver.url_for(PATH), session=session, headers={"X-Team": "retention"})
        await webhook.notify(make_alert())
        await webhook.notify(make_alert())

    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["X-Team"] == "retention"


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_errors_and_rate_limits_are_retryable(status: int) -> None:
    async with LocalReceiver(default=Reply(status, {"Retry-After": "7"}, body=f"oops {PATH}")) as receiver:
        with pytest.raises(RetryableDeliveryError) as caught:
            await WebhookNotifier(receiver.url_for(PATH)).notify(make_alert())

    assert len(receiver.requests) == 1  # one attempt per call: retrying is the dispatcher's job
    assert caught.value.status == status
    assert caught.value.retry_after == 7
    assert SECRET not in str(caught.value)
    assert "abc123def456" not in str(caught.value)


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
async def test_other_client_errors_are_permanent(status: int) -> None:
    async with LocalReceiver(default=Reply(status, body="no such hook")) as receiver:
        with pytest.raises(PermanentDeliveryError) as caught:
            await WebhookNotifier(receiver.url_for(PATH), name="tickets").notify(make_alert())

    assert str(caught.value) == f"tickets: HTTP {status}: no such hook"


@pytest.mark.asyncio
async def test_timeout_and_refused_connection_are_retryable_and_redacted() -> None:
    async with LocalReceiver(default=Reply(200, delay=1.0)) as receiver:
        with pytest.raises(RetryableDeliveryError, match=r"no answer within 0\.3 s"):
            await WebhookNotifier(receiver.url_for(PATH), timeout=0.3).notify(make_alert())
        url = receiver.url_for(PATH)

    with pytest.raises(RetryableDeliveryError) as caught:
        await WebhookNotifier(url).notify(make_alert())
    assert "ClientConnectorError" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.asyncio
async def test_invalid_url_is_permanent() -> None:
    with pytest.raises(PermanentDeliveryError):
        await WebhookNotifier(f"not-a-url/{SECRET}").notify(make_alert())


@pytest.mark.asyncio
async def test_dispatcher_retries_a_503_until_the_receiver_recovers() -> None:
    async with LocalReceiver([Reply(503), Reply(503), Reply(200)]) as receiver:
        webhook = WebhookNotifier(receiver.url_for(PATH))
        dispatcher = AlertDispatcher([webhook], InMemoryDeliveryLog(), attempts=4, backoff_max=0.05)
        result = await dispatcher.dispatch(make_alert())

    assert result.outcome("webhook") is DeliveryOutcome.DELIVERED
    assert result.outcomes[0].attempts == 3
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {make_alert().alert_id}


def test_redact_removes_url_path_query_and_token_segments() -> None:
    url = f"https://hooks.example.com{PATH}"
    text = f"failed {url}; path {PATH}; quoted {SECRET.upper()}-no; token {SECRET}"
    cleaned = redact(text, url)
    assert SECRET not in cleaned
    assert "abc123def456" not in cleaned
    assert redact("nothing secret here", url) == "nothing secret here"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("soon", None), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_parse_retry_after_http_date_in_the_future() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == pytest.approx(30.0)
