"""The paper's explainability model: OLS of Quality on condition and length after per-condition IQR trimming."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm

from .io import CONDITION, VALUE
from .results import CONFIDENCE, ModelResult, VarianceSDs, design_matrix, formula_text, wald_coefficients

IQR_FACTOR = 1.5


def iqr_outlier_mask(frame: pd.DataFrame, *, column: str = VALUE, by: str = CONDITION) -> pd.Series:
    """True for rows outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR] of `column` within their `by` group.

    Quartiles use linear interpolation (numpy's default, pandas' quantile default), as the paper did.
    """

    def outside(values: pd.Series) -> pd.Series:
        q1, q3 = np.percentile(values.to_numpy(float), [25, 75])
        spread = IQR_FACTOR * (q3 - q1)
        return (values < q1 - spread) | (values > q3 + spread)

    return frame.groupby(by, group_keys=False, observed=True)[column].apply(outside).reindex(frame.index)


def fit_paper_ols(
    frame: pd.DataFrame,
    *,
    conditions: Sequence[str],
    covariates: Sequence[str] = ("rationale_length",),
    controls: Sequence[str] = (),
    construct: str = "Quality",
    drop_outliers: bool = True,
    confidence: float = CONFIDENCE,
) -> ModelResult:
    """`construct ~ condition + covariates (+ controls)` by OLS with classical SEs and t tests.

    `frame` holds one row per judgement with the score in `value` (e.g. the Quality composite);
    `controls` are extra (e.g. demographic) columns, text ones dummy-coded.
    """
    regressors = [*covariates, *controls]
    used = frame.dropna(subset=[VALUE, *regressors])
    outliers = iqr_outlier_mask(used) if drop_outliers else pd.Series(False, index=used.index)
    kept = used[~outliers]
    X, terms = design_matrix(kept, list(conditions), regressors)
    fit = sm.OLS(kept[VALUE].to_numpy(float), X).fit()
    coefficients = wald_coefficients(terms, fit.params, fit.cov_params(), df=float(fit.df_resid), confidence=confidence)
    warnings = []
    if fit.condition_number > 1e10:
        warnings.append(f"design is ill-conditioned (condition number {fit.condition_number:.3g})")
    return ModelResult(
        name=f"paper_ols:{construct}",
        kind="ols",
        construct=construct,
        formula=formula_text(construct, CONDITION, regressors),
        reference=conditions[0],
        n=int(fit.nobs),
        coefficients=coefficients,
        variance=VarianceSDs(residual=float(np.sqrt(fit.scale))),
        warnings=warnings,
        inference=f"classical OLS standard errors, t tests with {int(fit.df_resid)} df",
        extra={
            "n_outliers_dropped": int(outliers.sum()),
            "outlier_rule": f"{construct} outside {IQR_FACTOR} x IQR per condition (linear-interpolated quartiles)",
            "r_squared": float(fit.rsquared),
        },
        covariance=np.asarray(fit.cov_params()),
    )
