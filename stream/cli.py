"""The ``churnwatch`` command: run the worker or the demo, check rules, print schemas, manage the local stack."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from rules.ruleset import RuleConfigError, RuleFile, RuleSet, load_rule_set
from stream.alerts_cli import alerts_group
from stream.input_options import InputOptions, input_options
from stream.routes_cli import routes_group
from stream.settings import Settings
from stream.silence_cli import silence

if TYPE_CHECKING:
    from alerts.routing import RoutesConfig
    from stream.quarantine import RedisQuarantineLedger

T = TypeVar("T")


@click.group()
def main() -> None:
    """churnwatch: streaming early warning for customer churn."""


def _load_rules_or_exit(path: Path) -> RuleSet:
    try:
        return load_rule_set(path)
    except RuleConfigError as exc:
        click.echo(f"churnwatch: invalid rule set in {path}; refusing to start:", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)


def _load_routes_or_exit(path: Path) -> RoutesConfig:
    """The routes file, refused as ``routes check`` refuses it (the same problems, exit 2), and also
    when a receiver's secret variable is unset: a receiver that could never send would fail every alert."""
    from alerts.routing import RoutesConfigError, load_routes
    from stream.receiver_resources import missing_secrets
    from stream.settings import secrets_dir

    try:
        config = load_routes(path)
        problems = list(missing_secrets(config, str(path), directory=secrets_dir()))
    except RoutesConfigError as exc:
        problems = list(exc.problems)
    if problems:
        click.echo(f"churnwatch: invalid routes file {path}; refusing to start:", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    return config


@main.command()
@click.option("--rules", "rules_dir", type=click.Path(path_type=Path), help="Rule file or directory")
@click.option("--loglevel", default="info", show_default=True)
def worker(rules_dir: Path | None, loglevel: str) -> None:
    """Run the stream worker (settings from CHURNWATCH_* environment variables)."""
    from stream.app import build_app
    from stream.connections import describe_kafka, describe_redis
    from stream.gc_tuning import tune_garbage_collector
    from stream.lifecycle import BoundedWorker, exit_with_parent
    from stream.topics import ensure_topics

    settings = Settings()
    if settings.parent_pid is not None:
        exit_with_parent(settings.parent_pid)
    if rules_dir is not None:
        settings = settings.model_copy(update={"rules_dir": rules_dir})
    rule_set = _load_rules_or_exit(settings.rules_dir)
    routes = None if settings.routes_file is None else _load_routes_or_exit(settings.routes_file)
    asyncio.run(ensure_topics(settings))
    built = build_app(settings, rule_set, routes=routes)
    click.echo(
        f"churnwatch worker: kafka {describe_kafka(settings)}, redis {describe_redis(settings)}, "
        f"{len(built.rules().enabled)} rules (set {built.rules().version}), "
        + ("" if routes is None else f"routes {settings.routes_file} ({len(routes.receivers)} receivers), ")
        + f"metrics http://{settings.web_host}:{settings.web_port}/metrics"
    )
    bound = settings.shutdown_timeout.total_seconds()
    tune_garbage_collector()  # last: what was built so far is frozen
    BoundedWorker(built.app, loglevel=loglevel, quiet=True, shutdown_timeout=bound).execute_from_commandline()


@main.command()
@click.option("--customers", default=40, show_default=True, help="Demo customers to simulate")
@click.option("--seed", default=7, show_default=True)
@click.option("--rate", default=2.0, show_default=True, help="Live events per second after the backfill")
@click.option("--stack-name", default="demo", show_default=True)
def demo(customers: int, seed: int, rate: float, stack_name: str) -> None:
    """Start a local Kafka and Redis, the worker and a generator of realistic customers. Ctrl-C stops all."""
    from stream.demo_runner import run_demo_session

    sys.exit(run_demo_session(customers=customers, seed=seed, rate=rate, stack_name=stack_name))


@main.group()
def rules() -> None:
    """Check warning rules."""


@rules.command("check")
@click.argument("path", type=click.Path(path_type=Path), required=False)
def rules_check(path: Path | None) -> None:
    """Validate a rule file or directory; print every problem with file and field; exit 1 on any."""
    target = path or Settings().rules_dir
    try:
        rule_set = load_rule_set(target)
    except RuleConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {target}", err=True)
        sys.exit(1)
    click.echo(f"ok: {len(rule_set.rules)} rules in {len(rule_set.sources)} file(s), version {rule_set.version}")


@rules.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def rules_test(files: tuple[Path, ...]) -> None:
    """Run rule unit tests (YAML: events, evaluation time, expected alerts; directories: their *_test.yaml).

    Prints a diff for every failing test and 'N passed, M failed'; exit 1 on any failure or invalid file."""
    from stream.ruletest import main as run_rule_tests

    sys.exit(run_rule_tests(files, click.echo))


@rules.command("explain")
@click.argument("rule_id")
@click.option("--customer", "customer_id", required=True, help="Customer id")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path), help="Rule file or directory")
@click.option("--at", "at", default=None, help="Evaluation time (ISO 8601); default: the customer's latest event")
def rules_explain(rule_id: str, customer_id: str, rules_path: Path | None, at: str | None) -> None:
    """Show what RULE_ID sees for a customer in the live Redis state, and whether it would fire."""
    from datetime import datetime

    from stream.connections import redis_client
    from stream.explain import explain_customer, render_text

    settings = Settings()
    rule_set = _load_rules_or_exit(rules_path or settings.rules_dir)
    rule = rule_set.by_id(rule_id)
    if rule is None:
        click.echo(f"no rule {rule_id!r}; known: {', '.join(r.id for r in rule_set.rules)}", err=True)
        sys.exit(1)
    when = datetime.fromisoformat(at) if at else None

    async def run() -> str:
        redis = redis_client(settings)
        try:
            return render_text(await explain_customer(redis, rule, customer_id, when))
        finally:
            await redis.aclose()

    click.echo(asyncio.run(run()))


