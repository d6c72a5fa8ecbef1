"""Inhibition through the real worker: an open critical keeps the same customer's warning from the
receiver until the critical's resolution is read; another customer's warning goes through."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.model import Alert
from rules.base import Severity
from stream.localstack import StackInfo
from tests.alerts_factory import make_alert
from tests.events_factory import unique_customer
from tests.integration.deployment import WEBHOOK_PATH, deploy
from tests.integration.kafka_io import produce

ROUTES = """
receivers:
  - {name: hook, type: webhook, url_env: CHURNWATCH_WEBHOOK_URL}
route: {receiver: hook}
inhibit_rules:
  - {source: {severity: critical}, target: {severity: [warning, info]}, equal: [customer_id]}
"""


def alert(customer: str, rule: str, severity: str) -> Alert:
    # The real time: an alert is open (so can inhibit) for its rule's cooldown from its detection.
    now = datetime.now(UTC)
    return make_alert(
        alert_id=str(uuid.uuid4()),
        customer_id=customer,
        rule_id=rule,
        severity=Severity(severity),
        evaluated_at=now - timedelta(seconds=5),
        detected_at=now,
    )


async def test_an_open_critical_inhibits_the_customers_warning_until_it_resolves(
    local_stack: StackInfo, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    customer, other = unique_customer("inhibited"), unique_customer("not-inhibited")
    critical = alert(customer, "purchase-overdue", "critical")
    muted = alert(customer, "spend-drop", "warning")
    elsewhere = alert(other, "spend-drop", "warning")
    resolved = critical.model_copy(
        update={"alert_id": str(uuid.uuid4()), "status": "resolved", "resolves": critical.alert_id}
    )
    after = alert(customer, "interaction-drop", "warning")
    records = [critical, muted, elsewhere, resolved, after]  # one customer's records are read in this order
    with deploy(local_stack, tmp_path, {"CHURNWATCH_ROUTES_FILE": str(routes)}) as deployment:
        await produce(
            local_stack.kafka_bootstrap,
            [(deployment.topics.alerts, a.customer_id.encode(), a.model_dump_json().encode()) for a in records],
        )

        def sent() -> list[str]:
            return [r.headers["Idempotency-Key"] for r in deployment.slack.requests if r.path == WEBHOOK_PATH]

        wanted = {critical.alert_id, elsewhere.alert_id, resolved.alert_id, after.alert_id}
        deadline = time.monotonic() + 60
        while not wanted <= set(sent()):
            assert time.monotonic() < deadline, f"sent {sent()}"
            time.sleep(0.2)
        time.sleep(1)  # the muted one would have come by now: it was read before the resolution
        assert sorted(sent()) == sorted(wanted)
        assert deployment.metric("churnwatch_alerts_inhibited_total", rule="spend-drop", status="firing") == 1
        assert deployment.metric("churnwatch_alert_deliveries_total", sink="hook", outcome="inhibited") == 1
        assert deployment.metric("churnwatch_open_alerts", rule="purchase-overdue", severity="critical") == 0
        assert deployment.metric("churnwatch_open_alerts", rule="spend-drop", severity="warning") == 2
        assert deployment.metric("churnwatch_alert_event_to_delivered_seconds_count", status="firing") == 3
