"""The processor's Redis roles in memory: for ``churnwatch replay`` and for tests, behind the same Protocols.

- :class:`MemoryStore` (:class:`~stream.contracts.WindowStore`): the window fold of
  :class:`~stream.windows.memory.MemoryWindows` plus the alert ledger of ``claim.lua``,
  ``published.lua`` and ``resolve.lua``, ported line for line. The ledger lives in the customer's
  hash exactly as in Redis (``a:<rule>`` = ``fired_ms|claim key|published 0/1|episode``,
  ``r:<rule>`` = ``claim key|confirmed 0/1``), so :meth:`MemoryStore.read` decodes the same hash
  the Redis store would, and claim keys (hence alert ids) are the same digests.
- :class:`MemoryDueIndex` (:class:`~stream.due_index.DueIndex`): ``claim_due.lua``'s lease, in
  epoch milliseconds as the sorted set stores them, oldest due first and ties by customer id, as
  ``ZRANGEBYSCORE`` returns them. :meth:`MemoryDueIndex.earliest_due` tells a replay when to scan.
- :class:`MemoryPendingLedger` and :class:`MemoryQuarantineLedger`: a dict each.

``tests/integration/test_replay_matches_worker.py`` runs random operations against these and the
Redis adapters and compares every answer and every ledger field. Wall-clock expiries (the idle
ttl of a customer's hash, the dedupe ttl) are not modelled, as in :mod:`stream.windows.memory`.
"""

from __future__ import annotations

import dataclasses
import heapq
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from alerts.cooldown import Claim, ClaimRecord, ClaimRequest, PublishedClaim, decide_claim
from rules.state import CustomerState, epoch_ms, from_epoch_ms
from stream.due_index import DueMoments
from stream.evaluation_queue import Trigger
from stream.events import EventBase
from stream.quarantine import QuarantineEntry
from stream.windows import keys
from stream.windows.memory import MemoryWindows
from stream.windows.store import OpenAlert, WindowPolicy, WindowUpdate, _digest

_RESOLVED = re.compile(r"^([^|]*)\|([01])$")
"""``r:<rule>`` as resolve.lua matches it: the resolved claim's key, and whether the resolution was published."""


class MemoryStore:
    """Windows and alert ledger of every customer, in one process's memory."""

    def __init__(self, policy: WindowPolicy) -> None:
        self._windows = MemoryWindows(policy)
        self._ledgers: dict[str, dict[str, str]] = {}
        """State key -> the ledger fields of that hash (``a:<rule>``, ``r:<rule>``)."""

    def _ledger(self, customer_id: str) -> dict[str, str]:
        return self._ledgers.setdefault(keys.customer_state(customer_id), {})

    def hash_fields(self, customer_id: str) -> dict[str, str]:
        """The customer's whole hash, as ``HGETALL`` on the Redis store would return it."""
        fields = self._windows.fields(customer_id)
        ledger = self._ledgers.get(keys.customer_state(customer_id))
        return {**fields, **ledger} if ledger else fields

    async def apply(self, event: EventBase) -> WindowUpdate:
        # The state decoded from the whole hash is the windows' state: the decoder skips the ledger.
        return self._windows.apply(event)

    async def apply_batch(self, events: Sequence[EventBase]) -> list[WindowUpdate]:
        return self._windows.apply_all(events)

    async def read(self, customer_id: str) -> CustomerState:
        return self._windows.read(customer_id)

    async def read_many(self, customer_ids: Sequence[str]) -> list[CustomerState | Exception]:
        states: list[CustomerState | Exception] = []
        for customer_id in customer_ids:
            try:
                states.append(self._windows.read(customer_id))
            except Exception as exc:  # as the Redis store: one customer's broken state is theirs
                states.append(exc)
        return states

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
        return self._claim(ClaimRequest(customer_id, rule_id, at, cooldown, event_id, episode))

    async def claim_alerts(self, requests: Sequence[ClaimRequest]) -> list[Claim | Exception]:
        claims: list[Claim | Exception] = []
        for request in requests:
            try:
                claims.append(self._claim(request))
            except Exception as exc:  # as the Redis store: one customer's broken ledger is theirs
                claims.append(exc)
        return claims

    def _claim(self, request: ClaimRequest) -> Claim:
        """claim.lua: see its header for the outcomes."""
        ledger, field = self._ledger(request.customer_id), f"a:{request.rule_id}"
        stored = ledger.get(field)
        try:
            previous = None if stored is None else ClaimRecord.parse(stored)
        except ValueError as exc:
            raise ValueError(f"{field} of customer {request.customer_id!r}: {exc}") from None
        claim, record = decide_claim(
            previous,
            now_ms=epoch_ms(request.at),
            key=_digest(request.event_id),
            cooldown_ms=int(request.cooldown.total_seconds() * 1000),
            episode=request.episode or "",
        )
        if record is not None:
            ledger[field] = str(record)
        return claim

    async def confirm_published(self, *, customer_id: str, rule_id: str, claim_key: str) -> None:
        """published.lua: only the claim still standing under ``claim_key`` is marked."""
        ledger, field = self._ledger(customer_id), f"a:{rule_id}"
        try:
            record = ClaimRecord.parse(ledger.get(field, ""))
        except ValueError:  # no claim (or an unreadable one): nothing to mark, as the script
            return
        if record.key == claim_key:
            ledger[field] = str(dataclasses.replace(record, published=True))

    async def confirm_published_many(self, claims: Sequence[PublishedClaim]) -> None:
        for c in claims:
            await self.confirm_published(customer_id=c.customer_id, rule_id=c.rule_id, claim_key=c.claim_key)

    async def resolve_open_alerts(self, customer_id: str, at: datetime, rule_ids: Sequence[str]) -> list[OpenAlert]:
        """resolve.lua: published claims made before ``at`` whose resolution is not yet confirmed."""
        if not rule_ids:
            return []
        ledger, t, out = self._ledger(customer_id), epoch_ms(at), []
        for rule in rule_ids:
            try:
                claim = ClaimRecord.parse(ledger.get(f"a:{rule}", ""))
            except ValueError:  # no claim (resolve.lua skips one it cannot match, too)
                continue
            if not claim.published or not claim.fired_ms < t:
                continue
            key = claim.key
            resolved = _RESOLVED.match(ledger.get(f"r:{rule}", ""))
            resolved_key, confirmed = resolved.groups() if resolved else (None, None)
            if resolved_key != key:
                ledger[f"r:{rule}"] = f"{key}|0"
                out.append(OpenAlert(rule, key, from_epoch_ms(claim.fired_ms)))
            elif confirmed == "0":
                out.append(OpenAlert(rule, key, from_epoch_ms(claim.fired_ms)))
        return out

    async def resolve_open_alerts_many(
        self, returns: Sequence[tuple[str, datetime, Sequence[str]]]
    ) -> list[list[OpenAlert]]:
        return [await self.resolve_open_alerts(customer_id, at, rule_ids) for customer_id, at, rule_ids in returns]

    async def confirm_resolved(self, customer_id: str, rule_id: str, claim_key: str) -> None:
        self._ledger(customer_id)[f"r:{rule_id}"] = f"{claim_key}|1"


