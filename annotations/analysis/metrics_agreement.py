"""How far automatic metrics agree with people: per construct, Spearman between a metric and the mean human rating
per explanation (bootstrap CI over items), Kendall's tau between the condition rankings, Krippendorff's alpha for
judges; from per-explanation metric columns named `metric:<name>` in the tidy ratings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .io import CONDITION, EXPLANATION_KEYS, ITEM, VALUE

METRIC_PREFIX = "metric:"
JUDGE_PREFIX = "judge:"
# Points of each scatter kept in the report (for its figure); past this many they are thinned evenly.
MAX_POINTS = 2000


def metric_columns(tidy: pd.DataFrame) -> list[str]:
    """The `metric:<name>` columns of a tidy frame, in their order."""
    return [c for c in tidy.columns if isinstance(c, str) and c.startswith(METRIC_PREFIX)]


def per_explanation(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """One row per explanation with a value of `column`: item, condition, the human mean and the metric."""
    rows = frame.dropna(subset=[column, VALUE])
    if rows.empty:
        return pd.DataFrame(columns=[*EXPLANATION_KEYS, ITEM, "human", "metric"])
    grouped = rows.groupby(EXPLANATION_KEYS, sort=True, observed=True)
    out = grouped.agg(item=(ITEM, "first"), human=(VALUE, "mean"), metric=(column, "first")).reset_index()
    out["metric"] = out["metric"].astype(float)
    return out.rename(columns={"item": ITEM})


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho (average ranks for ties); None when either side is constant or fewer than three pairs."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    # Pearson's r of the ranks is Spearman's rho (as scipy.stats.spearmanr computes it), without its checks:
    # the bootstrap calls this thousands of times.
    return float(np.corrcoef(stats.rankdata(x), stats.rankdata(y))[0, 1])


def bootstrap_spearman_ci(
    table: pd.DataFrame, *, n_boot: int, seed: int, confidence: float
) -> tuple[float | None, float | None]:
    """Percentile CI of Spearman's rho from resampling items (each with all its explanations) with replacement."""
    if n_boot <= 0 or table.empty:
        return None, None
    codes, items = pd.factorize(table[ITEM])
    members = [np.flatnonzero(codes == k) for k in range(len(items))]
    x, y = table["metric"].to_numpy(float), table["human"].to_numpy(float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        picked = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        rho = spearman(x[picked], y[picked])
        if rho is not None:
            values.append(rho)
    if len(values) < max(10, n_boot // 2):  # mostly degenerate resamples: no honest interval
        return None, None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def kendall_conditions(table: pd.DataFrame) -> tuple[float | None, int]:
    """Kendall's tau-b between the conditions ordered by their mean human rating and by their mean metric."""
    means = table.groupby(CONDITION, observed=True)[["human", "metric"]].mean()
    if len(means) < 2 or means["human"].nunique() < 2 or means["metric"].nunique() < 2:
        return None, len(means)
    return float(stats.kendalltau(means["human"], means["metric"]).statistic), len(means)


def interval_alpha(first: np.ndarray, second: np.ndarray) -> float | None:
    """Krippendorff's alpha (interval) for two coders who rated the same units, without missing values."""
    values = np.concatenate([first, second])
    if len(first) < 2 or np.ptp(values) == 0:
        return None
    observed = np.mean((first - second) ** 2)
    n = len(values)
    expected = np.sum((values[:, None] - values[None, :]) ** 2) / (n * (n - 1))
    return float(1 - observed / expected)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def judge_matches(metric: str, construct: str) -> bool:
    """Whether `judge:<x>` judged this construct (names compared without case, spaces or punctuation)."""
    return metric.startswith(JUDGE_PREFIX) and _key(metric[len(JUDGE_PREFIX) :]) == _key(construct)


def _thinned(table: pd.DataFrame) -> dict[str, list[float]]:
    if len(table) > MAX_POINTS:
        table = table.iloc[np.linspace(0, len(table) - 1, MAX_POINTS).astype(int)]
    return {
        "metric": [round(float(v), 6) for v in table["metric"]],
        "human": [round(float(v), 6) for v in table["human"]],
        "condition": [str(v) for v in table[CONDITION]],
    }


def automatic_metrics(
    frames: dict[str, pd.DataFrame],
    *,
    n_boot: int,
    seed: int,
    confidence: float,
    columns: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, dict[str, list]]]]:
    """Agreement of every metric column with every construct's mean rating per explanation.

    Returns the `automatic_metrics` entries of report.json and, per construct and metric, the points of its
    scatter figure.
    """
    entries: list[dict[str, Any]] = []
    points: dict[str, dict[str, dict[str, list]]] = {}
    for construct, frame in frames.items():
        for column in columns if columns is not None else metric_columns(frame):
            if column not in frame.columns:
                continue
            metric = column[len(METRIC_PREFIX) :]
            table = per_explanation(frame, column)
            x, y = table["metric"].to_numpy(float), table["human"].to_numpy(float)
            rho = spearman(x, y)
            low, high = bootstrap_spearman_ci(table, n_boot=n_boot, seed=seed, confidence=confidence)
            tau, n_conditions = kendall_conditions(table) if len(table) else (None, 0)
            judge = judge_matches(metric, construct)
            entries.append(
                {
                    "metric": metric,
                    "construct": construct,
                    "spearman": rho,
                    "ci_low": low if rho is not None else None,
                    "ci_high": high if rho is not None else None,
                    "n": len(table),
                    "n_items": int(table[ITEM].nunique()) if len(table) else 0,
                    "kendall_conditions": tau,
                    "n_conditions": n_conditions,
                    "alpha": interval_alpha(x, y) if judge else None,
                }
            )
            if len(table):
                points.setdefault(construct, {})[metric] = _thinned(table)
    return entries, points
