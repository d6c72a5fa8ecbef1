"""The worker's garbage collector settings (stream/gc_tuning.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from stream.gc_tuning import GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_what_exists_at_start_up_is_frozen_and_passes_are_rarer(restored_collector: None) -> None:
    built_at_start_up = [object() for _ in range(10)]
    tune_garbage_collector()
    assert gc.get_freeze_count() > len(built_at_start_up)
    assert gc.get_threshold() == (GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    assert GEN0_THRESHOLD > 700


def test_cycles_made_later_are_still_collected(restored_collector: None) -> None:
    tune_garbage_collector()

    class Node:
        pass

    node = Node()
    node.self = node  # type: ignore[attr-defined]  # a cycle: reference counting alone never frees it
    del node
    assert gc.collect() > 0
