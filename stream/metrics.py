"""Every Prometheus metric churnwatch exposes, declared in one place and counted at the call sites.

Labels stay bounded (topic, outcome, rule, severity, sink, reason): never a customer id.
A fresh :class:`Metrics` per registry keeps tests independent.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_AGE_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_consumed = Counter(
            "churnwatch_events_consumed_total",
            "Events read from Kafka, by topic and outcome (ok, invalid, duplicate, late).",
            ["topic", "outcome"],
            registry=registry,
        )
        self.event_processing = Histogram(
            "churnwatch_event_processing_seconds",
            "Time from the start of an event's batch to finishing it (window update, rules and alerts).",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_processing = Histogram(
            "churnwatch_batch_processing_seconds",
            "Time to process one batch of consumed events, from decoding to its due moments written.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_events = Histogram(
            "churnwatch_batch_events",
            "Events per processed batch (what had arrived, up to CHURNWATCH_BATCH_MAX_EVENTS).",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
            registry=registry,
        )
        self.event_age = Histogram(
            "churnwatch_event_age_seconds",
            "Wall-clock age of an event's occurred_at when processed (how far behind live we are).",
            ["topic"],
            buckets=_AGE_BUCKETS,
            registry=registry,
        )
        self.deadletters = Counter(
            "churnwatch_deadletters_total",
            "Messages sent to the dead-letter topic, by source topic and reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.rule_evaluations = Counter(
            "churnwatch_rule_evaluations_total",
            "Rule evaluations, by rule.",
            ["rule"],
            registry=registry,
        )
        self.evaluations_deferred = Counter(
            "churnwatch_evaluations_deferred_total",
            "Rule evaluations put off because another input topic was still behind, by that topic.",
            ["waiting_for"],
            registry=registry,
        )
        self.evaluations_deferred_expired = Counter(
            "churnwatch_evaluations_deferred_expired_total",
            "Deferred evaluations run after waiting the longest allowed, the input still behind, by that input.",
            ["waiting_for"],
            registry=registry,
        )
        self.evaluations_deferred_dropped = Counter(
            "churnwatch_evaluations_deferred_dropped_total",
            "Deferred evaluations forgotten because too many were waiting (the customer's next event evaluates).",
            registry=registry,
        )
        self.alerts_fired = Counter(
            "churnwatch_alerts_fired_total",
            "Alerts fired, by rule, severity and mode (active: published; shadow: would have been, not sent).",
            ["rule", "severity", "mode"],
            registry=registry,
        )
        self.alerts_suppressed = Counter(
            "churnwatch_alerts_suppressed_total",
            "Rule firings not alerted, by rule and reason (cooldown, episode, published, stale).",
            ["rule", "reason"],
            registry=registry,
        )
        self.alert_deliveries = Counter(
            "churnwatch_alert_deliveries_total",
            "Alert deliveries, by sink and outcome (delivered, duplicate, failed_*, silenced, inhibited, "
            "resolved_not_sent, grouped: waits in its route's group for a digest, rate_limited: over the route's "
            "storm limit, waits for a later digest).",
            ["sink", "outcome"],
            registry=registry,
        )
        self.alert_delivery_retries = Counter(
            "churnwatch_alert_delivery_retries_total",
            "Attempts to deliver an alert or digest to a sink after its first one failed with an error worth "
            "retrying (5xx, 429, timeouts), by sink.",
            ["sink"],
            registry=registry,
        )
        self.alerts_silenced = Counter(
            "churnwatch_alerts_silenced_total",
            "Alert records held back from every sink by a silence, by rule and status (firing, resolved).",
            ["rule", "status"],
            registry=registry,
        )
        self.alerts_inhibited = Counter(
            "churnwatch_alerts_inhibited_total",
            "Alert records held back from every sink by an open alert of the same customer (an inhibit rule), "
            "by rule and status (firing, resolved).",
            ["rule", "status"],
            registry=registry,
        )
        self.open_alerts = Gauge(
            "churnwatch_open_alerts",
            "Alerts open (fired, not resolved, within their rule's cooldown) as this worker's delivery agent saw "
            "them, by rule and severity; per worker: sum over workers.",
            ["rule", "severity"],
            registry=registry,
        )
        self.alert_event_to_delivered = Histogram(
            "churnwatch_alert_event_to_delivered_seconds",
            "From the event time an alert's rule fired at (evaluated_at) to every receiver having the alert, "
            "by status (firing, resolved).",
            ["status"],
            buckets=_AGE_BUCKETS,
            registry=registry,
        )
        self.alert_feedback = Counter(
            "churnwatch_alert_feedback_total",
            "Answers given with an alert's Slack buttons, by rule and outcome (acknowledged, snoozed, false_alarm, "
            "saved); a person's repeated answer (or Slack's retry) is counted once.",
            ["rule", "outcome"],
            registry=registry,
        )
        self.slack_requests_rejected = Counter(
            "churnwatch_slack_requests_rejected_total",
            "Requests to the Slack interactivity endpoint refused, by reason (unsigned, bad_timestamp, "
            "stale_timestamp, bad_signature: 401; bad_payload: 400).",
            ["reason"],
            registry=registry,
        )
        self.alert_digests = Counter(
            "churnwatch_alert_digests_total",
            "Digests (one message for a route's grouped alerts), by sink and outcome (delivered, failed_permanent, "
            "failed_retries_exhausted: kept, tried again later).",
            ["sink", "outcome"],
            registry=registry,
        )
        self.alert_digest_alerts = Counter(
            "churnwatch_alert_digest_alerts_total",
            "Alerts carried by delivered digests (shown in full or listed), by sink.",
            ["sink"],
            registry=registry,
        )
        self.alert_delivery = Histogram(
            "churnwatch_alert_delivery_seconds",
            "Time to deliver one alert to one sink, retries included.",
            ["sink"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.dependency_errors = Counter(
            "churnwatch_dependency_errors_total",
            "Redis or Kafka calls that failed and were retried, by operation (apply, claim, publish, ...).",
            ["operation"],
            registry=registry,
        )
        self.evaluation_errors = Counter(
            "churnwatch_evaluation_errors_total",
            "Failures while judging one customer (caught there; other customers go on), by stage: "
            "event (right after their event), deferred (a waiting evaluation), rule (one rule), sweep.",
            ["stage"],
            registry=registry,
        )
        self.alerts_resolved = Counter(
            "churnwatch_alerts_resolved_total",
            "Absence alerts resolved because the customer came back (a resolution record was published).",
            ["rule"],
            registry=registry,
        )
        self.due_judged = Counter(
            "churnwatch_due_judged_total",
            "Customers judged by the due scan: time, not an event, made them due (a silence crossing a threshold).",
            registry=registry,
        )
        self.quarantined_customers = Gauge(
            "churnwatch_quarantined_customers",
            "Customers whose evaluation failed repeatedly and is skipped until released (churnwatch quarantine).",
            registry=registry,
        )
        self.rules_loaded = Gauge(
            "churnwatch_rules_loaded",
            "Enabled rules in the active rule set.",
            registry=registry,
        )
        self.rules_reloads = Counter(
            "churnwatch_rules_reload_total",
            "Rule set reloads (file change or SIGHUP), by outcome (applied, unchanged, invalid).",
            ["outcome"],
            registry=registry,
        )
        self.rule_set_info = Gauge(
            "churnwatch_rule_set_info",
            "The active rule set's version (content hash) as a label; value is always 1.",
            ["version"],
            registry=registry,
        )
        self.state_lost = Gauge(
            "churnwatch_state_lost",
            "1 while processing is stopped because Redis lost the windows behind the committed offsets "
            "(epoch marker gone); 0 otherwise. See churnwatch state accept-loss.",
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "churnwatch_assigned_partitions",
            "Input partitions (of each co-partitioned event topic) this worker owns now; 0 while it has "
            "not joined the consumer group or is rebalancing. Summed over workers: the topic's partitions.",
            registry=registry,
        )
        self.state_losses = Counter(
            "churnwatch_state_losses_total",
            "Times this worker found Redis emptied behind the consumer group's committed offsets.",
            registry=registry,
        )

    def record_delivery(self, sink: str, outcome: str, seconds: float) -> None:
        self.alert_deliveries.labels(sink=sink, outcome=outcome).inc()
        self.alert_delivery.labels(sink=sink).observe(seconds)

    def record_delivery_retry(self, sink: str) -> None:
        self.alert_delivery_retries.labels(sink=sink).inc()

    def record_digest(self, sink: str, outcome: str, alerts: int) -> None:
        self.alert_digests.labels(sink=sink, outcome=outcome).inc()
        if outcome == "delivered":
            self.alert_digest_alerts.labels(sink=sink).inc(alerts)
