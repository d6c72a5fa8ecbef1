"""``stack up|down|status`` commands, mounted by the main CLI as ``churnwatch stack``."""

from __future__ import annotations

import json
import shlex

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


def _public_json(info: StackInfo) -> dict[str, object]:
    """The stack info without a secure stack's passwords (they stay in its stack.json and secrets dir)."""
    return {k: v for k, v in info.to_json().items() if k not in ("kafka_sasl_password", "redis_password")}


def _print_info(info: StackInfo) -> None:
    click.echo(f"stack:           {info.name}")
    click.echo(f"kafka bootstrap: {info.kafka_bootstrap}")
    click.echo(f"redis url:       {info.redis_url}")
    click.echo(f"kafka version:   {info.kafka_version}")
    click.echo(f"pids:            kafka={info.kafka_pid} redis={info.redis_pid}")
    click.echo(f"dir:             {info.stack_dir}")
    if info.secure:
        click.echo(
            f"security:        kafka {info.kafka_security_protocol} ({info.kafka_sasl_mechanism} or PLAIN, "
            f"user {info.kafka_sasl_username}), redis TLS + AUTH"
        )
        click.echo(f"ca file:         {info.ca_file}")
        click.echo(f"secrets dir:     {info.secrets_dir} (passwords; `churnwatch stack env` sets a client up)")


@click.group("stack")
def stack_group() -> None:
    """Run a local Apache Kafka + Redis stack (real servers, 127.0.0.1 only)."""


@stack_group.command("up")
@_name_option
@click.option("--json", "as_json", is_flag=True, help="Print the stack info as JSON.")
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for Kafka.")
@click.option(
    "--secure",
    is_flag=True,
    help="Kafka over SASL_SSL (SCRAM-SHA-512 or PLAIN) and Redis over TLS with a password, "
    "with a throw-away CA and passwords in the stack dir.",
)
def up_command(name: str, as_json: bool, timeout: float, secure: bool) -> None:
    """Start the stack (no-op if it is already running and healthy)."""
    try:
        info = stack_up(name, log=_log, timeout=timeout, secure=secure)
    except (KafkaStartError, RedisStartError, RuntimeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(_public_json(info), indent=2))
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


@stack_group.command("env")
@_name_option
def env_command(name: str) -> None:
    """Print the CHURNWATCH_* variables for a client of the stack: eval "$(churnwatch stack env)".

    A secure stack's passwords are not printed: the variables point at its secrets dir."""
    statuses = stack_status(name)
    if not statuses or statuses[0].info is None or statuses[0].state != "running":
        raise click.ClickException(f"stack {name!r} is not running")
    for key, value in statuses[0].info.client_env().items():
        click.echo(f"export {key}={shlex.quote(value)}")


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
                "info": _public_json(s.info) if s.info else None,
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
