"""Integration tests run against a real Kafka broker and redis-server from stream.localstack.

One stack per pytest process (``pytest-<pid>``), so a developer's ``dev`` stack and
parallel test runs never share ports or data; it is always downed and purged.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from stream.localstack import StackInfo, running_stack, stack_down
from stream.localstack.processes import pid_alive
from stream.localstack.stack import stale_pytest_stacks

INTEGRATION_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark everything under tests/integration so `-m "not integration"` skips it.

    This hook sees the whole session's items, not just this directory's, hence the path check.
    """
    for item in items:
        if INTEGRATION_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def redis(local_stack: StackInfo) -> AsyncIterator[Redis]:
    """An asyncio client of the stack's redis-server, for one test."""
    client = Redis.from_url(local_stack.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def local_stack() -> Iterator[StackInfo]:
    """A running Kafka + Redis for the whole session; downed with purge even on failure."""
    for name in stale_pytest_stacks():  # left behind by killed runs
        stack_down(name, purge=True)
    with running_stack(f"pytest-{os.getpid()}", purge=True) as info:
        yield info
    leaked = [pid for pid in (info.kafka_pid, info.redis_pid) if pid_alive(pid)]
    assert not leaked, f"local stack processes still alive after down: {leaked}"
