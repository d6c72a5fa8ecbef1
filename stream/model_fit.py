"""Fitting BG/NBD's population parameters to a purchase history (``churnwatch model fit``).

Offline and heavy on purpose: numpy and scipy are the ``model`` extra, which the worker does not
install; it judges with the closed forms of :mod:`rules.purchase_model`. The fit maximises the sum
of the paper's per-customer log-likelihood (equation 6, vectorised here, the same formula as
:func:`rules.purchase_model.log_likelihood`) over the logs of r, α, a, b with L-BFGS-B, so the
parameters stay positive without constraints. Customers with the same (x, t_x, T) are one weighted
row: with day-granular histories and one cut-off that shrinks millions of customers a lot.

Standard errors are asymptotic: the inverse of a central-difference Hessian of the negative
log-likelihood at the optimum (in log-parameters, carried to the parameters by the delta method).
They say how well the sample pins the parameters down, not whether BG/NBD fits the business.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from rules.purchase_model import BgNbdInputs, BgNbdParameters
from stream.purchase_history import PurchaseHistory, ReadReport, read_csv, read_jsonl

Array = NDArray[np.float64]
PARAMETER_NAMES = ("r", "alpha", "a", "b")
_LOG_BOUND = 15.0
"""Log-parameters are kept within ±15 (about 3e-7 to 3e6): a parameter there did not converge."""
_HESSIAN_STEP = 1e-3


@dataclass(frozen=True)
class Histories:
    """Unique (x, t_x, T) rows and how many customers each stands for."""

    x: Array
    t_x: Array
    T: Array
    weight: Array

    @classmethod
    def of(cls, inputs: list[BgNbdInputs] | tuple[Array, Array, Array]) -> Histories:
        if isinstance(inputs, tuple):
            x, t_x, T = (np.asarray(column, dtype=float) for column in inputs)
        else:
            x = np.array([i.x for i in inputs], dtype=float)
            t_x = np.array([i.t_x for i in inputs], dtype=float)
            T = np.array([i.T for i in inputs], dtype=float)
        if x.size == 0:
            raise ValueError("no customers to fit")
        rows, counts = np.unique(np.stack([x, t_x, T], axis=1), axis=0, return_counts=True)
        return cls(rows[:, 0], rows[:, 1], rows[:, 2], counts.astype(float))

    @property
    def customers(self) -> int:
        return int(self.weight.sum())


def log_likelihoods(params: Array, x: Array, t_x: Array, T: Array) -> Array:
    """Equation 6 of the paper per customer, for ``params`` = (r, α, a, b)."""
    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    alive = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    dropped = np.where(
        repeat,
        np.log(a) - np.log(b + np.maximum(x, 1.0) - 1.0) - (r + x) * np.log(alpha + t_x),
        -np.inf,
    )
    result: Array = common + np.logaddexp(alive, dropped)
    return result


def expected_repeats(params: Array, t: Array) -> Array:
    """E[X(t)], the expected repeat purchases within t of the first purchase (paper, equation 9)."""
    r, alpha, a, b = params
    z = t / (alpha + t)
    value: Array = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, z))
    return value


@dataclass(frozen=True)
class BgNbdFit:
    parameters: BgNbdParameters
    standard_errors: dict[str, float] | None
    """None when the Hessian at the optimum is not positive definite (a flat or degenerate fit)."""
    log_likelihood: float
    customers: int
    one_time_buyers: int
    converged: bool
    message: str
    iterations: int
    mean_repeats_observed: float
    mean_repeats_predicted: float | None
    """The model's E[X(T)] averaged over the customers: near the observed mean if it fits at all."""
    seconds: float


def fit_bgnbd(histories: Histories) -> BgNbdFit:
    """Maximum-likelihood r, α, a, b (in the histories' time unit, days here)."""
    started = time.perf_counter()
    if not (histories.x > 0).any():
        raise ValueError("no customer bought twice: the drop-out process (a, b) cannot be fitted")
    n = histories.customers

    def mean_negative(log_params: Array) -> float:
        lls = log_likelihoods(np.exp(log_params), histories.x, histories.t_x, histories.T)
        return float(-(histories.weight * lls).sum() / n)

    rate = float((histories.weight * histories.x / np.maximum(histories.T, 1.0)).sum() / n)
    start = np.log([1.0, 1.0 / max(rate, 1e-6), 1.0, 1.0])
    with np.errstate(all="ignore"):
        result = minimize(
            mean_negative, start, method="L-BFGS-B", bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4, options={"maxiter": 500}
        )
        log_params = np.asarray(result.x, dtype=float)
        errors = _standard_errors(lambda p: mean_negative(p) * n, log_params)
    values = np.exp(log_params)
    at_bound = [name for name, v in zip(PARAMETER_NAMES, log_params, strict=True) if abs(v) > _LOG_BOUND - 1e-6]
    message = str(result.message) + (f"; at the search bound: {', '.join(at_bound)}" if at_bound else "")
    with np.errstate(all="ignore"):
        predicted = float((histories.weight * expected_repeats(values, histories.T)).sum() / n)
    return BgNbdFit(
        parameters=BgNbdParameters(**dict(zip(PARAMETER_NAMES, map(float, values), strict=True))),
        standard_errors=errors,
        log_likelihood=-float(result.fun) * n,
        customers=n,
        one_time_buyers=int(histories.weight[histories.x == 0].sum()),
        converged=bool(result.success) and not at_bound,
        message=message,
        iterations=int(result.nit),
        mean_repeats_observed=float((histories.weight * histories.x).sum() / n),
        mean_repeats_predicted=predicted if math.isfinite(predicted) else None,
        seconds=time.perf_counter() - started,
    )


