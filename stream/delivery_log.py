"""The notification log on Redis: which alert already reached which sink (alertmanager's nflog)."""

from __future__ import annotations

from alerts.model import Alert
from stream.windows.store import RedisWindowStore


class RedisDeliveryLog:
    def __init__(self, store: RedisWindowStore) -> None:
        self._store = store

    async def already_delivered(self, alert: Alert, sink: str) -> bool:
        return await self._store.already_delivered(alert.customer_id, alert.alert_id, sink)

    async def mark_delivered(self, alert: Alert, sink: str) -> None:
        await self._store.mark_delivered(alert.customer_id, alert.alert_id, sink)
