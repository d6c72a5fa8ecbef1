"""The signed generic webhook against a real local HTTP server: what the receiver gets verifies."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re

import pytest
from aiohttp import web
from pydantic import SecretStr

from alerts.dispatch import AlertDispatcher, DeliveryOutcome, InMemoryDeliveryLog
from alerts.model import Alert
from alerts.webhook import WebhookNotifier
from alerts.webhook_signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature, verify_signature
from stream.app import build_notifiers
from stream.settings import Settings
from tests import alerts_factory
from tests.unit.http_receiver import LocalReceiver, Reply

SECRET = "whsec-7c1e0f119a4c1a503c5b5d3e"
SENT_AT = 1_733_100_000.75


class RawBodyReceiver(LocalReceiver):
    """Also keeps each request's body as the bytes that arrived: a signature covers bytes, not JSON."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.raw_bodies: list[bytes] = []

    async def _handle(self, request: web.Request) -> web.Response:
        self.raw_bodies.append(await request.read())  # aiohttp keeps it for the text() that follows
        return await super()._handle(request)


def make_alert() -> Alert:
    # cust-42: what the tampering test rewrites; non-ASCII text: a signature is over the UTF-8 bytes sent.
    return alerts_factory.make_alert(customer_id="cust-42", message="NPS answer 3/10 (previous answer 9): “déçu”.")


async def signed_request(secret: str = SECRET) -> tuple[RawBodyReceiver, bytes]:
    async with RawBodyReceiver() as receiver:
        webhook = WebhookNotifier(receiver.url_for("/hooks/churn"), secret=SecretStr(secret), clock=lambda: SENT_AT)
        await webhook.notify(make_alert())
    [raw] = receiver.raw_bodies
    return receiver, raw


async def test_the_signature_verifies_over_the_exact_bytes_received() -> None:
    receiver, raw = await signed_request()
    [(_, headers, body)] = receiver.requests

    assert headers[TIMESTAMP_HEADER] == "1733100000"
    assert re.fullmatch(r"v1=[0-9a-f]{64}", headers[SIGNATURE_HEADER])
    # The documented format, computed here without the module's helper.
    expected = hmac.new(SECRET.encode(), b"v1:1733100000:" + raw, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"v1={expected}"
    assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], raw, headers[SIGNATURE_HEADER], now=SENT_AT + 2)
    assert verify_signature(SecretStr(SECRET), headers[TIMESTAMP_HEADER], raw, headers[SIGNATURE_HEADER], SENT_AT)
    # Still the alert as JSON, with its idempotency key.
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"] == make_alert().alert_id
    assert Alert.model_validate(json.loads(raw)) == make_alert()
    assert body == make_alert().model_dump(mode="json")


async def test_a_tampered_body_timestamp_or_secret_fails() -> None:
    receiver, raw = await signed_request()
    headers = receiver.requests[0].headers
    timestamp, header = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]

    tampered = raw.replace(b'"cust-42"', b'"cust-43"')
    assert tampered != raw
    assert not verify_signature(SECRET, timestamp, tampered, header, now=SENT_AT)
    assert not verify_signature(SECRET, timestamp, raw + b" ", header, now=SENT_AT)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), raw, header, now=SENT_AT)
    assert not verify_signature("another-secret", timestamp, raw, header, now=SENT_AT)
    # Parsing and re-serializing is not the same bytes: receivers must verify the raw body.
    reserialized = json.dumps(json.loads(raw)).encode()
    assert reserialized != raw
    assert not verify_signature(SECRET, timestamp, reserialized, header, now=SENT_AT)


async def test_stale_and_future_timestamps_are_rejected() -> None:
    receiver, raw = await signed_request()
    headers = receiver.requests[0].headers
    timestamp, header = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    sent = int(timestamp)

    assert verify_signature(SECRET, timestamp, raw, header, now=sent + 300)
    assert not verify_signature(SECRET, timestamp, raw, header, now=sent + 301)
    assert not verify_signature(SECRET, timestamp, raw, header, now=sent - 301)
    assert verify_signature(SECRET, timestamp, raw, header, now=sent + 3000, tolerance=3600)


@pytest.mark.parametrize(
    ("timestamp", "header"),
    [
        (None, "v1=00"),
        ("1733100000", None),
        ("", "v1=00"),
        ("1733100000", ""),
        ("17331e5", "v1=00"),
        ("-1733100000", "v1=00"),
        ("1733100000", "v0=" + "0" * 64),
        ("1733100000", "garbage"),
    ],
)
def test_malformed_headers_are_rejected(timestamp: str | None, header: str | None) -> None:
    assert not verify_signature(SECRET, timestamp, b"{}", header, now=1_733_100_000)


def test_one_matching_signature_among_several_is_enough() -> None:
    """As Stripe's header during a secret rotation: the receiver accepts either secret's signature."""
    body = b'{"alert_id":"x"}'
    good = signature(SECRET, 1_733_100_000, body)
    assert verify_signature(SECRET, "1733100000", body, f"v1={'0' * 64}, {good}", now=1_733_100_000)
    assert not verify_signature(SECRET, "1733100000", body, f"v1={'0' * 64}", now=1_733_100_000)


async def test_without_a_secret_no_signature_headers_are_sent() -> None:
    async with RawBodyReceiver() as receiver:
        await WebhookNotifier(receiver.url_for("/hooks/churn")).notify(make_alert())

    [(_, headers, body)] = receiver.requests
    assert TIMESTAMP_HEADER not in headers
    assert SIGNATURE_HEADER not in headers
    assert headers["Content-Type"] == "application/json"
    assert body == make_alert().model_dump(mode="json")


async def test_each_attempt_is_signed_with_its_own_timestamp() -> None:
    """A retry must not carry the first attempt's timestamp: a long retry would arrive stale."""
    clock = itertools.count(1_733_100_000, 40)
    async with RawBodyReceiver([Reply(503), Reply(200)]) as receiver:
        webhook = WebhookNotifier(receiver.url_for("/hooks/churn"), secret=SecretStr(SECRET), clock=lambda: next(clock))
        dispatcher = AlertDispatcher([webhook], InMemoryDeliveryLog(), attempts=3, backoff_max=0.05)
        result = await dispatcher.dispatch(make_alert())

    assert result.outcome("webhook") is DeliveryOutcome.DELIVERED
    stamps = [r.headers[TIMESTAMP_HEADER] for r in receiver.requests]
    assert stamps == ["1733100000", "1733100040"]
    for request, raw in zip(receiver.requests, receiver.raw_bodies, strict=True):
        stamp = request.headers[TIMESTAMP_HEADER]
        assert verify_signature(SECRET, stamp, raw, request.headers[SIGNATURE_HEADER], now=float(stamp))


async def test_the_worker_signs_with_churnwatch_webhook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    async with RawBodyReceiver() as receiver:
        monkeypatch.setenv("CHURNWATCH_WEBHOOK_URL", receiver.url_for("/hooks/churn"))
        monkeypatch.setenv("CHURNWATCH_WEBHOOK_SECRET", SECRET)
        settings = Settings()
        assert SECRET not in repr(settings)
        [webhook] = [n for n in build_notifiers(settings) if n.name == "webhook"]
        await webhook.notify(make_alert())

    [raw] = receiver.raw_bodies
    headers = receiver.requests[0].headers
    assert verify_signature(
        SECRET, headers[TIMESTAMP_HEADER], raw, headers[SIGNATURE_HEADER], now=float(headers[TIMESTAMP_HEADER])
    )
