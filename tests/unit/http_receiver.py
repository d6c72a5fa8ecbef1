"""A real HTTP server on 127.0.0.1 standing in for Slack or any webhook receiver.

Real sockets, so the code under test runs its real HTTP client (slack_sdk, aiohttp) unpatched::

    async with LocalReceiver([Reply(429, {"Retry-After": "1"}), Reply(200)]) as receiver:
        await notifier_for(receiver.url_for("/services/T0/B0/secret")).notify(alert)
    path, headers, body = receiver.requests[0]

Answers are taken from the queue in order; once it is empty every request gets ``default``.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

from aiohttp import web
from multidict import CIMultiDict


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = "ok"
    delay: float = 0.0
    """Seconds to wait before answering, to provoke client timeouts."""


class ReceivedRequest(NamedTuple):
    path: str
    headers: Mapping[str, str]
    json: Any
    """The parsed JSON body, or the raw text if it was not JSON."""


class LocalReceiver:
    def __init__(
        self, replies: Iterable[Reply | tuple[int, Mapping[str, str]]] = (), *, default: Reply | None = None
    ) -> None:
        self.requests: list[ReceivedRequest] = []
        self.default = default or Reply()
        self._replies: deque[Reply] = deque()
        for reply in replies:
            if isinstance(reply, tuple):
                self.reply(*reply)
            else:
                self._replies.append(reply)
        self._runner: web.AppRunner | None = None
        self._url = ""

    def reply(
        self, status: int, headers: Mapping[str, str] | None = None, body: str = "ok", delay: float = 0.0
    ) -> None:
        """Queue the answer to the next request not yet answered."""
        self._replies.append(Reply(status, dict(headers or {}), body, delay))

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        if not self._url:
            raise RuntimeError("LocalReceiver is not started: use `async with LocalReceiver() as receiver`")
        return self._url

    def url_for(self, path: str) -> str:
        return self.url + (path if path.startswith("/") else f"/{path}")

    async def start(self) -> LocalReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)  # port 0: the OS picks a free port
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalReceiver:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        text = await request.text()
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text
        self.requests.append(ReceivedRequest(request.path_qs, CIMultiDict(request.headers), body))
        reply = self._replies.popleft() if self._replies else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=dict(reply.headers), text=reply.body)
