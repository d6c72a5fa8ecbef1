"""Where an alert's Slack message is, so a resolution can update it and reply in its thread.

Slack names a message by its channel id and ``ts``; both come back from ``chat.postMessage`` and
are all ``chat.update`` and a threaded reply need. The Redis implementation, which survives
restarts and is shared by the workers, is :mod:`stream.slack_message_refs`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class MessageRef:
    channel: str
    """The channel *id* Slack answered with (``chat.update`` refuses a channel name)."""
    ts: str
    """The message's timestamp, Slack's id for it within the channel (``"1733100000.000100"``)."""


class MessageRefs(Protocol):
    """One receiver's record of the messages it posted, by alert id."""

    async def remember(self, alert_id: str, channel: str, ts: str) -> None: ...

    async def lookup(self, alert_id: str) -> MessageRef | None:
        """None when the alert was never posted by this receiver, or long enough ago to be forgotten."""
        ...


class InMemoryMessageRefs:
    """For tests and single-process runs: forgets on restart, and the oldest past ``max_entries``."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._refs: OrderedDict[str, MessageRef] = OrderedDict()

    async def remember(self, alert_id: str, channel: str, ts: str) -> None:
        self._refs[alert_id] = MessageRef(channel, ts)
        self._refs.move_to_end(alert_id)
        while len(self._refs) > self._max_entries:
            self._refs.popitem(last=False)

    async def lookup(self, alert_id: str) -> MessageRef | None:
        return self._refs.get(alert_id)
