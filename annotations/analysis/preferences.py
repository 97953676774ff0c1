"""Pairwise preferences between conditions: a Bradley-Terry model with ties (Davidson 1970).

For conditions i and j with worths pi = exp(lambda) and tie parameter nu >= 0,

    P(i preferred to j) = pi_i / D,  P(tie) = nu sqrt(pi_i pi_j) / D,  D = pi_i + pi_j + nu sqrt(pi_i pi_j).

The log-worth of the reference condition is 0. Fitted by maximum likelihood (exact gradient); worth intervals
come from a cluster bootstrap over annotators, because one annotator's judgements are not independent.
Without any tie, nu is 0 and the model is the plain Bradley-Terry model.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize

from .results import CONFIDENCE

# Columns of a pairs frame: one row per pair judgement.
ANNOTATOR = "annotator_id"
FIRST, SECOND = "condition_a", "condition_b"
OUTCOME = "outcome"  # "a", "b" or "tie"
OUTCOMES = ("a", "b", "tie")
PAIR_COLUMNS = (ANNOTATOR, FIRST, SECOND, OUTCOME)


@dataclass(frozen=True)
class DavidsonFit:
    conditions: list[str]
    log_worth: np.ndarray  # reference (conditions[0]) is 0
    tie: float  # nu
    neg_log_likelihood: float
    converged: bool


def _counts(pairs: pd.DataFrame, conditions: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index of a, index of b, [wins of a, wins of b, ties]) per unordered condition pair present."""
    index = {c: k for k, c in enumerate(conditions)}
    a = pairs[FIRST].map(index).to_numpy()
    b = pairs[SECOND].map(index).to_numpy()
    outcome = pairs[OUTCOME].astype(str).to_numpy()
    bad = sorted(set(outcome) - set(OUTCOMES))
    if bad:
        raise ValueError(f"pair outcomes must be one of {OUTCOMES}, not {bad}")
    swap = a > b
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    outcome = np.where(swap & (outcome == "a"), "b", np.where(swap & (outcome == "b"), "a", outcome))
    key = a * len(conditions) + b
    keys, inverse = np.unique(key, return_inverse=True)
    table = np.zeros((len(keys), 3))
    for column, name in enumerate(OUTCOMES):
        np.add.at(table[:, column], inverse, (outcome == name).astype(float))
    return keys // len(conditions), keys % len(conditions), table


def _negative_log_likelihood(params: np.ndarray, i: np.ndarray, j: np.ndarray, table: np.ndarray, ties: bool):
    k = len(params) - (1 if ties else 0)
    lam = np.concatenate([[0.0], params[:k]])
    log_nu = params[k] if ties else -np.inf
    li, lj = lam[i], lam[j]
    tie_term = log_nu + (li + lj) / 2
    stacked = np.stack([li, lj, tie_term]) if ties else np.stack([li, lj])
    top = stacked.max(axis=0)
    weights = np.exp(stacked - top)
    log_d = top + np.log(weights.sum(axis=0))
    probabilities = weights / weights.sum(axis=0)  # P(a), P(b)[, P(tie)]
    wins_a, wins_b, n_ties = table.T
    total = wins_a + wins_b + (n_ties if ties else 0)
    value = -(wins_a * li + wins_b * lj - total * log_d).sum()
    if ties:
        value -= (n_ties * tie_term).sum()
    # d/d lambda_i of log D is P(a) + P(tie)/2; similarly for j.
    p_tie = probabilities[2] if ties else 0.0
    d_i = wins_a + (n_ties / 2 if ties else 0) - total * (probabilities[0] + p_tie / 2)
    d_j = wins_b + (n_ties / 2 if ties else 0) - total * (probabilities[1] + p_tie / 2)
    gradient_lam = np.zeros(len(lam))
    np.add.at(gradient_lam, i, d_i)
    np.add.at(gradient_lam, j, d_j)
    gradient = -gradient_lam[1:]
    if ties:
        gradient = np.append(gradient, -(n_ties - total * p_tie).sum())
    return value, gradient


