"""Power of the crossed LMM's condition test by simulation, and the smallest design that reaches a target."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from .blas import single_threaded_blas
from .mixed import fit_crossed_arrays
from .results import VarianceSDs


@dataclass(frozen=True)
class Design:
    """Items are split evenly over conditions; each item is rated by `ratings_per_item` distinct annotators."""

    n_annotators: int
    n_items: int
    ratings_per_item: int
    n_conditions: int = 2

    @property
    def n_ratings(self) -> int:
        return self.n_items * self.ratings_per_item


@dataclass(frozen=True)
class SimulatedData:
    y: np.ndarray
    X: np.ndarray
    annotators: np.ndarray
    items: np.ndarray


def assign_raters(design: Design, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Annotator and item codes per rating: each item gets `ratings_per_item` distinct annotators at random.

    Random rather than cyclic assignment, so that annotators see every condition and the condition effect
    is estimated within annotators, as in the studies this plans for.
    """
    if design.ratings_per_item > design.n_annotators:
        raise ValueError("ratings_per_item cannot exceed n_annotators")
    keys = rng.random((design.n_items, design.n_annotators))
    chosen = np.argpartition(keys, design.ratings_per_item - 1, axis=1)[:, : design.ratings_per_item]
    items = np.repeat(np.arange(design.n_items), design.ratings_per_item)
    return chosen.ravel(), items


def simulate_crossed(
    design: Design,
    *,
    effect: float,
    variance: VarianceSDs,
    rng: np.random.Generator,
    intercept: float = 0.0,
) -> SimulatedData:
    """Ratings = intercept + effect x (condition != reference) + annotator + item + residual, all normal."""
    annotators, items = assign_raters(design, rng)
    condition = items % design.n_conditions
    X = np.column_stack([np.ones(len(items)), *[(condition == c).astype(float) for c in range(1, design.n_conditions)]])
    annotator_effects = rng.normal(0.0, variance.annotator or 0.0, design.n_annotators)
    item_effects = rng.normal(0.0, variance.item or 0.0, design.n_items)
    noise = rng.normal(0.0, variance.residual or 0.0, len(items))
    y = intercept + effect * (condition > 0) + annotator_effects[annotators] + item_effects[items] + noise
    return SimulatedData(y=y, X=X, annotators=annotators, items=items)


def simulate_power(
    design: Design,
    *,
    effect: float,
    variance: VarianceSDs,
    n_sims: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float | int]:
    """Share of simulated studies in which the Wald z test of condition 1 vs the reference rejects."""
    rng = np.random.default_rng(seed)
    critical = stats.norm.ppf(1 - alpha / 2)
    rejections = 0
    with single_threaded_blas():
        for _ in range(n_sims):
            data = simulate_crossed(design, effect=effect, variance=variance, rng=rng)
            fit = fit_crossed_arrays(data.y, data.X, data.annotators, data.items, sd_intervals=False)
            z = fit.beta[1] / math.sqrt(fit.beta_covariance[1, 1])
            rejections += bool(abs(z) > critical)
    power = rejections / n_sims
    return {
        **asdict(design),
        "n_ratings": design.n_ratings,
        "power": power,
        "mc_se": math.sqrt(power * (1 - power) / n_sims),
        "n_sims": n_sims,
    }


def smallest_design(
    *,
    effect: float,
    variance: VarianceSDs,
    annotators: Iterable[int],
    items: Iterable[int],
    ratings_per_item: Iterable[int],
    target: float = 0.8,
    n_sims: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    n_conditions: int = 2,
) -> dict[str, object]:
    """Walk the grid from the fewest ratings (then fewest annotators) up; stop at the first design with power
    >= target. Every design tried is returned so the report can show the curve."""
    grid = [
        Design(a, i, r, n_conditions)
        for a, i, r in itertools.product(annotators, items, ratings_per_item)
        if r <= a and i >= n_conditions
    ]
    grid.sort(key=lambda d: (d.n_ratings, d.n_annotators, d.n_items))
    tried = []
    for design in grid:
        result = simulate_power(design, effect=effect, variance=variance, n_sims=n_sims, alpha=alpha, seed=seed)
        tried.append(result)
        if result["power"] >= target:
            return {"target": target, "effect": effect, "alpha": alpha, "smallest": result, "tried": tried}
    return {"target": target, "effect": effect, "alpha": alpha, "smallest": None, "tried": tried}
