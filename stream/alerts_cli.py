"""``churnwatch alerts list --digest ID | --group GROUP``: every alert a digest carried, or those
waiting in a group (mounted by :mod:`stream.cli`). A digest names this command for the alerts it
does not show in full.

It reads the Redis of the usual settings (``CHURNWATCH_REDIS_URL`` and its password and CA
settings), under ``CHURNWATCH_APP_ID``. A digest stays readable for
:data:`alerts.grouping.DIGEST_KEPT` after it was sent.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

import click

from alerts.grouping import ranked, value_of
from alerts.model import Alert
from stream.settings import Settings


def _rows(alerts: Sequence[Alert]) -> list[str]:
    rows = [f"{'#':>4}  {'customer':<24} {'lifetime_spend':>14}  {'severity':<8} {'rule':<24} alert_id"]
    for place, alert in enumerate(alerts, start=1):
        rows.append(
            f"{place:>4}  {alert.customer_id:<24} {value_of(alert):>14,.2f}  {alert.severity.value:<8} "
            f"{alert.rule_id:<24} {alert.alert_id}"
        )
    return rows


@click.group("alerts")
def alerts_group() -> None:
    """Look at alerts held for digests (grouping and the storm limit of the routes file)."""


@alerts_group.command("list")
@click.option("--digest", "digest_id", help="A digest's id (as its message shows): every alert it carried")
@click.option("--group", "group", help="A group (<receiver>@<route path>): the alerts waiting in it")
@click.option("--json", "as_json", is_flag=True, help="One alert record (JSON) per line")
def alerts_list(digest_id: str | None, group: str | None, as_json: bool) -> None:
    """Every alert of a digest (ranked as it was sent) or waiting in a group (most valuable first)."""
    if (digest_id is None) == (group is None):
        raise click.UsageError("give exactly one of --digest and --group")
    from stream.alert_groups import RedisAlertGroups
    from stream.connections import redis_client

    settings = Settings()

    async def read() -> tuple[list[Alert], str] | None:
        redis = redis_client(settings, socket_timeout=10, socket_connect_timeout=5)
        try:
            store = RedisAlertGroups(redis, settings.app_id)
            if digest_id is not None:
                digest = await store.digest(digest_id)
                if digest is None:
                    return None
                head = (
                    f"digest {digest.digest_id} · {digest.receiver} ({digest.route}) · sent "
                    f"{digest.created_at.isoformat()} · {len(digest.alerts)} alerts, {digest.shown} shown"
                    + (f" · {digest.held_back} were waiting over the storm limit" if digest.held_back else "")
                )
                return list(digest.alerts), head
            assert group is not None
            snapshot = await store.load(group)
            if snapshot is None:
                return None
            waiting = ranked(p.alert for p in snapshot.pending)
            return waiting, f"group {group} · {len(waiting)} alerts waiting"
        finally:
            await redis.aclose()

    found = asyncio.run(read())
    if found is None:
        what = f"digest {digest_id}" if digest_id is not None else f"group {group}"
        click.echo(f"churnwatch alerts: no {what} (unknown, or a digest older than its retention)", err=True)
        sys.exit(1)
    alerts, head = found
    if as_json:
        for alert in alerts:
            click.echo(json.dumps(alert.model_dump(mode="json")))
        return
    click.echo(head)
    for row in _rows(alerts):
        click.echo(row)
