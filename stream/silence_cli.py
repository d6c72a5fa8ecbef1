"""``churnwatch silence add|list|expire``: mute matching alerts for a while (mounted by :mod:`stream.cli`).

The silences go to the Redis of the usual settings (``CHURNWATCH_REDIS_URL`` and its password and CA
settings), under ``CHURNWATCH_APP_ID``: the workers of that deployment apply them within
:data:`stream.silence_store.REFRESH_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click
from pydantic import TypeAdapter, ValidationError

from alerts.silence import Listing, Matcher, Silence, SilenceError, UnknownSilenceError, new_silence
from rules.base import Duration
from stream.settings import Settings

if TYPE_CHECKING:
    from stream.silence_store import RedisSilenceStore

T = TypeVar("T")


def _with_store(use: Callable[[RedisSilenceStore], Awaitable[T]]) -> T:
    from stream.connections import redis_client
    from stream.silence_store import RedisSilenceStore

    settings = Settings()

    async def run() -> T:
        redis = redis_client(settings, socket_timeout=10, socket_connect_timeout=5)
        try:
            return await use(RedisSilenceStore(redis, settings.app_id))
        finally:
            await redis.aclose()

    return asyncio.run(run())


def _fail(problems: tuple[str, ...] | list[str]) -> NoReturn:
    for problem in problems:
        click.echo(f"churnwatch silence: {problem}", err=True)
    sys.exit(1)


def _moment(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 date or date-time", param_hint=option) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _duration(text: str) -> timedelta:
    try:
        return TypeAdapter(Duration).validate_python(text)
    except ValidationError:
        raise click.BadParameter(f"{text!r} is not a duration such as 2h, 7d or 2w", param_hint="--duration") from None


@click.group("silence")
def silence() -> None:
    """Mute matching alerts for a while. A silence always expires; silenced alerts are counted, not sent."""


@silence.command("add")
@click.option("--customer", help="Match this customer id (customer_id=C)")
@click.option("--rule", help="Match this rule id (rule=R)")
@click.option("--team", help="Match the alerts of the rules this team owns (team=T)")
@click.option("--matcher", "matchers", multiple=True, metavar="KEY=VALUE|KEY=~REGEX",
              help="Match a label: customer_id, rule, severity, segment or team (the rule's owner); =~ a regex over "
                   "the whole value")  # fmt: skip
@click.option("--duration", help="How long from the start: 30m, 12h, 7d, 2w")
@click.option("--until", "until", help="When it ends: ISO 8601 (a date is 00:00; no zone: UTC)")
@click.option("--starts", help="When it starts, ISO 8601; default: now")
@click.option("--author", required=True, help="Who silences (kept with the silence)")
@click.option("--comment", required=True, help="Why (kept with the silence; required)")
def silence_add(
    customer: str | None,
    rule: str | None,
    team: str | None,
    matchers: tuple[str, ...],
    duration: str | None,
    until: str | None,
    starts: str | None,
    author: str,
    comment: str,
) -> None:
    """Add a silence; print its id (on stdout alone, for scripts)."""
    if (duration is None) == (until is None):
        raise click.UsageError("give exactly one of --duration and --until: a silence always expires")
    now = datetime.now(UTC)
    starts_at = _moment(starts, "--starts") if starts else None
    ends_at = _moment(until, "--until") if until else (starts_at or now) + _duration(duration or "")
    given = [Matcher(name="customer_id", value=customer)] if customer is not None else []
    given += [Matcher(name="rule", value=rule)] if rule is not None else []
    given += [Matcher(name="team", value=team)] if team is not None else []
    try:
        parsed = [*given, *(Matcher.parse(text) for text in matchers)]
        made = new_silence(parsed, ends_at=ends_at, created_by=author, comment=comment, now=now, starts_at=starts_at)
    except SilenceError as exc:
        _fail(exc.problems)
    _with_store(lambda store: store.add(made))
    click.echo(made.id)
    click.echo(f"silenced {made.describe()} until {made.ends_at.isoformat()} (by {made.created_by})", err=True)


@silence.command("list")
@click.option("--expired", "listing", flag_value=Listing.EXPIRED.value, help="Only the expired (kept 7 days)")
@click.option("--all", "listing", flag_value=Listing.ALL.value, help="Current and expired")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, with state and muted count")
def silence_list(listing: str | None, as_json: bool) -> None:
    """The active and pending silences (default), with how many alerts each held back."""
    now = datetime.now(UTC)
    which = Listing(listing or Listing.CURRENT.value)

    async def read(store: RedisSilenceStore) -> tuple[list[Silence], dict[str, int]]:
        found = await store.silences(which, now)
        return found, await store.muted_counts([s.id for s in found])

    found, muted = _with_store(read)
    if as_json:
        rows = [s.model_dump(mode="json") | {"state": s.state(now).value, "muted": muted[s.id]} for s in found]
        click.echo(json.dumps(rows, indent=2))
        return
    for s in found:
        ended = f" (expired by {s.expired_by})" if s.expired_by else ""
        click.echo(
            f"{s.id}\t{s.state(now).value}\t{s.starts_at.isoformat()} to {s.ends_at.isoformat()}{ended}\t"
            f"{s.describe()}\t{muted[s.id]} muted\t{s.created_by}: {s.comment}"
        )
    click.echo(f"{len(found)} {which.value} silence(s)", err=True)


@silence.command("expire")
@click.argument("silence_id")
@click.option("--author", required=True, help="Who ends it (kept with the silence)")
def silence_expire(silence_id: str, author: str) -> None:
    """End a silence now; the workers deliver matching alerts again within seconds."""
    if not author.strip():
        _fail(["--author must not be empty"])
    try:
        ended = _with_store(lambda store: store.expire(silence_id, by=author.strip(), now=datetime.now(UTC)))
    except (SilenceError, UnknownSilenceError) as exc:
        _fail([str(exc)])
    click.echo(f"expired {ended.id} ({ended.describe()}) at {ended.ends_at.isoformat()}")
