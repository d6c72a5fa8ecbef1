"""The grouping stage of the pipeline: alerts of a digest or storm-limited route wait in their group
(:class:`GroupingStage`, on the delivery path), and due groups go out as digests
(:class:`DigestFlusher`, on the worker's timer). The decisions are in :mod:`alerts.grouping`.

Nothing is lost on the way: the delivery path returns (and the record is acknowledged) only once the
alert is in its group in Redis; a digest is written as in flight, with its alerts moved into it,
before it is sent, and cleared after the receiver accepted it, so a crash in between sends the same
digest (same ``digest_id``) again. A digest the receiver does not take stays in flight and is tried
again :data:`~alerts.grouping.RETRY_AFTER` later, its alerts kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from alerts.grouping import (
    RETRY_AFTER,
    AlertGroups,
    Digest,
    DigestNotifier,
    GroupSettings,
    Pending,
    after_sent,
    group_id,
    in_flight,
    next_due,
    plan_digest,
    plan_repeat,
)
from alerts.model import Alert
from alerts.nflog import DeliveryLog
from alerts.notifier import Notifier
from alerts.notify import DeliveryOutcome, OutcomeCallback, RetryingSender, SinkOutcome, report_outcome
from alerts.routing import RouteMatch

log = logging.getLogger("churnwatch.delivery")

REQUEST_TIMEOUT = timedelta(seconds=10)
"""The receivers' own timeout per request (Slack's and the webhook's default)."""


def lock_ttl(attempts: int, backoff_max: timedelta) -> timedelta:
    """How long a flusher holds a group: longer than its longest send (every attempt timing out,
    every wait at its longest), so that only a crashed flusher's lock lapses, and then soon."""
    return attempts * (REQUEST_TIMEOUT + backoff_max) + timedelta(seconds=5)


DigestCallback = Callable[[str, str, int], None]
"""``(sink, outcome, alerts)`` per digest send: wired to ``churnwatch_alert_digests_total``."""


class GroupingStage:
    """Puts an alert (or its resolution) of a grouped route where it belongs for one receiver."""

    def __init__(self, groups: AlertGroups, delivery_log: DeliveryLog, clock: Callable[[], datetime]) -> None:
        self._groups = groups
        self._log = delivery_log
        self._clock = clock

    async def admit(self, match: RouteMatch) -> bool:
        """Whether a firing alert of a storm-limited route without digest may go out at once: one of
        the storm budget is taken if so. Digest routes never send at once."""
        limit = match.settings.max_alerts_per_hour
        if match.settings.digest:
            return False
        if limit is None:
            return True
        granted, _ = await self._groups.reserve(group_id(match), 1, limit, self._clock())
        return granted > 0

    async def hold(self, match: RouteMatch, alert: Alert) -> SinkOutcome:
        """The alert waits in its group (durably once this returns): ``grouped`` on a digest route,
        ``rate_limited`` on one whose storm limit it is over."""
        settings = GroupSettings.of(match)
        now = self._clock()
        limited = not settings.digest
        await self._groups.add(
            group_id(match),
            settings,
            Pending(alert=alert, since=now, limited=limited),
            now,
            now + (settings.group_wait if settings.digest else timedelta(0)),
        )
        try:  # the receiver "has" it now: its group will send it; a redelivered record adds it no more
            await self._log.mark_delivered(alert, match.receiver)
        except Exception:
            log.warning("alert %s waits in group %s; the delivery log was not updated", alert.alert_id, group_id(match))
        outcome = DeliveryOutcome.RATE_LIMITED if limited else DeliveryOutcome.GROUPED
        return SinkOutcome(match.receiver, outcome, 0.0, 0)

    async def resolution_pending(self, match: RouteMatch, resolution: Alert) -> bool:
        """Whether the alert ``resolution`` resolves was still waiting in the group: it is taken out,
        and the receiver, never told of it, is not told of the resolution either. Otherwise a digest
        route's later repeat leaves the alert out."""
        if resolution.resolves is None:
            return False
        group = group_id(match)
        if await self._groups.drop_pending(group, resolution.resolves):
            return True
        if match.settings.digest:
            await self._groups.record_resolved(group, resolution.resolves)
        return False


