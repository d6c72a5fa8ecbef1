"""Run the local HTTP receiver (the stand-in for Slack) on its own thread, so a worker in another
process can post to it for a whole test module while each test has its own event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.unit.http_receiver import LocalReceiver, ReceivedRequest


class ThreadedReceiver:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slack-receiver", daemon=True)
        self.receiver = LocalReceiver()

    def start(self) -> ThreadedReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def url_for(self, path: str) -> str:
        return self.receiver.url_for(path)

    @property
    def requests(self) -> list[ReceivedRequest]:
        return list(self.receiver.requests)


@contextmanager
def threaded_receiver() -> Iterator[ThreadedReceiver]:
    receiver = ThreadedReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
