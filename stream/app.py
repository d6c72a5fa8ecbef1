"""The composition root: builds the faust app, its agents and every concrete object they use.

Importing this module has no side effects; :func:`build_app` wires a worker from settings and an
already validated rule set.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector
from redis.asyncio import Redis

from alerts.log_sink import LogNotifier
from alerts.notifier import Notifier
from alerts.receivers import build_receiver
from alerts.routing import RoutesConfig
from alerts.slack import SlackNotifier
from alerts.slack_web import SlackWebApiNotifier
from alerts.webhook import WebhookNotifier
from rules.ruleset import RuleSet
from stream.alert_groups import RedisAlertGroups
from stream.batching import BatchBuffer
from stream.bulk_fetch import BulkFetchApp
from stream.connections import faust_broker_settings, redis_client
from stream.contracts import SourceRecord
from stream.delivery import AlertDelivery
from stream.delivery_log import RedisDeliveryLog
from stream.due_index import RedisDueIndex
from stream.held_resolutions import RedisHeldResolutions
from stream.kafka_sinks import KafkaAlertPublisher, KafkaDeadLetterSink
from stream.metrics import Metrics
from stream.open_alerts import RedisOpenAlerts, rule_cooldown
from stream.pending_ledger import RedisPendingLedger
from stream.processor import EventProcessor, StartedBatch
from stream.progress import InputProgress
from stream.quarantine import Quarantine, RedisQuarantineLedger
from stream.receiver_resources import WorkerReceiverResources
from stream.rules_reload import ActiveRules, RuleReloader
from stream.settings import Settings
from stream.silence_store import CachedSilences, RedisSilenceStore, rule_owner
from stream.slack_interactions import PATH as SLACK_INTERACTIONS_PATH
from stream.slack_interactions import build_interactions
from stream.state_guard import build_state_guard
from stream.windows.store import RedisWindowStore

log = logging.getLogger("churnwatch.app")

READINESS_TIMEOUT = 0.5
"""Seconds /readyz waits for Redis's PING: a probe must answer quickly, whatever the data path waits."""


def _raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """Bytes in, bytes out: validation is ours, so a bad message is dead-lettered, not a faust crash."""
    return app.topic(*names, key_serializer="raw", value_serializer="raw")


@dataclass
class Worker:
    """The built app plus the handles tests and the CLI need."""

    app: faust.App
    metrics: Metrics
    redis: Redis
    rules: Callable[[], RuleSet]


def _record_of(message: faust.types.Message) -> SourceRecord:
    return SourceRecord(message.topic, message.partition, message.offset, message.key, message.value)


def build_notifiers(
    settings: Settings, routes: RoutesConfig | None = None, *, kafka_topic: Callable[[str], Any] | None = None
) -> list[Notifier]:
    """With ``routes``: one notifier per receiver of the file, named after it (the registry in
    :mod:`alerts.receivers` builds each); raises :class:`~alerts.receivers.MissingSecret` for an unset
    secret. Without: the notifiers the settings configure, each named after its kind."""
    resources = WorkerReceiverResources(settings, kafka_topic=kafka_topic)
    if routes is not None:
        return [build_receiver(receiver, resources) for receiver in routes.receivers]
    notifiers: list[Notifier] = [LogNotifier()]
    if settings.slack_webhook_url is not None:
        notifiers.append(
            SlackNotifier(
                settings.slack_webhook_url,
                messages_per_second=settings.slack_messages_per_second,
                links=settings.alert_links,
            )
        )
    if settings.webhook_url is not None:
        notifiers.append(WebhookNotifier(settings.webhook_url, secret=settings.webhook_secret))
    if settings.slack_bot_token is not None and settings.slack_channel is not None:
        notifiers.append(
            SlackWebApiNotifier(
                settings.slack_bot_token,
                settings.slack_channel,
                resources.message_refs("slack_web"),  # its own lazily connecting client, as a routed receiver's
                name="slack_web",
                messages_per_second=resources.messages_per_second,
                buttons=resources.slack_buttons,  # only with the endpoint that answers them
                links=resources.alert_links,
            )
        )
    return notifiers