class MemoryDueIndex:
    """Per partition: customer -> due epoch ms, and a heap of (due ms, customer) whose entries are
    valid while they match the dict (rescheduling leaves the old entry behind; it is skipped)."""

    def __init__(self, *, lease: timedelta = timedelta(minutes=1)) -> None:
        self._lease_ms = int(lease.total_seconds() * 1000)
        self._due: defaultdict[int, dict[str, int]] = defaultdict(dict)
        self._heaps: defaultdict[int, list[tuple[int, str]]] = defaultdict(list)

    async def schedule(self, partition: int, customer_id: str, at: datetime | None) -> None:
        await self.schedule_many({(partition, customer_id): at})

    async def schedule_many(self, moments: DueMoments) -> None:
        for (partition, customer_id), at in moments.items():
            due = self._due[partition]
            if at is None:
                due.pop(customer_id, None)
            else:
                due[customer_id] = epoch_ms(at)
                self._push(partition, due[customer_id], customer_id)

    async def claim_due(self, partition: int, now: datetime, limit: int) -> list[str]:
        """claim_due.lua: the customers due at ``now`` (at most ``limit``), each leased until now + lease."""
        due, heap, now_ms = self._due[partition], self._heaps[partition], epoch_ms(now)
        claimed: list[str] = []
        while heap and len(claimed) < limit and heap[0][0] <= now_ms:
            at_ms, customer = heapq.heappop(heap)
            if due.get(customer) == at_ms and customer not in claimed[-1:]:  # equal entries sit side by side
                claimed.append(customer)
        for customer in claimed:
            due[customer] = now_ms + self._lease_ms
            self._push(partition, now_ms + self._lease_ms, customer)
        return claimed

    async def earliest_due(self, partition: int) -> datetime | None:
        """The earliest due moment of the partition (leases included), None when nobody is due."""
        due, heap = self._due[partition], self._heaps[partition]
        while heap and due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return from_epoch_ms(heap[0][0]) if heap else None

    def size(self, partition: int) -> int:
        return len(self._due[partition])

    def _push(self, partition: int, at_ms: int, customer_id: str) -> None:
        heap, due = self._heaps[partition], self._due[partition]
        heapq.heappush(heap, (at_ms, customer_id))
        if len(heap) > 2 * len(due) + 1024:  # mostly superseded entries: rebuild from the dict
            heap[:] = [(ms, customer) for customer, ms in due.items()]
            heapq.heapify(heap)


class MemoryPendingLedger:
    """Waiting evaluations (:class:`~stream.evaluation_queue.PendingLedger`), oldest first: as in
    Redis, marking again keeps the customer's place and replaces what triggered them."""

    def __init__(self) -> None:
        self._waiting: dict[str, Trigger] = {}

    async def mark_pending(self, triggers: Sequence[Trigger]) -> None:
        for trigger in triggers:
            self._waiting[trigger.customer_id] = trigger

    async def clear_pending(self, customer_ids: Sequence[str]) -> None:
        for customer_id in customer_ids:
            self._waiting.pop(customer_id, None)

    async def load_pending(self, limit: int) -> list[Trigger]:
        return list(self._waiting.values())[:limit]


class MemoryQuarantineLedger:
    """Quarantined customers (:class:`~stream.quarantine.QuarantineLedger`), oldest first."""

    def __init__(self) -> None:
        self._held: dict[str, QuarantineEntry] = {}

    async def add(self, entry: QuarantineEntry) -> None:
        self._held[entry.customer_id] = entry

    async def entries(self) -> list[QuarantineEntry]:
        return sorted(self._held.values(), key=lambda e: e.since)

    async def release(self, customer_id: str) -> bool:
        return self._held.pop(customer_id, None) is not None
