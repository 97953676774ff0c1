"""Result records shared by the models (coefficients, variance components) and their JSON form."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Coefficient:
    """One fixed-effect estimate; `term` is a condition label, a covariate name or `Intercept`."""

    term: str
    estimate: float
    se: float | None
    p: float | None
    ci_low: float | None
    ci_high: float | None
    statistic: float | None = None
    # Models with t tests on estimated df (the LMM's Satterthwaite df) give them here, and the Wald z
    # p-value beside; None elsewhere.
    df: float | None = None
    p_wald: float | None = None


@dataclass(frozen=True)
class VarianceSDs:
    """Standard deviations of the random effects and residual; None where a model has no such part."""

    annotator: float | None = None
    item: float | None = None
    residual: float | None = None


@dataclass
class ModelResult:
    """A fitted model in the shape report.json stores it."""

    name: str
    kind: str
    construct: str
    formula: str
    reference: str
    n: int
    coefficients: list[Coefficient]
    variance: VarianceSDs = field(default_factory=VarianceSDs)
    warnings: list[str] = field(default_factory=list)
    inference: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Covariance of the coefficient estimates (in `coefficients` order), kept for contrasts; not serialised.
    covariance: np.ndarray | None = field(default=None, repr=False, compare=False)

    def coefficient(self, term: str) -> Coefficient:
        """The coefficient named `term` (KeyError if absent)."""
        for coef in self.coefficients:
            if coef.term == term:
                return coef
        raise KeyError(term)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("covariance")
        out.update(out.pop("extra"))
        return out


def wald_coefficients(
    terms: list[str],
    estimates: np.ndarray,
    covariance: np.ndarray,
    *,
    df: float | None = None,
    confidence: float = CONFIDENCE,
) -> list[Coefficient]:
    """Wald tests and intervals: normal reference when `df` is None, Student t with `df` otherwise."""
    ses = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    reference = stats.norm if df is None else stats.t(df)
    critical = reference.ppf(0.5 + confidence / 2)
    out = []
    for term, estimate, se in zip(terms, estimates, ses, strict=True):
        statistic = estimate / se if se > 0 else math.nan
        p = 2 * reference.sf(abs(statistic)) if se > 0 else math.nan
        out.append(
            Coefficient(
                term=term,
                estimate=float(estimate),
                se=float(se),
                p=float(p),
                ci_low=float(estimate - critical * se),
                ci_high=float(estimate + critical * se),
                statistic=float(statistic),
            )
        )
    return out


def satterthwaite_coefficients(
    terms: list[str],
    estimates: np.ndarray,
    covariance: np.ndarray,
    dfs: np.ndarray | None,
    *,
    confidence: float = CONFIDENCE,
) -> list[Coefficient]:
    """t tests and intervals with one df per coefficient, the Wald z p-value kept beside; Wald alone where a
    df is missing or not finite."""
    wald = wald_coefficients(terms, estimates, covariance, confidence=confidence)
    if dfs is None:
        return wald
    out = []
    for coef, df in zip(wald, dfs, strict=True):
        if not np.isfinite(df) or df <= 0 or coef.se is None or not coef.se > 0:
            out.append(replace(coef, p_wald=coef.p))
            continue
        reference = stats.t(float(df))
        critical = reference.ppf(0.5 + confidence / 2)
        out.append(
            replace(
                coef,
                p=float(2 * reference.sf(abs(coef.statistic))),
                ci_low=coef.estimate - critical * coef.se,
                ci_high=coef.estimate + critical * coef.se,
                df=float(df),
                p_wald=coef.p,
            )
        )
    return out


def design_matrix(
    frame: pd.DataFrame,
    conditions: list[str],
    covariates: list[str],
    *,
    condition_column: str = "condition",
) -> tuple[np.ndarray, list[str]]:
    """Intercept, treatment-coded conditions (first level is the reference) and covariates.

    Numeric covariates enter as they are; text covariates are dummy-coded against their most common
    level and named `column[level]`.
    """
    columns = [np.ones(len(frame))]
    terms = ["Intercept"]
    labels = frame[condition_column].astype(str).to_numpy()
    for level in conditions[1:]:
        columns.append((labels == level).astype(float))
        terms.append(level)
    for name in covariates:
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series):
            columns.append(series.to_numpy(dtype=float))
            terms.append(name)
            continue
        counts = series.astype(str).value_counts()
        baseline = counts.index[0]
        for level in sorted(counts.index):
            if level != baseline:
                columns.append((series.astype(str) == level).to_numpy(dtype=float))
                terms.append(f"{name}[{level}]")
    return np.column_stack(columns), terms


def formula_text(response: str, condition: str, covariates: list[str], random: str = "") -> str:
    """The model written in R/lme4 notation for the report."""
    rhs = " + ".join([condition, *covariates])
    return f"{response} ~ {rhs}{random}"
