"""Hot reload of the rule set: watch the rule directory (and SIGHUP), swap a valid set in atomically.

The processor reads the active set once per event, so a swap happens between events. An invalid
set is rejected with every problem logged, and the old set stays active; a rule whose file was
deleted is simply absent from the new set and stops alerting. A directory left with no rule file at
all is treated as a mistake (invalid), not as 'turn every rule off'.
"""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from pathlib import Path

from watchfiles import awatch

from rules.ruleset import RULE_FILE_SUFFIXES, RuleConfigError, RuleSet, load_rule_set
from stream.metrics import Metrics

log = logging.getLogger("churnwatch.rules")


class ReloadOutcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    INVALID = "invalid"


class ActiveRules:
    """The rule set in force; calling it returns the current one."""

    def __init__(self, rule_set: RuleSet, metrics: Metrics) -> None:
        self._metrics = metrics
        self._current = rule_set
        self._publish(None, rule_set)

    def __call__(self) -> RuleSet:
        return self._current

    def swap(self, new: RuleSet) -> None:
        old, self._current = self._current, new
        self._publish(old, new)

    def _publish(self, old: RuleSet | None, new: RuleSet) -> None:
        if old is not None:
            self._metrics.rule_set_info.remove(old.version)
        self._metrics.rule_set_info.labels(version=new.version).set(1)
        self._metrics.rules_loaded.set(len(new.enabled))


class RuleReloader:
    def __init__(self, path: Path, active: ActiveRules, metrics: Metrics) -> None:
        self._path = path
        self._active = active
        self._metrics = metrics

    def reload(self) -> ReloadOutcome:
        """Load the rule files again; apply them if valid and different."""
        try:
            candidate = load_rule_set(self._path)
        except RuleConfigError as exc:
            outcome = ReloadOutcome.INVALID
            log.error(
                "rule reload rejected, keeping rule set %s:\n  %s",
                self._active().version,
                "\n  ".join(str(p) for p in exc.problems),
            )
        else:
            if candidate.version == self._active().version:
                outcome = ReloadOutcome.UNCHANGED
            else:
                previous = self._active()
                self._active.swap(candidate)
                outcome = ReloadOutcome.APPLIED
                removed = {r.id for r in previous.rules} - {r.id for r in candidate.rules}
                log.warning(
                    "rule set %s -> %s: %d rules%s",
                    previous.version,
                    candidate.version,
                    len(candidate.enabled),
                    f" (removed: {', '.join(sorted(removed))})" if removed else "",
                )
        self._metrics.rules_reloads.labels(outcome=outcome.value).inc()
        return outcome

    async def watch(self, stop: asyncio.Event | None = None) -> None:
        """Reload whenever a rule file in the directory changes (editors' atomic saves included)."""
        target = self._path if self._path.is_dir() else self._path.parent

        def is_rule_file(_: object, changed: str) -> bool:
            return Path(changed).suffix in RULE_FILE_SUFFIXES and Path(changed).parent == target

        async for _ in awatch(target, watch_filter=is_rule_file, debounce=400, stop_event=stop, recursive=False):
            self.reload()
