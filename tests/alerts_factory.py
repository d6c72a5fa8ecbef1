"""Alert builder shared by tests: a valid firing alert, one keyword per field a test cares about.

The defaults are neutral on purpose (a warning about one customer, with no evidence, no customer
figures, owner or next step), so a test shows what it depends on by passing it. They are also fixed,
not random or the time of day, so two calls with the same keywords give equal alerts; a test that
needs unique ids or the real time (Redis, Kafka, a live worker) passes them. The id is a UUID, as the
worker's are: Slack's feedback buttons are only drawn for one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alerts.model import Alert
from rules.base import Severity

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def make_alert(**overrides: Any) -> Alert:
    # Alert ignores unknown fields (for rolling upgrades); here a misspelt keyword is an error.
    unknown = set(overrides) - set(Alert.model_fields)
    if unknown:
        raise TypeError(f"make_alert: Alert has no field {', '.join(sorted(unknown))}")
    fields: dict[str, Any] = {
        "alert_id": "00000000-0000-5000-8000-000000000001",
        "customer_id": "cust-1",
        "rule_id": "purchase-overdue",
        "severity": Severity.WARNING,
        "message": "No purchase for 40 days.",
        "evidence": {},
        "evaluated_at": AT,
        "detected_at": AT,
        "trigger_event_id": "evt-1",
        "trigger_topic": "churnwatch.purchases",
    }
    return Alert(**(fields | overrides))
