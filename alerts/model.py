"""The alert record: what travels on the alerts topic and reaches every sink.

A record is ``firing`` (a rule fired for a customer) or ``resolved`` (the customer came back: a
purchase after an absence alert); a resolution names the alert it resolves in ``resolves``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from rules.base import EvidenceValue, Finding, Mode, Severity

_ALERT_NAMESPACE = uuid.UUID("6f1c1d2e-7a43-4a55-9d0c-2b1d8f0c9e11")


def ledger_id(rule_id: str, mode: Mode) -> str:
    """Which alert ledger a rule's claims go to: a shadow rule keeps its own, so its count is what it
    *would* have sent, cooldowns included, and promoting it later starts with a clean slate."""
    return f"shadow:{rule_id}" if mode is Mode.SHADOW else rule_id


def alert_id_for(customer_id: str, rule_id: str, claim_key: str) -> str:
    """Deterministic: an alert published again (after a crash) keeps its id, so sinks drop the copy."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{customer_id}\x1f{rule_id}\x1f{claim_key}"))


class Alert(BaseModel):
    # Unknown fields are ignored, not refused: during a rolling upgrade a newer worker publishes
    # fields (``owner``, ``next_step`` were such) that an older delivery worker must still deliver
    # rather than dead-letter. Missing or mistyped known fields are still errors.
    model_config = ConfigDict(extra="ignore", frozen=True)

    alert_id: str = Field(description="Stable id: the same claim (customer, rule, triggering event) gives the same id")
    customer_id: str
    rule_id: str
    severity: Severity
    message: str = Field(description="Rendered from the rule's message template")
    evidence: dict[str, EvidenceValue] = Field(description="The numbers that fired the rule")
    customer: dict[str, EvidenceValue] = Field(
        default_factory=dict,
        description="Who the customer is: lifetime spend and purchases, segment (to rank and route alerts)",
    )
    owner: str | None = Field(default=None, description="The rule's owner team, who answers for the alert")
    next_step: str | None = Field(default=None, description="The rule's suggested next step")
    evaluated_at: AwareDatetime = Field(description="Event time the rule was evaluated at")
    detected_at: AwareDatetime = Field(description="Wall-clock time the worker fired it")
    trigger_event_id: str
    trigger_topic: str
    status: Literal["firing", "resolved"] = "firing"
    resolves: str | None = Field(default=None, description="For a resolution: the alert_id of the alert it resolves")

    @classmethod
    def from_finding(
        cls, finding: Finding, *, claim_key: str, trigger_event_id: str, trigger_topic: str, detected_at: datetime
    ) -> Alert:
        return cls(
            alert_id=alert_id_for(finding.customer_id, finding.rule_id, claim_key),
            customer_id=finding.customer_id,
            rule_id=finding.rule_id,
            severity=finding.severity,
            message=finding.message,
            evidence=dict(finding.evidence),
            customer=dict(finding.customer),
            owner=finding.owner,
            next_step=finding.next_step,
            evaluated_at=finding.evaluated_at,
            detected_at=detected_at,
            trigger_event_id=trigger_event_id,
            trigger_topic=trigger_topic,
        )

    @classmethod
    def resolution(
        cls,
        *,
        customer_id: str,
        rule_id: str,
        claim_key: str,
        severity: Severity,
        alerted_at: datetime,
        returned_at: datetime,
        trigger_event_id: str,
        trigger_topic: str,
        detected_at: datetime,
        customer: Mapping[str, EvidenceValue] | None = None,
    ) -> Alert:
        """The customer came back: resolves the alert of that claim (its id is derived the same way).

        ``customer``: who they are as they come back (the figures an alert carries), so that routes
        and silences on those figures take the resolution where they took the alert."""
        firing = alert_id_for(customer_id, rule_id, claim_key)
        silent_days = round((returned_at - alerted_at).total_seconds() / 86400, 1)
        return cls(
            alert_id=str(uuid.uuid5(_ALERT_NAMESPACE, f"{firing}\x1fresolved")),
            customer_id=customer_id,
            rule_id=rule_id,
            severity=severity,
            message=f"Resolved: the customer came back on {returned_at.date().isoformat()}, "
            f"{silent_days:g} days after the alert.",
            evidence={"returned_at": returned_at.isoformat(), "alerted_at": alerted_at.isoformat()},
            customer=dict(customer or {}),
            evaluated_at=returned_at,
            detected_at=detected_at,
            trigger_event_id=trigger_event_id,
            trigger_topic=trigger_topic,
            status="resolved",
            resolves=firing,
        )
