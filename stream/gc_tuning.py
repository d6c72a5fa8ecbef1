"""The worker's garbage collector: collect rarely, and never scan what start-up built.

Reference counting frees almost everything the worker allocates (a batch's events, updates and
states) the moment it is done with it; the cyclic collector only finds cycles. With Python's
defaults it ran a generation-0 pass every 700 allocations and a full pass over every object of the
process (faust, aiokafka, pydantic's schemas, the rules) several times a backlog: 1.2 s of the
worker's 4.7 s of CPU for 50,000 events, 0.87 s of it in six full passes (measured with
``gc.callbacks`` in the worker, ``python -m bench.throughput --phases worker``).

:func:`tune_garbage_collector` freezes what exists at start-up (moved to a generation no pass
scans, as ``gc.freeze`` is meant for) and makes passes rarer. Memory cost: cyclic garbage waits for
up to :data:`GEN0_THRESHOLD` allocations instead of 700 before it is found, a few megabytes at most.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000
"""Allocations (minus deallocations) between generation-0 passes; Python's default is 700."""
GEN1_THRESHOLD = 20
"""Generation-0 passes between generation-1 passes (default 10)."""
GEN2_THRESHOLD = 20
"""Generation-1 passes between full passes (default 10; a full pass also waits until the
long-lived objects have grown by a quarter)."""


def tune_garbage_collector() -> None:
    """Call once the worker is built, before it runs: what exists now lives as long as the process."""
    gc.collect()  # what start-up left unreachable is freed, not frozen
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
