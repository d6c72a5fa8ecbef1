"""Noticing a Redis that lost churnwatch's state, and stopping until an operator decides what to do.

Why: the windows in Redis summarise every event before the consumer group's committed offsets, and
Kafka will not send those events again. A Redis that comes back empty (restarted without AOF, a
lost volume, a failover to an empty replica, a FLUSHALL) looks to the worker like customers with no
history: nothing fails, but every rule judges on a fraction of the truth. So that is never silent,
Redis holds an *epoch marker* (:func:`stream.windows.keys.epoch_marker`), written when the worker
first starts against a Redis with no marker and a group that has consumed nothing:

====================  ==========================================  ==============
marker                history consumed (offsets or this worker)   verdict
====================  ==========================================  ==============
present               either                                      ok
absent                no                                          initialise
absent                yes                                         lost
====================  ==========================================  ==============

"Lost" stops event processing (the agent waits before it takes its next event, or, for one taken
just after the loss was noticed, holds it unacked: nothing more is applied to the empty Redis and
no offset is committed past it), turns ``/readyz`` to 503 with the reason, sets
``churnwatch_state_lost`` and logs one ERROR with the ways out. It ends when a marker is there again:
Redis restored from its AOF or snapshot, or ``churnwatch state accept-loss`` (:func:`accept_loss`)
after a replay of the topics' history or to go on with empty windows.

The check runs at start and every ``CHURNWATCH_STATE_CHECK_INTERVAL`` (one EXISTS; Kafka is asked
only when the marker is missing), so a Redis emptied while the worker runs is noticed within that
interval; events processed in between are applied to the empty Redis.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from stream.connections import kafka_client_kwargs
from stream.metrics import Metrics
from stream.settings import Settings
from stream.windows import keys

log = logging.getLogger("churnwatch.state_guard")

Origin = Literal["first-start", "accepted-loss"]


class Verdict(enum.Enum):
    OK = "ok"
    INITIALISE = "initialise"
    LOST = "lost"


def decide(*, marker_present: bool, offsets_committed: bool, processed_here: bool) -> Verdict:
    """``processed_here``: this worker applied events to the state the marker stood for; they were
    lost with it even if no offset was committed for them yet."""
    if marker_present:
        return Verdict.OK
    if offsets_committed or processed_here:
        return Verdict.LOST
    return Verdict.INITIALISE


@dataclass(frozen=True)
class EpochMarker:
    """What the marker holds: which epoch of the state this Redis has, since when, and why it began."""

    epoch: str
    created_at: datetime
    origin: Origin

    @classmethod
    def new(cls, origin: Origin, now: datetime | None = None) -> EpochMarker:
        return cls(epoch=uuid.uuid4().hex, created_at=now or datetime.now(UTC), origin=origin)

    def to_json(self) -> str:
        return json.dumps({"epoch": self.epoch, "created_at": self.created_at.isoformat(), "origin": self.origin})

    @classmethod
    def from_json(cls, raw: str | bytes) -> EpochMarker:
        data = json.loads(raw)
        return cls(epoch=data["epoch"], created_at=datetime.fromisoformat(data["created_at"]), origin=data["origin"])


def durability_problems(config: Mapping[str, str]) -> list[str]:
    """What in a Redis's ``CONFIG GET`` answer makes a restart or a full memory lose the windows."""
    problems = []
    if config.get("appendonly", "yes") != "yes":
        problems.append("appendonly is 'no': a restart loses every write since the last snapshot")
    elif config.get("appendfsync", "everysec") not in ("everysec", "always"):
        problems.append(f"appendfsync is {config['appendfsync']!r}: a crash can lose more than a second of writes")
    policy = config.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        problems.append(f"maxmemory-policy is {policy!r}: a full Redis evicts windows silently")
    return problems


class EpochStore(Protocol):
    """Where the marker lives (Redis)."""

    async def marker_exists(self) -> bool: ...

    async def create_marker(self, marker: EpochMarker) -> bool:
        """Write ``marker`` unless one is there; True if written."""

    async def read_marker(self) -> EpochMarker | None: ...

    async def durability_config(self) -> Mapping[str, str] | None:
        """Redis's persistence and eviction settings; None where CONFIG is not allowed."""


class ConsumedHistory(Protocol):
    async def committed(self) -> Sequence[str]:
        """The event-topic partitions the consumer group committed offsets past 0 on (``topic[p]@offset``)."""


