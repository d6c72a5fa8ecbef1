"""Alerts as log lines: the sink that always works, for the demo terminal and log-only deployments.

One line per alert, worded for the support person watching it, with the ids in ``extra`` for log
shippers. Business severity maps onto the log level, so ``--log-level warning`` hides info alerts.
"""

from __future__ import annotations

import logging

from alerts.grouping import Digest
from alerts.model import Alert
from rules.base import Severity

LOGGER = "churnwatch.alerts"

_LEVEL = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING, Severity.CRITICAL: logging.CRITICAL}


class LogNotifier:
    def __init__(self, *, name: str = "log", logger: logging.Logger | None = None) -> None:
        self._name = name
        self._logger = logger or logging.getLogger(LOGGER)

    @property
    def name(self) -> str:
        return self._name

    async def notify(self, alert: Alert) -> None:
        self._logger.log(
            _LEVEL[alert.severity],
            "%s",
            format_line(alert),
            extra={
                "alert_id": alert.alert_id,
                "customer_id": alert.customer_id,
                "rule_id": alert.rule_id,
                "severity": alert.severity.value,
            },
        )

    async def notify_digest(self, digest: Digest) -> None:
        """One line per digest, at the level of its most severe alert."""
        level = max((_LEVEL[a.severity] for a in digest.alerts), default=logging.INFO)
        self._logger.log(
            level,
            "%s",
            digest_line(digest),
            extra={"digest_id": digest.digest_id, "group": digest.group, "alerts": len(digest.alerts)},
        )


def format_line(alert: Alert) -> str:
    """The line :class:`LogNotifier` writes, e.g. ``WARNING churn alert · customer c-7 · rule r · ...``."""
    what = "churn alert resolved" if alert.status == "resolved" else "churn alert"
    return (
        f"{alert.severity.value.upper()} {what} · customer {_one_line(alert.customer_id)} · "
        f"rule {alert.rule_id} · {_one_line(alert.message)} (alert {alert.alert_id})"
    )


def _one_line(text: str) -> str:
    """Collapse whitespace and drop control characters: one alert is one line, and no forged ones."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def digest_line(digest: Digest) -> str:
    """One line for the log receiver: how many, the top one, where the rest are listed."""
    top = digest.top[0] if digest.top else None
    lead = f"; top: {format_line(top)}" if top is not None else ""
    held = f"; {digest.held_back} wait over the storm limit" if digest.held_back else ""
    return (
        f"{'repeat ' if digest.repeat else ''}digest {digest.digest_id} · {len(digest.alerts)} alerts for "
        f"{digest.receiver} ({digest.route}){held}{lead} · all: {digest.list_command()}"
    )
