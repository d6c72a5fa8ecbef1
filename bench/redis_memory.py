"""Bytes per customer: the Redis memory the worker's state takes once it has read the backlog.

Throughput is one half of sizing a deployment; the other is how much Redis a customer costs. This
measures the per-customer state hashes (the windows, the alert ledger and the bounded dedupe fields
``dd``/``df`` of :mod:`stream.windows.dedupe`, whose share is its ``HSTRLEN``), the per-event dedupe
marker keys of the versions before it (none are written now) and the alert markers with
``MEMORY USAGE`` (exact per key), and the ``INFO memory`` growth over the worker run as a cross-check that includes
what ``MEMORY USAGE`` does not count (the expires dictionary, hash-table growth).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis as redis_sync

from stream.windows import keys

STATE_PATTERN = keys.customer_state("*")
SEEN_PATTERN = keys.seen_event("*", "*")
SENT_PATTERN = keys.delivered("*", "*", "*")
"""SCAN patterns for every customer's keys, built by the functions that name them."""


@dataclass(frozen=True)
class MemoryReport:
    state_bytes: list[int]
    state_fields: list[int]
    dedupe_bytes: list[int]
    """``HSTRLEN`` of ``dd`` plus ``df`` per state hash: the dedupe's part of ``state_bytes``."""
    encodings: Counter[str]
    state_ttl: int
    seen_count: int
    seen_bytes: int
    seen_ttl: int
    sent_count: int
    sent_bytes: int
    used_before: int
    used_after: int


def used_memory(client: redis_sync.Redis) -> int:
    """``INFO memory`` ``used_memory``: every byte the server has allocated."""
    return int(client.info("memory")["used_memory"])


def _chunks(items: Sequence[bytes], size: int = 1000) -> Iterable[Sequence[bytes]]:
    for at in range(0, len(items), size):
        yield items[at : at + size]


def _memory_usage(client: redis_sync.Redis, keys: Sequence[bytes]) -> list[int]:
    sizes: list[int] = []
    for chunk in _chunks(keys):
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        sizes += [int(size or 0) for size in pipe.execute()]
    return sizes


def measure_memory(client: redis_sync.Redis, used_before: int) -> MemoryReport:
    used_after = used_memory(client)
    states: list[bytes] = list(client.scan_iter(match=STATE_PATTERN, count=1000))
    seen: list[bytes] = list(client.scan_iter(match=SEEN_PATTERN, count=1000))
    sent: list[bytes] = list(client.scan_iter(match=SENT_PATTERN, count=1000))
    pipe = client.pipeline(transaction=False)
    for key in states:
        pipe.object("encoding", key)
        pipe.hlen(key)
        pipe.hstrlen(key, "dd")
        pipe.hstrlen(key, "df")
    replies = pipe.execute()
    encodings: Counter[str] = Counter(e.decode() if isinstance(e, bytes) else str(e) for e in replies[::4])
    return MemoryReport(
        state_bytes=_memory_usage(client, states),
        state_fields=[int(n) for n in replies[1::4]],
        dedupe_bytes=[int(a) + int(b) for a, b in zip(replies[2::4], replies[3::4], strict=True)],
        encodings=encodings,
        state_ttl=int(client.ttl(states[0])) if states else -2,
        seen_count=len(seen),
        seen_bytes=sum(_memory_usage(client, seen)),
        seen_ttl=int(client.ttl(seen[0])) if seen else -2,
        sent_count=len(sent),
        sent_bytes=sum(_memory_usage(client, sent)),
        used_before=used_before,
        used_after=used_after,
    )
