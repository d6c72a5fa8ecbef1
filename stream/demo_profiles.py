"""Demo traffic, the pure part: customer personas and the events they produce.

``backfill_events`` writes each customer's past (event times before ``now``) so the windows hold a
baseline straight away; ``live_events`` is the slow trickle of current-time events afterwards.
Everything is drawn from the ``random.Random`` passed in, so a seed gives the same traffic.

Personas: ``healthy`` buys every 5-8 days; ``fading`` did the same until 35-45 days ago and has
bought at most once since (purchase-frequency-drop would fire, a rule shipped disabled; for those who
stopped altogether purchase-overdue fires); ``detractor`` buys normally but answered
NPS 0-6 in the last few days (nps-detractor fires); ``new`` joined under 40 days ago and
``occasional`` buys every 25-29 days: neither has enough baseline to trigger anything.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from stream.events import AnyEvent, FeedbackEvent, InteractionEvent, InteractionKind, PurchaseEvent

CURRENCY = "USD"
_E = TypeVar("_E", PurchaseEvent, InteractionEvent, FeedbackEvent)
MIN_BACKFILL_DAYS = 100
JITTER = 0.1
"""Gaps between a regular buyer's orders vary by this share. Much more, and a short early baseline
(30 days, when the customer's history is young) can look twice as busy as the next 30 days."""


class Persona(StrEnum):
    HEALTHY = "healthy"
    FADING = "fading"
    DETRACTOR = "detractor"
    NEW = "new"
    OCCASIONAL = "occasional"


DEFAULT_MIX: dict[Persona, float] = {
    Persona.HEALTHY: 0.60,
    Persona.FADING: 0.15,
    Persona.DETRACTOR: 0.15,
    Persona.NEW: 0.05,
    Persona.OCCASIONAL: 0.05,
}


@dataclass(frozen=True)
class CustomerProfile:
    customer_id: str
    persona: Persona
    segment: str
    purchase_every_days: float
    """Typical gap between orders (each gap is jittered by ``JITTER``; occasional: 25-29 days)."""
    basket_usd: float
    """Typical order value."""
    visits_per_week: float
    channel: str
    """Preferred digital channel: ``web`` or ``app``."""
    store_shopper: bool


def make_profiles(count: int, rng: random.Random, mix: dict[Persona, float] | None = None) -> list[CustomerProfile]:
    """``count`` customers ``cust-0001``...: persona counts by largest remainder, personas shuffled."""
    if count < 1:
        raise ValueError("count must be >= 1")
    shares = mix or DEFAULT_MIX
    total = sum(shares.values())
    exact = {p: count * s / total for p, s in shares.items()}
    counts = {p: int(x) for p, x in exact.items()}
    for p in sorted(exact, key=lambda p: exact[p] - counts[p], reverse=True)[: count - sum(counts.values())]:
        counts[p] += 1
    personas = [p for p in shares for _ in range(counts[p])]
    rng.shuffle(personas)
    profiles = []
    for n, persona in enumerate(personas, start=1):
        occasional = persona is Persona.OCCASIONAL
        every = rng.uniform(25, 29) if occasional else rng.uniform(5, 8)
        visits = rng.uniform(0.8, 1.5) if occasional else rng.uniform(2, 5)
        profiles.append(
            CustomerProfile(
                customer_id=f"cust-{n:04d}",
                persona=persona,
                segment=rng.choice(("consumer", "consumer", "consumer", "business")),
                purchase_every_days=round(every, 2),
                basket_usd=round(rng.uniform(18, 140), 2),
                visits_per_week=round(visits, 2),
                channel=rng.choice(("web", "app", "app")),
                store_shopper=rng.random() < 0.25,
            )
        )
    return profiles


_PRAISE = ("Fast delivery, great prices.", "Love the app, checkout is quick.", "Always find what I need.")
_NEUTRAL = ("Fine, delivery could be quicker.", "OK overall.")
_COMPLAINTS = (
    "Two late deliveries in a row and nobody answered my ticket.",
    "Refund took three weeks. Not ordering again.",
    "Prices went up and the app keeps logging me out.",
    "Wrong item shipped and support was rude.",
)


class _Writer:
    """Builds one customer's events with deterministic ids."""

    def __init__(self, profile: CustomerProfile, rng: random.Random) -> None:
        self.p, self.rng = profile, rng
        self.events: list[AnyEvent] = []
        self.floor: datetime | None = None
        """Nothing before this is kept (the start of the backfill, or a new customer's signup)."""

    def _base(self, at: datetime) -> dict[str, object]:
        eid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return {
            "event_id": eid,
            "customer_id": self.p.customer_id,
            "occurred_at": at.replace(microsecond=0),
            "segment": self.p.segment,
        }

    def purchase(self, at: datetime) -> PurchaseEvent:
        amount = max(Decimal("1.00"), Decimal(str(round(self.p.basket_usd * self.rng.lognormvariate(0, 0.35), 2))))
        items = max(1, int(amount // Decimal(str(round(self.rng.uniform(12, 45), 2)))))
        order = f"ord-{self.rng.getrandbits(40):010x}"
        return self._add(
            PurchaseEvent(
                **self._base(at),
                order_id=order,
                amount=amount.quantize(Decimal("0.01")),
                currency=CURRENCY,
                item_count=items,
            )
        )

    def touch(
        self, at: datetime, kind: InteractionKind, channel: str | None = None, custom: str | None = None
    ) -> InteractionEvent:
        return self._add(
            InteractionEvent(**self._base(at), kind=kind, custom_kind=custom, channel=channel or self.p.channel)
        )

    def answer(self, at: datetime, kind: str, score: int, comment: str | None = None) -> FeedbackEvent:
        return self._add(FeedbackEvent(**self._base(at), kind=kind, score=score, comment=comment))

    def _add(self, event: _E) -> _E:
        self.events.append(event)
        return event

    def visit(self, at: datetime, now: datetime) -> None:
        """A login, a session and a few page views, minutes apart (nothing after ``now``)."""
        steps = [InteractionKind.LOGIN, InteractionKind.SESSION]
        steps += [InteractionKind.PAGE_VIEW] * self.rng.randint(0, 4)
        for kind in steps:
            if at < now:
                self.touch(at, kind)
            at += timedelta(seconds=self.rng.randint(20, 400))


def _purchase_times(rng: random.Random, last: datetime, start: datetime, every: float, jitter: float) -> list[datetime]:
    """Purchases going back from ``last`` to ``start``, gaps of ``every`` +- ``jitter`` (a share)."""
    times, at = [], last
    while at >= start:
        times.append(at)
        at -= timedelta(days=every * rng.uniform(1 - jitter, 1 + jitter))
    return times[::-1]


def _history(w: _Writer, now: datetime, days: int) -> None:
    p, rng = w.p, w.rng
    start = w.floor = (now - timedelta(days=days)).replace(microsecond=0)

    def ago(d: float) -> datetime:
        return now - timedelta(days=d)

    # Purchases.
    if p.persona is Persona.OCCASIONAL:
        buys = _purchase_times(rng, ago(rng.uniform(1, 20)), start, rng.uniform(25, 29), 0.0)
    elif p.persona is Persona.NEW:
        joined = ago(rng.uniform(8, 40))
        buys = sorted(joined + timedelta(days=rng.uniform(0, (now - joined).days)) for _ in range(rng.randint(1, 3)))
        start = w.floor = (joined - timedelta(hours=rng.uniform(0.1, 2))).replace(microsecond=0)
        w.touch(start, InteractionKind.CUSTOM, custom="signup")
    elif p.persona is Persona.FADING:
        buys = _purchase_times(rng, ago(rng.uniform(35, 45)), start, p.purchase_every_days, JITTER)
        if rng.random() < 0.5:
            buys.append(ago(rng.uniform(5, 28)))
    else:
        buys = _purchase_times(rng, ago(rng.uniform(0.1, p.purchase_every_days)), start, p.purchase_every_days, JITTER)
    for at in buys:
        if rng.random() < 0.6:  # browsed before buying
            w.touch(at - timedelta(minutes=rng.uniform(4, 30)), InteractionKind.SESSION)
            w.touch(at - timedelta(minutes=rng.uniform(1, 4)), InteractionKind.PAGE_VIEW)
        w.purchase(at)
        if rng.random() < 0.08:
            score = rng.choice((4, 5, 5)) if p.persona is not Persona.FADING else rng.choice((3, 4))
            w.answer(
                at + timedelta(hours=rng.uniform(2, 48)),
                "csat",
                score,
                rng.choice((None, None, *_PRAISE)) if score >= 4 else rng.choice(_NEUTRAL),
            )

    # Visits, marketing emails, store visits, day by day. Fading customers come less and less.
    for d in range((now - start).days, -1, -1):
        day = now - timedelta(days=d)
        if day < start:
            continue
        fade = 1 - 0.8 * (1 - d / days) if p.persona is Persona.FADING else 1.0
        if rng.random() < p.visits_per_week / 7 * fade:
            w.visit(day.replace(hour=0, minute=0, second=0) + timedelta(hours=rng.uniform(7, 23)), now)
        if d % 7 == 3 and rng.random() < 0.45 * fade:  # weekly newsletter
            at = day - timedelta(hours=rng.uniform(0, 12))
            w.touch(at, InteractionKind.EMAIL_OPEN, "email")
            if rng.random() < 0.3:
                w.touch(at + timedelta(minutes=rng.uniform(0.2, 3)), InteractionKind.EMAIL_CLICK, "email")
        if p.channel == "app" and rng.random() < 0.05 * fade:
            w.touch(day - timedelta(hours=rng.uniform(0, 20)), InteractionKind.PUSH_OPEN, "app")
        if p.store_shopper and rng.random() < 0.04:
            w.touch(day - timedelta(hours=rng.uniform(0, 20)), InteractionKind.CUSTOM, "store", "store_visit")
    if p.persona is Persona.FADING:  # still opens the newsletter, just stopped buying
        w.touch(ago(rng.uniform(0.2, 3)), InteractionKind.EMAIL_OPEN, "email")

    # Surveys.
    if p.persona is not Persona.NEW and rng.random() < 0.5:
        score = rng.choice((7, 8)) if p.persona is Persona.FADING else rng.choice((8, 9, 10, 10))
        w.answer(ago(rng.uniform(50, days - 10)), "nps", score, rng.choice((None, *_PRAISE)) if score >= 9 else None)
    if p.persona is Persona.DETRACTOR:
        answered = ago(rng.uniform(0.3, 5))
        if rng.random() < 0.7:
            ticket = answered - timedelta(days=rng.uniform(1, 6))
            w.touch(ticket, InteractionKind.SUPPORT_TICKET, rng.choice(("email", "phone")))
            if rng.random() < 0.5:
                w.touch(ticket + timedelta(hours=rng.uniform(6, 20)), InteractionKind.COMPLAINT, "phone")
        w.answer(answered, "nps", rng.choice((1, 2, 3, 3, 4, 5, 6)), rng.choice((None, *_COMPLAINTS)))


def backfill_events(
    profiles: Sequence[CustomerProfile], now: datetime, days: int = 120, rng: random.Random | None = None
) -> list[AnyEvent]:
    """Every customer's past ``days`` days, all before ``now``, in event-time order (stable per customer)."""
    if days < MIN_BACKFILL_DAYS:
        raise ValueError(f"days must be >= {MIN_BACKFILL_DAYS} so the 90-day baselines fill up")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    rng = rng or random.Random(0)
    events: list[AnyEvent] = []
    for profile in profiles:
        writer = _Writer(profile, random.Random(rng.getrandbits(64)))
        _history(writer, now, days)
        floor = writer.floor or now
        events += sorted((e for e in writer.events if floor <= e.occurred_at < now), key=lambda e: e.occurred_at)
    return sorted(events, key=lambda e: e.occurred_at)


_LIVE_MENU: dict[Persona, tuple[tuple[str, int], ...]] = {
    Persona.HEALTHY: (
        ("page_view", 45),
        ("session", 18),
        ("login", 14),
        ("purchase", 12),
        ("email_open", 6),
        ("push_open", 3),
        ("praise", 2),
    ),
    Persona.FADING: (("login", 40), ("email_open", 40), ("page_view", 20)),
    Persona.DETRACTOR: (("page_view", 50), ("session", 25), ("support_ticket", 10), ("purchase", 5), ("login", 10)),
    Persona.NEW: (("page_view", 45), ("session", 25), ("login", 15), ("purchase", 10), ("csat", 5)),
    Persona.OCCASIONAL: (("page_view", 60), ("email_open", 35), ("purchase", 5)),
}


def live_events(
    profiles: Sequence[CustomerProfile], now: datetime | Callable[[], datetime], rng: random.Random | None = None
) -> Iterator[AnyEvent]:
    """An endless trickle stamped with ``now`` (a fixed time, or a clock called per event).

    It opens with one login per fading customer, so each is evaluated at the current time.
    No live NPS answer is ever a detractor, and fading customers do not buy.
    """
    rng = rng or random.Random(0)
    clock = now if callable(now) else (lambda: now)
    writers = {p.customer_id: _Writer(p, random.Random(rng.getrandbits(64))) for p in profiles}
    for p in profiles:
        if p.persona is Persona.FADING:
            yield writers[p.customer_id].touch(clock(), InteractionKind.LOGIN)
    if not profiles:
        return
    while True:
        p = rng.choice(profiles)
        w = writers[p.customer_id]
        names, weights = zip(*_LIVE_MENU[p.persona], strict=True)
        what = rng.choices(names, weights)[0]
        at = clock()
        if what == "purchase":
            yield w.purchase(at)
        elif what == "praise":
            yield w.answer(at, "nps", rng.choice((9, 10)), rng.choice((None, *_PRAISE)))
        elif what == "csat":
            yield w.answer(at, "csat", rng.choice((4, 5)))
        else:
            channel = "email" if what.startswith("email") else ("app" if what == "push_open" else None)
            yield w.touch(at, InteractionKind(what), channel)
        w.events.clear()
