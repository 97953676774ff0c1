"""The crossed CLMM against R's ordinal::clmm on the paper's study, its analytic gradient, and CI coverage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotations.analysis import clmm
from annotations.analysis.clmm import fit_clmm, fit_clmm_arrays
from annotations.analysis.io import conditions_of, construct_frame, load_wide_csv

CONSTRUCTS = ["Completeness", "Contrastiveness", "Plausibility", "Satisfaction", "Understandability"]
REFERENCE = "CF:PosRationales"
TERMS = ["MT:PosRationales", "MT+CF:PosRationales", "MT+CF:RevRationales"]

# R 4.2, ordinal 2022.11-16, clmm defaults (Laplace):
# clmm(factor(<construct>, ordered = TRUE) ~ model + (1|CASE) + (1|rationale_id), data = study.csv),
# model releveled to CF:PosRationales. Columns: effects (TERMS order), SEs, thresholds 1|2..4|5, SD CASE,
# SD rationale_id.
R_CLMM = {
    "Completeness": (
        (0.3617579568, 0.3053033888, 0.6960879478),
        (0.1722757976, 0.1685953216, 0.1761796931),
        (-4.8032896760, -2.2201815929, -1.2693016795, 1.2888202844),
        1.5428713016,
        0.0002994990,
    ),
    "Contrastiveness": (
        (0.1490390220, 0.2133083866, 0.8823746742),
        (0.1709308269, 0.1686072439, 0.1810512174),
        (-3.9367029216, -1.5507924963, -0.6657415304, 1.7177817029),
        2.325471267,
        0.0000098533,
    ),
    "Plausibility": (
        (0.5072482756, 0.4882186175, 0.5118331079),
        (0.1808964107, 0.1783450981, 0.1827461306),
        (-4.5024345422, -2.7217658903, -1.8628350364, 0.8147371716),
        1.5830358109,
        0.3087795497,
    ),
    "Satisfaction": (
        (0.3681924085, 0.3271237642, 0.3750632037),
        (0.1710301342, 0.1684050159, 0.1724305190),
        (-4.2615529702, -2.2523206333, -1.2323475120, 1.2437256593),
        1.552104364,
        0.0,
    ),
    "Understandability": (
        (0.3847743250, 0.1974222202, 0.5569844365),
        (0.2002600266, 0.1965570892, 0.2042056562),
        (-6.4786475333, -4.5912687420, -3.4233999116, 0.3837761889),
        1.7137052892,
        0.5454223056,
    ),
}


@pytest.fixture(scope="module")
def study(data_dir: Path) -> pd.DataFrame:
    return load_wide_csv(
        data_dir / "paper_study" / "study.csv",
        annotator="CASE",
        explanation="rationale_id",
        condition="model",
        constructs=CONSTRUCTS,
    )


@pytest.mark.parametrize("construct", CONSTRUCTS)
def test_matches_ordinal_clmm_on_the_paper_study(study, construct):
    effects, ses, thresholds, sd_case, sd_item = R_CLMM[construct]
    model = fit_clmm(construct_frame(study, construct), conditions=conditions_of(study, REFERENCE), construct=construct)

    assert model.kind == "clmm" and model.name == f"clmm:{construct}" and model.n == 1114
    for term, estimate, se in zip(TERMS, effects, ses, strict=True):
        assert model.coefficient(term).estimate == pytest.approx(estimate, abs=1e-3)
        assert model.coefficient(term).se == pytest.approx(se, abs=1e-3)
    assert [t["between"] for t in model.extra["thresholds"]] == ["1|2", "2|3", "3|4", "4|5"]
    np.testing.assert_allclose([t["estimate"] for t in model.extra["thresholds"]], thresholds, atol=1e-3)
    assert model.variance.annotator == pytest.approx(sd_case, abs=1e-3)
    assert model.variance.item == pytest.approx(sd_item, abs=1e-3)
    assert model.extra["converged"]
    assert (sd_item < 1e-3) == any("boundary" in w for w in model.warnings)


def _simulate(rng: np.random.Generator, *, n_annotators=40, n_items=80, per_item=6, beta=(0.6, -0.4)):
    """Each item rated by `per_item` random annotators; a two-level condition and a normal covariate."""
    items = np.repeat(np.arange(n_items), per_item)
    annotators = np.concatenate([rng.choice(n_annotators, per_item, replace=False) for _ in range(n_items)])
    condition = (np.arange(n_items) % 2)[items].astype(float)
    covariate = rng.normal(size=len(items))
    X = np.column_stack([condition, covariate])
    latent = X @ np.asarray(beta) + rng.normal(0, 0.8, n_annotators)[annotators] + rng.normal(0, 0.5, n_items)[items]
    thresholds = np.array([-2.0, -0.5, 0.7, 2.0])
    y = np.searchsorted(thresholds, latent + rng.logistic(size=len(items)))
    return y, X, annotators, items


def test_analytic_gradient_equals_finite_differences_of_the_laplace_objective():
    y, X, annotators, items = _simulate(np.random.default_rng(3))
    for first, second in ((annotators, items), (items, annotators)):  # either factor eliminated
        problem = clmm._Problem(y, X, first, second, 5)
        phi = np.array([-1.8, -0.4, 0.5, 1.9, 0.4, -0.2, 0.7, 0.3])
        inner = clmm._inner(problem, phi, np.zeros(problem.q_e), np.zeros(problem.q_d))
        analytic = clmm._gradient(problem, phi, inner)
        numeric = []
        for j in range(len(phi)):
            step = np.zeros_like(phi)
            step[j] = 1e-6
            up = clmm._inner(problem, phi + step, inner.u_e, inner.u_d).value
            down = clmm._inner(problem, phi - step, inner.u_e, inner.u_d).value
            numeric.append((up - down) / 2e-6)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-5)


def test_rejects_a_single_category_and_a_constant_design():
    with pytest.raises(ValueError, match="two distinct"):
        fit_clmm_arrays(np.zeros(10, int), np.zeros((10, 0)), np.arange(10) % 3, np.arange(10) % 5)
    y = np.arange(12) % 3
    with pytest.raises(ValueError, match="rank deficient"):
        fit_clmm_arrays(y, np.ones((12, 1)), np.arange(12) % 3, np.arange(12) % 4)


@pytest.mark.slow
def test_true_values_inside_95_percent_intervals_in_at_least_90_percent_of_50_data_sets():
    rng = np.random.default_rng(2026)
    truth = np.array([-2.0, -0.5, 0.7, 2.0, 0.6, -0.4])
    covered = np.zeros(len(truth))
    for _ in range(50):
        y, X, annotators, items = _simulate(rng)
        assert len(np.unique(y)) == 5
        fit = fit_clmm_arrays(y, X, annotators, items)
        estimates = np.concatenate([fit.thresholds, fit.beta])
        ses = np.sqrt(np.diag(fit.covariance)[: len(truth)])
        covered += np.abs(estimates - truth) <= 1.959964 * ses
    assert (covered / 50 >= 0.9).all(), covered
