"""Alert message templates: Jinja2 in a sandbox, checked when the rule file loads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rules.aggregates import CATALOG

ALWAYS_AVAILABLE = ("customer_id", "rule_id", "severity", *(a.name for a in CATALOG))
"""Besides a rule's own evidence, a message may use any named aggregate (see rules.aggregates)."""

_env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def check_template(source: str, allowed: Iterable[str]) -> None:
    """Raise ValueError if the template does not parse or names a variable the rule cannot provide."""
    try:
        ast = _env.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"message template does not parse: {exc.message} (line {exc.lineno})") from exc
    unknown = meta.find_undeclared_variables(ast) - set(allowed) - set(ALWAYS_AVAILABLE)
    if unknown:
        choices = ", ".join(sorted({*allowed, "customer_id", "rule_id", "severity"}))
        raise ValueError(
            f"message template uses unknown variable(s) {sorted(unknown)}; available: {choices} "
            "and the named aggregates (churnwatch rules aggregates)"
        )


@lru_cache(maxsize=512)
def _compiled(source: str) -> jinja2.Template:
    return _env.from_string(source)


@lru_cache(maxsize=512)
def variables_of(source: str) -> frozenset[str]:
    """The variables a (checked) template reads: an alert computes only those aggregates."""
    return frozenset(meta.find_undeclared_variables(_env.parse(source)))


def render(source: str, variables: Mapping[str, Any]) -> str:
    return _compiled(source).render(**variables)
