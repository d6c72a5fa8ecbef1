"""``stack up|down|status`` commands, mounted by the main CLI as ``churnwatch stack``."""

from __future__ import annotations

import json

import click

from .kafka_broker import KafkaStartError
from .redis_server import RedisStartError
from .stack import DEFAULT_NAME, StackInfo, stack_down, stack_status, stack_up

_name_option = click.option(
    "--name", "-n", default=DEFAULT_NAME, show_default=True, help="Stack name (one dir per stack)."
)


def _log(message: str) -> None:
    """Progress goes to stderr so stdout stays clean for `--json` / scripting."""
    click.echo(message, err=True)


def _print_info(info: StackInfo) -> None:
    click.echo(f"stack:           {info.name}")
    click.echo(f"kafka bootstrap: {info.kafka_bootstrap}")
    click.echo(f"redis url:       {info.redis_url}")
    click.echo(f"kafka version:   {info.kafka_version}")
    click.echo(f"pids:            kafka={info.kafka_pid} redis={info.redis_pid}")
    click.echo(f"dir:             {info.stack_dir}")


@click.group("stack")
def stack_group() -> None:
    """Run a local Apache Kafka + Redis stack (real servers, 127.0.0.1 only)."""


@stack_group.command("up")
@_name_option
@click.option("--json", "as_json", is_flag=True, help="Print the stack info as JSON.")
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for Kafka.")
def up_command(name: str, as_json: bool, timeout: float) -> None:
    """Start the stack (no-op if it is already running and healthy)."""
    try:
        info = stack_up(name, log=_log, timeout=timeout)
    except (KafkaStartError, RedisStartError, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
    else:
        _print_info(info)


@stack_group.command("down")
@_name_option
@click.option("--purge", is_flag=True, help="Also delete the stack's data dir (jar cache is kept).")
def down_command(name: str, purge: bool) -> None:
    """Stop the stack's servers (only processes this tool started)."""
    try:
        stack_down(name, purge=purge, log=_log)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"stack {name!r} down{' and purged' if purge else ''}")


@stack_group.command("status")
@click.option("--name", "-n", default=None, help="Only this stack (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status_command(name: str | None, as_json: bool) -> None:
    """Show every known stack, its state and where to reach it."""
    statuses = stack_status(name)
    if as_json:
        rows = [
            {
                "name": s.name,
                "state": s.state,
                "kafka_alive": s.kafka_alive,
                "redis_alive": s.redis_alive,
                "info": s.info.to_json() if s.info else None,
            }
            for s in statuses
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not statuses:
        click.echo("no stacks")
        return
    for s in statuses:
        kafka = s.info.kafka_bootstrap if s.info else "-"
        redis = s.info.redis_url if s.info else "-"
        click.echo(f"{s.name:<20} {s.state:<9} kafka={kafka:<22} redis={redis}")
