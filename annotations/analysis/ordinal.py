"""Cumulative-logit (proportional odds) model with standard errors clustered two ways, by annotator and item."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.miscmodels.ordinal_model import OrderedModel
from statsmodels.tools.numdiff import approx_fprime

from .io import ANNOTATOR, CONDITION, ITEM, VALUE
from .results import CONFIDENCE, ModelResult, VarianceSDs, design_matrix, formula_text, wald_coefficients

INFERENCE_NOTE = (
    "Wald z tests; sandwich covariance clustered by annotator and by item "
    "(Cameron, Gelbach & Miller 2011: V_annotator + V_item - V_annotator*item, each with G/(G-1)), "
    "built from per-rating score contributions."
)


def cluster_meat(scores: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Sum over clusters of (summed scores)(summed scores)', scaled by G/(G-1) for few clusters."""
    codes, _ = pd.factorize(clusters)
    n_clusters = int(codes.max()) + 1
    summed = np.zeros((n_clusters, scores.shape[1]))
    np.add.at(summed, codes, scores)
    return n_clusters / (n_clusters - 1) * summed.T @ summed


def two_way_cluster_covariance(
    bread: np.ndarray, scores: np.ndarray, first: np.ndarray, second: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """V_first + V_second - V_intersection; negative eigenvalues (possible in small samples) clipped to 0."""
    pairs = pd.MultiIndex.from_arrays([first, second]).to_numpy()
    meat = cluster_meat(scores, first) + cluster_meat(scores, second) - cluster_meat(scores, pairs)
    covariance = bread @ meat @ bread
    covariance = (covariance + covariance.T) / 2
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    if eigenvalues.min() >= 0:
        return covariance, []
    clipped = (eigenvectors * np.clip(eigenvalues, 0, None)) @ eigenvectors.T
    return clipped, ["two-way cluster covariance was not positive semi-definite; negative eigenvalues clipped"]


def fit_ordinal(
    frame: pd.DataFrame,
    *,
    conditions: Sequence[str],
    covariates: Sequence[str] = (),
    construct: str = "",
    confidence: float = CONFIDENCE,
) -> ModelResult:
    """`construct ~ condition + covariates` as a cumulative logit; positive coefficients mean higher ratings."""
    used = frame.dropna(subset=[VALUE, *covariates])
    X, terms = design_matrix(used, list(conditions), list(covariates))
    X, terms = X[:, 1:], terms[1:]  # the thresholds take the intercept's place
    # Centre and scale covariates so BFGS sees a well-conditioned problem; undone on the estimates below.
    centre = np.where(np.arange(X.shape[1]) >= len(conditions) - 1, X.mean(axis=0), 0.0)
    spread = np.where(np.arange(X.shape[1]) >= len(conditions) - 1, X.std(axis=0), 1.0)
    spread[spread == 0] = 1.0
    scaled = (X - centre) / spread
    response = pd.Categorical(used[VALUE].to_numpy(), ordered=True)
    model = OrderedModel(np.asarray(response.codes), scaled, distr="logit")
    fit = model.fit(method="bfgs", disp=False, maxiter=2000)
    warnings = [] if fit.mle_retvals.get("converged", True) else ["ordinal model: BFGS did not converge"]

    params = np.asarray(fit.params)
    scores = approx_fprime(params, model.loglikeobs, centered=True)
    bread = np.asarray(fit.cov_params())  # inverse of the observed information
    covariance, notes = two_way_cluster_covariance(bread, scores, used[ANNOTATOR].to_numpy(), used[ITEM].to_numpy())
    warnings += notes

    k = X.shape[1]
    unscale = 1.0 / spread
    estimates = params[:k] * unscale
    beta_covariance = covariance[:k, :k] * np.outer(unscale, unscale)
    cutpoints = model.transform_threshold_params(params)[1:-1] + centre @ estimates
    levels = [_format_level(v) for v in response.categories]
    return ModelResult(
        name=f"ordinal:{construct}",
        kind="ordinal",
        construct=construct,
        formula=formula_text(construct, CONDITION, list(covariates)),
        reference=conditions[0],
        n=len(used),
        coefficients=wald_coefficients(terms, estimates, beta_covariance, confidence=confidence),
        variance=VarianceSDs(),
        warnings=warnings,
        inference=INFERENCE_NOTE,
        extra={
            "link": "logit",
            "thresholds": [
                {"between": f"{levels[j]}|{levels[j + 1]}", "estimate": float(c)} for j, c in enumerate(cutpoints)
            ],
            "n_annotators": int(used[ANNOTATOR].nunique()),
            "n_items": int(used[ITEM].nunique()),
        },
        covariance=beta_covariance,
    )


def _format_level(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