def _highwater_of(app: faust.App) -> Callable[[str, int], int | None]:
    """The broker's high watermark for an input partition, as of the consumer's last fetch."""

    def highwater(topic: str, partition: int) -> int | None:
        try:
            value = app.consumer.highwater(TP(topic, partition))
        except Exception:  # not assigned to this worker: nothing to wait for
            return 0
        return None if value is None or value < 0 else int(value)

    return highwater


def _owned_partitions(app: faust.App, topic: str) -> list[int]:
    """The input partitions assigned to this worker (the event topics are co-partitioned): the due
    index shards this worker scans."""
    try:
        assigned = app.consumer.assignment()
    except Exception:  # not started or rebalancing: nothing is ours yet
        return []
    return sorted(tp.partition for tp in assigned if tp.topic == topic)


def build_app(
    settings: Settings,
    rule_set: RuleSet,
    *,
    registry: CollectorRegistry | None = None,
    routes: RoutesConfig | None = None,
) -> Worker:
    """``routes``: the validated routes file (``CHURNWATCH_ROUTES_FILE``); None sends every alert to every notifier."""
    registry = registry or CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics = Metrics(registry)
    active = ActiveRules(rule_set, metrics)
    reloader = RuleReloader(settings.rules_dir, active, metrics)

    broker = faust_broker_settings(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level of its datadir
    app = BulkFetchApp(
        settings.app_id,
        broker=broker.url,
        broker_credentials=broker.credentials,
        store="memory://",
        datadir=str(settings.data_dir / f"{settings.app_id}-data"),
        autodiscover=False,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        producer_acks=-1,
        # Above the broker's limit (faust's default 1,000,000 is below Kafka's 1,048,588): the broker alone
        # decides what is too big, and a batch it accepted is fetched whole wherever it sits in a fetch.
        producer_max_request_size=settings.kafka_request_max_bytes,
        consumer_max_fetch_size=settings.kafka_request_max_bytes,
        broker_session_timeout=settings.kafka_session_timeout.total_seconds(),
        broker_commit_interval=settings.kafka_commit_interval.total_seconds(),
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replicas,
    )
    topics = settings.topics
    metrics.assigned_partitions.set_function(lambda: len(_owned_partitions(app, topics.purchases)))
    events_topic = _raw_topic(app, *topics.events)
    alerts_topic = _raw_topic(app, topics.alerts)
    dead_letter_sink = KafkaDeadLetterSink(_raw_topic(app, topics.deadletter), max_bytes=settings.deadletter_max_bytes)

    redis = redis_client(settings, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)
    store = RedisWindowStore(redis, settings.window_policy())
    # Its own client: a probe must not queue behind, or share the timeouts of, the data path's calls.
    probe_redis = redis_client(settings, socket_timeout=READINESS_TIMEOUT, socket_connect_timeout=READINESS_TIMEOUT)
    guard = build_state_guard(settings, redis, metrics)
    processor = EventProcessor(
        stream_kinds=topics.event_kinds,
        store=store,
        rules=active,
        publisher=KafkaAlertPublisher(alerts_topic),
        dead_letters=dead_letter_sink,
        metrics=metrics,
        decode_policy=settings.decode_policy(),
        pending=RedisPendingLedger(redis, settings.app_id),
        due=RedisDueIndex(redis, settings.app_id),
        quarantine=Quarantine(
            RedisQuarantineLedger(redis, settings.app_id), metrics, max_failures=settings.evaluation_max_failures
        ),
        alert_max_lag=settings.alert_max_lag,
        evaluation_delay=settings.evaluation_delay,
        progress=InputProgress(topics.events, tolerance=settings.input_skew_tolerance, highwater=_highwater_of(app)),
    )
    delivery = AlertDelivery(
        build_notifiers(settings, routes, kafka_topic=lambda name: _raw_topic(app, name)),
        RedisDeliveryLog(store),
        dead_letter_sink,
        metrics,
        attempts=settings.delivery_attempts,
        backoff_max=settings.delivery_backoff_max.total_seconds(),
        silences=CachedSilences(RedisSilenceStore(redis, settings.app_id)),
        team_of=rule_owner(active),
        routes=None if routes is None else routes.route,
        open_alerts=RedisOpenAlerts(redis, open_for=rule_cooldown(active), gauge=metrics.open_alerts),
        inhibit_rules=() if routes is None else routes.inhibit_rules,
        groups=RedisAlertGroups(redis, settings.app_id),
        held=RedisHeldResolutions(redis, settings.app_id),
    )

    # The event topics are read in bulk below faust's per-event stream (stream/bulk_fetch.py): faust's
    # fetcher puts their messages into this buffer, and offsets are committed only behind acked ones.
    fetched: BatchBuffer[faust.types.Message] = BatchBuffer(settings.batch_max_events)
    app.read_in_bulk([events_topic], fetched)

    @app.task  # type: ignore[untyped-decorator]  # faust does not type its decorators
    async def consume_events() -> None:
        # Two batches in flight at most: while the worker judges one, Redis folds the next
        # (EventProcessor.start_batch / finish_batch); each is acked once finished, in order.
        ahead: tuple[list[faust.types.Message], StartedBatch] | None = None
        while True:
            # The guard holds the worker while Redis's state is unchecked or lost (stream/state_guard.py):
            # before it takes a batch, never with one in hand that it would have to ack unprocessed.
            await guard.admit()
            batch = fetched.take_ready() if ahead is not None else await fetched.take()
            started = None
            if batch:
                app.track_taken(batch)  # from here a rebalance or shutdown waits for their acks
                await guard.admit()  # a batch taken after a loss was noticed waits unacked: no commit past it
                started = processor.start_batch([_record_of(m) for m in batch], after=ahead and ahead[1])
            if ahead is not None:
                await processor.finish_batch(ahead[1])
                app.ack(ahead[0])  # only now: their state is written
                await guard.done_with_batch()  # a worker stopped between batches can shut down and rebalance
            ahead = (batch, started) if started is not None else None

    @app.agent(alerts_topic, concurrency=1, name="churnwatch.deliver_alerts")
    async def deliver_alerts(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            # Returns once delivered or dead-lettered (Redis or Kafka down: it waits), so the event is
            # acknowledged only then.
            await delivery.handle(_record_of(event.message))

    @app.page("/metrics")
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")
    async def healthz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.json({"status": "ok", "rule_set": active().version})

    @app.page("/readyz")
    async def readyz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        try:
            await asyncio.wait_for(probe_redis.ping(), READINESS_TIMEOUT)
        except Exception as exc:  # readiness reports any failure rather than raising
            return web.json({"status": "redis unavailable", "error": type(exc).__name__}, status=503)
        state_problem = guard.readiness()
        if state_problem is not None:
            return web.json(state_problem, status=503)
        return web.json({"status": "ready", "rule_set": active().version})

    interactions = build_interactions(settings, redis, metrics)  # with CHURNWATCH_SLACK_SIGNING_SECRET only
    if interactions is not None:
        handle_interaction = interactions.handle

        @app.page(SLACK_INTERACTIONS_PATH)
        class SlackInteractionsPage(faust.web.View):
            """The feedback buttons' clicks (stream/slack_interactions.py); the raw body, as it was signed."""

            async def post(self, request: faust.web.Request) -> faust.web.Response:
                reply = await handle_interaction(await request.read(), request.headers)
                return self.json(reply.body, status=reply.status)

    @app.timer(0.25)  # type: ignore[untyped-decorator]  # faust does not type its decorators
    async def run_deferred_evaluations() -> None:
        if guard.processing_allowed:  # never judge a customer on a Redis that lost their history
            await processor.sweep_deferred()

    @app.timer(1.0)  # type: ignore[untyped-decorator]  # faust does not type its decorators
    async def flush_alert_groups() -> None:
        await delivery.flush_groups()  # due digests (stream/delivery.py); never raises

    @app.task  # type: ignore[untyped-decorator]  # faust does not type its decorators
    async def check_redis_state() -> None:
        await guard.watch(settings.state_check_interval.total_seconds())

    @app.timer(settings.due_scan_interval.total_seconds())  # type: ignore[untyped-decorator]
    async def judge_due_customers() -> None:
        await processor.scan_due(_owned_partitions(app, topics.purchases))

    @app.task  # type: ignore[untyped-decorator]  # faust does not type its decorators
    async def reload_rules_on_change_or_sighup() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.reload)
        if settings.rules_watch:
            await reloader.watch()

    return Worker(app=app, metrics=metrics, redis=redis, rules=active)