class DigestFlusher:
    """Sends the digests of due groups; called by the worker's timer, in every worker (a lock per
    group keeps it to one at a time)."""

    def __init__(
        self,
        groups: AlertGroups,
        notifiers: Mapping[str, Notifier],
        sender: RetryingSender,
        *,
        clock: Callable[[], datetime],
        on_outcome: OutcomeCallback | None = None,
        on_digest: DigestCallback | None = None,
        lock_for: timedelta = timedelta(minutes=5),
    ) -> None:
        """``lock_for``: how long a flush holds its group (:func:`lock_ttl` of the sender's attempts)."""
        self._lock_for = lock_for
        self._groups = groups
        self._notifiers = dict(notifiers)
        self._sender = sender
        self._clock = clock
        self._on_outcome = on_outcome
        self._on_digest = on_digest

    async def flush_due(self) -> list[SinkOutcome]:
        """Every due group once; a group that fails is logged and left due (tried next time)."""
        sent: list[SinkOutcome] = []
        for group in await self._groups.due(self._clock()):
            try:
                outcome = await self.flush(group)
            except Exception:  # one group's trouble (Redis, a bug) must not keep the others waiting
                log.exception("group %s: flush failed; tried again on the next tick", group)
                continue
            if outcome is not None:
                sent.append(outcome)
        return sent

    async def flush(self, group: str) -> SinkOutcome | None:
        """Send the group's digest if it is due; None when nothing was sent."""
        if not await self._groups.lock(group, self._lock_for):
            return None  # another worker is at it
        try:
            return await self._flush(group)
        finally:
            await self._groups.unlock(group)

    async def _flush(self, group: str) -> SinkOutcome | None:
        snapshot = await self._groups.load(group)
        now = self._clock()
        if snapshot is None:
            await self._groups.reschedule(group, now, None)
            return None
        settings, state = snapshot.settings, snapshot.state
        notifier = self._notifiers.get(settings.receiver)
        if notifier is None:
            log.error("group %s: receiver %s is not configured; its alerts wait", group, settings.receiver)
            await self._groups.reschedule(group, now + RETRY_AFTER, now + RETRY_AFTER)
            return None
        digest = state.in_flight  # sent before a crash, or refused: the same digest again
        if digest is None and snapshot.pending:
            assert snapshot.first_pending_at is not None
            due = next_due(state, settings, snapshot.first_pending_at)
            if due > now:
                await self._groups.reschedule(group, due, due)
                return None
            granted, frees = len(snapshot.pending), None
            if settings.max_alerts_per_hour is not None:
                granted, frees = await self._groups.reserve(
                    group, len(snapshot.pending), settings.max_alerts_per_hour, now
                )
            if granted == 0:
                await self._count_limited(group, settings.receiver, list(snapshot.pending))
                retry = frees or now + RETRY_AFTER
                await self._groups.reschedule(group, retry, retry)
                return None
            digest, left = plan_digest(group, settings, state, snapshot.pending, granted, now)
            newly = [p for p in left if not p.limited]
            await self._groups.start_digest(group, in_flight(state, digest), newly)
            self._report_limited(settings.receiver, len(newly))
        elif digest is None:
            last = None if state.last_digest_id is None else await self._groups.digest(state.last_digest_id)
            resolved = await self._groups.resolved(group) if settings.digest else set()
            digest = plan_repeat(group, settings, state, last, resolved, now) if settings.digest else None
            if digest is None:
                later = None
                if settings.digest and last is not None and state.last_sent_at is not None:
                    at = state.last_sent_at + settings.repeat_interval
                    if at > now and plan_repeat(group, settings, state, last, resolved, at) is not None:
                        later = at  # not yet time for the reminder
                # Waiting alerts this flush could not read (logged by the store) are tried again
                # RETRY_AFTER later, not every tick; one that came in since the load waits that long
                # at most.
                await self._groups.reschedule(group, now + RETRY_AFTER, later)
                return None
            await self._groups.start_digest(group, in_flight(state, digest), [])
        outcome = await self._send(notifier, digest)
        if outcome.outcome is not DeliveryOutcome.DELIVERED:
            await self._groups.reschedule(group, now + RETRY_AFTER, now + RETRY_AFTER)
            return outcome
        sent_at = self._clock()
        # Alerts still waiting (over the storm limit, or come in meanwhile): due at once, and the
        # flusher holds them to group_interval; none: the repeat of a digest route, else retired.
        if_empty = sent_at + settings.repeat_interval if settings.digest else None
        await self._groups.finish_digest(group, after_sent(state, digest, sent_at), if_empty)
        return outcome

    async def _send(self, notifier: Notifier, digest: Digest) -> SinkOutcome:
        if isinstance(notifier, DigestNotifier):
            digest_notifier = notifier

            async def send() -> None:
                await digest_notifier.notify_digest(digest)
        else:

            async def send() -> None:
                for alert in digest.alerts:  # a notifier without digests gets them one by one
                    await notifier.notify(alert)

        outcome = await self._sender.send(
            notifier.name, f"digest {digest.digest_id} ({len(digest.alerts)} alerts)", send
        )
        if outcome.outcome is DeliveryOutcome.DELIVERED:
            log.info(
                "digest %s of group %s sent to %s: %d alerts (%d shown), %d waiting over the storm limit%s",
                digest.digest_id,
                digest.group,
                notifier.name,
                len(digest.alerts),
                digest.shown,
                digest.held_back,
                " (repeat)" if digest.repeat else "",
            )
        if self._on_digest is not None:
            try:
                self._on_digest(notifier.name, outcome.outcome.value, len(digest.alerts))
            except Exception:
                log.exception("on_digest callback failed for sink %s", notifier.name)
        if outcome.outcome is not DeliveryOutcome.DELIVERED:
            # a failing receiver shows where every failing delivery does (and its alerting rule)
            report_outcome(self._on_outcome, notifier.name, outcome.outcome.value, outcome.seconds)
        return outcome

    async def _count_limited(self, group: str, receiver: str, pending: list[Pending]) -> None:
        newly = [p for p in pending if not p.limited]
        if newly:
            await self._groups.mark_limited(group, newly)
        self._report_limited(receiver, len(newly))

    def _report_limited(self, receiver: str, count: int) -> None:
        for _ in range(count):
            report_outcome(self._on_outcome, receiver, DeliveryOutcome.RATE_LIMITED.value, 0.0)
