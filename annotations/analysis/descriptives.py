"""Descriptive statistics per construct and condition, with 95% CIs from a bootstrap over items."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .io import CONDITION, ITEM, VALUE
from .results import CONFIDENCE


def scale_points(scale: tuple[int, int]) -> list[int]:
    """The scale's value domain, e.g. (1, 5) -> [1, 2, 3, 4, 5]."""
    low, high = scale
    return list(range(int(low), int(high) + 1))


BOOTSTRAP_CHUNK = 256


def resampling_weights(n_units: int, n_boot: int, rng: np.random.Generator, chunk: int = BOOTSTRAP_CHUNK):
    """Yield (replicates x units) arrays: how often each unit is drawn in each bootstrap replicate.

    Replicate r draws `rng.integers(0, n_units, n_units)` in order, so a test can replay the draws;
    chunks keep memory at chunk x units whatever the number of replicates.
    """
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        draws = rng.integers(0, n_units, size=(size, n_units))
        flat = (draws + n_units * np.arange(size)[:, None]).ravel()
        yield np.bincount(flat, minlength=size * n_units).reshape(size, n_units).astype(float)


def item_bootstrap_mean_ci(
    values: np.ndarray,
    items: np.ndarray,
    *,
    n_boot: int,
    rng: np.random.Generator,
    confidence: float = CONFIDENCE,
) -> tuple[float | None, float | None]:
    """Percentile CI of the mean when items (not single ratings) are resampled with replacement.

    Ratings of one item are correlated, so resampling items keeps that dependence in the interval.
    Each replicate is a weighted mean of per-item sums: weight = how often the item was drawn.
    """
    codes, _ = pd.factorize(items)
    n_items = int(codes.max()) + 1 if len(codes) else 0
    if n_items < 2:
        return None, None
    sums = np.bincount(codes, weights=values, minlength=n_items)
    counts = np.bincount(codes, minlength=n_items).astype(float)
    means = np.concatenate(
        [(weights @ sums) / (weights @ counts) for weights in resampling_weights(n_items, n_boot, rng)]
    )
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def describe_cell(
    values: np.ndarray,
    items: np.ndarray,
    *,
    scale: tuple[int, int],
    n_boot: int,
    rng: np.random.Generator,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """n, mean, sd, median, top-two-box share, distribution over scale points and bootstrap CI."""
    points = scale_points(scale)
    ci_low, ci_high = item_bootstrap_mean_ci(values, items, n_boot=n_boot, rng=rng, confidence=confidence)
    n = len(values)
    # Counts per scale point; composite scores (means) are rounded to the nearest point for this table.
    rounded = np.clip(np.floor(values + 0.5), points[0], points[-1]).astype(int)
    return {
        "n": int(n),
        "mean": float(values.mean()) if n else None,
        "sd": float(values.std(ddof=1)) if n > 1 else None,
        "median": float(np.median(values)) if n else None,
        "top2": float(np.mean(values >= points[-1] - 1)) if n else None,
        "distribution": {str(p): int(np.sum(rounded == p)) for p in points},
        "ci_low": ci_low,
        "ci_high": ci_high,
    }


def describe(
    frames: dict[str, pd.DataFrame],
    conditions: list[str],
    *,
    scale: tuple[int, int] = (1, 5),
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, dict[str, dict[str, Any]]]:
    """`descriptives[construct][condition]` for each construct's rows in `frames`."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for construct, frame in frames.items():
        out[construct] = {}
        for condition in conditions:
            cell = frame[frame[CONDITION] == condition]
            out[construct][condition] = describe_cell(
                cell[VALUE].to_numpy(float),
                cell[ITEM].to_numpy(),
                scale=scale,
                n_boot=n_boot,
                rng=rng,
                confidence=confidence,
            )
    return out
