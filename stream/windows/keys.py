"""Every Redis key churnwatch writes is built here.

One customer's keys share the hash tag ``{<customer_id>}`` so a script touching several of them is
valid in Redis Cluster (all keys of one call must hash to one slot).
"""

from __future__ import annotations

PREFIX = "cw"


def _tag(customer_id: str) -> str:
    # Braces inside an id would move the hash tag; they are replaced, not escaped, since ids are opaque.
    return "{" + customer_id.replace("{", "(").replace("}", ")") + "}"


def customer_state(customer_id: str) -> str:
    """Hash of day buckets, first/last times, feedback answers and alert claims."""
    return f"{PREFIX}:{_tag(customer_id)}:state"


def seen_event(customer_id: str, event_id: str) -> str:
    """Marker that an event id was applied (SET NX EX), so a redelivery changes nothing."""
    return f"{PREFIX}:{_tag(customer_id)}:seen:{event_id}"


def delivered(customer_id: str, alert_id: str, sink: str) -> str:
    """Notification log entry: this alert already reached this sink."""
    return f"{PREFIX}:{_tag(customer_id)}:sent:{alert_id}:{sink}"


def pending_index() -> str:
    """Sorted set of customers with an evaluation waiting (score: when it was queued, epoch ms).

    Global, not per customer: a worker that starts must find them without scanning every key."""
    return f"{PREFIX}:pending"


def pending_triggers() -> str:
    """Hash: customer id -> what triggered their waiting evaluation (JSON)."""
    return f"{PREFIX}:pending:triggers"
