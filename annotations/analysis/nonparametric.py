"""Rank tests on annotator x condition means, Dunn post-hoc, and Holm-corrected pairwise model contrasts."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .io import ANNOTATOR, CONDITION, VALUE
from .results import CONFIDENCE, ModelResult


def annotator_condition_means(frame: pd.DataFrame, conditions: Sequence[str]) -> pd.DataFrame:
    """(annotators x conditions) table of each annotator's mean rating per condition (NaN if none)."""
    means = frame.groupby([ANNOTATOR, CONDITION], observed=True)[VALUE].mean().unstack(CONDITION)
    return means.reindex(columns=list(conditions))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest p times (m - k + 1), made monotone, capped at 1."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    stepped = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


def _pairwise_rows(conditions: Sequence[str], z_of_pair) -> list[dict[str, Any]]:
    rows = []
    for first, second in itertools.combinations(conditions, 2):
        z = z_of_pair(second, first)  # positive when the second condition ranks higher, as in contrasts
        rows.append({"a": first, "b": second, "z": float(z), "p": float(2 * stats.norm.sf(abs(z)))})
    for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
    return rows


def friedman_with_posthoc(means: pd.DataFrame) -> dict[str, Any]:
    """Friedman test over annotators who rated every condition; pairwise mean-rank z tests, Holm-corrected.

    Post-hoc for Friedman compares mean within-annotator ranks with SE sqrt(k(k+1)/(6n)) (Demsar 2006),
    the blocked analogue of Dunn's test.
    """
    complete = means.dropna()
    n, k = complete.shape
    statistic, p = stats.friedmanchisquare(*complete.to_numpy().T)
    mean_ranks = pd.Series(stats.rankdata(complete.to_numpy(), axis=1).mean(axis=0), index=complete.columns)
    se = math.sqrt(k * (k + 1) / (6 * n))
    posthoc = _pairwise_rows(list(complete.columns), lambda a, b: (mean_ranks[a] - mean_ranks[b]) / se)
    return {
        "test": "friedman",
        "statistic": float(statistic),
        "df": k - 1,
        "p": float(p),
        "n_blocks": n,
        "mean_ranks": {c: float(r) for c, r in mean_ranks.items()},
        "posthoc": {"method": "mean-rank z (Demsar 2006), Holm", "pairs": posthoc},
    }


def kruskal_with_dunn(means: pd.DataFrame) -> dict[str, Any]:
    """Kruskal-Wallis on all annotator x condition means; Dunn's test (tie-corrected), Holm-corrected.

    Means of one annotator under different conditions are not independent, so this is the fallback for
    unbalanced designs, not a substitute for the blocked test.
    """
    groups = {c: means[c].dropna().to_numpy() for c in means.columns if means[c].notna().any()}
    statistic, p = stats.kruskal(*groups.values())
    pooled = np.concatenate(list(groups.values()))
    ranks = stats.rankdata(pooled)
    total = len(pooled)
    _, ties = np.unique(pooled, return_counts=True)
    tie_term = np.sum(ties**3 - ties) / (12 * (total - 1))
    bounds = np.cumsum([0, *[len(g) for g in groups.values()]])
    mean_ranks = {c: ranks[bounds[i] : bounds[i + 1]].mean() for i, c in enumerate(groups)}
    sizes = {c: len(g) for c, g in groups.items()}
    spread = total * (total + 1) / 12 - tie_term

    def dunn_z(a: str, b: str) -> float:
        return (mean_ranks[a] - mean_ranks[b]) / math.sqrt(spread * (1 / sizes[a] + 1 / sizes[b]))

    return {
        "test": "kruskal",
        "statistic": float(statistic),
        "df": len(groups) - 1,
        "p": float(p),
        "n_observations": total,
        "mean_ranks": {c: float(r) for c, r in mean_ranks.items()},
        "posthoc": {"method": "Dunn (tie-corrected), Holm", "pairs": _pairwise_rows(list(groups), dunn_z)},
    }


def wilcoxon_paired(means: pd.DataFrame) -> dict[str, Any]:
    """Two conditions rated by the same annotators: the Wilcoxon signed-rank test (Friedman needs three)."""
    complete = means.dropna()
    first, second = complete.columns
    statistic, p = stats.wilcoxon(complete[second], complete[first])
    return {
        "test": "wilcoxon",
        "statistic": float(statistic),
        "df": None,
        "p": float(p),
        "n_blocks": int(complete.shape[0]),
        "difference": f"{second} - {first}",
        "posthoc": {"method": "none (two conditions)", "pairs": []},
    }


def rank_test(frame: pd.DataFrame, conditions: Sequence[str], *, min_complete: int = 5) -> dict[str, Any]:
    """A blocked test when at least `min_complete` annotators rated every condition (Friedman, or Wilcoxon
    for two conditions), else Kruskal-Wallis."""
    means = annotator_condition_means(frame, conditions)
    complete = int(means.dropna().shape[0])
    if complete < min_complete:
        result = kruskal_with_dunn(means)
    elif means.shape[1] == 2:
        result = wilcoxon_paired(means)
    else:
        result = friedman_with_posthoc(means)
    result["n_annotators_complete"] = complete
    return result


def pairwise_contrasts(model: ModelResult, conditions: Sequence[str], *, confidence: float = CONFIDENCE) -> dict:
    """All condition pairs from a model's estimates and covariance, Wald z, Holm-corrected.

    Cohen's d divides each difference by the SD of a single rating, sqrt(sd_annotator^2 + sd_item^2 +
    sd_residual^2), so it reads as "in units of rating-to-rating spread".
    """
    if model.covariance is None:
        raise ValueError("model carries no covariance of its estimates")
    index = {c.term: i for i, c in enumerate(model.coefficients)}
    parts = [model.variance.annotator, model.variance.item, model.variance.residual]
    total_sd = math.sqrt(sum(v**2 for v in parts if v is not None)) if any(parts) else None
    z_crit = stats.norm.ppf(0.5 + confidence / 2)
    rows = []
    for first, second in itertools.combinations(conditions, 2):
        contrast = np.zeros(len(model.coefficients))
        for level, sign in ((second, 1.0), (first, -1.0)):
            if level in index:  # the reference level has no coefficient of its own
                contrast[index[level]] += sign
        estimate = float(contrast @ np.array([c.estimate for c in model.coefficients]))
        se = float(math.sqrt(contrast @ model.covariance @ contrast))
        rows.append(
            {
                "a": first,
                "b": second,
                "estimate": estimate,
                "se": se,
                "ci_low": float(estimate - z_crit * se),
                "ci_high": float(estimate + z_crit * se),
                "p": float(2 * stats.norm.sf(abs(estimate / se))),
                "cohens_d": estimate / total_sd if total_sd else None,
            }
        )
    for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
    return {"model": model.name, "difference": "b - a", "pairs": rows}
