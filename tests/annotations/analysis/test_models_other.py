"""Ordinal model with two-way clustered SEs, rank tests with post-hoc, contrasts, and power."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.miscmodels.ordinal_model import OrderedModel

from annotations.analysis.mixed import fit_crossed_lmm
from annotations.analysis.nonparametric import (
    annotator_condition_means,
    kruskal_with_dunn,
    pairwise_contrasts,
    rank_test,
)
from annotations.analysis.ordinal import cluster_meat, fit_ordinal, two_way_cluster_covariance
from annotations.analysis.power import Design, assign_raters, simulate_power, smallest_design
from annotations.analysis.results import VarianceSDs

CONDITIONS = ["base", "better", "best"]


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    """Crossed 1-5 ratings: 30 annotators x 45 explanations, 8 ratings each, condition shifts of 0.4 and 0.8."""
    rng = np.random.default_rng(7)
    annotators, items = assign_raters(Design(30, 45, 8, n_conditions=3), rng)
    condition = items % 3
    latent = (
        3
        + 0.4 * condition
        + rng.normal(0, 0.5, 30)[annotators]
        + rng.normal(0, 0.3, 45)[items]
        + rng.normal(0, 0.7, len(items))
    )
    return pd.DataFrame(
        {
            "annotator_id": annotators,
            "item_id": items,
            "explanation_id": items,
            "condition": np.array(CONDITIONS)[condition],
            "construct": "C",
            "value": np.clip(np.round(latent), 1, 5),
            "length": rng.normal(300, 80, len(items)),
        }
    )


def test_ordinal_estimates_equal_statsmodels_without_rescaling(ratings):
    model = fit_ordinal(ratings, conditions=CONDITIONS, covariates=["length"], construct="C")
    X = np.column_stack([(ratings["condition"] == c).to_numpy(float) for c in CONDITIONS[1:]] + [ratings["length"]])
    raw = OrderedModel(pd.Categorical(ratings["value"], ordered=True).codes, X, distr="logit").fit(
        method="bfgs", disp=False, maxiter=5000, gtol=1e-8
    )
    estimates = [c.estimate for c in model.coefficients]
    np.testing.assert_allclose(estimates, raw.params[:3], rtol=1e-3, atol=1e-5)
    cutpoints = [t["estimate"] for t in model.extra["thresholds"]]
    np.testing.assert_allclose(cutpoints, raw.model.transform_threshold_params(raw.params)[1:-1], atol=1e-3)
    assert model.coefficient("best").estimate > model.coefficient("better").estimate > 0
    assert model.coefficient("best").p < 0.001


def test_two_way_cluster_covariance_is_the_inclusion_exclusion_sum():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(40, 2))
    first, second = rng.integers(0, 5, 40), rng.integers(0, 6, 40)
    bread = np.eye(2)
    covariance, _ = two_way_cluster_covariance(bread, scores, first, second)
    pairs = first * 10 + second
    expected = cluster_meat(scores, first) + cluster_meat(scores, second) - cluster_meat(scores, pairs)
    eigenvalues = np.linalg.eigvalsh(expected)
    if eigenvalues.min() >= 0:
        np.testing.assert_allclose(covariance, expected)
    # With singleton clusters the meat is the G/(G-1)-scaled outer product of the scores (HC-type).
    one_per_row = cluster_meat(scores, np.arange(40))
    np.testing.assert_allclose(one_per_row, 40 / 39 * scores.T @ scores)


def test_friedman_matches_scipy_and_posthoc_is_holm_adjusted(ratings):
    result = rank_test(ratings, CONDITIONS)
    means = annotator_condition_means(ratings, CONDITIONS).dropna()
    assert result["test"] == "friedman"
    assert result["statistic"] == pytest.approx(stats.friedmanchisquare(*means.to_numpy().T).statistic)
    pairs = result["posthoc"]["pairs"]
    assert len(pairs) == 3
    assert all(p["p_holm"] >= p["p"] for p in pairs)
    assert min(pairs, key=lambda p: p["p"])["p_holm"] == pytest.approx(3 * min(p["p"] for p in pairs))


def test_kruskal_fallback_and_dunn_without_ties():
    means = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan], "b": [4.0, 5.0, 6.0, 7.0]})
    result = kruskal_with_dunn(means)
    assert result["test"] == "kruskal"
    # Dunn: mean ranks 2 and 5.5 of N = 7; SE = sqrt(7*8/12 * (1/3 + 1/4)).
    z = (5.5 - 2.0) / np.sqrt(7 * 8 / 12 * (1 / 3 + 1 / 4))
    assert result["posthoc"]["pairs"][0]["z"] == pytest.approx(z)


def test_pairwise_contrasts_of_the_mixed_model(ratings):
    model = fit_crossed_lmm(ratings, conditions=CONDITIONS, construct="C")
    contrasts = pairwise_contrasts(model, CONDITIONS)["pairs"]
    by_pair = {(row["a"], row["b"]): row for row in contrasts}
    best = model.coefficient("best")
    assert by_pair["base", "best"]["estimate"] == pytest.approx(best.estimate)
    assert by_pair["base", "best"]["se"] == pytest.approx(best.se)
    difference = best.estimate - model.coefficient("better").estimate
    assert by_pair["better", "best"]["estimate"] == pytest.approx(difference)
    total_sd = np.sqrt(model.variance.annotator**2 + model.variance.item**2 + model.variance.residual**2)
    assert by_pair["base", "best"]["cohens_d"] == pytest.approx(best.estimate / total_sd)


def test_power_is_near_alpha_without_effect_and_grows_with_it():
    variance = VarianceSDs(0.5, 0.2, 0.6)
    null = simulate_power(Design(20, 40, 3), effect=0.0, variance=variance, n_sims=60, seed=1)
    assert null["power"] <= 0.15
    strong = simulate_power(Design(20, 40, 3), effect=0.8, variance=variance, n_sims=30, seed=1)
    assert strong["power"] >= 0.9


def test_smallest_design_is_the_first_reaching_the_target():
    result = smallest_design(
        effect=0.6,
        variance=VarianceSDs(0.5, 0.2, 0.6),
        annotators=[20],
        items=[10, 40],
        ratings_per_item=[2, 4],
        n_sims=30,
        seed=2,
    )
    tried = result["tried"]
    assert [t["n_ratings"] for t in tried] == sorted(t["n_ratings"] for t in tried)
    assert all(t["power"] < 0.8 for t in tried[:-1])
    assert result["smallest"] is None or result["smallest"]["power"] >= 0.8


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    from annotations.analysis.nonparametric import holm

    p_values = [0.01, 0.04, 0.03, 0.2, 0.001]
    np.testing.assert_allclose(holm(p_values), multipletests(p_values, method="holm")[1])


def test_two_conditions_rated_by_the_same_annotators_use_wilcoxon():
    """Friedman needs three conditions; with two, the blocked test is the signed-rank test."""
    import pandas as pd

    from annotations.analysis.nonparametric import rank_test

    rows = []
    for annotator in range(8):
        for item in range(3):
            for condition, shift in (("A", 0), ("B", 1)):
                rows.append(
                    {
                        "annotator_id": annotator,
                        "item_id": item,
                        "explanation_id": f"{condition}{item}",
                        "condition": condition,
                        "value": 2 + shift + (annotator + item) % 2,
                    }
                )
    result = rank_test(pd.DataFrame(rows), ["A", "B"])
    assert result["test"] == "wilcoxon"
    assert result["n_blocks"] == 8 and result["p"] < 0.05
