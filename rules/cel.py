"""CEL (Common Expression Language) over the customer aggregates, via the official C++ runtime
(``cel-expr-python``). Expressions are parsed *and type-checked* when a rule file loads, so a typo
in a name or an int/double mix-up is an error at ``rules check`` time, not at 3 a.m."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cel_expr_python import cel

from rules.aggregates import CATALOG, AggregateValue

_TYPES = {"double": cel.Type.DOUBLE, "bool": cel.Type.BOOL, "string": cel.Type.STRING}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@lru_cache(maxsize=1)
def _environment() -> Any:
    return cel.NewEnv(variables={a.name: _TYPES[a.cel_type] for a in CATALOG})


class CelError(ValueError):
    """An expression that does not parse or type-check; the message says where and why."""


@dataclass(frozen=True)
class CompiledCondition:
    source: str
    program: Any
    names: tuple[str, ...]
    """Aggregates the expression reads (its evidence)."""

    def evaluate(self, aggregates: Mapping[str, AggregateValue]) -> bool:
        """Only the aggregates it reads are looked up (a lazy mapping computes nothing else)."""
        return bool(self.program.eval(data={name: aggregates[name] for name in self.names}).value())


def _hint(message: str) -> str:
    if "no matching overload" in message and "int" in message and "double" in message:
        return " (CEL does not mix int and double: write numbers with a decimal point, e.g. 3.0)"
    if "undeclared reference" in message:
        return " (see the list of aggregates in the README, or `churnwatch rules aggregates`)"
    return ""


@lru_cache(maxsize=1024)
def compile_condition(source: str) -> CompiledCondition:
    """Compile a boolean CEL expression over the aggregates; raise CelError if it is not one."""
    try:
        program = _environment().compile(source)
    except RuntimeError as exc:
        detail = str(exc).removeprefix("INVALID_ARGUMENT: ").strip()
        raise CelError(f"CEL error in {source!r}: {detail}{_hint(detail)}") from None
    returned = program.return_type().name().lower()
    if returned not in ("bool", "dyn"):
        raise CelError(f"CEL expression {source!r} gives a {returned}, not a bool")
    declared = {a.name for a in CATALOG}
    names = tuple(dict.fromkeys(n for n in _IDENTIFIER.findall(_without_strings(source)) if n in declared))
    return CompiledCondition(source, program, names)


def _without_strings(source: str) -> str:
    return re.sub(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", "''", source)


def evidence_value(value: AggregateValue) -> float | bool | str | None:
    """NaN has no JSON form: a missing aggregate is shown as None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