def fit_davidson(pairs: pd.DataFrame, conditions: Sequence[str], *, ties: bool | None = None) -> DavidsonFit:
    """Maximum likelihood on pair judgements; `ties` None means: estimate nu when any judgement is a tie."""
    conditions = list(conditions)
    if len(conditions) < 2:
        raise ValueError("preferences need at least two conditions")
    unknown = set(pairs[FIRST]).union(pairs[SECOND]) - set(conditions)
    if unknown:
        raise ValueError(f"pairs name conditions not in the study: {sorted(unknown)}")
    if len(pairs) == 0:
        raise ValueError("no pair judgements")
    i, j, table = _counts(pairs, conditions)
    ties = bool(table[:, 2].sum() > 0) if ties is None else ties
    if not ties and table[:, 2].sum() > 0:
        raise ValueError("judgements include ties: fit with ties=True")
    start = np.zeros(len(conditions) - 1 + (1 if ties else 0))
    solution = optimize.minimize(
        _negative_log_likelihood, start, args=(i, j, table, ties), jac=True, method="BFGS", options={"gtol": 1e-9}
    )
    k = len(conditions) - 1
    tie = float(np.exp(solution.x[k])) if ties else 0.0
    return DavidsonFit(
        conditions=conditions,
        log_worth=np.concatenate([[0.0], solution.x[:k]]),
        tie=tie,
        neg_log_likelihood=float(solution.fun),
        converged=bool(solution.success) or np.abs(solution.jac).max() < 1e-6,
    )


def preference_probabilities(fit: DavidsonFit, first: int, second: int) -> tuple[float, float, float]:
    """P(first preferred), P(second preferred), P(tie) for one pair of condition indices."""
    li, lj = fit.log_worth[first], fit.log_worth[second]
    parts = np.array([np.exp(li), np.exp(lj), fit.tie * np.exp((li + lj) / 2)])
    return tuple(float(v) for v in parts / parts.sum())


def analyze_preferences(
    pairs: pd.DataFrame,
    conditions: Sequence[str],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """The report's `preferences` section: counts, worths with bootstrap CIs, and P(i preferred to j)."""
    fit = fit_davidson(pairs, conditions)
    annotators = pairs[ANNOTATOR].to_numpy()
    groups = [np.flatnonzero(annotators == a) for a in pd.unique(annotators)]
    rng = np.random.default_rng(seed)
    boot_worth, boot_pairs, failures = [], [], 0
    index_pairs = list(itertools.combinations(range(len(fit.conditions)), 2))
    for _ in range(n_boot):
        rows = np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))])
        try:
            replicate = fit_davidson(pairs.iloc[rows], conditions, ties=fit.tie > 0)
        except ValueError:
            failures += 1
            continue
        # A condition that loses (or wins) every replicate judgement has an infinite worth: such replicates
        # are counted, not silently kept.
        if not replicate.converged or np.abs(replicate.log_worth).max() > 20:
            failures += 1
            continue
        boot_worth.append(replicate.log_worth)
        boot_pairs.append([preference_probabilities(replicate, a, b)[0] for a, b in index_pairs])
    tail = (1 - confidence) / 2 * 100

    def interval(samples: list, column: int) -> tuple[float | None, float | None]:
        if len(samples) < 10:
            return None, None
        values = np.asarray(samples)[:, column]
        return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))

    worth = np.exp(fit.log_worth)
    worth_rows = []
    for k, condition in enumerate(fit.conditions):
        low, high = interval(boot_worth, k)
        worth_rows.append(
            {
                "condition": condition,
                "log_worth": float(fit.log_worth[k]),
                "worth": float(worth[k] / worth.sum()),
                "log_worth_ci_low": low if k else None,
                "log_worth_ci_high": high if k else None,
            }
        )
    pair_rows = []
    i, j, table = _counts(pairs, fit.conditions)
    judged = {(int(x), int(y)): row for x, y, row in zip(i, j, table, strict=True)}
    for column, (a, b) in enumerate(index_pairs):
        p_a, p_b, p_tie = preference_probabilities(fit, a, b)
        low, high = interval(boot_pairs, column)
        counts = dict(zip(OUTCOMES, (int(v) for v in judged.get((a, b), np.zeros(3))), strict=True))
        pair_rows.append(
            {
                "a": fit.conditions[a],
                "b": fit.conditions[b],
                "p_a": p_a,
                "p_b": p_b,
                "p_tie": p_tie,
                "p_a_ci_low": low,
                "p_a_ci_high": high,
                "n_a": counts["a"],
                "n_b": counts["b"],
                "n_tie": counts["tie"],
            }
        )
    return {
        "model": "Bradley-Terry with ties (Davidson 1970)" if fit.tie > 0 else "Bradley-Terry (no ties observed)",
        "reference": fit.conditions[0],
        "n_judgements": len(pairs),
        "n_annotators": len(groups),
        "tie_parameter": fit.tie,
        "worths": worth_rows,
        "pairs": pair_rows,
        "n_boot": n_boot,
        "n_boot_failed": failures,
        "converged": fit.converged,
        "inference": (
            "Worths are exp(log-worth) normalised to sum to 1; intervals are percentile intervals of a cluster "
            "bootstrap over annotators (replicates with a condition that never wins or never loses are dropped "
            "and counted)."
        ),
    }
