"""The paper's published explainability numbers and lme4's crossed fit, reproduced from study.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from annotations.analysis.io import QUALITY, conditions_of, construct_frame, load_wide_csv
from annotations.analysis.mixed import fit_crossed_lmm
from annotations.analysis.paper import fit_paper_ols

CONSTRUCTS = ["Completeness", "Contrastiveness", "Plausibility", "Satisfaction", "Understandability"]
REFERENCE = "CF:PosRationales"


@pytest.fixture(scope="module")
def study(data_dir: Path) -> pd.DataFrame:
    return load_wide_csv(
        data_dir / "paper_study" / "study.csv",
        annotator="CASE",
        explanation="rationale_id",
        condition="model",
        constructs=CONSTRUCTS,
    )


@pytest.fixture(scope="module")
def quality(study: pd.DataFrame) -> pd.DataFrame:
    return construct_frame(study, QUALITY, CONSTRUCTS)


def test_quality_is_one_row_per_judgement(study, quality):
    assert len(quality) == 1114
    assert quality["value"].between(1, 5).all()


def test_paper_ols_after_iqr_trimming(study, quality):
    model = fit_paper_ols(quality, conditions=conditions_of(study, REFERENCE), covariates=["rationale_length"])
    assert model.extra["n_outliers_dropped"] == 17
    revised = model.coefficient("MT+CF:RevRationales")
    assert round(revised.estimate, 3) == 0.285
    assert round(revised.statistic, 2) == 3.97
    assert revised.p < 0.001
    assert round(model.coefficient("MT:PosRationales").estimate, 3) == 0.139
    assert round(model.coefficient("MT+CF:PosRationales").estimate, 3) == 0.110


def test_crossed_lmm_matches_lme4(study, quality):
    # lme4 1.1: lmer(Quality ~ model + rationale_length + (1|CASE) + (1|rationale_id), REML = TRUE)
    model = fit_crossed_lmm(
        quality, conditions=conditions_of(study, REFERENCE), covariates=["rationale_length"], construct=QUALITY
    )
    expected = {
        "MT:PosRationales": (0.1306, 0.0520),
        "MT+CF:PosRationales": (0.1069, 0.0509),
        "MT+CF:RevRationales": (0.2517, 0.0596),
    }
    for term, (estimate, se) in expected.items():
        coefficient = model.coefficient(term)
        assert coefficient.estimate == pytest.approx(estimate, abs=1e-3)
        assert coefficient.se == pytest.approx(se, abs=1e-3)
    assert model.coefficient("rationale_length").estimate == pytest.approx(-0.000234, abs=1e-5)
    assert model.variance.annotator == pytest.approx(0.4947, abs=1e-3)
    assert model.variance.item == pytest.approx(0.1724, abs=1e-3)
    assert model.variance.residual == pytest.approx(0.5943, abs=1e-3)
    assert model.warnings == []


def test_crossed_lmm_satterthwaite_df_match_lmertest(study, quality):
    # lmerTest 3.1 on the same lmer fit: summary(fit) df and t (Satterthwaite).
    model = fit_crossed_lmm(
        quality, conditions=conditions_of(study, REFERENCE), covariates=["rationale_length"], construct=QUALITY
    )
    expected = {
        "MT:PosRationales": (768.06, 2.512, 0.01221),
        "MT+CF:PosRationales": (753.06, 2.099, 0.03612),
        "MT+CF:RevRationales": (844.20, 4.220, 2.702e-5),
        "rationale_length": (1018.65, -1.293, 0.1962),
    }
    for term, (df, t, p) in expected.items():
        coefficient = model.coefficient(term)
        assert coefficient.df == pytest.approx(df, abs=0.01)
        assert coefficient.statistic == pytest.approx(t, abs=1e-3)
        assert coefficient.p == pytest.approx(p, rel=1e-3)
        assert coefficient.p_wald < coefficient.p  # the normal reference is the more liberal one
    # The intercept's df moves with the optimiser's last digits: lmerTest gives 482.71 after lme4's default
    # bobyqa and 482.69 after Nelder-Mead with tight tolerances; ours is at a tighter optimum still.
    assert model.coefficient("Intercept").df == pytest.approx(482.69, abs=0.05)


def test_controls_enter_the_paper_model_as_dummies(study, quality):
    model = fit_paper_ols(
        quality, conditions=conditions_of(study, REFERENCE), covariates=["rationale_length"], controls=["gender"]
    )
    assert any(c.term.startswith("gender[") for c in model.coefficients)
    assert model.coefficient("MT+CF:RevRationales").p < 0.001
