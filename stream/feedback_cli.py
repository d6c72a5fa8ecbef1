"""``churnwatch rules stats``: which rules people trust, from the answers given with Slack's buttons
(read from the Redis of the usual settings, under ``CHURNWATCH_APP_ID``)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import click
from pydantic import TypeAdapter, ValidationError

from alerts.feedback import AlertFeedback, Outcome, rule_stats, stats_table
from rules.base import Duration
from stream.connections import redis_client
from stream.feedback_store import RedisFeedbackStore
from stream.settings import Settings


def print_rule_stats(since: str, as_json: bool) -> None:
    try:
        period = TypeAdapter(Duration).validate_python(since)
    except ValidationError:
        raise click.BadParameter(f"{since!r} is not a duration such as 7d or 30d", param_hint="--since") from None
    settings = Settings()
    start = datetime.now(UTC) - period

    async def read() -> list[AlertFeedback]:
        redis = redis_client(settings, socket_timeout=10, socket_connect_timeout=5)
        try:
            return await RedisFeedbackStore(redis, settings.app_id).since(start)
        finally:
            await redis.aclose()

    stats = rule_stats(asyncio.run(read()))
    if as_json:
        rows = [{"rule": s.rule, "alerts": s.alerts, **{o.value: s.counts.get(o, 0) for o in Outcome}} for s in stats]
        click.echo(json.dumps(rows, indent=2))
        return
    for line in stats_table(stats):
        click.echo(line)
    answered = sum(s.alerts for s in stats)
    click.echo(f"{answered} answered alert(s) in {len(stats)} rule(s) since {start:%Y-%m-%d %H:%M} UTC", err=True)
