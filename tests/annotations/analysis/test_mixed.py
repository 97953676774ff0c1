"""The fast crossed LMM against statsmodels, on singular data, and for interval coverage by simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from annotations.analysis.mixed import fit_crossed_arrays, variance_shares
from annotations.analysis.power import Design, simulate_crossed
from annotations.analysis.results import VarianceSDs


def _simulated(design: Design, variance: VarianceSDs, seed: int, effect: float = 0.3):
    return simulate_crossed(design, effect=effect, variance=variance, rng=np.random.default_rng(seed), intercept=3.0)


def test_matches_statsmodels_crossed_reml_on_1000_ratings():
    data = _simulated(Design(40, 100, 10), VarianceSDs(0.5, 0.3, 0.7), seed=1)
    frame = pd.DataFrame({"y": data.y, "x": data.X[:, 1], "a": data.annotators, "i": data.items, "one": 1})
    reference = sm.MixedLM.from_formula(
        "y ~ x", groups="one", vc_formula={"a": "0 + C(a)", "i": "0 + C(i)"}, re_formula="0", data=frame
    ).fit(reml=True)
    fit = fit_crossed_arrays(data.y, data.X, data.annotators, data.items)

    assert fit.n == 1000
    np.testing.assert_allclose(fit.beta, reference.fe_params.to_numpy(), atol=1e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.beta_covariance)), reference.bse_fe.to_numpy(), atol=1e-3)
    sd_annotator, sd_item = np.sqrt(reference.vcomp)  # vc names sorted: a, i
    assert fit.sd_annotator == pytest.approx(sd_annotator, abs=1e-3)
    assert fit.sd_item == pytest.approx(sd_item, abs=1e-3)
    assert fit.sd_residual == pytest.approx(np.sqrt(reference.scale), abs=1e-3)


def test_absent_item_variance_is_reported_as_a_boundary_fit():
    data = _simulated(Design(30, 60, 5), VarianceSDs(0.6, 0.0, 0.8), seed=4)
    fit = fit_crossed_arrays(data.y, data.X, data.annotators, data.items)
    if fit.sd_item < 1e-4 * fit.sd_residual:
        assert any("boundary" in w for w in fit.warnings)
        assert fit.sd_ci["item"] == (None, None) or fit.sd_ci["item"][0] is None
    assert fit.converged


def test_rank_deficient_design_is_refused():
    data = _simulated(Design(10, 20, 3), VarianceSDs(0.5, 0.3, 0.7), seed=2)
    with pytest.raises(ValueError, match="rank deficient"):
        fit_crossed_arrays(data.y, np.column_stack([data.X, data.X[:, 1]]), data.annotators, data.items)


def test_variance_shares_sum_to_one():
    shares = variance_shares(VarianceSDs(annotator=0.5, item=0.2, residual=0.6))
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["annotator"] == pytest.approx(0.25 / 0.65)


@pytest.mark.slow
def test_intervals_cover_the_truth_in_simulations():
    truth = VarianceSDs(annotator=0.5, item=0.3, residual=0.7)
    effect, intercept = 0.3, 3.0
    covered = {"intercept": 0, "effect": 0, "annotator": 0, "item": 0, "residual": 0}
    datasets = 50
    for seed in range(datasets):
        data = _simulated(Design(60, 120, 6), truth, seed=100 + seed, effect=effect)
        fit = fit_crossed_arrays(data.y, data.X, data.annotators, data.items)
        se = np.sqrt(np.diag(fit.beta_covariance))
        for name, true, estimate, spread in (
            ("intercept", intercept, fit.beta[0], se[0]),
            ("effect", effect, fit.beta[1], se[1]),
        ):
            covered[name] += abs(estimate - true) <= 1.959964 * spread
        for name in ("annotator", "item", "residual"):
            low, high = fit.sd_ci[name]
            covered[name] += low is not None and low <= getattr(truth, name) <= high
    for name, hits in covered.items():
        assert hits / datasets >= 0.9, f"{name}: {hits}/{datasets} intervals cover the truth"
