"""Local dev/test stack: a real Apache Kafka (KRaft) broker and a real redis-server.

Used by ``churnwatch stack up|down|status``, the demo runner and the integration tests,
so everyone exercises the workers against the same real servers instead of mocks.
"""

from __future__ import annotations

from .stack import (
    DEFAULT_NAME,
    StackInfo,
    StackStatus,
    running_stack,
    stack_down,
    stack_status,
    stack_up,
)

__all__ = [
    "DEFAULT_NAME",
    "StackInfo",
    "StackStatus",
    "running_stack",
    "stack_down",
    "stack_status",
    "stack_up",
]
