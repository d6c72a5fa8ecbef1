"""The Redis window store: apply events atomically, read state, claim alerts.

:meth:`RedisWindowStore.apply_batch` sends a whole batch in one pipelined round trip: one script
call per customer, which applies their events of the batch in order and brings their state back
once. Scripts are atomic, so a crash never leaves half of a customer's update.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis

from alerts.cooldown import Claim, ClaimOutcome, ClaimRequest, PublishedClaim
from rules.state import CustomerState, epoch_ms, from_epoch_ms
from stream.events import EventBase, FeedbackEvent, InteractionEvent, PurchaseEvent
from stream.windows import keys
from stream.windows.codec import as_text, state_from_hash, to_cents
from stream.windows.dedupe import DEFAULT_IDS_KEPT, event_digest


class UpdateOutcome(StrEnum):
    OK = "ok"
    DUPLICATE = "duplicate"
    LATE = "late"


class WindowUpdate:
    """What applying an event did, and the customer's state after it (for a duplicate: the current
    state; for a late event: empty). The state is decoded on first use: an evaluation that has to
    wait needs only the watermark, and decoding every day series is most of the client's work."""

    def __init__(
        self, outcome: UpdateOutcome, customer_id: str, fields: Mapping[Any, Any], *, has_state: bool = True
    ) -> None:
        self.outcome = outcome
        self._customer_id = customer_id
        self._fields = fields
        self.has_state = has_state
        """False for an update of a batch that was not its customer's last (see ``apply_batch``)."""

    @cached_property
    def state(self) -> CustomerState:
        if not self.has_state:
            raise LookupError(f"this update of {self._customer_id!r} was not their last of the batch: no state")
        return state_from_hash(self._customer_id, self._fields)

    @property
    def watermark(self) -> datetime | None:
        raw = self._fields.get(b"wm", self._fields.get("wm"))
        return from_epoch_ms(int(raw)) if raw else None


@dataclass(frozen=True)
class WindowPolicy:
    retention: timedelta
    dedupe_ttl: timedelta
    """How long an alert's ``:sent:`` marker lives, and the event markers of versions before the
    bounded dedupe did (the update script still reads those: see :mod:`stream.windows.dedupe`)."""
    idle_ttl: timedelta
    feedback_history: int
    dedupe_ids: int = DEFAULT_IDS_KEPT
    """Event ids kept per customer in the state hash (``dd``), latest event times first: the bound of
    the dedupe (:mod:`stream.windows.dedupe` says what it guarantees)."""

    def __post_init__(self) -> None:
        if self.dedupe_ids < 1:
            raise ValueError(f"dedupe_ids must be >= 1, not {self.dedupe_ids}")


@dataclass(frozen=True)
class OpenAlert:
    """An absence alert that a returning customer resolves (see ``resolve.lua``)."""

    rule_id: str
    claim_key: str
    alerted_at: datetime


def _script(name: str) -> str:
    return (files("stream.windows") / name).read_text()


