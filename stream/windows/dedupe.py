"""The bounded dedupe of a customer's events, shared by ``update.lua`` and :mod:`stream.windows.memory`.

Why bounded, and why in the customer's own hash: one ``SET NX EX`` marker key per event (the
design before this one) costs about 104 bytes per event for the whole dedupe ttl, so a customer
whose history is replayed held 26 KB of markers for a week, eight times their state. Instead the
state hash keeps two fields:

- ``dd``: the ``ids_kept`` (``CHURNWATCH_DEDUPE_IDS``, default 256) event ids of the customer with
  the latest event times, as fixed-width records sorted by event time, oldest first: 8 hex digits of
  the event's epoch second (clamped to 0 .. 2**32 - 1), then the 12-character digest of the event
  id (:func:`event_digest`); 20 bytes a record, at most 5,120 bytes at the default;
- ``df`` (the *floor*): the latest event second of any record ever evicted from ``dd`` (absent while
  none was).

Events are kept by event time, not arrival, so one far-future or very late event cannot push the
floor up or hold a slot for long; ties keep arrival order (a new record goes after those of its
second).

The decision for an event whose id is not in ``dd`` (after the retention check, which comes first):

- event second > floor: a new event. Every id evicted so far had a second <= floor, so an id with a
  later second that is not in ``dd`` was never applied: it is counted and recorded;
- event second <= floor: it cannot be told apart from a redelivery of an evicted event, so it is
  treated as one (``duplicate``: not counted, not recorded). That is the one new way an event can
  go uncounted: when it arrives after at least ``ids_kept`` of the customer's events with an
  event time at or after its own second were already counted (a genuinely new event that late, by
  count, is handled like an event past the retention horizon).

Hence the guarantee, with no time limit other than the customer's own hash (``CHURNWATCH_IDLE_TTL``
of silence forgets both): **an event is never counted twice**, whatever the redelivery (crash,
rebalance, a producer sending it again, however long after), since an applied id is either still in
``dd`` or has a second <= floor; **and it is counted once** unless it is late by the count above, or
late by the retention horizon. The digest is 72 bits of BLAKE2b: two distinct ids of one customer
collide (the second one wrongly dropped) with a probability below ``ids_kept / 2**72`` per event,
about 5e-20 at the default.

Migration from the marker keys: a state written before this has no ``dd``; an event applied then
and redelivered now is recognised by its old marker (``cw:{id}:seen:<event id>``), which the script
still reads (``EXISTS``, nothing written) and which expires ``CHURNWATCH_DEDUPE_TTL`` after it was
written. After one dedupe ttl past the upgrade no marker is left and the check costs one key lookup.
The in-memory fold never wrote markers, so it has no such check. Going back to the marker version
after events were applied without markers would count those again if redelivered.
"""

from __future__ import annotations

import base64
import hashlib
from bisect import bisect_right
from dataclasses import dataclass, field

RECORD = 20
"""Bytes of one ``dd`` record: 8 hex digits of the event second, then the 12-character digest."""
DIGEST_CHARS = 12
MAX_SECOND = 2**32 - 1
DEFAULT_IDS_KEPT = 256


def event_digest(event_id: str) -> str:
    """72 bits of BLAKE2b of the event id, URL-safe base64 (12 characters, no padding): fixed width,
    so ``dd`` is a string of fixed-width records, and text, so the hash stays UTF-8."""
    return base64.urlsafe_b64encode(hashlib.blake2b(event_id.encode(), digest_size=9).digest()).decode()


def event_second(epoch_ms: int) -> int:
    """The second a record keeps: clamped to what 8 hex digits hold (monotone, so the floor stays sound)."""
    return min(MAX_SECOND, max(0, epoch_ms // 1000))


@dataclass
class DedupeWindow:
    """``dd`` and ``df`` of one customer, as ``update.lua`` maintains them (the in-memory copy)."""

    seconds: list[int] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)
    floor: int | None = None

    def seen(self, digest: str) -> bool:
        return digest in self.kept

    def too_old(self, second: int) -> bool:
        """At or before the floor: not to be told apart from an evicted (already counted) event."""
        return self.floor is not None and second <= self.floor

    def record(self, digest: str, second: int, ids_kept: int) -> None:
        """Insert after the records of the same second, then evict the oldest beyond ``ids_kept``."""
        at = bisect_right(self.seconds, second)
        self.seconds.insert(at, second)
        self.digests.insert(at, digest)
        self.kept.add(digest)
        drop = len(self.seconds) - ids_kept
        if drop > 0:
            newest_dropped = self.seconds[drop - 1]
            self.floor = newest_dropped if self.floor is None else max(self.floor, newest_dropped)
            for gone in self.digests[:drop]:
                self.kept.discard(gone)
            del self.seconds[:drop], self.digests[:drop]

    def fields(self) -> dict[str, str]:
        out = {"dd": "".join(f"{s:08x}{d}" for s, d in zip(self.seconds, self.digests, strict=True))}
        if self.floor is not None:
            out["df"] = str(self.floor)
        return out
