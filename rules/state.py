"""A customer's rolling window state, as the rules see it.

The store (Redis, see ``stream.windows``) keeps day buckets by *event time*; this module is the
read-only snapshot of them plus the window arithmetic every rule kind shares. Days are UTC day
numbers (``epoch_seconds // 86400``) so that a bucket is the same everywhere.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from itertools import accumulate, compress
from typing import Any, TypeVar, cast

SECONDS_PER_DAY = 86_400
ONE_DAY = timedelta(days=1)
"""Built once: a judgement divides by a day a dozen times."""


def day_number(moment: datetime) -> int:
    """UTC day number of a timezone-aware moment: the bucket an event belongs to."""
    return int(moment.timestamp()) // SECONDS_PER_DAY


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def epoch_ms(moment: datetime) -> int:
    """The inverse of :func:`from_epoch_ms` (truncated to the millisecond), as Redis stores times."""
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class DayWindow:
    """The inclusive day range ``[first_day, last_day]``: ``days`` days ending ``end_offset`` days before today.

    ``DayWindow.ending(today, 30)`` is the last 30 days including today;
    ``DayWindow.ending(today, 90, end_offset=30)`` is the 90 days before those.
    """

    first_day: int
    last_day: int

    @classmethod
    def ending(cls, today: int, days: int, *, end_offset: int = 0) -> DayWindow:
        return (
            _window_ending(today, days, end_offset)
            if cls is DayWindow
            else cls(today - end_offset - days + 1, today - end_offset)
        )

    @property
    def days(self) -> int:
        return self.last_day - self.first_day + 1

    def clipped_from(self, first_day: int) -> DayWindow | None:
        """The part of this window on or after ``first_day`` (None if nothing is left)."""
        start = max(self.first_day, first_day)
        return None if start > self.last_day else DayWindow(start, self.last_day)

    def total(self, buckets: Mapping[int, float]) -> float:
        if isinstance(buckets, DaySeries):
            return buckets.total(self.first_day, self.last_day)
        return float(sum(v for day, v in buckets.items() if self.first_day <= day <= self.last_day))


N = TypeVar("N", int, float)
T = TypeVar("T")
_INT = frozenset((int,))
DERIVED_KEPT = 64
"""Values one series keeps through :meth:`DaySeries.derived` (a judgement asks a series for a few)."""


@lru_cache(maxsize=4096)
def _window_ending(today: int, days: int, end_offset: int) -> DayWindow:
    """Windows are immutable, and a judgement asks for the same few many times: built once each."""
    last = today - end_offset
    return DayWindow(first_day=last - days + 1, last_day=last)


class DaySeries(Mapping[int, N]):
    """A read-only day series (day -> count or amount) that answers window totals from prefix sums, in
    O(log n) instead of a pass over every bucket: a judgement asks each series for many windows.

    Only whole numbers (counts) are summed that way: their sums are exact in any order. A series
    holding anything else (spend) is summed bucket by bucket in its own order, as
    :meth:`DayWindow.total` sums a plain mapping, so a total is the very same float either way; when
    that order is by day (the usual case), a window's buckets are one run of it, found by bisection.

    Immutable by contract (it keeps the mapping it is given: give it one nobody changes), so what is
    derived from one (the prefix sums, its first day, merged series) is derived once: a store that
    hands out the same series object for an unchanged series (the in-memory fold) spares every
    later state the work.
    """

    __slots__ = (
        "_buckets", "_days", "_exact", "_first", "_first_active", "_in_order", "_memo", "_prefix", "_values",
    )  # fmt: skip

    def __init__(self, buckets: Mapping[int, N]) -> None:
        self._buckets: Mapping[int, N] = buckets
        self._days: list[int] = []
        self._prefix: list[int] | None = None
        self._first: tuple[int | None] | None = None  # (first day,) once known
        self._first_active: tuple[int | None] | None = None
        self._exact: bool | None = None
        self._in_order: bool | None = None
        self._values: list[N] = []
        self._memo: dict[Hashable, Any] | None = None

    def __getitem__(self, day: int) -> N:
        return self._buckets[day]

    def derived(self, key: Hashable, derive: Callable[[], T]) -> T:
        """``derive()``, kept with this series for ``key``: for a pure function of the series' contents
        and of what ``key`` names (a day, a window's length), such as a window comparison. A series
        outlives a judgement (the fold keeps an unchanged one, the codec decodes one raw value once),
        so a later judgement on the same day asks again for free. At most :data:`DERIVED_KEPT` are
        kept (all dropped at once when full: keys name days, so old ones are not asked again)."""
        memo = self._memo
        if memo is None:
            memo = self._memo = {}
        else:
            try:
                return cast(T, memo[key])
            except KeyError:
                if len(memo) >= DERIVED_KEPT:
                    memo.clear()
        value = memo[key] = derive()
        return value

    def __iter__(self) -> Iterator[int]:
        return iter(self._buckets)

    def __len__(self) -> int:
        return len(self._buckets)

    def __repr__(self) -> str:
        return repr(self._buckets)

    # The mapping's own views, not the generic ones built on __getitem__ (a judgement iterates a lot).

    def __contains__(self, day: object) -> bool:
        return day in self._buckets

    def keys(self) -> KeysView[int]:
        return self._buckets.keys()

    def items(self) -> ItemsView[int, N]:
        return self._buckets.items()

    def values(self) -> ValuesView[N]:
        return self._buckets.values()

    def get(self, day: int, default: Any = None) -> Any:
        return self._buckets.get(day, default)

    @property
    def first_day(self) -> int | None:
        """The earliest day present (with any value), None if empty."""
        if self._first is None:
            self._first = (min(self._buckets, default=None),)
        return self._first[0]

    @property
    def first_active_day(self) -> int | None:
        """The earliest day with a non-zero value, None if none."""
        if self._first_active is None:
            buckets = self._buckets  # the days whose value is true, picked in C
            self._first_active = (min(compress(buckets, buckets.values()), default=None),)
        return self._first_active[0]

    def exact_total(self, first_day: int, last_day: int) -> int | None:
        """The window's sum from the prefix sums, for a series of whole numbers; None otherwise."""
        prefix = self._prefix
        if prefix is None:
            buckets = self._buckets
            if self._exact is None:  # every value an int (not a bool, not a float), checked in C
                self._exact = set(map(type, buckets.values())) <= _INT
            if not self._exact:
                return None
            days = self._days = sorted(buckets)
            prefix = self._prefix = list(accumulate(map(int, map(buckets.__getitem__, days)), initial=0))
        if last_day < first_day:
            return 0
        days = self._days
        return prefix[bisect_right(days, last_day)] - prefix[bisect_left(days, first_day)]

    def total(self, first_day: int, last_day: int) -> float:
        """What ``DayWindow(first_day, last_day).total`` gives for the plain mapping."""
        exact = self.exact_total(first_day, last_day)
        if exact is not None:
            return float(exact)
        if self._in_order is None:  # amounts: summed in the mapping's order, which is usually by day
            days = list(self._buckets)
            self._in_order = days == sorted(days)  # distinct keys: sorted means strictly increasing
            if self._in_order:
                self._days, self._values = days, list(self._buckets.values())
        if self._in_order:  # the window's buckets are a run of that order: the same values, same order
            days = self._days
            return float(sum(self._values[bisect_left(days, first_day) : bisect_right(days, last_day)]))
        return float(sum(v for day, v in self._buckets.items() if first_day <= day <= last_day))


class MergedCounts(DaySeries[int]):
    """Day counts of several series added together, days with none left out. Window totals are the
    sums of the parts' totals (whole numbers: exact in any order), so nothing is merged for them and
    each part's prefix sums serve every merge it is in; the merged mapping itself is built only if
    someone reads it as a mapping. Parts that are not all :class:`DaySeries` of whole numbers are
    merged at once (their sums then follow the merged order, as a plain merged mapping's would)."""

    __slots__ = ("_merged", "_parts")

    def __init__(self, parts: Iterable[Mapping[int, int] | None]) -> None:
        self._parts: tuple[DaySeries[int], ...] = tuple(series_of(p) for p in parts if p is not None)
        super().__init__({})
        self._merged: bool = False
        if not all(part.exact_total(0, -1) is not None for part in self._parts):
            self._merge()

    def _merge(self) -> Mapping[int, int]:
        if not self._merged:
            merged: dict[int, int] = {}
            for part in self._parts:
                for day, count in part.items():
                    if count:
                        merged[day] = merged.get(day, 0) + count
            self._buckets, self._merged = merged, True
            self._parts = ()
        return self._buckets

    def __getitem__(self, day: int) -> int:
        return self._merge()[day]

    def __iter__(self) -> Iterator[int]:
        return iter(self._merge())

    def __len__(self) -> int:
        return len(self._merge())

    def __repr__(self) -> str:
        return repr(self._merge())

    def __contains__(self, day: object) -> bool:
        return day in self._merge()

    def keys(self) -> KeysView[int]:
        return self._merge().keys()

    def items(self) -> ItemsView[int, int]:
        return self._merge().items()

    def values(self) -> ValuesView[int]:
        return self._merge().values()

    def get(self, day: int, default: Any = None) -> Any:
        return self._merge().get(day, default)

    @property
    def first_day(self) -> int | None:
        """Every day present has a count, so this is the first active day."""
        return self.first_active_day

    @property
    def first_active_day(self) -> int | None:
        if self._merged:
            return super().first_active_day
        firsts = [day for part in self._parts if (day := part.first_active_day) is not None]
        return min(firsts, default=None)

    def exact_total(self, first_day: int, last_day: int) -> int | None:
        if self._merged:
            return super().exact_total(first_day, last_day)
        return sum(part.exact_total(first_day, last_day) or 0 for part in self._parts)


def series_of(buckets: Mapping[int, N]) -> DaySeries[N]:
    """``buckets`` as a :class:`DaySeries` (itself if it is one)."""
    return buckets if isinstance(buckets, DaySeries) else DaySeries(buckets)


_NO_COUNTS: DaySeries[int] = DaySeries({})
"""The series of a kind never seen: one for all (read-only; complaints and spikes ask it often)."""


@dataclass(frozen=True)
class FeedbackAnswer:
    answered_at: datetime
    score: int


@dataclass(frozen=True)
class CustomerState:
    """Everything kept about one customer, read in one round trip after an update."""

    customer_id: str
    watermark: datetime | None = None
    """Latest event time seen for this customer: the 'now' rules are evaluated at."""
    purchases_by_day: Mapping[int, int] = field(default_factory=dict)
    spend_by_day: Mapping[int, float] = field(default_factory=dict)
    """Spend per day in the configured currency's major unit (e.g. dollars)."""
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    lifetime_purchases: int = 0
    lifetime_purchase_days: int = 0
    """Distinct UTC days with a purchase, over the customer's whole life (not only the horizon):
    BG/NBD's repeat count is this minus one."""
    lifetime_spend: float = 0.0
    interactions_by_kind: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    last_interaction_at: datetime | None = None
    feedback_by_kind: Mapping[str, tuple[FeedbackAnswer, ...]] = field(default_factory=dict)
    """Most recent answers per survey kind (``nps``, ``csat``, ``ces``), oldest first."""
    segment: str | None = None
    """Segment carried by the customer's latest event that had one (for rule scopes)."""

    def purchases_in(self, window: DayWindow) -> int:
        return int(window.total(self.purchases_by_day))

    def spend_in(self, window: DayWindow) -> float:
        return window.total(self.spend_by_day)

    def interactions_in(self, window: DayWindow, kinds: Iterable[str] | None = None) -> int:
        selected = (
            self.interactions_by_kind if kinds is None else {k: self.interactions_by_kind.get(k, {}) for k in kinds}
        )
        return int(sum(window.total(buckets) for buckets in selected.values()))

    def answers(self, kind: str) -> tuple[FeedbackAnswer, ...]:
        return self.feedback_by_kind.get(kind, ())

    @property
    def first_purchase_day(self) -> int | None:
        return None if self.first_purchase_at is None else day_number(self.first_purchase_at)

    # The series below are derived once per state and shared by every rule that reads them (a state
    # is a snapshot: nothing changes its mappings). ``cached_property`` writes the instance's
    # ``__dict__`` directly, so it works on a frozen dataclass and stays out of ``==`` and ``repr``.

    @cached_property
    def purchase_counts(self) -> DaySeries[int]:
        """``purchases_by_day`` as a :class:`DaySeries`."""
        return series_of(self.purchases_by_day)

    @cached_property
    def purchase_spend(self) -> DaySeries[float]:
        """``spend_by_day`` as a :class:`DaySeries` (summed in its own order: amounts are floats)."""
        return series_of(self.spend_by_day)

    @cached_property
    def _interaction_series(self) -> dict[tuple[str, ...], DaySeries[int]]:
        return {}

    def interaction_counts(self, kind: str) -> DaySeries[int]:
        """One interaction kind's day counts as a :class:`DaySeries` (empty if never seen)."""
        series = self.interactions_by_kind.get(kind)
        return _NO_COUNTS if series is None else series_of(series)

    def interactions_of(self, kinds: Iterable[str]) -> DaySeries[int]:
        """The day counts of ``kinds`` added together, days with none left out (kinds listed twice
        count once), as a :class:`DaySeries`; kept for the next rule asking for the same kinds."""
        key = tuple(dict.fromkeys(kinds))
        got = self._interaction_series.get(key)
        if got is None:
            by_kind = self.interactions_by_kind
            got = self._interaction_series[key] = MergedCounts(by_kind.get(kind) for kind in key)
        return got


def days_between(earlier: datetime, later: datetime) -> float:
    return (later - earlier) / ONE_DAY