class RedisEpochStore:
    def __init__(self, redis: Redis, app_id: str) -> None:
        self._redis = redis
        self.key = keys.epoch_marker(app_id)

    async def marker_exists(self) -> bool:
        return bool(await self._redis.exists(self.key))

    async def create_marker(self, marker: EpochMarker) -> bool:
        return bool(await self._redis.set(self.key, marker.to_json(), nx=True))

    async def read_marker(self) -> EpochMarker | None:
        raw = await self._redis.get(self.key)
        return None if raw is None else EpochMarker.from_json(raw)

    async def durability_config(self) -> Mapping[str, str] | None:
        try:
            config = await self._redis.config_get("append*")
            config.update(await self._redis.config_get("maxmemory-policy"))
        except ResponseError:  # CONFIG renamed or refused (managed Redis): cannot tell
            return None
        return {str(k): str(v) for k, v in config.items()}


class KafkaCommittedOffsets:
    """The consumer group's committed offsets on the event topics, from the admin API (asked rarely:
    only when the marker is missing)."""

    def __init__(self, client: Mapping[str, Any], group_id: str, topics: Sequence[str]) -> None:
        """``client``: aiokafka's bootstrap and security options (:func:`stream.connections.kafka_client_kwargs`)."""
        self._client = dict(client)
        self.group_id = group_id
        self._topics = set(topics)

    async def committed(self) -> Sequence[str]:
        admin = AIOKafkaAdminClient(**self._client, client_id=f"{self.group_id}-state-guard")
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.group_id)
        finally:
            await admin.close()
        return sorted(
            f"{tp.topic}[{tp.partition}]@{meta.offset}"
            for tp, meta in offsets.items()
            if tp.topic in self._topics and meta.offset > 0
        )


def recovery_steps(*, app_id: str, topics: Sequence[str], interval: float) -> str:
    """The ways out of a lost state, for the log and ``/readyz``."""
    topic_args = " ".join(f"--topic {t}" for t in topics)
    return (
        f"(1) restore Redis from its AOF or snapshot: the marker comes back with it and processing resumes "
        f"within {interval:g} s; "
        f"(2) replay: stop the workers, reset the consumer group and replay the topics' history "
        f"(kafka-consumer-groups.sh --bootstrap-server <broker> --group {app_id} --reset-offsets --to-earliest "
        f"{topic_args} --execute), run `churnwatch state accept-loss`, start the workers: the windows are "
        f"rebuilt from what the topics still retain; "
        f"(3) accept the loss and go on with empty windows: `churnwatch state accept-loss` (with this worker's "
        f"CHURNWATCH_REDIS_URL and CHURNWATCH_APP_ID) writes a new marker; processing resumes within {interval:g} s"
    )


async def accept_loss(store: EpochStore) -> tuple[bool, EpochMarker | None]:
    """The operator's decision: a new epoch marker, unless one is there. Returns (written, the marker)."""
    marker = EpochMarker.new("accepted-loss")
    if await store.create_marker(marker):
        return True, marker
    return False, await store.read_marker()


