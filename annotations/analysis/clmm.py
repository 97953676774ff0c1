"""Crossed cumulative link mixed model `rating ~ X + (1|annotator) + (1|item)` (logit link, flexible
thresholds) fitted by the Laplace approximation, as R's `ordinal::clmm` does by default.

Model: P(Y <= j | b) = logistic(alpha_j - x'beta - s_a u_a - s_i u_i) with spherical u ~ N(0, I). For given
parameters phi = (alpha, beta, s_a, s_i), Newton's method finds the conditional mode u^ of

    g(u) = -sum_k log p_k(u) + u'u / 2,

and the Laplace negative log-likelihood is g(u^) + log|H| / 2 with H = I + Lambda Z'WZ Lambda, W the
per-rating negative second derivative of log p_k in the linear predictor (constants dropped).

Two things make it fast, both from the structure of two crossed intercept factors (see `mixed.py`):

- H has the block form [[diag, B], [B', diag]] with B the W-weighted crosstab of the two factors (sparse:
  its pattern is the annotator x item pairs rated), so every solve and log|H| come from one Cholesky of the
  Schur complement on the factor with fewer levels.
- The gradient of the Laplace objective is analytic, including the derivative of log|H| through W and u^
  (implicit function theorem: du^/dphi = -H^-1 d(grad_u g)/dphi). It needs only the diagonal of H^-1 and
  its annotator x item entries where ratings exist, which the same block elimination gives. clmm instead
  differentiates numerically, re-solving the inner problem for every parameter.

Standard errors are Wald, from the inverse of the Hessian of the Laplace objective (central differences of
the analytic gradient), as clmm's vcov().
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, optimize, sparse, special, stats

from .blas import single_threaded_blas
from .io import ANNOTATOR, CONDITION, ITEM, VALUE
from .results import CONFIDENCE, ModelResult, VarianceSDs, design_matrix, formula_text, wald_coefficients

# An SD below this is reported as a boundary (singular) fit; clmm's own check is on the Hessian.
BOUNDARY_TOLERANCE = 1e-4
# Convergence: the largest absolute gradient of the Laplace objective at the optimum (clmm: 1e-3 by default).
GRADIENT_TOLERANCE = 1e-4
INNER_TOLERANCE = 1e-10
INNER_MAX_ITERATIONS = 100
HESSIAN_STEP = 1e-5
# Beyond this many same-row cell pairs (memory ~ 24 bytes each), products with B use scipy.sparse instead.
MAX_CELL_PAIRS = 20_000_000
INFERENCE_NOTE = (
    "Laplace approximation of the likelihood (as ordinal::clmm); Wald z tests and intervals from the inverse "
    "Hessian of the approximate negative log-likelihood; SD intervals Wald on the log scale."
)


class _Problem:
    """Data of one fit, with codes of the eliminated factor `e` (more levels) and the dense factor `d`."""

    def __init__(self, y: np.ndarray, X: np.ndarray, annotators: np.ndarray, items: np.ndarray, n_levels: int):
        self.y = y
        self.X = X
        self.n, self.p = X.shape
        self.n_thresholds = n_levels - 1
        q_a, q_i = int(annotators.max()) + 1, int(items.max()) + 1
        self.annotator_is_e = q_a >= q_i
        self.ce, self.cd = (annotators, items) if self.annotator_is_e else (items, annotators)
        self.q_e, self.q_d = (q_a, q_i) if self.annotator_is_e else (q_i, q_a)
        # The W-weighted crosstab B is sparse: its pattern (the annotator x item pairs rated) is fixed, only the
        # values change. Unique cells in row-major order are exactly CSR order.
        cells, self.cell_of = np.unique(self.ce.astype(np.int64) * self.q_d + self.cd, return_inverse=True)
        self.cell_rows, self.cell_cols = cells // self.q_d, (cells % self.q_d).astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(self.cell_rows, minlength=self.q_e))]).astype(np.int64)
        self.n_cells = len(cells)
        # Every ordered pair (p, q) of cells in the same row of B: N'diag(v)N-type products and the entries of
        # B S^-1 on B's pattern then cost sum over rows of (cells in the row)^2, not q_e x q_d x q_d.
        lengths = np.diff(self.indptr)
        squares = lengths**2
        self.use_pairs = int(squares.sum()) <= MAX_CELL_PAIRS
        if self.use_pairs:
            rows = np.repeat(np.arange(self.q_e), squares)
            offsets = np.arange(squares.sum()) - np.repeat(np.cumsum(squares) - squares, squares)
            first, second = np.divmod(offsets, np.maximum(lengths[rows], 1))
            self.pair_p = self.indptr[rows] + first
            self.pair_q = self.indptr[rows] + second
            self.pair_cell = self.cell_cols[self.pair_p].astype(np.int64) * self.q_d + self.cell_cols[self.pair_q]
        # d(a_k)/d(alpha) and d(c_k)/d(alpha): which threshold bounds rating k from above and from below.
        self.upper = np.zeros((self.n, self.n_thresholds))
        self.lower = np.zeros((self.n, self.n_thresholds))
        rows = np.arange(self.n)
        has_upper, has_lower = y < self.n_thresholds, y > 0
        self.upper[rows[has_upper], y[has_upper]] = 1.0
        self.lower[rows[has_lower], y[has_lower] - 1] = 1.0
        self.n_params = self.n_thresholds + self.p + 2

    def split(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(thresholds, beta, s_e, s_d) from phi = (thresholds, beta, s_annotator, s_item)."""
        alpha, beta = phi[: self.n_thresholds], phi[self.n_thresholds : self.n_thresholds + self.p]
        s_a, s_i = phi[-2], phi[-1]
        s_e, s_d = (s_a, s_i) if self.annotator_is_e else (s_i, s_a)
        return alpha, beta, float(s_e), float(s_d)

    def group(self, values: np.ndarray, codes: np.ndarray, levels: int) -> np.ndarray:
        if values.ndim == 1:
            return np.bincount(codes, weights=values, minlength=levels)
        return np.column_stack([np.bincount(codes, weights=col, minlength=levels) for col in values.T])