def _standard_errors(negative_ll: Any, log_params: Array) -> dict[str, float] | None:
    h, k = _HESSIAN_STEP, len(log_params)
    hessian = np.empty((k, k))
    steps = np.eye(k) * h
    for i in range(k):
        for j in range(i, k):
            value = (
                negative_ll(log_params + steps[i] + steps[j])
                - negative_ll(log_params + steps[i] - steps[j])
                - negative_ll(log_params - steps[i] + steps[j])
                + negative_ll(log_params - steps[i] - steps[j])
            ) / (4 * h * h)
            hessian[i, j] = hessian[j, i] = value
    try:
        np.linalg.cholesky(hessian)
        covariance = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return None
    log_errors = np.sqrt(np.diag(covariance))
    values = np.exp(log_params)
    return {name: float(v * e) for name, v, e in zip(PARAMETER_NAMES, values, log_errors, strict=True)}


def read_history(
    path: Path,
    fmt: str,
    *,
    customer_column: str = "customer_id",
    time_column: str = "occurred_at",
    amount_column: str | None = None,
    time_format: str | None = None,
) -> tuple[PurchaseHistory, ReadReport]:
    if fmt == "jsonl":
        return read_jsonl(path)
    return read_csv(
        path,
        customer_column=customer_column,
        time_column=time_column,
        amount_column=amount_column,
        time_format=time_format,
    )


def fit_history(history: PurchaseHistory, as_of: datetime | None = None) -> tuple[BgNbdFit, datetime]:
    """Fit every customer's history up to ``as_of`` (default: the latest purchase in it)."""
    cut = as_of or history.latest
    if cut is None:
        raise ValueError("no purchases to fit")
    return fit_bgnbd(Histories.of(list(history.inputs(cut).values()))), cut


def describe(fit: BgNbdFit, as_of: datetime) -> str:
    p, se = fit.parameters, fit.standard_errors or {}
    lines = ["BG/NBD parameters (days):"]
    for name in PARAMETER_NAMES:
        error = f"  (± {se[name]:.3g})" if name in se else ""
        lines.append(f"  {name:<5} = {getattr(p, name):.6g}{error}")
    if fit.standard_errors is None:
        lines.append("  (no standard errors: the likelihood is flat or degenerate at the optimum)")
    predicted = "n/a" if fit.mean_repeats_predicted is None else f"{fit.mean_repeats_predicted:.3f}"
    lines += [
        f"customers: {fit.customers} as of {as_of.isoformat()}, one-time buyers: {fit.one_time_buyers} "
        f"({fit.one_time_buyers / fit.customers:.1%})",
        f"log-likelihood: {fit.log_likelihood:.2f}",
        f"mean repeat purchases: observed {fit.mean_repeats_observed:.3f}, predicted {predicted}",
        f"optimiser: {'converged' if fit.converged else 'NOT converged'} in {fit.iterations} iterations, "
        f"{fit.seconds:.2f} s ({fit.message})",
    ]
    return "\n".join(lines)


def parameters_document(fit: BgNbdFit, as_of: datetime, source: str) -> dict[str, Any]:
    """What ``--out`` writes: ``parameters`` is what a ``purchase_model`` rule takes as its own."""
    p = fit.parameters
    return {
        "parameters": {
            "r": float(f"{p.r:.6g}"),
            "alpha": float(f"{p.alpha:.6g}"),
            "a": float(f"{p.a:.6g}"),
            "b": float(f"{p.b:.6g}"),
            "unit": p.unit,
        },
        "fit": {
            "model": "bgnbd",
            "source": source,
            "as_of": as_of.isoformat(),
            "customers": fit.customers,
            "one_time_buyers": fit.one_time_buyers,
            "log_likelihood": round(fit.log_likelihood, 3),
            "converged": fit.converged,
            "standard_errors": None
            if fit.standard_errors is None
            else {k: float(f"{v:.4g}") for k, v in fit.standard_errors.items()},
            "mean_repeats_observed": round(fit.mean_repeats_observed, 4),
            "mean_repeats_predicted": None
            if fit.mean_repeats_predicted is None
            else round(fit.mean_repeats_predicted, 4),
        },
    }


def write_parameters(document: dict[str, Any], path: Path) -> None:
    """YAML (or JSON for a ``.json`` path), with a header saying where the numbers go."""
    if path.suffix == ".json":
        path.write_text(json.dumps(document, indent=2) + "\n")
        return
    header = (
        "# BG/NBD parameters fitted by `churnwatch model fit`. Copy the `parameters:` mapping into a\n"
        "# `kind: purchase_model` rule; `fit:` records how they were obtained.\n"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))


def load_parameters(path: Path) -> BgNbdParameters:
    """The ``parameters`` of a file written by :func:`write_parameters`, validated."""
    document = yaml.safe_load(path.read_text())  # JSON is YAML
    if not isinstance(document, dict) or "parameters" not in document:
        raise ValueError(f"{path}: expected a mapping with 'parameters:' (as `churnwatch model fit` writes)")
    return BgNbdParameters.model_validate(document["parameters"])