class StateGuard:
    """Holds the event agent back while the state is unchecked or lost; see the module docstring."""

    def __init__(
        self,
        store: EpochStore,
        history: ConsumedHistory,
        metrics: Metrics,
        *,
        app_id: str,
        recovery: str,
        marker_key: str,
    ) -> None:
        self._store = store
        self._history = history
        self._metrics = metrics
        self._app_id = app_id
        self._recovery = recovery
        self._marker_key = marker_key
        self._open = asyncio.Event()
        self._verdict: Verdict | None = None
        self._reason = ""
        self._processed_here = False
        self._failing = False
        self._durability_checked = False
        metrics.state_lost.set(0)

    @property
    def verdict(self) -> Verdict | None:
        """None until the first check succeeded."""
        return self._verdict

    @property
    def processing_allowed(self) -> bool:
        return self._open.is_set()

    async def admit(self) -> None:
        """Awaited by the event agent before it takes an event: returns at once while the state is fine.

        Before it *takes* one, not with one in hand: faust's shutdown and rebalance wait for every
        event taken to be acked, and acking one not processed would commit past it."""
        await self._open.wait()

    async def done_with_batch(self) -> None:
        """Awaited by the event agent after a batch was applied and acked, before it takes the next."""
        self._processed_here = True
        await self.admit()

    def readiness(self) -> dict[str, str] | None:
        """Why the worker is not ready as far as its state goes (``/readyz``); None if it is."""
        if self._verdict is None:
            return {"status": "starting", "reason": "the Redis state has not been checked yet"}
        if self._verdict is Verdict.LOST:
            return {"status": "state lost", "reason": self._reason, "recovery": self._recovery}
        return None

    async def watch(self, interval: float) -> None:
        """Check at once, then every ``interval`` seconds (sooner while the first check has not succeeded)."""
        while True:
            await self.check()
            await asyncio.sleep(interval if self._verdict is not None else min(interval, 0.5))

    async def check(self) -> Verdict | None:
        """One check; a Redis or Kafka failure keeps the previous verdict (and the gate as it was)."""
        try:
            verdict = await self._judge()
        except Exception as exc:  # unreachable Redis or Kafka: the data path stalls and retries on its own
            self._metrics.dependency_errors.labels(operation="state_check").inc()
            if not self._failing:
                log.warning("checking the Redis state failed, retrying: %s: %s", type(exc).__name__, exc)
            self._failing = True
            return self._verdict
        self._failing = False
        self._apply(verdict)
        if not self._durability_checked:
            await self._warn_if_not_durable()
        return verdict

    async def _judge(self) -> Verdict:
        if await self._store.marker_exists():
            return Verdict.OK
        if self._verdict is Verdict.LOST:
            return Verdict.LOST  # still missing: already said, Kafka need not be asked again
        committed: Sequence[str] = () if self._processed_here else await self._history.committed()
        verdict = decide(marker_present=False, offsets_committed=bool(committed), processed_here=self._processed_here)
        if verdict is Verdict.INITIALISE:
            marker = EpochMarker.new("first-start")
            if await self._store.create_marker(marker):
                log.info("no churnwatch state in Redis and nothing consumed yet: new epoch %s", marker.epoch)
            return Verdict.OK
        evidence = (
            "this worker applied events to the state the marker stood for"
            if self._processed_here
            else f"committed offsets on {', '.join(committed[:6])}{' …' if len(committed) > 6 else ''}"
        )
        self._reason = (
            f"the epoch marker {self._marker_key} is missing but consumer group {self._app_id!r} already consumed "
            f"events ({evidence}): Redis was emptied or replaced behind the committed offsets, so the windows "
            "of every event before them are gone"
        )
        return Verdict.LOST

    def _apply(self, verdict: Verdict) -> None:
        was = self._verdict
        self._verdict = verdict
        if verdict is Verdict.LOST:
            self._open.clear()
            self._metrics.state_lost.set(1)
            if was is not Verdict.LOST:
                self._metrics.state_losses.inc()
                log.error(
                    "state lost: %s. Event processing is stopped (nothing is consumed or committed; /readyz "
                    "answers 503; churnwatch_state_lost is 1) until one of: %s",
                    self._reason,
                    self._recovery,
                )
            return
        if was is Verdict.LOST:
            log.warning("the epoch marker %s is back: event processing resumes", self._marker_key)
            self._processed_here = False  # a new epoch: what was processed before belonged to the lost one
        self._metrics.state_lost.set(0)
        self._open.set()

    async def _warn_if_not_durable(self) -> None:
        """Once per process: the marker tells of a loss after the fact, this warns that one can happen."""
        self._durability_checked = True
        try:
            config = await self._store.durability_config()
        except Exception as exc:  # informative only: never holds processing back
            log.debug("could not read Redis's persistence settings: %s", exc)
            return
        problems = durability_problems(config or {})
        if problems:
            log.warning(
                "Redis is not configured for durable state (%s); production needs appendonly yes, "
                "appendfsync everysec, maxmemory-policy noeviction (see the README)",
                "; ".join(problems),
            )


def build_state_guard(settings: Settings, redis: Redis, metrics: Metrics) -> StateGuard:
    """The guard for a worker of ``settings`` whose data path uses ``redis``."""
    store = RedisEpochStore(redis, settings.app_id)
    events = settings.topics.events
    return StateGuard(
        store,
        KafkaCommittedOffsets(kafka_client_kwargs(settings), settings.app_id, events),
        metrics,
        app_id=settings.app_id,
        recovery=recovery_steps(
            app_id=settings.app_id, topics=events, interval=settings.state_check_interval.total_seconds()
        ),
        marker_key=store.key,
    )
