"""DaySeries and MergedCounts answer every window total exactly as DayWindow.total does on the plain
mapping: the same float, bit for bit (counts in any order, amounts in the mapping's own order)."""

from __future__ import annotations

import random

import pytest

from rules.state import DaySeries, DayWindow, MergedCounts


def windows(rng: random.Random, n: int) -> list[DayWindow]:
    return [DayWindow(first, first + rng.randrange(-2, 60)) for first in (rng.randrange(-10, 200) for _ in range(n))]


@pytest.mark.parametrize("seed", range(8))
def test_totals_are_the_plain_mappings(seed: int) -> None:
    rng = random.Random(seed)
    days = rng.sample(range(180), rng.randrange(0, 120))
    if seed % 2:
        days.sort()  # amounts kept in day order: the bisection path
    counts = {d: rng.randrange(0, 9) for d in days}
    amounts = {d: rng.randrange(0, 100_000) / 100 for d in days}
    mixed = {d: (rng.randrange(5) if rng.random() < 0.5 else rng.random() * 10) for d in days}
    for plain in (counts, amounts, mixed):
        series = DaySeries(plain)
        for window in windows(rng, 50):
            assert repr(series.total(window.first_day, window.last_day)) == repr(window.total(plain))
            assert repr(window.total(series)) == repr(window.total(plain))
        assert series == plain and dict(series.items()) == plain and list(series) == list(plain)
        assert series.first_day == min(plain, default=None)


@pytest.mark.parametrize("seed", range(8))
def test_merged_counts_are_the_merged_mapping(seed: int) -> None:
    rng = random.Random(seed)
    parts = [{d: rng.randrange(0, 4) for d in rng.sample(range(150), rng.randrange(0, 90))} for _ in range(4)]
    merged: dict[int, int] = {}
    for part in parts:
        for day, count in part.items():
            if count:
                merged[day] = merged.get(day, 0) + count
    for given in (parts, [DaySeries(p) for p in parts], [None, *parts[:2]]):
        series = MergedCounts(given)
        want = merged if given is not None and len(given) == 4 else None
        if want is None:
            want = {}
            for part in parts[:2]:
                for day, count in part.items():
                    if count:
                        want[day] = want.get(day, 0) + count
        for window in windows(rng, 50):
            assert repr(window.total(series)) == repr(window.total(want))
        assert series.first_day == min(want, default=None)
        assert dict(series.items()) == want and list(series) == list(want)