@rules.command("aggregates")
@click.option("--markdown", is_flag=True, help="As the README's table")
def rules_aggregates(markdown: bool) -> None:
    """List the named aggregates that expression rules, scopes and message templates can use."""
    from rules.aggregates import CATALOG
    from stream.schema_docs import aggregates_markdown

    if markdown:
        click.echo(aggregates_markdown())
        return
    width = max(len(a.name) for a in CATALOG)
    for aggregate in CATALOG:
        click.echo(f"{aggregate.name:<{width}}  {aggregate.cel_type:<6}  {aggregate.description}")


@rules.command("stats")
@click.option("--since", "since", default="30d", show_default=True, help="The period: 7d, 30d, 12w, …")
@click.option("--json", "as_json", is_flag=True, help="One JSON array: per rule, alerts and counts per outcome")
def rules_stats(since: str, as_json: bool) -> None:
    """Per rule: alerts answered with the Slack buttons over the period, and the share of each verdict."""
    from stream.feedback_cli import print_rule_stats

    print_rule_stats(since, as_json)


@main.command()
@click.argument("what", type=click.Choice(["events", "rules"]))
@click.option("--markdown", is_flag=True, help="The event contracts as the README's table")
def schema(what: str, markdown: bool) -> None:
    """Print the JSON Schema of the event contracts or of a rule file (for editors and producers)."""
    from stream.events import EVENT_MODELS
    from stream.schema_docs import events_markdown

    if markdown:
        click.echo(events_markdown())
        return
    if what == "rules":
        document = RuleFile.model_json_schema()
    else:
        document = {name: model.model_json_schema() for name, model in EVENT_MODELS.items()}
    click.echo(json.dumps(document, indent=2))


@main.group()
def quarantine() -> None:
    """Customers whose evaluation failed repeatedly and is skipped (see churnwatch_quarantined_customers)."""


def _with_quarantine_ledger(use: Callable[[RedisQuarantineLedger], Awaitable[T]]) -> T:
    from stream.connections import redis_client
    from stream.quarantine import RedisQuarantineLedger

    settings = Settings()

    async def run() -> T:
        redis = redis_client(settings)
        try:
            return await use(RedisQuarantineLedger(redis, settings.app_id))
        finally:
            await redis.aclose()

    return asyncio.run(run())


@quarantine.command("list")
def quarantine_list() -> None:
    """Every quarantined customer: since when, at which stage, and the error."""
    entries = _with_quarantine_ledger(lambda ledger: ledger.entries())
    for entry in entries:
        click.echo(f"{entry.customer_id}\t{entry.since}\t{entry.stage}\t{entry.failures} failures\t{entry.error}")
    click.echo(f"{len(entries)} quarantined customer(s)", err=True)


