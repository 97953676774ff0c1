"""Fast crossed linear mixed model `y ~ X + (1|annotator) + (1|item)` fitted by profiled REML.

The method follows lme4 (Bates et al. 2015, "Fitting Linear Mixed-Effects Models Using lme4", sect. 3):
random effects b = sigma * Lambda(theta) u with spherical u, theta = (sd_annotator, sd_item) / sigma, and
the REML deviance profiled over beta and sigma is minimised over theta >= 0 only.

What makes it fast is the structure of two crossed intercept factors. With Lambda = diag(t_e I, t_d I),

    A(theta) = Lambda Z'Z Lambda + I = [[diag(t_e^2 n_e + 1), t_e t_d N], [t_e t_d N', diag(t_d^2 n_d + 1)]]

where n_e, n_d are the level counts and N the sparse crosstab of the two factors. Eliminating the factor
with more levels ("e") leaves the Schur complement S = diag(t_d^2 n_d + 1) - t_e^2 t_d^2 N' D^-1 N, a dense
matrix only as large as the smaller factor ("d"); one Cholesky of S per deviance evaluation gives
log|A| and every solve. All other sufficient statistics (Z'X, Z'y, X'X, ...) are computed once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, optimize, sparse, stats

from .blas import single_threaded_blas
from .io import ANNOTATOR, CONDITION, ITEM, VALUE
from .results import (
    CONFIDENCE,
    ModelResult,
    VarianceSDs,
    design_matrix,
    formula_text,
    satterthwaite_coefficients,
)

# A relative SD below this is reported as a boundary (singular) fit, as lme4's isSingular() does (tol 1e-4).
BOUNDARY_TOLERANCE = 1e-4
# Upper bound on a relative SD (sd / residual sd). Far beyond any rating data, it keeps quasi-Newton trial
# steps out of the region where X'X - X'Z A^-1 Z'X cancels to nothing in floating point.
THETA_MAX = 1e3
# Below this many cells a dense crosstab beats scipy.sparse, whose per-call overhead dominates small fits.
DENSE_CROSSTAB_CELLS = 200_000
# Beyond this many co-occurring level pairs (memory ~ 24 bytes each) the Gram matrix is formed by a sparse
# matrix product at every evaluation instead.
MAX_LEVEL_PAIRS = 20_000_000
# Up to this many ratings a deviance evaluation is cheap enough that Nelder-Mead beats COBYQA.
CHEAP_DESIGN_RATINGS = 10_000
# What the optimiser sees where a trial step makes a factorisation fail: worse than any real deviance.
FAILED_DEVIANCE = 1e15
INFERENCE_NOTE = (
    "t tests and intervals with Satterthwaite df per coefficient (as lmerTest); the Wald z p-value beside "
    "(p_wald); covariance of fixed effects conditional on the REML variance estimates, as lme4's vcov()."
)
# Step of the central differences (log SD scale) behind the Satterthwaite df.
SATTERTHWAITE_STEP = 1e-4


class _WeightedGram:
    """N' diag(w) N for the fixed crosstab N and a new w at every deviance evaluation.

    Every pair of dense-factor levels sharing a level of the eliminated factor contributes N[e,i] N[e,j] w[e]
    to cell (i, j). Listing those contributions once turns each product into one sparse mat-vec, which is
    several times faster than a sparse matrix-matrix product; designs with too many pairs fall back to it.
    """

    def __init__(self, crosstab: np.ndarray | sparse.csr_array):
        self.crosstab = crosstab
        self.q_d = crosstab.shape[1]
        self.contributions: sparse.csr_array | None = None
        if isinstance(crosstab, np.ndarray):
            return
        lengths = np.diff(crosstab.indptr)
        squares = lengths.astype(np.int64) ** 2
        if squares.sum() > 2 * MAX_LEVEL_PAIRS:
            return
        rows = np.repeat(np.arange(len(lengths)), squares)
        offsets = np.arange(squares.sum()) - np.repeat(np.cumsum(squares) - squares, squares)
        first, second = np.divmod(offsets, lengths[rows])
        upper = first <= second  # column indices within a canonical CSR row are sorted: i <= j
        rows, first, second = rows[upper], first[upper], second[upper]
        start = crosstab.indptr[rows]
        i, j = crosstab.indices[start + first], crosstab.indices[start + second]
        values = crosstab.data[start + first] * crosstab.data[start + second]
        # One row per cell of the q_d x q_d result; COO -> CSR conversion is a linear counting sort, and
        # (cell, e) pairs are unique because a canonical CSR row holds each column once.
        cells = i.astype(np.int64) * self.q_d + j
        self.contributions = sparse.csr_array((values, (cells, rows)), shape=(self.q_d**2, crosstab.shape[0]))

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        crosstab = self.crosstab
        if isinstance(crosstab, np.ndarray):
            return crosstab.T @ (crosstab * weights[:, None])
        if self.contributions is None:
            return (crosstab.T @ crosstab.multiply(weights[:, None]).tocsr()).toarray()
        upper = (self.contributions @ weights).reshape(self.q_d, self.q_d)
        gram = upper + upper.T
        gram[np.diag_indices_from(gram)] -= np.diag(upper)
        return gram


@dataclass(frozen=True)
class _CrossedSystem:
    """Sufficient statistics of one crossed design; `e` is the eliminated factor, `d` the dense one."""

    y: np.ndarray
    X: np.ndarray
    codes_e: np.ndarray
    codes_d: np.ndarray
    counts_e: np.ndarray
    counts_d: np.ndarray
    crosstab: np.ndarray | sparse.csr_array  # levels of e x levels of d
    gram: _WeightedGram
    zty_e: np.ndarray  # columns: [Z'y, Z'X]
    zty_d: np.ndarray
    xtx: np.ndarray
    xty: np.ndarray
    annotator_is_e: bool

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]


@dataclass(frozen=True)
class _Evaluation:
    """Everything the profiled REML deviance produces at one theta."""

    deviance: float
    beta: np.ndarray
    penalised_rss: float
    logdet_a: float
    logdet_rx: float
    rx_cholesky: np.ndarray


@dataclass
class CrossedFit:
    """Estimates of a crossed LMM; SDs are on the response scale, theta is (annotator, item) relative SDs."""

    beta: np.ndarray
    beta_covariance: np.ndarray
    sd_annotator: float
    sd_item: float
    sd_residual: float
    theta: tuple[float, float]
    reml_deviance: float
    n: int
    n_annotators: int
    n_items: int
    converged: bool
    evaluations: int
    warnings: list[str] = field(default_factory=list)
    sd_ci: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    df: np.ndarray | None = None  # Satterthwaite df per fixed effect, when asked for


def _build_system(y: np.ndarray, X: np.ndarray, annotators: np.ndarray, items: np.ndarray) -> _CrossedSystem:
    n_annotators, n_items = int(annotators.max()) + 1, int(items.max()) + 1
    annotator_is_e = n_annotators >= n_items
    codes_e, codes_d = (annotators, items) if annotator_is_e else (items, annotators)
    q_e, q_d = (n_annotators, n_items) if annotator_is_e else (n_items, n_annotators)
    crosstab = sparse.csr_array((np.ones(len(y)), (codes_e, codes_d)), shape=(q_e, q_d))
    crosstab.sum_duplicates()
    if q_e * q_d <= DENSE_CROSSTAB_CELLS:
        crosstab = crosstab.toarray()
    yx = np.column_stack([y, X])
    return _CrossedSystem(
        y=y,
        X=X,
        codes_e=codes_e,
        codes_d=codes_d,
        counts_e=np.bincount(codes_e, minlength=q_e).astype(float),
        counts_d=np.bincount(codes_d, minlength=q_d).astype(float),
        crosstab=crosstab,
        gram=_WeightedGram(crosstab),
        zty_e=_group_sums(yx, codes_e, q_e),
        zty_d=_group_sums(yx, codes_d, q_d),
        xtx=X.T @ X,
        xty=X.T @ y,
        annotator_is_e=annotator_is_e,
    )


def _group_sums(values: np.ndarray, codes: np.ndarray, levels: int) -> np.ndarray:
    """Column sums of `values` per level (Z'V for an indicator matrix Z)."""
    return np.column_stack([np.bincount(codes, weights=col, minlength=levels) for col in values.T])


def _evaluate(system: _CrossedSystem, t_e: float, t_d: float) -> _Evaluation:
    """Profiled REML deviance at relative SDs (t_e, t_d) of the eliminated and the dense factor."""
    n, p = system.n, system.p
    diag_e = t_e**2 * system.counts_e + 1.0
    inv_e = 1.0 / diag_e
    coupling = t_e * t_d
    crosstab = system.crosstab
    # Schur complement on the dense factor: S = A_dd - A_de A_ee^-1 A_ed.
    schur = -(coupling**2) * system.gram(inv_e)
    schur[np.diag_indices_from(schur)] += t_d**2 * system.counts_d + 1.0
    schur_factor = linalg.cho_factor(schur, lower=True, check_finite=False)

    # Solve A C = Lambda Z'[y X] by block elimination.
    rhs_e = t_e * system.zty_e
    rhs_d = t_d * system.zty_d
    solved_d = linalg.cho_solve(schur_factor, rhs_d - coupling * (crosstab.T @ (rhs_e * inv_e[:, None])))
    solved_e = (rhs_e - coupling * (crosstab @ solved_d)) * inv_e[:, None]

    # Fixed effects: R_X'R_X = X'X - (Lambda Z'X)' A^-1 (Lambda Z'X).
    rx_gram = system.xtx - rhs_e[:, 1:].T @ solved_e[:, 1:] - rhs_d[:, 1:].T @ solved_d[:, 1:]
    rx_rhs = system.xty - rhs_e[:, 1:].T @ solved_e[:, 0] - rhs_d[:, 1:].T @ solved_d[:, 0]
    rx_factor = linalg.cho_factor(rx_gram, lower=True, check_finite=False)
    beta = linalg.cho_solve(rx_factor, rx_rhs)

    # Conditional modes of the spherical effects and the penalised residual sum of squares.
    u_e = solved_e[:, 0] - solved_e[:, 1:] @ beta
    u_d = solved_d[:, 0] - solved_d[:, 1:] @ beta
    fitted = system.X @ beta + t_e * u_e[system.codes_e] + t_d * u_d[system.codes_d]
    residual = system.y - fitted
    penalised_rss = float(residual @ residual + u_e @ u_e + u_d @ u_d)

    logdet_a = float(np.log(diag_e).sum() + 2 * np.log(np.diag(schur_factor[0])).sum())
    logdet_rx = float(2 * np.log(np.diag(rx_factor[0])).sum())
    dof = n - p
    deviance = logdet_a + logdet_rx + dof * (1 + math.log(2 * math.pi * penalised_rss / dof))
    return _Evaluation(deviance, beta, penalised_rss, logdet_a, logdet_rx, rx_factor[0])


def _to_e_d(system: _CrossedSystem, theta_annotator: float, theta_item: float) -> tuple[float, float]:
    return (theta_annotator, theta_item) if system.annotator_is_e else (theta_item, theta_annotator)


def _reml_deviance_full(system: _CrossedSystem, log_sds: np.ndarray) -> float:
    """REML deviance at (log sd_annotator, log sd_item, log sigma), not profiled: for the Hessian."""
    sd_a, sd_i, sigma = np.exp(log_sds)
    ev = _evaluate(system, *_to_e_d(system, sd_a / sigma, sd_i / sigma))
    dof = system.n - system.p
    return ev.logdet_a + ev.logdet_rx + dof * math.log(2 * math.pi * sigma**2) + ev.penalised_rss / sigma**2


def _numerical_hessian(func, point: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """Central-difference Hessian; the deviance is smooth and cheap enough for 2k^2+1 evaluations."""
    k = len(point)
    hessian = np.empty((k, k))
    centre = func(point)
    basis = np.eye(k) * step
    for i in range(k):
        plus, minus = func(point + basis[i]), func(point - basis[i])
        hessian[i, i] = (plus - 2 * centre + minus) / step**2
        for j in range(i):
            corners = (
                func(point + basis[i] + basis[j])
                - func(point + basis[i] - basis[j])
                - func(point - basis[i] + basis[j])
                + func(point - basis[i] - basis[j])
            )
            hessian[i, j] = hessian[j, i] = corners / (4 * step**2)
    return hessian


def _sd_intervals(
    system: _CrossedSystem, sds: tuple[float, float, float], confidence: float
) -> tuple[dict[str, tuple[float | None, float | None]], list[str]]:
    """Wald intervals for the SDs on the log scale from the observed REML information."""
    names = ("annotator", "item", "residual")
    if min(sds) <= 0:
        return {name: (None, None) for name in names}, []
    hessian = _numerical_hessian(lambda x: _reml_deviance_full(system, x), np.log(sds))
    try:
        covariance = 2 * np.linalg.inv(hessian)  # deviance = -2 log L, so information = H / 2
    except np.linalg.LinAlgError:
        return {name: (None, None) for name in names}, ["REML information matrix is singular: no SD intervals"]
    variances = np.diag(covariance)
    if np.any(variances <= 0):
        return {n: (None, None) for n in names}, ["REML information not positive definite: no SD intervals"]
    z = stats.norm.ppf(0.5 + confidence / 2)
    spread = z * np.sqrt(variances)
    return {
        name: (float(sd * math.exp(-w)), float(sd * math.exp(w)))
        for name, sd, w in zip(names, sds, spread, strict=True)
    }, []


def _satterthwaite_df(system: _CrossedSystem, sds: tuple[float, float, float]) -> tuple[np.ndarray, list[str]]:
    """Satterthwaite df of each fixed effect, as lmerTest: df = 2 (l'C l)^2 / (g' A g), with C(phi) the
    covariance of beta at variance parameters phi, g its gradient in phi for contrast l, and A = 2 H^-1 the
    asymptotic covariance of phi from the Hessian H of the full REML deviance.

    phi are the log SDs; df does not depend on that choice because the deviance is stationary at the optimum.
    An SD on the boundary (0) is held fixed there, as it has no log and no sampling variance to speak of.
    """
    free = [k for k in range(3) if sds[k] > BOUNDARY_TOLERANCE * sds[2] or k == 2]
    base = np.log(np.maximum(np.asarray(sds), 1e-300))

    def full(sub: np.ndarray) -> np.ndarray:
        point = base.copy()
        point[free] = sub
        return point

    def beta_covariance(sub: np.ndarray) -> np.ndarray:
        sd_a, sd_i, sigma = np.exp(full(sub))
        if len(free) < 3:  # a boundary SD stays exactly 0
            sd_a, sd_i = (sd_a if 0 in free else 0.0), (sd_i if 1 in free else 0.0)
        ev = _evaluate(system, *_to_e_d(system, sd_a / sigma, sd_i / sigma))
        return sigma**2 * linalg.cho_solve((ev.rx_cholesky, True), np.eye(system.p))

    def deviance(sub: np.ndarray) -> float:
        log_sds = full(sub)
        if len(free) < 3:
            log_sds[[k for k in range(2) if k not in free]] = -np.inf
        return _reml_deviance_full(system, log_sds)

    point = base[free]
    hessian = _numerical_hessian(deviance, point)
    try:
        varpar_covariance = 2 * np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return np.full(system.p, np.nan), ["REML information matrix is singular: no Satterthwaite df"]
    step = SATTERTHWAITE_STEP
    jacobian = []  # dC/dphi_k, central differences
    for k in range(len(free)):
        shift = np.zeros(len(free))
        shift[k] = step
        jacobian.append((beta_covariance(point + shift) - beta_covariance(point - shift)) / (2 * step))
    covariance = beta_covariance(point)
    df = np.empty(system.p)
    for j in range(system.p):
        gradient = np.array([d[j, j] for d in jacobian])
        spread = float(gradient @ varpar_covariance @ gradient)
        df[j] = 2 * covariance[j, j] ** 2 / spread if spread > 0 else np.inf
    return df, []


def _minimise_deviance(objective, *, cheap: bool) -> optimize.OptimizeResult:
    """Minimise over 0 <= theta <= THETA_MAX from theta = 1, lme4's start, without derivatives.

    Gradient methods stall on the boundary: the deviance is even in each theta_k, so its gradient vanishes
    at theta_k = 0 whether or not that is the optimum. lme4 uses BOBYQA; COBYQA is its successor in scipy
    and needs ~35 evaluations here. Bounded Nelder-Mead needs ~100 but has no per-step overhead, so it wins
    when an evaluation costs well under a millisecond (small designs, e.g. power simulations).
    """
    bounds = [(0.0, THETA_MAX)] * 2
    if cheap:
        return optimize.minimize(
            objective,
            x0=np.ones(2),
            method="Nelder-Mead",
            bounds=bounds,
            options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 2000},
        )
    return optimize.minimize(
        objective, x0=np.ones(2), method="COBYQA", bounds=bounds, options={"final_tr_radius": 1e-7}
    )


def fit_crossed_arrays(
    y: np.ndarray,
    X: np.ndarray,
    annotators: np.ndarray,
    items: np.ndarray,
    *,
    sd_intervals: bool = True,
    satterthwaite: bool = False,
    confidence: float = CONFIDENCE,
) -> CrossedFit:
    """Fit by REML given integer codes 0..q-1 for annotators and items; X must include the intercept.

    `satterthwaite` adds the df of each fixed effect (`CrossedFit.df`)."""
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ValueError("fixed-effects design is rank deficient (a condition or covariate is constant?)")
    system = _build_system(y, X, np.asarray(annotators), np.asarray(items))
    calls = 0

    def objective(theta: np.ndarray) -> float:
        nonlocal calls
        calls += 1
        try:
            return _evaluate(system, *_to_e_d(system, *theta)).deviance
        except np.linalg.LinAlgError:
            return FAILED_DEVIANCE

    solution = _minimise_deviance(objective, cheap=system.n <= CHEAP_DESIGN_RATINGS)
    theta = np.clip(solution.x, 0.0, None)
    best = _evaluate(system, *_to_e_d(system, *theta))
    sigma = math.sqrt(best.penalised_rss / (system.n - system.p))
    rx_inverse = linalg.cho_solve((best.rx_cholesky, True), np.eye(system.p))
    warnings = [] if solution.success else [f"REML optimiser did not converge: {solution.message}"]
    if np.any(theta >= THETA_MAX * 0.999):
        warnings.append("a random-effect SD reached 1000 x the residual SD: the fit is degenerate")
    for name, value in zip(("annotator", "item"), theta, strict=True):
        if value < BOUNDARY_TOLERANCE:
            warnings.append(f"boundary (singular) fit: {name} variance estimated as ~0")
    fit = CrossedFit(
        beta=best.beta,
        beta_covariance=sigma**2 * rx_inverse,
        sd_annotator=float(theta[0] * sigma),
        sd_item=float(theta[1] * sigma),
        sd_residual=sigma,
        theta=(float(theta[0]), float(theta[1])),
        reml_deviance=best.deviance,
        n=system.n,
        n_annotators=len(system.counts_e if system.annotator_is_e else system.counts_d),
        n_items=len(system.counts_d if system.annotator_is_e else system.counts_e),
        converged=bool(solution.success),
        evaluations=calls,
        warnings=warnings,
    )
    if sd_intervals:
        fit.sd_ci, notes = _sd_intervals(system, (fit.sd_annotator, fit.sd_item, fit.sd_residual), confidence)
        fit.warnings.extend(notes)
    if satterthwaite:
        fit.df, notes = _satterthwaite_df(system, (fit.sd_annotator, fit.sd_item, fit.sd_residual))
        fit.warnings.extend(notes)
    return fit


def fit_crossed_lmm(
    frame: pd.DataFrame,
    *,
    conditions: Sequence[str],
    covariates: Sequence[str] = (),
    construct: str = "",
    response: str = VALUE,
    sd_intervals: bool = True,
    confidence: float = CONFIDENCE,
) -> ModelResult:
    """`response ~ condition + covariates + (1|annotator_id) + (1|item_id)` by REML on tidy rows.

    `conditions[0]` is the reference level.
    """
    used = frame.dropna(subset=[response, *covariates])
    X, terms = design_matrix(used, list(conditions), list(covariates))
    annotators = pd.factorize(used[ANNOTATOR])[0]
    items = pd.factorize(used[ITEM])[0]
    with single_threaded_blas():
        fit = fit_crossed_arrays(
            used[response].to_numpy(float),
            X,
            annotators,
            items,
            sd_intervals=sd_intervals,
            satterthwaite=True,
            confidence=confidence,
        )
    return ModelResult(
        name=f"lmm:{construct}",
        kind="lmm",
        construct=construct,
        formula=formula_text(construct or response, CONDITION, list(covariates), f" + (1|{ANNOTATOR}) + (1|{ITEM})"),
        reference=conditions[0],
        n=fit.n,
        coefficients=satterthwaite_coefficients(terms, fit.beta, fit.beta_covariance, fit.df, confidence=confidence),
        variance=VarianceSDs(annotator=fit.sd_annotator, item=fit.sd_item, residual=fit.sd_residual),
        warnings=list(fit.warnings),
        inference=INFERENCE_NOTE,
        extra={
            "variance_ci": {name: {"ci_low": lo, "ci_high": hi} for name, (lo, hi) in fit.sd_ci.items()},
            "reml_deviance": fit.reml_deviance,
            "n_annotators": fit.n_annotators,
            "n_items": fit.n_items,
            "converged": fit.converged,
        },
        covariance=fit.beta_covariance,
    )


def variance_shares(sds: VarianceSDs) -> dict[str, float | None]:
    """Share of total variance due to annotator, item and residual (ICC-like decomposition)."""
    parts = {"annotator": sds.annotator, "item": sds.item, "residual": sds.residual}
    if any(v is None for v in parts.values()):
        return dict.fromkeys(parts)
    total = sum(v**2 for v in parts.values())
    return {name: (v**2 / total if total > 0 else None) for name, v in parts.items()}