class RedisWindowStore:
    def __init__(self, redis: Redis, policy: WindowPolicy) -> None:
        self._redis = redis
        self._policy = policy
        self._update = redis.register_script(_script("update.lua"))
        self._claim = redis.register_script(_script("claim.lua"))
        self._published = redis.register_script(_script("published.lua"))
        self._resolve = redis.register_script(_script("resolve.lua"))

    def _run_call(self, run: Sequence[EventBase]) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of ``update.lua`` for a run of one customer's events."""
        p = self._policy
        customer_id = run[0].customer_id
        run_keys = [keys.customer_state(customer_id), *(keys.seen_event(customer_id, e.event_id) for e in run)]
        packed: list[list[str]] = []
        for event in run:
            head = [str(epoch_ms(event.occurred_at)), event.segment or "", event_digest(event.event_id)]
            if isinstance(event, PurchaseEvent):
                packed.append(["p", *head, str(to_cents(event.amount))])
            elif isinstance(event, InteractionEvent):
                packed.append(["i", *head, event.counted_kind])
            elif isinstance(event, FeedbackEvent):
                packed.append(["f", *head, event.kind, str(event.score)])
            else:  # pragma: no cover - the event union is closed
                raise TypeError(f"unknown event type {type(event).__name__}")
        args = [max(1, p.retention.days), p.dedupe_ids, int(p.idle_ttl.total_seconds()), p.feedback_history]
        return run_keys, [*args, json.dumps(packed, ensure_ascii=False)]

    @staticmethod
    def _updates_of(run: Sequence[EventBase], reply: list[Any]) -> list[WindowUpdate]:
        """One update per event of the run; the state (after the run) goes with its last event that
        was not late, the one the processor judges the customer on."""
        raw_statuses, flat = reply
        statuses = [UpdateOutcome(as_text(status)) for status in raw_statuses]
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        counted = [n for n, status in enumerate(statuses) if status is not UpdateOutcome.LATE]
        last = counted[-1] if counted else None
        customer_id = run[0].customer_id
        return [
            WindowUpdate(status, customer_id, fields if n == last else {}, has_state=n == last or last is None)
            for n, status in enumerate(statuses)
        ]

    async def apply(self, event: EventBase) -> WindowUpdate:
        run_keys, args = self._run_call([event])
        return self._updates_of([event], await self._update(keys=run_keys, args=args))[0]

    async def apply_batch(self, events: Sequence[EventBase]) -> list[WindowUpdate]:
        """Apply events, each customer's in order, in one pipelined round trip (not a transaction:
        each customer's run is one atomic script call). Only the update of each customer's last event
        that was not late carries the state (decoding one state per event was most of the reply's
        cost); the others carry their outcome alone."""
        if not events:
            return []
        runs: dict[str, list[int]] = {}
        for n, event in enumerate(events):
            runs.setdefault(event.customer_id, []).append(n)
        pipe = self._redis.pipeline(transaction=False)
        for positions in runs.values():
            run_keys, args = self._run_call([events[n] for n in positions])
            await self._update(keys=run_keys, args=args, client=pipe)
        replies = await pipe.execute()
        updates: dict[int, WindowUpdate] = {}
        for positions, reply in zip(runs.values(), replies, strict=True):
            updates.update(zip(positions, self._updates_of([events[n] for n in positions], reply), strict=True))
        return [updates[n] for n in range(len(events))]

    async def read(self, customer_id: str) -> CustomerState:
        return state_from_hash(customer_id, await self._redis.hgetall(keys.customer_state(customer_id)))

    async def read_many(self, customer_ids: Sequence[str]) -> list[CustomerState | Exception]:
        """One round trip for all of them."""
        pipe = self._redis.pipeline(transaction=False)
        for customer_id in customer_ids:
            pipe.hgetall(keys.customer_state(customer_id))
        hashes = await pipe.execute() if customer_ids else []
        return [_decoded_or_error(c, h) for c, h in zip(customer_ids, hashes, strict=True)]

    async def claim_alert(
        self,
        *,
        customer_id: str,
        rule_id: str,
        at: datetime,
        cooldown: timedelta,
        event_id: str,
        episode: str | None,
    ) -> Claim:
        request = ClaimRequest(customer_id, rule_id, at, cooldown, event_id, episode)
        (claim,) = await self.claim_alerts([request])
        if isinstance(claim, Exception):
            raise claim
        return claim

    async def claim_alerts(self, requests: Sequence[ClaimRequest]) -> list[Claim | Exception]:
        """Each request's claim (``claim.lua``), in order, in one pipelined round trip; a claim the
        script fails on (an unreadable ledger field) comes back as its error, the customer's alone."""
        if not requests:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for r in requests:
            cooldown_ms = int(r.cooldown.total_seconds() * 1000)
            args: list[str | int] = [r.rule_id, epoch_ms(r.at), cooldown_ms, _digest(r.event_id), r.episode or ""]
            await self._claim(keys=[keys.customer_state(r.customer_id)], args=args, client=pipe)
        replies = await pipe.execute(raise_on_error=False)
        return [
            reply if isinstance(reply, Exception) else Claim(ClaimOutcome(as_text(reply[0])), as_text(reply[1]))
            for reply in replies
        ]

    async def confirm_published(self, *, customer_id: str, rule_id: str, claim_key: str) -> None:
        await self.confirm_published_many([PublishedClaim(customer_id, rule_id, claim_key)])

    async def confirm_published_many(self, claims: Sequence[PublishedClaim]) -> None:
        """Mark each claim published (``published.lua``: only the claim still standing under its key),
        in one pipelined round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for c in claims:
            await self._published(keys=[keys.customer_state(c.customer_id)], args=[c.rule_id, c.claim_key], client=pipe)
        if claims:
            await pipe.execute()

    async def resolve_open_alerts(self, customer_id: str, at: datetime, rule_ids: Sequence[str]) -> list[OpenAlert]:
        """Mark the customer's open alerts of ``rule_ids`` made before ``at`` resolved (pending until
        :meth:`confirm_resolved`); return those to publish, unconfirmed earlier ones included."""
        if not rule_ids:
            return []
        flat = await self._resolve(keys=[keys.customer_state(customer_id)], args=[epoch_ms(at), *rule_ids])
        return _open_alerts(flat)

    async def resolve_open_alerts_many(
        self, returns: Sequence[tuple[str, datetime, Sequence[str]]]
    ) -> list[list[OpenAlert]]:
        """:meth:`resolve_open_alerts` for each (customer, event time, rule ids), in order, in one
        pipelined round trip."""
        pipe = self._redis.pipeline(transaction=False)
        asked = [(customer_id, at, rule_ids) for customer_id, at, rule_ids in returns if rule_ids]
        for customer_id, at, rule_ids in asked:
            await self._resolve(keys=[keys.customer_state(customer_id)], args=[epoch_ms(at), *rule_ids], client=pipe)
        replies = iter(await pipe.execute() if asked else [])
        return [_open_alerts(next(replies)) if rule_ids else [] for _, _, rule_ids in returns]

    async def confirm_resolved(self, customer_id: str, rule_id: str, claim_key: str) -> None:
        await self._redis.hset(keys.customer_state(customer_id), f"r:{rule_id}", f"{claim_key}|1")

    async def already_delivered(self, customer_id: str, alert_id: str, sink: str) -> bool:
        return bool(await self._redis.exists(keys.delivered(customer_id, alert_id, sink)))

    async def mark_delivered(self, customer_id: str, alert_id: str, sink: str) -> None:
        ttl = int(self._policy.dedupe_ttl.total_seconds())
        await self._redis.set(keys.delivered(customer_id, alert_id, sink), b"1", ex=ttl)


def _open_alerts(flat: list[Any]) -> list[OpenAlert]:
    """resolve.lua's reply: {rule, claim key, fired ms, ...}."""
    return [
        OpenAlert(as_text(rule), as_text(key), from_epoch_ms(int(fired)))
        for rule, key, fired in zip(flat[::3], flat[1::3], flat[2::3], strict=True)
    ]


def _digest(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=10).hexdigest()


def _decoded_or_error(customer_id: str, fields: Mapping[bytes, bytes]) -> CustomerState | Exception:
    try:
        return state_from_hash(customer_id, fields)
    except Exception as exc:  # the customer's own broken state: their failure, not the others'
        return exc
