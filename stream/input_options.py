"""The input options of ``churnwatch replay`` (and ``backtest``): ``--format``, ``--map``,
``--timezone``, ``--currency``, as one decorator and the :class:`InputOptions` it hands the command.

    @main.command()
    @click.argument("input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @input_options
    def replay(input_file: Path, input_options: InputOptions) -> None:
        read = input_options.read(input_file, topics=settings.topics, policy=settings.decode_policy())
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from stream.decoding import DecodePolicy
from stream.replay import ReplayInput
from stream.settings import Topics
from stream.tabular_input import (
    FORMATS,
    MAP_SYNTAX,
    ColumnMap,
    InputError,
    OptionError,
    input_format,
    parse_column_map,
    read_input,
    zone_of,
)

R = TypeVar("R")


@dataclass(frozen=True)
class InputOptions:
    fmt: str | None = None
    column_map: ColumnMap | None = None
    timezone: str | None = None
    currency: str | None = None
    """``--currency``; None: the configured ``CHURNWATCH_CURRENCY`` (the only one the worker accepts)."""

    def format_of(self, path: Path) -> str:
        return input_format(path, self.fmt)

    def read(self, path: Path, *, topics: Topics, policy: DecodePolicy) -> ReplayInput:
        """:func:`stream.tabular_input.read_input` with these options; options that do not fit the
        input are a usage error (exit 2), a file that cannot be read a ClickException (exit 1)."""
        try:
            return read_input(
                path,
                fmt=self.fmt,
                column_map=self.column_map,
                timezone=self.timezone,
                currency=self.currency or policy.currency,
                topics=topics,
                policy=policy,
            )
        except OptionError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{exc.option}'") from exc
        except InputError as exc:
            raise click.ClickException(str(exc)) from exc


def _column_map(_: click.Context, __: click.Parameter, text: str | None) -> ColumnMap | None:
    if text is None:
        return None
    try:
        return parse_column_map(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _timezone(_: click.Context, __: click.Parameter, name: str | None) -> str | None:
    if name is not None:
        try:
            zone_of(name)
        except OptionError as exc:
            raise click.BadParameter(str(exc)) from exc
    return name


def _currency(_: click.Context, __: click.Parameter, code: str | None) -> str | None:
    if code is not None and not re.fullmatch(r"[A-Z]{3}", code):
        raise click.BadParameter(f"{code!r} is not an ISO 4217 code (three capital letters, such as EUR)")
    return code


_OPTIONS = (
    click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        help="Input format; default from the suffix: .csv, .parquet/.pq, else jsonl",
    ),
    click.option(
        "--map",
        "column_map",
        metavar="ROLE=COLUMN,...",
        callback=_column_map,
        help=f"csv/parquet (required there): which column holds what, {MAP_SYNTAX}. "
        "Rows sharing customer and order are one purchase (amounts summed)",
    ),
    click.option(
        "--timezone",
        metavar="ZONE",
        callback=_timezone,
        help="csv/parquet: the IANA zone (e.g. Europe/Berlin) of times without an offset, and of dates; "
        "default: such times are errors, dates are UTC",
    ),
    click.option(
        "--currency",
        metavar="CODE",
        callback=_currency,
        help="csv/parquet without a currency column: the purchases' currency; default CHURNWATCH_CURRENCY",
    ),
)


def input_options(command: Callable[..., R]) -> Callable[..., R]:
    """Add the input options to a click command, which receives them as ``input_options: InputOptions``."""

    @functools.wraps(command)
    def with_input_options(
        *args: Any, fmt: str | None, column_map: ColumnMap | None, timezone: str | None, currency: str | None, **kw: Any
    ) -> R:
        return command(*args, input_options=InputOptions(fmt, column_map, timezone, currency), **kw)

    decorated: Callable[..., R] = with_input_options
    for option in reversed(_OPTIONS):
        decorated = option(decorated)
    return decorated
