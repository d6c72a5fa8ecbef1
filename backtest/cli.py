"""``churnwatch backtest``: the command (mounted by :mod:`stream.cli`)."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import timedelta
from pathlib import Path

import click
from pydantic import TypeAdapter, ValidationError

from backtest import models
from backtest.report import BacktestReport, table_lines, verdict_lines
from backtest.run import BacktestSpec, purchases_of, run_backtest
from rules.base import Duration
from stream import replay as replaying
from stream.input_options import InputOptions, input_options
from stream.settings import Settings


def _duration(text: str) -> timedelta:
    try:
        value = TypeAdapter(Duration).validate_python(text)
    except ValidationError:
        value = timedelta(0)
    if value <= timedelta(0):
        raise click.BadParameter(f"{text!r} is not a duration such as 181d or 26w", param_hint="--outcome-window")
    return value


@click.command("backtest")
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@input_options
@click.option("--cutoff", "cutoff_text", required=True, help="The cut-off: an ISO 8601 date (00:00 UTC) or date-time")
@click.option("--outcome-window", "window_text", required=True, help="Churned: no purchase this long after the cut-off")
@click.option("--min-purchase-days", default=2, show_default=True, type=click.IntRange(min=1),
              help="Population: customers with this many distinct purchase days before the cut-off")  # fmt: skip
@click.option("--rules", "rules_dir", type=click.Path(path_type=Path), help="Rule file or directory")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the report as JSON")
@click.option("--html", "html_out", type=click.Path(dir_okay=False, path_type=Path), help="Write an HTML report")
@click.option("--fit-model", is_flag=True, help="Fit purchase-model rules on the history before the cut-off")
def backtest(
    input_file: Path,
    input_options: InputOptions,
    cutoff_text: str,
    window_text: str,
    min_purchase_days: int,
    rules_dir: Path | None,
    json_out: Path | None,
    html_out: Path | None,
    fit_model: bool,
) -> None:
    """Replay INPUT up to the cut-off with the worker's code and score the alerts against who churned.

    INPUT is what `churnwatch replay` reads: JSON Lines of events, or a CSV or Parquet export of
    transactions with --map naming its columns.

    Flagged customers (an alert open at the cut-off, or any alert in its last 30/60/90 days) are
    compared with the customers who made no purchase in the outcome window, and with the plain
    recency baselines "no purchase in the last 30/60/90 days" at the cut-off."""
    settings = Settings()
    try:
        cutoff = replaying.parse_moment(cutoff_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--cutoff") from exc
    window = _duration(window_text)
    from stream.cli import _load_rules_or_exit  # the CLI's one way to report a bad rule set

    rule_set = _load_rules_or_exit(rules_dir or settings.rules_dir)
    started = time.perf_counter()
    read = input_options.read(input_file, topics=settings.topics, policy=settings.decode_policy())
    for line in replaying.problem_lines(read, replaying.ReplayDeadLetters()):
        click.echo(line, err=True)
    notes = []
    if model_ids := models.model_rule_ids(rule_set):
        if fit_model:
            try:
                rule_set, fitted = models.with_fitted_models(
                    rule_set, purchases_of(read.records, settings.topics), cutoff
                )
            except (ImportError, ValueError) as exc:
                click.echo(f"churnwatch backtest: --fit-model: {exc} (the fit needs churnwatch[model])", err=True)
                sys.exit(2)
            notes.append(fitted)
        else:
            notes.append(
                f"{', '.join(model_ids)}: judged with the parameters in the rule file, fitted on another history; "
                "--fit-model fits them on this one before the cut-off"
            )
    spec = BacktestSpec(cutoff, window, min_purchase_days)
    progress = replaying.ProgressLine(sys.stderr.write, time.perf_counter) if sys.stderr.isatty() else None
    report = asyncio.run(
        run_backtest(
            read.records,
            rule_set,
            spec,
            topics=settings.topics,
            window_policy=settings.window_policy(),
            decode_policy=settings.decode_policy(),
            progress=progress,
        )
    )
    report = report.model_copy(update={"warnings": [*notes, *report.warnings]})
    for line in [*table_lines(report), "", *verdict_lines(report)]:
        click.echo(line)
    click.echo(f"backtest took {time.perf_counter() - started:.1f} s", err=True)
    _write(report, json_out, html_out)


def _write(report: BacktestReport, json_out: Path | None, html_out: Path | None) -> None:
    if json_out is not None:
        json_out.write_text(report.model_dump_json(indent=2) + "\n")
        click.echo(f"wrote {json_out}", err=True)
    if html_out is not None:
        from backtest.html import render

        try:
            html_out.write_text(render(report))
        except ImportError as exc:
            click.echo(
                f"churnwatch backtest: --html needs matplotlib: pip install 'churnwatch[backtest]' ({exc})", err=True
            )
            sys.exit(2)
        click.echo(f"wrote {html_out}", err=True)
