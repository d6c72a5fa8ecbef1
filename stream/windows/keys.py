"""Every Redis key churnwatch writes is built here.

One customer's keys share the hash tag ``{<customer_id>}`` so a script touching several of them is
valid in Redis Cluster (all keys of one call must hash to one slot).
"""

from __future__ import annotations

PREFIX = "cw"


def _tag(customer_id: str) -> str:
    """``{<customer_id>}`` with ``%``, ``{`` and ``}`` percent-escaped (``%25``, ``%7B``, ``%7D``).

    Why escaped: a brace inside the id would end the hash tag early (Redis Cluster hashes from the
    first ``{`` to the first ``}`` after it), and any *replacement* of braces merges ids, as mapping
    them to parentheses merged ``br{1}`` with ``br(1)``: one state, dedupe markers and alert ledger
    for two customers. Escaping ``%`` too makes the mapping injective: every ``%`` in a tag starts
    an escape, so a tag decodes to exactly one id. Other characters are kept, so keys stay readable
    (``redis-cli --scan --pattern 'cw:{cust-0042}:*'``).

    Why a key of one customer never equals a key of another, whatever the suffix: the tag holds no
    brace, so the first ``}`` of a key closes it, and everything from ``cw:{`` to that ``}`` is the
    escaped id, even when the suffix (event ids, alert ids, sinks: not escaped) contains ``:``,
    ``{`` or ``}``. ``cw:{a}:seen:x}`` is customer ``a``'s marker for event ``x}``; no other id
    gives the tag ``{a}``. Within one customer the suffixes start ``:state`` or ``:open`` (all of
    them), ``:seen:`` or ``:sent:``, so kinds of key differ; a marker's suffix is the whole event id; the global
    ``cw:pending`` keys have no ``{``. ``<alert_id>:<sink>`` is unambiguous as alert ids are UUIDs.

    The empty id is refused: ``{}`` is no hash tag, so Redis would hash each whole key and spread
    the customer's keys over slots (the event contract requires a non-empty id anyway).

    Changing this changes where state lives: ids containing ``%``, ``{`` or ``}`` stored before
    this escaping are not found under the new keys.
    """
    if not customer_id:
        raise ValueError("a customer id is never empty: '{}' would not be a Redis Cluster hash tag")
    return "{" + customer_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D") + "}"  # "%" first


def customer_state(customer_id: str) -> str:
    """Hash of day buckets, first/last times, feedback answers and alert claims."""
    return f"{PREFIX}:{_tag(customer_id)}:state"


def seen_event(customer_id: str, event_id: str) -> str:
    """Marker that an event id was applied, written (SET NX EX) by the versions before the bounded
    dedupe; now only read by ``update.lua``, until the last of them expires (:mod:`stream.windows.dedupe`)."""
    return f"{PREFIX}:{_tag(customer_id)}:seen:{event_id}"


def delivered(customer_id: str, alert_id: str, sink: str) -> str:
    """Notification log entry: this alert already reached this sink."""
    return f"{PREFIX}:{_tag(customer_id)}:sent:{alert_id}:{sink}"


def open_alerts(customer_id: str) -> str:
    """Hash: alert id -> the customer's open alert and until when it stays open (JSON); see
    :mod:`stream.open_alerts`. The key expires with the last of them, so a customer who stops
    alerting leaves nothing behind."""
    return f"{PREFIX}:{_tag(customer_id)}:open"


def epoch_marker(app_id: str) -> str:
    """String (JSON): this Redis holds the app's state since that epoch; see :mod:`stream.state_guard`.

    One per app id (the consumer group whose offsets the state goes with). Written once, never
    expired: its absence next to committed offsets means Redis was emptied behind them."""
    return f"{PREFIX}:epoch:{_tag(app_id)}"


def pending_index(app_id: str) -> str:
    """Sorted set of customers with an evaluation waiting (score: when it was queued, epoch ms).

    One per app id, not per customer: a worker that starts must find them without scanning every
    key; namespaced so another deployment on the same Redis never sees them."""
    return f"{PREFIX}:pending:{_tag(app_id)}"


def pending_triggers(app_id: str) -> str:
    """Hash: customer id -> what triggered their waiting evaluation (JSON)."""
    return f"{PREFIX}:pending:{_tag(app_id)}:triggers"


def quarantine(app_id: str) -> str:
    """Hash: customer id -> why their evaluation was given up (JSON); see :mod:`stream.quarantine`."""
    return f"{PREFIX}:quarantine:{_tag(app_id)}"


def due_index(app_id: str, partition: int) -> str:
    """Sorted set: customer id -> when they must next be judged (epoch ms), one per input partition.

    Sharded by the Kafka partition that owns the customer, so each worker scans only its own
    partitions, and in Redis Cluster the index is spread over the nodes (one hash tag per partition).
    The partition is a number, so ``<app id>#<partition>`` read from the right is unambiguous."""
    return f"{PREFIX}:due:{_tag(f'{app_id}#{partition}')}"


def silences(app_id: str) -> str:
    """Hash: silence id -> the silence (JSON); see :mod:`stream.silence_store`.

    Silences belong to a deployment, not to a customer, so they are tagged by app id: in Redis
    Cluster all of them sit in one slot (one node). They are few (tens, a few hundred) and each
    worker reads them once per cache refresh (one ``HGETALL`` every few seconds), so one node carries
    them easily; in exchange the muted-alert sets below share the slot, and pruning or expiring a
    silence is one ``MULTI`` over its keys."""
    return f"{PREFIX}:silences:{_tag(app_id)}"


def silenced_alerts(app_id: str, silence_id: str) -> str:
    """Set of the alert ids one silence held back (``churnwatch silence list`` counts them); it
    expires with the silence's retention. Silence ids are UUIDs, so the suffix is unambiguous."""
    return f"{PREFIX}:silences:{_tag(app_id)}:muted:{silence_id}"


def slack_message(alert_id: str, receiver: str) -> str:
    """String (JSON ``{"channel", "ts"}``): where a Slack Web API receiver posted an alert, so its
    resolution can update that message and reply in its thread; see :mod:`stream.slack_message_refs`.

    Tagged by alert id (a UUID), as refs are looked up by alert id alone; the keys spread over
    Redis Cluster's slots. ``cw:slack:`` never starts a customer's
    key (those start ``cw:{``), and the receiver name ends the key, so ``<alert id>:<receiver>`` is
    unambiguous."""
    return f"{PREFIX}:slack:{_tag(alert_id)}:{receiver}"


def alert_feedback(app_id: str, alert_id: str) -> str:
    """Hash of the answers given with one alert's Slack buttons: ``user:<Slack user id>`` -> the
    latest answer (JSON), ``alert`` -> its rule and customer; see :mod:`stream.feedback_store`.

    Tagged by app id, as the silences are: one script updates it and :func:`feedback_index`
    atomically, so they share a slot. Feedback is people clicking (a few a minute at most), which
    one node carries easily. Alert ids are UUIDs, so the suffix is unambiguous."""
    return f"{PREFIX}:feedback:{_tag(app_id)}:alert:{alert_id}"


def feedback_index(app_id: str) -> str:
    """Sorted set: alert id -> when its latest answer was given (epoch ms), for ``churnwatch rules stats``."""
    return f"{PREFIX}:feedback:{_tag(app_id)}:index"
