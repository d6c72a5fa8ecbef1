"""The worker's logging: ``--loglevel`` is the root logger's level (faust's spinner made it DEBUG)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import faust
import pytest

from stream.lifecycle import BoundedWorker


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("loglevel", ["warning", "info"])
def test_the_root_logger_keeps_the_level_asked_for(restored_logging: None, loglevel: str) -> None:
    app = faust.App("churnwatch-logging-test", autodiscover=False)
    worker = BoundedWorker(app, loglevel=loglevel, quiet=False, shutdown_timeout=5)  # not quiet: a spinner
    worker._setup_logging()
    root = logging.getLogger()
    assert root.level == getattr(logging, loglevel.upper())
    assert not logging.getLogger("aiokafka.conn").isEnabledFor(logging.DEBUG)
    assert not any("Spinner" in type(h).__name__ for h in root.handlers)
