"""Inter-rater agreement: Krippendorff's ordinal alpha with a bootstrap over units (explanations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .descriptives import resampling_weights
from .io import ANNOTATOR, EXPLANATION_KEYS, VALUE
from .results import CONFIDENCE


def unit_value_counts(values: np.ndarray, units: np.ndarray, value_domain: Sequence[float]) -> np.ndarray:
    """(units x values) counts of how often each unit received each value of the domain."""
    domain = np.asarray(value_domain, dtype=float)
    value_index = np.searchsorted(domain, values)
    if np.any(value_index >= len(domain)) or np.any(domain[np.minimum(value_index, len(domain) - 1)] != values):
        raise ValueError("a rating lies outside the value domain")
    unit_codes, _ = pd.factorize(units)
    counts = np.zeros((unit_codes.max() + 1, len(domain)))
    np.add.at(counts, (unit_codes, value_index), 1.0)
    return counts


def unit_coincidences(counts: np.ndarray) -> np.ndarray:
    """Per-unit coincidence matrices, (units x values x values); units with under 2 values contribute 0.

    Krippendorff (2011, "Computing Krippendorff's alpha-reliability"): a unit with m values adds, for each
    ordered pair of values from different coders, 1 / (m - 1) to o[c, k].
    """
    pairable = counts.sum(axis=1)
    outer = counts[:, :, None] * counts[:, None, :]
    outer[:, np.arange(counts.shape[1]), np.arange(counts.shape[1])] -= counts
    scale = np.where(pairable > 1, 1.0 / np.maximum(pairable - 1, 1), 0.0)
    return outer * scale[:, None, None]


def ordinal_distances(marginals: np.ndarray) -> np.ndarray:
    """Squared ordinal distances: delta^2(c, k) = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2, batched.

    `marginals` is (..., values); the distance depends on how many values fall between c and k, so
    values of the domain that nobody used still separate their neighbours by zero mass only.
    """
    cumulative = np.cumsum(marginals, axis=-1)
    # sum_{g=c..k} n_g for c <= k equals cum[k] - cum[c] + n_c.
    between = cumulative[..., None, :] - cumulative[..., :, None] + marginals[..., :, None]
    distance = between - (marginals[..., :, None] + marginals[..., None, :]) / 2
    distance = np.triu(distance)
    distance = distance + np.swapaxes(distance, -1, -2)
    return distance**2


def alpha_from_coincidences(coincidence: np.ndarray) -> np.ndarray:
    """Ordinal alpha = 1 - (n - 1) sum o*delta^2 / sum n_c n_k delta^2, batched over leading axes."""
    marginals = coincidence.sum(axis=-1)
    n = marginals.sum(axis=-1)
    delta = ordinal_distances(marginals)
    observed = (coincidence * delta).sum(axis=(-2, -1))
    expected = (marginals[..., :, None] * marginals[..., None, :] * delta).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - (n - 1) * observed / expected


def krippendorff_alpha_ordinal(values: np.ndarray, units: np.ndarray, value_domain: Sequence[float]) -> float:
    """Krippendorff's alpha (ordinal metric) for ratings `values` of `units`."""
    coincidence = unit_coincidences(unit_value_counts(values, units, value_domain)).sum(axis=0)
    return float(alpha_from_coincidences(coincidence))


def bootstrap_alpha_replicates(per_unit: np.ndarray, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Alpha of `n_boot` samples of whole units drawn with replacement (raters are never resampled)."""
    flat = per_unit.reshape(len(per_unit), -1)
    values = per_unit.shape[1]
    replicates = [
        alpha_from_coincidences((weights @ flat).reshape(-1, values, values))
        for weights in resampling_weights(len(per_unit), n_boot, rng)
    ]
    return np.concatenate(replicates)


def agreement(
    frame: pd.DataFrame,
    *,
    value_domain: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Alpha over explanations (id within condition) rated by several annotators, with a percentile CI."""
    values = frame[VALUE].to_numpy(float)
    units = pd.MultiIndex.from_frame(frame[EXPLANATION_KEYS]).to_numpy()
    counts = unit_value_counts(values, units, value_domain)
    per_unit = unit_coincidences(counts)
    alpha = float(alpha_from_coincidences(per_unit.sum(axis=0)))
    n_multi = int(np.sum(counts.sum(axis=1) > 1))
    ci_low = ci_high = None
    if n_multi >= 2 and np.isfinite(alpha):
        replicates = bootstrap_alpha_replicates(per_unit, n_boot=n_boot, rng=np.random.default_rng(seed))
        replicates = replicates[np.isfinite(replicates)]
        tail = (1 - confidence) / 2 * 100
        ci_low, ci_high = (float(v) for v in np.percentile(replicates, [tail, 100 - tail]))
    return {
        "alpha": alpha if np.isfinite(alpha) else None,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "metric": "ordinal",
        "value_domain": [float(v) for v in value_domain],
        "n_units": len(counts),
        "n_units_pairable": n_multi,
        "n_annotators": int(frame[ANNOTATOR].nunique()),
    }
