"""The in-memory fold builds its state straight from its day series (no JSON round trip): it must be
exactly what the Redis store's decoder reads from the same hash fields, value for value and in the
same order (sums of float spend follow the order), after every event, duplicates and late ones included."""

from __future__ import annotations

import random

import pytest

from stream.windows.codec import state_from_hash
from stream.windows.memory import MemoryWindows
from tests.events_factory import unique_customer
from tests.integration.test_memory_windows_match_redis import POLICIES, random_events


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_the_folds_state_is_the_decoded_hash(seed: int, policy_name: str) -> None:
    policy = POLICIES[policy_name]
    customers = [unique_customer(f"direct{seed}") for _ in range(4)]
    events = random_events(random.Random(seed), customers, 400, policy.retention.days)
    windows = MemoryWindows(policy)
    for n, event in enumerate(events):
        update = windows.apply(event)
        cid = event.customer_id
        want = state_from_hash(cid, windows.fields(cid)) if update.outcome.value != "late" else state_from_hash(cid, {})
        got = update.state
        assert got == want, f"event #{n}"
        assert list(got.purchases_by_day.items()) == list(want.purchases_by_day.items())
        assert list(got.spend_by_day.items()) == list(want.spend_by_day.items())
        assert list(got.interactions_by_kind) == list(want.interactions_by_kind)
        for kind, series in got.interactions_by_kind.items():
            assert list(series.items()) == list(want.interactions_by_kind[kind].items())
        assert update.watermark == want.watermark
        for customer in customers:
            assert windows.read(customer) == state_from_hash(customer, windows.fields(customer))