@quarantine.command("release")
@click.argument("customer_id")
def quarantine_release(customer_id: str) -> None:
    """Judge CUSTOMER_ID again (the workers take it up within seconds), e.g. after fixing a rule."""
    if not _with_quarantine_ledger(lambda ledger: ledger.release(customer_id)):
        click.echo(f"{customer_id} is not quarantined", err=True)
        sys.exit(1)
    click.echo(f"released {customer_id}")


@main.group()
def state() -> None:
    """The worker's Redis state: what to do when Redis lost it (see churnwatch_state_lost)."""


@state.command("accept-loss")
def state_accept_loss() -> None:
    """Go on with empty windows after Redis lost them: write a new epoch marker for CHURNWATCH_APP_ID.

    Workers stopped by the loss resume within CHURNWATCH_STATE_CHECK_INTERVAL. Prefer restoring Redis
    from its AOF or snapshot; after a replay of the topics' history, run this before starting the workers."""
    from stream.connections import redis_client
    from stream.state_guard import EpochMarker, RedisEpochStore, accept_loss

    settings = Settings()

    async def run() -> tuple[bool, EpochMarker | None]:
        redis = redis_client(settings)
        try:
            return await accept_loss(RedisEpochStore(redis, settings.app_id))
        finally:
            await redis.aclose()

    written, marker = asyncio.run(run())
    seen = f"epoch {marker.epoch}, {marker.origin}, {marker.created_at.isoformat()}" if marker else "unreadable"
    if written:
        click.echo(f"new epoch marker for app {settings.app_id!r}: {seen}")
        click.echo(f"workers resume within {settings.state_check_interval.total_seconds():g} s, with empty windows")
    else:
        click.echo(f"Redis already holds the epoch marker for app {settings.app_id!r} ({seen}): nothing to accept")


@main.group()
def model() -> None:
    """Purchase models for `kind: purchase_model` rules, fitted offline (needs churnwatch[model])."""


