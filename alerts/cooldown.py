"""The pipeline's first stage: how often a customer is alerted for one rule, and never twice for one event.

A finding becomes an alert only through a *claim* on the customer's alert ledger; the alert is
published, then the claim is confirmed. The decision, for a rule's previous claim:

- never confirmed published (a crash between claim and publish): ``reclaimed``, send it again under
  that claim's key, so the alert keeps its id and receivers drop the copy;
- this very event's claim, already published (a redelivery): ``published``, do not send;
- the same episode (one occurrence of a condition, e.g. one absence) already alerted: ``episode``;
- within the rule's cooldown of the previous alert: ``cooldown``;
- otherwise ``claimed``: a new claim, stored as ``fired_ms|key|0|episode``.

:func:`decide_claim` is that decision, pure. In Redis it is taken atomically by
``stream/windows/claim.lua`` in the customer's own hash (one customer's keys, one Cluster slot);
the in-memory store of replay and ``rules test`` calls this function, and
``tests/integration/test_memory_windows_match_redis.py`` holds the two to the same answers. After
this stage come silences (:mod:`alerts.silence`), inhibition (:mod:`alerts.inhibition`), routing
(:mod:`alerts.routing`), grouping and the storm limit (:mod:`alerts.grouping`), flap damping
(:mod:`alerts.flapping`), delivery (:mod:`alerts.notify`) and the notification log
(:mod:`alerts.nflog`), in the order :class:`alerts.dispatch.AlertDispatcher` runs them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    RECLAIMED = "reclaimed"
    PUBLISHED = "published"
    COOLDOWN = "cooldown"
    EPISODE = "episode"

    @property
    def should_send(self) -> bool:
        return self in (ClaimOutcome.CLAIMED, ClaimOutcome.RECLAIMED)


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    key: str
    """Identifies the claim (a digest of the event that made it): the alert's id derives from it, so
    an alert published again after a crash keeps its id and sinks can drop the copy."""


@dataclass(frozen=True)
class ClaimRequest:
    """One finding's claim on its customer's ledger for ``rule_id`` (a ledger id: a shadow rule has its
    own), at the finding's time, keyed by the event that triggered it."""

    customer_id: str
    rule_id: str
    at: datetime
    cooldown: timedelta
    event_id: str
    episode: str | None


class PublishedClaim(NamedTuple):
    """A claim whose alert reached the alerts topic (or a shadow rule's, settled at once): to confirm."""

    customer_id: str
    rule_id: str
    claim_key: str


_RECORD = re.compile(r"^(\d+)\|([^|]*)\|([01])\|(.*)$", re.DOTALL)


@dataclass(frozen=True)
class ClaimRecord:
    """A rule's claim as the ledger stores it: ``fired_ms|key|published|episode``."""

    fired_ms: int
    key: str
    published: bool
    episode: str

    @classmethod
    def parse(cls, text: str) -> ClaimRecord:
        found = _RECORD.match(text)
        if found is None:  # claim.lua fails on it too (arithmetic on nil)
            raise ValueError(f"unreadable alert claim {text!r}")
        fired, key, published, episode = found.groups()
        return cls(int(fired), key, published == "1", episode)

    def __str__(self) -> str:
        return f"{self.fired_ms}|{self.key}|{int(self.published)}|{self.episode}"


def decide_claim(
    previous: ClaimRecord | None, *, now_ms: int, key: str, cooldown_ms: int, episode: str
) -> tuple[Claim, ClaimRecord | None]:
    """The claim for an alert at ``now_ms`` triggered by the event digested as ``key`` (``episode``
    '' for none), and the record to store (None: keep ``previous``)."""
    if previous is not None:
        if not previous.published:
            return Claim(ClaimOutcome.RECLAIMED, previous.key), None
        if previous.key == key:
            return Claim(ClaimOutcome.PUBLISHED, previous.key), None
        if episode and previous.episode == episode:
            return Claim(ClaimOutcome.EPISODE, previous.key), None
        if now_ms < previous.fired_ms + cooldown_ms:
            return Claim(ClaimOutcome.COOLDOWN, previous.key), None
    return Claim(ClaimOutcome.CLAIMED, key), ClaimRecord(now_ms, key, False, episode)