@dataclass
class _Point:
    """Per-rating quantities of the conditional likelihood at (phi, u)."""

    log_p: np.ndarray
    d1: np.ndarray  # d log p / d eta (eta shifts both bounds)
    w: np.ndarray  # -d2 log p / d eta2
    dl_da: np.ndarray
    dl_dc: np.ndarray
    dd1_da: np.ndarray
    dd1_dc: np.ndarray
    dw_da: np.ndarray
    dw_dc: np.ndarray


def _logistic_derivatives(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """F, f, f', f'' of the logistic distribution (0 at +-inf for the densities)."""
    F = special.expit(x)
    f = F * (1 - F)
    return F, f, f * (1 - 2 * F), f * (1 - 6 * F + 6 * F * F)


def _point(problem: _Problem, alpha: np.ndarray, offset: np.ndarray) -> _Point:
    """Likelihood terms with linear predictor alpha_j - offset, where offset = x'beta + s_a u_a + s_i u_i."""
    bounds = np.concatenate([[-np.inf], alpha, [np.inf]])
    a = bounds[problem.y + 1] - offset
    c = bounds[problem.y] - offset
    Fa, A1, A2, A3 = _logistic_derivatives(a)
    Fc, C1, C2, C3 = _logistic_derivatives(c)
    # Far in the upper tail F(a) - F(c) cancels; the survival functions do not.
    p = np.where(c > 0, special.expit(-c) - special.expit(-a), Fa - Fc)
    p = np.maximum(p, 1e-300)
    d1 = (A1 - C1) / p
    d2 = (A2 - C2) / p - d1 * d1
    dd1_da = A2 / p - d1 * A1 / p
    dd1_dc = -C2 / p + d1 * C1 / p
    dd2_da = A3 / p - (A2 - C2) * A1 / p**2 - 2 * d1 * dd1_da
    dd2_dc = -C3 / p + (A2 - C2) * C1 / p**2 - 2 * d1 * dd1_dc
    return _Point(np.log(p), d1, -d2, A1 / p, -C1 / p, dd1_da, dd1_dc, -dd2_da, -dd2_dc)


@dataclass
class _Blocks:
    """H = [[diag(diag_e), B], [B', diag(diag_d)]] and the Cholesky factor of its Schur complement on d."""

    diag_e: np.ndarray
    coupling: sparse.csr_array  # B, q_e x q_d
    schur: tuple[np.ndarray, bool]

    def solve(self, rhs_e: np.ndarray, rhs_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inv_e = 1.0 / self.diag_e
        scaled = rhs_e * (inv_e if rhs_e.ndim == 1 else inv_e[:, None])
        x_d = linalg.cho_solve(self.schur, rhs_d - self.coupling.T @ scaled, check_finite=False)
        x_e = (rhs_e - self.coupling @ x_d) * (inv_e if rhs_e.ndim == 1 else inv_e[:, None])
        return x_e, x_d

    def logdet(self) -> float:
        return float(np.log(self.diag_e).sum() + 2 * np.log(np.diag(self.schur[0])).sum())


def _blocks(problem: _Problem, w: np.ndarray, s_e: float, s_d: float) -> _Blocks:
    diag_e = s_e**2 * problem.group(w, problem.ce, problem.q_e) + 1.0
    diag_d = s_d**2 * problem.group(w, problem.cd, problem.q_d) + 1.0
    values = (s_e * s_d) * np.bincount(problem.cell_of, weights=w, minlength=problem.n_cells)
    shape = (problem.q_e, problem.q_d)
    coupling = sparse.csr_array((values, problem.cell_cols, problem.indptr), shape=shape)
    scaled_values = values / diag_e[problem.cell_rows]
    if problem.use_pairs:
        weights = values[problem.pair_p] * scaled_values[problem.pair_q]
        product = np.bincount(problem.pair_cell, weights=weights, minlength=problem.q_d**2)
        schur = -product.reshape(problem.q_d, problem.q_d)
    else:
        scaled = sparse.csr_array((scaled_values, problem.cell_cols, problem.indptr), shape=shape)
        schur = -(coupling.T @ scaled).toarray()
    schur[np.diag_indices_from(schur)] += diag_d
    return _Blocks(diag_e, coupling, linalg.cho_factor(schur, lower=True, check_finite=False))


@dataclass
class _Inner:
    u_e: np.ndarray
    u_d: np.ndarray
    point: _Point
    blocks: _Blocks
    value: float  # Laplace objective
    offset: np.ndarray


def _inner(problem: _Problem, phi: np.ndarray, u_e: np.ndarray, u_d: np.ndarray) -> _Inner:
    """Newton's method (step halving) for the conditional modes, from (u_e, u_d)."""
    alpha, beta, s_e, s_d = problem.split(phi)
    if np.any(np.diff(alpha) <= 0):
        raise FloatingPointError("thresholds out of order")
    fixed = problem.X @ beta

    def evaluate(u_e: np.ndarray, u_d: np.ndarray) -> tuple[np.ndarray, _Point, float]:
        offset = fixed + s_e * u_e[problem.ce] + s_d * u_d[problem.cd]
        point = _point(problem, alpha, offset)
        return offset, point, float(-point.log_p.sum() + 0.5 * (u_e @ u_e + u_d @ u_d))

    offset, point, value = evaluate(u_e, u_d)
    for _ in range(INNER_MAX_ITERATIONS):
        grad_e = s_e * problem.group(point.d1, problem.ce, problem.q_e) + u_e
        grad_d = s_d * problem.group(point.d1, problem.cd, problem.q_d) + u_d
        blocks = _blocks(problem, point.w, s_e, s_d)
        if max(np.abs(grad_e).max(initial=0), np.abs(grad_d).max(initial=0)) < INNER_TOLERANCE:
            break
        step_e, step_d = blocks.solve(grad_e, grad_d)
        size = 1.0
        for _halving in range(30):
            trial = evaluate(u_e - size * step_e, u_d - size * step_d)
            if trial[2] <= value + 1e-12 * abs(value):
                break
            size /= 2
        decrease = value - trial[2]
        u_e, u_d = u_e - size * step_e, u_d - size * step_d
        offset, point, value = trial
        if decrease < 1e-14 * max(1.0, abs(value)) and size < 1:
            blocks = _blocks(problem, point.w, s_e, s_d)
            break
    else:
        blocks = _blocks(problem, point.w, s_e, s_d)
    return _Inner(u_e, u_d, point, blocks, value + 0.5 * blocks.logdet(), offset)


def _gradient(problem: _Problem, phi: np.ndarray, inner: _Inner) -> np.ndarray:
    """Gradient of the Laplace objective in phi, u^ and W moving with phi (see the module docstring)."""
    _, _, s_e, s_d = problem.split(phi)
    pt, blocks, ce, cd = inner.point, inner.blocks, problem.ce, problem.cd
    u_e_k, u_d_k = inner.u_e[ce], inner.u_d[cd]
    sigma_e, sigma_d = (-2, -1) if problem.annotator_is_e else (-1, -2)
    # Partial derivatives of the bounds a_k, c_k in phi at fixed u (n x K).
    shared = np.zeros((problem.n, problem.n_params))
    shared[:, problem.n_thresholds : problem.n_thresholds + problem.p] = -problem.X
    shared[:, sigma_e] = -u_e_k
    shared[:, sigma_d] = -u_d_k
    da, dc = shared.copy(), shared
    da[:, : problem.n_thresholds] = problem.upper
    dc[:, : problem.n_thresholds] = problem.lower
    partial = -(pt.dl_da @ da + pt.dl_dc @ dc)

    # du^/dphi = -H^-1 d(grad_u g)/dphi with grad_u g = Lambda Z' d1 + u.
    dd1 = pt.dd1_da[:, None] * da + pt.dd1_dc[:, None] * dc
    mixed_e = s_e * problem.group(dd1, ce, problem.q_e)
    mixed_d = s_d * problem.group(dd1, cd, problem.q_d)
    mixed_e[:, sigma_e] += problem.group(pt.d1, ce, problem.q_e)
    mixed_d[:, sigma_d] += problem.group(pt.d1, cd, problem.q_d)
    du_e, du_d = blocks.solve(-mixed_e, -mixed_d)
    shift = s_e * du_e[ce] + s_d * du_d[cd]
    dw = pt.dw_da[:, None] * (da - shift) + pt.dw_dc[:, None] * (dc - shift)

    # The entries of H^-1 that the trace needs: its diagonal and the (e, d) entries where ratings exist.
    inv_e = 1.0 / blocks.diag_e
    schur_inverse = _inverse_from_cholesky(blocks.schur[0])
    # (B S^-1) on B's pattern only: entry p = (e, d) sums B[e, k] S^-1[k, d] over the cells q of row e.
    if problem.use_pairs:
        terms = (
            blocks.coupling.data[problem.pair_q]
            * schur_inverse.ravel()[
                problem.cell_cols[problem.pair_q].astype(np.int64) * problem.q_d + problem.cell_cols[problem.pair_p]
            ]
        )
        coupled = np.bincount(problem.pair_p, weights=terms, minlength=problem.n_cells)
    else:
        coupled = (blocks.coupling @ schur_inverse)[problem.cell_rows, problem.cell_cols]
    h_dd = np.diag(schur_inverse)[cd]
    row_sums = np.bincount(problem.cell_rows, weights=coupled * blocks.coupling.data, minlength=problem.q_e)
    h_ee = (inv_e + inv_e**2 * row_sums)[ce]
    h_ed = -(inv_e[ce] * coupled[problem.cell_of])
    leverage = s_e**2 * h_ee + s_d**2 * h_dd + 2 * s_e * s_d * h_ed
    trace = leverage @ dw
    trace[sigma_e] += 2 * pt.w @ (s_e * h_ee + s_d * h_ed)
    trace[sigma_d] += 2 * pt.w @ (s_d * h_dd + s_e * h_ed)
    return partial + 0.5 * trace


def _inverse_from_cholesky(lower: np.ndarray) -> np.ndarray:
    """S^-1 from the lower Cholesky factor of S (LAPACK potri: about half the work of solving with I)."""
    inverse, info = linalg.lapack.dpotri(lower, lower=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed ({info})")
    return np.tril(inverse) + np.tril(inverse, -1).T


@dataclass
class OrdinalFit:
    """Estimates of a crossed CLMM; `params` are (thresholds, beta, sd_annotator, sd_item)."""

    thresholds: np.ndarray
    beta: np.ndarray
    sd_annotator: float
    sd_item: float
    covariance: np.ndarray  # of (thresholds, beta), and the SDs when they are off the boundary
    sd_se: tuple[float | None, float | None]
    neg_log_likelihood: float
    n: int
    n_annotators: int
    n_items: int
    converged: bool
    evaluations: int
    max_gradient: float
    warnings: list[str] = field(default_factory=list)


def _start(problem: _Problem) -> np.ndarray:
    """Thresholds at the logits of the cumulative shares, no effects, both SDs 0.5."""
    shares = np.cumsum(np.bincount(problem.y, minlength=problem.n_thresholds + 1))[:-1] / problem.n
    return np.concatenate([special.logit(shares), np.zeros(problem.p), [0.5, 0.5]])


def fit_clmm_arrays(y: np.ndarray, X: np.ndarray, annotators: np.ndarray, items: np.ndarray) -> OrdinalFit:
    """Fit by maximum Laplace likelihood; y holds category codes 0..J-1 (each present), X has no intercept."""
    y = np.asarray(y, dtype=np.int64)
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    n_levels = int(y.max()) + 1 if len(y) else 0
    if n_levels < 2:
        raise ValueError("an ordinal model needs at least two distinct rating values")
    if len(np.unique(y)) < n_levels:
        raise ValueError("rating categories must be coded 0..J-1 with every code present")
    if X.shape[1] and np.linalg.matrix_rank(np.column_stack([np.ones(len(y)), X])) < X.shape[1] + 1:
        raise ValueError("fixed-effects design is rank deficient (a condition or covariate is constant?)")
    problem = _Problem(y, X, np.asarray(annotators), np.asarray(items), n_levels)
    state = {"u_e": np.zeros(problem.q_e), "u_d": np.zeros(problem.q_d), "calls": 0}

    def solve(phi: np.ndarray) -> _Inner:
        state["calls"] += 1
        inner = _inner(problem, phi, state["u_e"], state["u_d"])
        state["u_e"], state["u_d"] = inner.u_e, inner.u_d
        return inner

    def objective(phi: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            inner = solve(phi)
        except (FloatingPointError, np.linalg.LinAlgError):
            return 1e300, np.zeros_like(phi)
        return inner.value, _gradient(problem, phi, inner)

    bounds = [(None, None)] * (problem.n_thresholds + problem.p) + [(0.0, None)] * 2
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        solution = optimize.minimize(
            objective,
            _start(problem),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "gtol": 1e-9, "ftol": 1e-15, "maxcor": 20},
        )
        phi = solution.x
        inner = solve(phi)
        gradient = _gradient(problem, phi, inner)
        on_boundary = phi[-2:] < BOUNDARY_TOLERANCE
        free = np.ones(problem.n_params, dtype=bool)
        free[-2:] = ~on_boundary
        max_gradient = float(np.abs(gradient[free]).max())
        hessian = _hessian(problem, phi, free, objective)
    warnings = []
    converged = bool(max_gradient < GRADIENT_TOLERANCE)
    if not converged:
        warnings.append(f"CLMM did not converge: largest gradient {max_gradient:.2g} ({solution.message})")
    for name, flag in zip(("annotator", "item"), on_boundary, strict=True):
        if flag:
            warnings.append(f"boundary (singular) fit: {name} variance estimated as ~0")
    covariance = np.full((problem.n_params, problem.n_params), np.nan)
    try:
        eigenvalues = np.linalg.eigvalsh(hessian)
        if eigenvalues.min() <= 0:
            raise np.linalg.LinAlgError("not positive definite")
        covariance[np.ix_(free, free)] = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        warnings.append("Hessian of the CLMM is not positive definite: no standard errors")
    k = problem.n_thresholds + problem.p
    sd_se = tuple(
        None
        if on_boundary[j] or not np.isfinite(covariance[k + j, k + j])
        else float(math.sqrt(covariance[k + j, k + j]))
        for j in range(2)
    )
    return OrdinalFit(
        thresholds=phi[: problem.n_thresholds].copy(),
        beta=phi[problem.n_thresholds : k].copy(),
        sd_annotator=float(phi[-2]),
        sd_item=float(phi[-1]),
        covariance=covariance,
        sd_se=sd_se,
        neg_log_likelihood=float(inner.value),
        n=problem.n,
        n_annotators=problem.q_e if problem.annotator_is_e else problem.q_d,
        n_items=problem.q_d if problem.annotator_is_e else problem.q_e,
        converged=converged,
        evaluations=state["calls"],
        max_gradient=max_gradient,
        warnings=warnings,
    )


def _hessian(problem: _Problem, phi: np.ndarray, free: np.ndarray, objective) -> np.ndarray:
    """Central differences of the analytic gradient over the free parameters, symmetrised."""
    index = np.flatnonzero(free)
    hessian = np.empty((len(index), len(index)))
    for column, j in enumerate(index):
        step = HESSIAN_STEP * max(1.0, abs(phi[j]))
        plus, minus = phi.copy(), phi.copy()
        plus[j] += step
        minus[j] -= step
        hessian[:, column] = (objective(plus)[1][index] - objective(minus)[1][index]) / (2 * step)
    return (hessian + hessian.T) / 2


def fit_clmm(
    frame: pd.DataFrame,
    *,
    conditions: Sequence[str],
    covariates: Sequence[str] = (),
    construct: str = "",
    confidence: float = CONFIDENCE,
) -> ModelResult:
    """`construct ~ condition + covariates + (1|annotator_id) + (1|item_id)` as a crossed CLMM on tidy rows.

    `conditions[0]` is the reference; positive coefficients mean higher ratings (clmm's sign convention).
    """
    used = frame.dropna(subset=[VALUE, *covariates])
    if used.empty:
        raise ValueError("no ratings to fit")
    X, terms = design_matrix(used, list(conditions), list(covariates))
    X, terms = X[:, 1:], terms[1:]
    # Centre and scale covariates for the optimiser; the transformation is undone exactly below.
    is_covariate = np.arange(X.shape[1]) >= len(conditions) - 1
    centre = np.where(is_covariate, X.mean(axis=0), 0.0)
    spread = np.where(is_covariate, X.std(axis=0), 1.0)
    spread[spread == 0] = 1.0
    response = pd.Categorical(used[VALUE].to_numpy(), ordered=True)
    with single_threaded_blas():
        fit = fit_clmm_arrays(
            np.asarray(response.codes),
            (X - centre) / spread,
            pd.factorize(used[ANNOTATOR])[0],
            pd.factorize(used[ITEM])[0],
        )
    n_thresholds, p = len(fit.thresholds), len(fit.beta)
    # (alpha, beta) in original units = T (alpha_s, beta_s): beta = beta_s / spread, alpha = alpha_s + c'beta.
    transform = np.eye(n_thresholds + p)
    transform[n_thresholds:, n_thresholds:] = np.diag(1.0 / spread)
    transform[:n_thresholds, n_thresholds:] = (centre / spread)[None, :]
    estimates = transform @ np.concatenate([fit.thresholds, fit.beta])
    covariance = transform @ fit.covariance[: n_thresholds + p, : n_thresholds + p] @ transform.T
    thresholds, beta = estimates[:n_thresholds], estimates[n_thresholds:]
    threshold_cov = covariance[:n_thresholds, :n_thresholds]
    beta_cov = covariance[n_thresholds:, n_thresholds:]
    levels = [_format_level(v) for v in response.categories]
    threshold_rows = wald_coefficients(
        [f"{levels[j]}|{levels[j + 1]}" for j in range(n_thresholds)], thresholds, threshold_cov, confidence=confidence
    )
    return ModelResult(
        name=f"clmm:{construct}",
        kind="clmm",
        construct=construct,
        formula=formula_text(construct, CONDITION, list(covariates), f" + (1|{ANNOTATOR}) + (1|{ITEM})"),
        reference=conditions[0],
        n=fit.n,
        coefficients=wald_coefficients(terms, beta, beta_cov, confidence=confidence),
        variance=VarianceSDs(annotator=fit.sd_annotator, item=fit.sd_item, residual=None),
        warnings=list(fit.warnings),
        inference=INFERENCE_NOTE,
        extra={
            "link": "logit",
            "thresholds": [
                {
                    "between": row.term,
                    "estimate": row.estimate,
                    "se": row.se,
                    "ci_low": row.ci_low,
                    "ci_high": row.ci_high,
                }
                for row in threshold_rows
            ],
            "variance_ci": _sd_intervals(fit, confidence),
            "neg_log_likelihood": fit.neg_log_likelihood,
            "n_annotators": fit.n_annotators,
            "n_items": fit.n_items,
            "converged": fit.converged,
            "max_gradient": fit.max_gradient,
        },
        covariance=beta_cov,
    )


def _sd_intervals(fit: OrdinalFit, confidence: float) -> dict[str, dict[str, float | None]]:
    z = stats.norm.ppf(0.5 + confidence / 2)
    out = {}
    for name, sd, se in (("annotator", fit.sd_annotator, fit.sd_se[0]), ("item", fit.sd_item, fit.sd_se[1])):
        if se is None or sd <= 0:
            out[name] = {"ci_low": None, "ci_high": None}
            continue
        spread = z * se / sd  # delta method on log(sd)
        out[name] = {"ci_low": sd * math.exp(-spread), "ci_high": sd * math.exp(spread)}
    return out


def _format_level(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