@model.command("fit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), help="Default: from the suffix (.csv or not)")
@click.option("--customer-column", default="customer_id", show_default=True, help="CSV: the customer id column")
@click.option("--time-column", default="occurred_at", show_default=True, help="CSV: the purchase time column")
@click.option("--amount-column", help="CSV: rows whose amount is not above zero (returns) are skipped")
@click.option("--time-format", help="CSV: strptime format of the times; default ISO 8601 (naive times are UTC)")
@click.option("--as-of", "as_of", help="Cut-off (ISO 8601): later purchases are ignored; default: the latest one")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the parameters (YAML, or .json)")
def model_fit(
    file: Path,
    fmt: str | None,
    customer_column: str,
    time_column: str,
    amount_column: str | None,
    time_format: str | None,
    as_of: str | None,
    out: Path | None,
) -> None:
    """Fit BG/NBD to a purchase history: JSON Lines of purchase events, or a transactions CSV.

    Invalid rows are counted and skipped. Prints the parameters and a fit summary; --out writes the
    file whose `parameters:` a purchase_model rule takes."""
    from datetime import UTC, datetime

    try:
        from stream import model_fit as fitting
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("numpy", "scipy"):
            raise
        missing = f"churnwatch model fit needs numpy and scipy ({exc.name} is missing)"
        click.echo(f"{missing}: install churnwatch[model]", err=True)
        sys.exit(2)
    cut = datetime.fromisoformat(as_of) if as_of else None
    if cut is not None and cut.tzinfo is None:
        cut = cut.replace(tzinfo=UTC)
    try:
        history, report = fitting.read_history(
            file,
            fmt or ("csv" if file.suffix.lower() == ".csv" else "jsonl"),
            customer_column=customer_column,
            time_column=time_column,
            amount_column=amount_column,
            time_format=time_format,
        )
        click.echo(report.summary(), err=True)
        for example in report.examples:
            click.echo(f"  {example}", err=True)
        fit, cut = fitting.fit_history(history, cut)
    except ValueError as exc:
        click.echo(f"churnwatch model fit: {exc}", err=True)
        sys.exit(1)
    click.echo(fitting.describe(fit, cut))
    if out is not None:
        fitting.write_parameters(fitting.parameters_document(fit, cut, str(file)), out)
        click.echo(f"wrote {out}")
    if not fit.converged:
        sys.exit(1)


@main.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@input_options
@click.option("--rules", "rules_dir", type=click.Path(path_type=Path), help="Rule file or directory")
@click.option("--until", "until_text", help="Replay up to this time (ISO 8601, or a date); default: the last event")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the alerts here; default: stdout")
@click.option("--to-kafka", is_flag=True, help="Send the history (sorted) into the live input topics instead")
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    help="--to-kafka: divide the gaps between event times by this (3600: an hour a second); default 0, at once",
)
def replay(
    input_file: Path,
    input_options: InputOptions,
    rules_dir: Path | None,
    until_text: str | None,
    out: Path | None,
    to_kafka: bool,
    speed: float | None,
) -> None:
    """Push a history through the worker's own code, with a clock that follows the events.

    INPUT is JSON Lines, one {"topic": "purchase"|"interaction"|"feedback", "event": {...}} a line,
    or a CSV or Parquet export of transactions (purchases) with --map naming its columns.
    Every alert (and resolution) that would have fired goes out as JSON Lines; a summary per rule
    and every invalid line (with its number) go to stderr. With --to-kafka the valid events go to
    the broker of CHURNWATCH_KAFKA_* instead, for a running worker to judge."""
    import time

    from stream import replay as replaying

    settings = Settings()
    if speed is not None and not to_kafka:
        raise click.BadParameter("is only for --to-kafka", param_hint="'--speed'")
    if to_kafka and (rules_dir or out):
        raise click.BadParameter("not with --to-kafka: the worker judges, with its rules", param_hint="'--rules/--out'")
    try:
        until = replaying.parse_moment(until_text) if until_text else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--until") from exc
    if to_kafka:
        from stream.replay_to_kafka import send_command

        send_command(input_file, input_options, settings, until=until, speed=speed or 0.0)
        return
    rule_set = _load_rules_or_exit(rules_dir or settings.rules_dir)
    started = time.perf_counter()
    read = input_options.read(input_file, topics=settings.topics, policy=settings.decode_policy())
    tabular = input_options.format_of(input_file) != "jsonl"
    run = replaying.build_replay(
        rule_set,
        topics=settings.topics,
        window_policy=settings.window_policy(),
        decode_policy=settings.decode_policy(),
        max_failures=settings.evaluation_max_failures,
    )
    progress = replaying.ProgressLine(sys.stderr.write, time.perf_counter) if sys.stderr.isatty() else None
    scans = asyncio.run(run.run(read.records, until=until, progress=progress))
    seconds = time.perf_counter() - started
    target = out.open("w") if out is not None else sys.stdout
    try:
        for alert in run.publisher.alerts:
            target.write(json.dumps(replaying.alert_line(alert)) + "\n")
    finally:
        if out is not None:
            target.close()
    replayed = [r for r in read.records if until is None or r.at <= until]
    for line in replaying.problem_lines(read, run.dead_letters):
        click.echo(line, err=True)
    if replayed:
        start, end = min(r.at for r in replayed), until or max(r.at for r in replayed)
        span = f"{start.isoformat()} to {end.isoformat()}"
        what = f"{len(replayed):,} purchases (from {read.lines:,} {read.unit}s)" if tabular else None
        what = what or f"{len(replayed):,} of {read.lines:,} lines"
        click.echo(f"replayed {what} ({span}) in {seconds:.1f} s: "
                   f"{len(replayed) / max(seconds, 1e-9):,.0f} events/s, {scans:,} due scans", err=True)  # fmt: skip
        for line in replaying.summary_lines(replaying.summarise(run.publisher.alerts, start, end)):
            click.echo(line, err=True)
    else:
        click.echo(f"nothing to replay: {read.lines:,} lines, no valid event{' by --until' if until else ''}", err=True)


def _mount_stack() -> None:
    from stream.localstack.cli import stack_group

    main.add_command(stack_group, name="stack")


def _mount_backtest() -> None:
    from backtest.cli import backtest

    main.add_command(backtest)


_mount_stack()
_mount_backtest()
main.add_command(routes_group)
main.add_command(silence)
main.add_command(alerts_group)

if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO)
    main()
