"""HMAC-SHA256 signatures for the generic webhook, in the manner of Slack's and Stripe's signing.

With a secret configured every POST carries::

    X-Churnwatch-Timestamp: <unix seconds>
    X-Churnwatch-Signature: v1=<hex HMAC-SHA256(secret, b"v1:" + timestamp + b":" + body)>

The signature covers the exact bytes sent, so a receiver must check it against the raw request
body, before parsing. The timestamp is signed with the body and checked against the receiver's
clock, so a captured request cannot be replayed later (Slack and Stripe allow five minutes). The
``v1`` prefix names the scheme, so another can be added without breaking receivers of this one;
a header may list several signatures separated by commas (as Stripe's does while secrets rotate).
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

TIMESTAMP_HEADER = "X-Churnwatch-Timestamp"
SIGNATURE_HEADER = "X-Churnwatch-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300
"""Seconds a timestamp may be away from the receiver's clock, either way."""


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes | SecretStr, timestamp: int | str, body: bytes) -> str:
    """The ``X-Churnwatch-Signature`` value for ``body`` sent at ``timestamp``: ``v1=<64 hex digits>``."""
    message = f"{SCHEME}:{timestamp}:".encode() + body
    return f"{SCHEME}=" + hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def signature_headers(secret: str | bytes | SecretStr, body: bytes, *, now: float) -> dict[str, str]:
    """Both headers for a request sent at ``now`` (unix seconds, cut to whole seconds)."""
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify_signature(
    secret: str | bytes | SecretStr,
    timestamp: str | None,
    body: bytes,
    header: str | None,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> bool:
    """Whether a request is authentic and fresh: for receivers, and the tests.

    ``timestamp`` and ``header`` are the two headers as received (None when missing), ``body`` the
    raw request body, ``now`` the receiver's clock in unix seconds. False for a missing or malformed
    header, a timestamp more than ``tolerance`` seconds away from ``now`` (stale or from the
    future), or no ``v1`` signature that matches; signatures are compared in constant time.
    """
    if not timestamp or not header or not timestamp.isascii() or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    offered = (part.strip() for part in header.split(","))
    return any(
        hmac.compare_digest(candidate.encode(), expected.encode())
        for candidate in offered
        if candidate.startswith(f"{SCHEME}=")
    )
