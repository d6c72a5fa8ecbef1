"""``backtest --fit-model``: purchase-model parameters fitted on the history before the cut-off only.

A shipped ``purchase_model`` rule carries parameters fitted on some other population; judged with
them, a backtest measures that mismatch as much as the rule. Fitting on the input would be right,
but only on what happened before the cut-off: fitted on the outcome window too, the model would
know who came back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rules.kinds.purchase_model import PurchaseModelCondition
from rules.ruleset import RuleSet


def model_rule_ids(rule_set: RuleSet) -> list[str]:
    return [r.id for r in rule_set.enabled if isinstance(r, PurchaseModelCondition)]


def with_fitted_models(
    rule_set: RuleSet, purchases: Iterable[tuple[str, datetime]], cutoff: datetime
) -> tuple[RuleSet, str]:
    """The rule set with every enabled purchase-model rule's parameters fitted on ``purchases``
    strictly before ``cutoff``, and a line describing the fit. Needs churnwatch[model]."""
    from stream import model_fit
    from stream.purchase_history import PurchaseHistory

    history = PurchaseHistory()
    for customer, at in purchases:
        if at < cutoff:
            history.add(customer, at)
    fit, as_of = model_fit.fit_history(history, cutoff)
    rules = tuple(
        r.model_copy(update={"parameters": fit.parameters}) if isinstance(r, PurchaseModelCondition) else r
        for r in rule_set.rules
    )
    p = fit.parameters
    line = (
        f"purchase model fitted on {fit.customers:,} customers before {as_of.isoformat()}: "
        f"r={p.r:.4g} alpha={p.alpha:.4g} a={p.a:.4g} b={p.b:.4g}{'' if fit.converged else ' (DID NOT CONVERGE)'}"
    )
    return RuleSet(rules, f"{rule_set.version}+fitted", rule_set.sources), line
