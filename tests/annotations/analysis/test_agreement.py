"""Krippendorff's ordinal alpha by hand and against the krippendorff package; the bootstrap resamples units."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest

from annotations.analysis.agreement import (
    agreement,
    bootstrap_alpha_replicates,
    krippendorff_alpha_ordinal,
    unit_coincidences,
    unit_value_counts,
)

DOMAIN = [1, 2, 3, 4, 5]


def test_alpha_equals_the_hand_computation():
    """Four units rated twice: u1 {1,1}, u2 {2,3}, u3 {3,3}, u4 {1,3}.

    Each unit has m = 2 values, so each ordered pair adds 1/(m-1) = 1 to the coincidence matrix:
    o11 = 2, o23 = o32 = 1, o33 = 2, o13 = o31 = 1. Marginals n1 = 3, n2 = 1, n3 = 4 (4 and 5 unused), n = 8.
    Ordinal distances delta(c,k) = sum_{g=c..k} n_g - (n_c + n_k)/2:
      delta12 = 4 - 2 = 2 -> 4;  delta13 = 8 - 3.5 = 4.5 -> 20.25;  delta23 = 5 - 2.5 = 2.5 -> 6.25.
    Observed:  sum o * delta^2 = 2 * 20.25 + 2 * 6.25 = 53.
    Expected:  sum n_c n_k delta^2 = 2 * (3*1*4 + 3*4*20.25 + 1*4*6.25) = 2 * 280 = 560.
    alpha = 1 - (n - 1) * 53 / 560 = 1 - 371/560 = 189/560 = 0.3375.
    """
    units = np.array(["u1", "u1", "u2", "u2", "u3", "u3", "u4", "u4"])
    values = np.array([1, 1, 2, 3, 3, 3, 1, 3], dtype=float)
    assert krippendorff_alpha_ordinal(values, units, DOMAIN) == pytest.approx(189 / 560)

    # The same data as a coders x units reliability matrix for the reference implementation.
    reliability = np.array([[1, 2, 3, 1], [1, 3, 3, 3]], dtype=float)
    reference = krippendorff.alpha(reliability_data=reliability, level_of_measurement="ordinal", value_domain=DOMAIN)
    assert reference == pytest.approx(189 / 560)


def test_alpha_matches_the_package_with_missing_ratings():
    rng = np.random.default_rng(3)
    reliability = rng.integers(1, 6, size=(4, 25)).astype(float)
    reliability[:, :15] = np.clip(reliability[0, :15] + rng.integers(-1, 2, size=(4, 15)), 1, 5)
    reliability[rng.random(reliability.shape) < 0.25] = np.nan
    coders, units = np.nonzero(~np.isnan(reliability))
    ours = krippendorff_alpha_ordinal(reliability[coders, units], units, DOMAIN)
    reference = krippendorff.alpha(reliability_data=reliability, level_of_measurement="ordinal", value_domain=DOMAIN)
    assert ours == pytest.approx(reference, abs=1e-12)


def test_bootstrap_replicates_are_alphas_of_resampled_units():
    rng = np.random.default_rng(5)
    reliability = np.clip(rng.integers(2, 5, size=30) + rng.integers(-1, 2, size=(3, 30)), 1, 5).astype(float)
    coders, units = np.nonzero(~np.isnan(reliability))
    per_unit = unit_coincidences(unit_value_counts(reliability[coders, units], units, DOMAIN))
    replicates = bootstrap_alpha_replicates(per_unit, n_boot=4, rng=np.random.default_rng(11))

    # Replay the draws: replicate r is alpha of the reliability matrix with columns (units) drawn, raters kept.
    draws = np.random.default_rng(11).integers(0, 30, size=(4, 30))
    for replicate, drawn_units in zip(replicates, draws, strict=True):
        expected = krippendorff.alpha(
            reliability_data=reliability[:, drawn_units], level_of_measurement="ordinal", value_domain=DOMAIN
        )
        assert replicate == pytest.approx(expected, abs=1e-12)


def test_agreement_uses_explanations_within_condition_as_units():
    frame = pd.DataFrame(
        {
            "annotator_id": ["a", "b", "a", "b", "a", "b"],
            "explanation_id": [1, 1, 1, 1, 2, 2],
            "condition": ["x", "x", "y", "y", "x", "x"],
            "value": [4.0, 4.0, 2.0, 2.0, 5.0, 4.0],
        }
    )
    result = agreement(frame, value_domain=DOMAIN, n_boot=50, seed=0)
    assert result["n_units"] == 3
    assert result["n_units_pairable"] == 3
    assert result["ci_low"] <= result["alpha"] <= result["ci_high"] or result["alpha"] == result["ci_high"]


def test_alpha_is_undefined_without_repeated_ratings():
    frame = pd.DataFrame(
        {"annotator_id": ["a", "b"], "explanation_id": [1, 2], "condition": ["x", "x"], "value": [3.0, 4.0]}
    )
    result = agreement(frame, value_domain=DOMAIN, n_boot=10)
    assert result["alpha"] is None and result["ci_low"] is None
