"""The whole rating analysis as one JSON-ready dict, and writing it out (JSON, HTML, figures, tidy CSV)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from evalsite.csvsafe import safe_frame
from evalsite.jsonsafe import to_jsonable

from . import figures as figure_module
from .agreement import agreement
from .blas import single_threaded_blas
from .clmm import fit_clmm
from .descriptives import describe, scale_points
from .exclusions import ExclusionRules, apply_exclusions
from .io import (
    ANNOTATOR,
    CONDITION,
    EXPLANATION_KEYS,
    ITEM,
    QUALITY,
    VALUE,
    conditions_of,
    construct_frame,
    constructs_of,
    is_integer_scale,
    validate_tidy,
)
from .mixed import fit_crossed_lmm, variance_shares
from .nonparametric import pairwise_contrasts, rank_test
from .ordinal import fit_ordinal
from .paper import fit_paper_ols
from .power import smallest_design
from .preferences import analyze_preferences
from .render import render_html
from .results import CONFIDENCE, ModelResult

Progress = Callable[..., None]
SCHEMA_VERSION = 1
MODEL_KINDS = ("lmm", "clmm", "ols", "ordinal")


@dataclass(frozen=True)
class PowerPlan:
    """Grid for the power search; `effect` None means the largest LMM condition effect on the composite."""

    annotators: Sequence[int] = (30, 60, 120)
    items: Sequence[int] = (60, 120, 240)
    ratings_per_item: Sequence[int] = (3, 5)
    effect: float | None = None
    n_sims: int = 100
    target: float = 0.8
    alpha: float = 0.05


@dataclass
class _Collector:
    models: list[ModelResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _fit_models(
    frame: pd.DataFrame,
    construct: str,
    conditions: list[str],
    *,
    covariates: list[str],
    controls: list[str],
    models: Sequence[str],
    confidence: float,
    out: _Collector,
) -> ModelResult | None:
    """Fit the requested models for one construct; a failing model becomes a report warning, not a crash."""
    lmm = None
    attempts = {
        "lmm": lambda: fit_crossed_lmm(
            frame, conditions=conditions, covariates=covariates, construct=construct, confidence=confidence
        ),
        "ols": lambda: fit_paper_ols(
            frame,
            conditions=conditions,
            covariates=covariates,
            controls=controls,
            construct=construct,
            confidence=confidence,
        ),
        "ordinal": lambda: fit_ordinal(
            frame, conditions=conditions, covariates=covariates, construct=construct, confidence=confidence
        ),
        "clmm": lambda: fit_clmm(
            frame, conditions=conditions, covariates=covariates, construct=construct, confidence=confidence
        ),
    }
    for kind in models:
        if kind == "ols" and construct != QUALITY:
            continue  # the paper's model is defined on the composite only
        if kind in ("ordinal", "clmm") and not is_integer_scale(frame["value"]):
            continue  # a composite of means has no ordered categories
        problem = _unfittable(frame, kind)
        if problem:
            out.warnings.append(f"{kind} model for {construct} skipped: {problem}")
            continue
        try:
            result = attempts[kind]()
        except Exception as error:
            out.warnings.append(f"{kind} model for {construct} failed: {type(error).__name__}: {error}")
            continue
        out.models.append(result)
        lmm = result if kind == "lmm" else lmm
    return lmm


def _unfittable(frame: pd.DataFrame, kind: str) -> str:
    """Why a model of `kind` cannot be fitted to these rows, or "" when it can be tried."""
    if frame.empty:
        return "no ratings"
    if frame[CONDITION].nunique() < 2:
        return "ratings from fewer than two conditions"
    if frame[VALUE].nunique() < 2:
        return "every rating has the same value"
    if kind in ("lmm", "clmm", "ordinal") and frame[ANNOTATOR].nunique() < 2:
        return "ratings from a single annotator: no annotator variance or clustering to estimate"
    if kind in ("lmm", "clmm", "ordinal") and frame[ITEM].nunique() < 2:
        return "ratings of a single item"
    return ""


def _guarded(out: _Collector, what: str, compute, *args: Any, default: Any = None, **kwargs: Any) -> Any:
    """compute(*args, **kwargs), or `default` and a warning naming `what` when it raises."""
    try:
        return compute(*args, **kwargs)
    except Exception as error:
        out.warnings.append(f"{what} skipped: {type(error).__name__}: {error}")
        return default


def analyze(
    tidy: pd.DataFrame,
    *,
    reference: str | None = None,
    constructs: Sequence[str] | None = None,
    covariates: Sequence[str] = (),
    controls: Sequence[str] = (),
    composite: bool = True,
    scale: tuple[int, int] = (1, 5),
    seed: int = 0,
    n_boot: int = 2000,
    confidence: float = CONFIDENCE,
    exclusions: ExclusionRules | None = None,
    models: Sequence[str] = MODEL_KINDS,
    power: PowerPlan | None = None,
    pairs: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Run every analysis on tidy ratings and return the report dict (see docs/report-schema.md).

    `covariates` enter every model; `controls` (e.g. demographics) only the paper's OLS. `pairs` (pair mode:
    annotator_id, condition_a, condition_b, outcome a/b/tie) adds the preference model.
    """
    with single_threaded_blas():
        return _analyze(**locals())


def _analyze(
    tidy,
    *,
    reference,
    constructs,
    covariates,
    controls,
    composite,
    scale,
    seed,
    n_boot,
    confidence,
    exclusions,
    models,
    power,
    pairs,
) -> dict[str, Any]:
    unknown = [kind for kind in models if kind not in MODEL_KINDS]
    if unknown:
        raise ValueError(f"unknown models {unknown}: choose from {', '.join(MODEL_KINDS)}")
    tidy = validate_tidy(tidy)
    out = _Collector()
    blank = tidy[VALUE].isna()
    if blank.any():
        out.warnings.append(f"{int(blank.sum())} of {len(tidy)} ratings have no value and were left out")
        tidy = tidy[~blank].reset_index(drop=True)
    summary = None
    if exclusions is not None:
        tidy, summary = apply_exclusions(tidy, exclusions)
    if tidy.empty:
        left = "after exclusions" if summary is not None and summary.n_ratings_before else "to analyse"
        out.warnings.append(f"no ratings left {left}")
        out.warnings.extend(f"{kind} model skipped: no ratings" for kind in models)
    constructs = list(constructs or constructs_of(tidy))
    conditions = conditions_of(tidy, reference) if not tidy.empty or reference is None else [reference]
    names = [*constructs, QUALITY] if composite and constructs else constructs
    frames = {name: construct_frame(tidy, name, constructs) for name in names}
    contrasts, rank_tests, agreements = {}, {}, {}
    for name, frame in frames.items():
        lmm = _fit_models(
            frame,
            name,
            conditions,
            covariates=list(covariates),
            controls=list(controls),
            models=models,
            confidence=confidence,
            out=out,
        )
        agreements[name] = _guarded(
            out,
            f"agreement for {name}",
            _agreement_entry,
            frame,
            name,
            scale,
            n_boot=n_boot,
            seed=seed,
            confidence=confidence,
            default={"alpha": None, "ci_low": None, "ci_high": None, "note": "could not be computed"},
        )
        agreements[name]["variance_shares"] = variance_shares(lmm.variance) if lmm else None
        if lmm is not None:
            entry = _guarded(out, f"contrasts for {name}", pairwise_contrasts, lmm, conditions, confidence=confidence)
            if entry is not None:
                contrasts[name] = entry
        if len(frame) and frame[CONDITION].nunique() >= 2:
            entry = _guarded(out, f"rank test for {name}", rank_test, frame, conditions)
            if entry is not None:
                rank_tests[name] = entry
    preferences = None
    if pairs is not None and len(pairs):
        kept = pairs[pairs[ANNOTATOR].isin(set(tidy[ANNOTATOR]))] if summary is not None else pairs
        present = set(kept["condition_a"]).union(kept["condition_b"])
        ordered = [c for c in conditions if c in present] + sorted(present - set(conditions))
        preferences = _guarded(
            out, "preference model", analyze_preferences, kept, ordered, n_boot=n_boot, seed=seed, confidence=confidence
        )
    report = {
        "schema_version": SCHEMA_VERSION,
        "settings": {
            "reference": conditions[0] if conditions else (reference or ""),
            "constructs": constructs,
            "composite": QUALITY if composite else None,
            "covariates": list(covariates),
            "controls": list(controls),
            "scale": list(scale),
            "seed": seed,
            "n_boot": n_boot,
            "confidence": confidence,
        },
        "n_ratings": len(tidy),
        "n_judgements": len(tidy.drop_duplicates([ANNOTATOR, *EXPLANATION_KEYS])),
        "n_annotators": int(tidy[ANNOTATOR].nunique()),
        "n_items": int(tidy[ITEM].nunique()),
        "n_explanations": len(tidy.drop_duplicates(EXPLANATION_KEYS)),
        "n_excluded": summary.n_excluded if summary else 0,
        "exclusions": summary.to_dict() if summary else None,
        "conditions": conditions,
        "descriptives": describe(frames, conditions, scale=scale, n_boot=n_boot, seed=seed, confidence=confidence),
        "agreement": agreements,
        "models": [m.to_dict() for m in out.models],
        "contrasts": contrasts,
        "rank_tests": rank_tests,
        "preferences": preferences,
        "power": _guarded(out, "power", _power_entry, power, out.models, conditions, seed) if power else None,
        "warnings": out.warnings,
    }
    return to_jsonable(report)


def _agreement_entry(
    frame: pd.DataFrame, name: str, scale: tuple[int, int], *, n_boot: int, seed: int, confidence: float
) -> dict[str, Any]:
    if not is_integer_scale(frame["value"]):
        return {"alpha": None, "ci_low": None, "ci_high": None, "note": f"{name} is not on the rating scale"}
    entry = agreement(frame, value_domain=scale_points(scale), n_boot=n_boot, seed=seed, confidence=confidence)
    if entry["n_units_pairable"] == 0:
        entry["note"] = "no explanation was rated by two or more annotators, so alpha is undefined"
    return entry


def _power_entry(plan: PowerPlan, models: list[ModelResult], conditions: list[str], seed: int) -> dict[str, Any] | None:
    lmm = next((m for m in models if m.kind == "lmm" and m.construct == QUALITY), None)
    lmm = lmm or next((m for m in models if m.kind == "lmm"), None)
    if lmm is None:
        return None
    condition_effects = [abs(c.estimate) for c in lmm.coefficients if c.term in conditions]
    effect = plan.effect if plan.effect is not None else max(condition_effects, default=0.0)
    result = smallest_design(
        effect=effect,
        variance=lmm.variance,
        annotators=plan.annotators,
        items=plan.items,
        ratings_per_item=plan.ratings_per_item,
        target=plan.target,
        n_sims=plan.n_sims,
        alpha=plan.alpha,
        seed=seed,
    )
    result["variance"] = {
        "annotator": lmm.variance.annotator,
        "item": lmm.variance.item,
        "residual": lmm.variance.residual,
        "from_model": lmm.name,
    }
    return result


def write_report(
    report: dict[str, Any],
    figures: dict[str, Figure] | None,
    out_dir: str | Path,
    *,
    ratings: pd.DataFrame | None = None,
) -> list[str]:
    """Write report.json, report.html (figures inline as SVG), each figure as PNG and SVG, and the
    analysed ratings as ratings_tidy.csv; return the file names written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = figures if figures is not None else figure_module.build_figures(report)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")
    written = ["report.json", *figure_module.save_figures(figures, out_dir)]
    svgs = {stem: figure_module.svg_text(fig) for stem, fig in figures.items()}
    (out_dir / "report.html").write_text(render_html(report, svgs), encoding="utf-8")
    written.append("report.html")
    if ratings is not None:
        safe_frame(ratings).to_csv(out_dir / "ratings_tidy.csv", index=False)
        written.append("ratings_tidy.csv")
    return written


def draw_figures(report: dict[str, Any]) -> dict[str, Figure]:
    """The report's figures by file stem; one with nothing to show is left out, and one that cannot be drawn
    (odd data) is left out with a warning added to the report."""
    drawn = {}
    for stem, draw in figure_module.FIGURES.items():
        try:
            figure = draw(report)
        except Exception as error:
            report["warnings"].append(f"{stem} figure skipped: {type(error).__name__}: {error}")
            continue
        if figure is not None:
            drawn[stem] = figure
    return drawn


def _no_progress(done: int, total: int | None = None, stage: str = "", message: str = "") -> None:
    return None


def run_analysis(
    tidy: pd.DataFrame,
    out_dir: str | Path,
    progress: Progress | None = None,
    *,
    figures: bool = True,
    **options: Any,
) -> tuple[dict[str, Any], list[str]]:
    """The one entry point: analyze, draw the figures (unless `figures` is off) and write report.json,
    report.html, the figures and ratings_tidy.csv (the rows left after exclusions) to `out_dir`.

    `progress(done, total, stage=...)` hears of each step. Returns the report and the file names written.
    """
    progress = progress or _no_progress
    progress(0, 3, stage="fitting models")
    report = analyze(tidy, **options)
    progress(1, 3, stage="drawing figures")
    rules = options.get("exclusions")
    ratings = validate_tidy(tidy)
    ratings = apply_exclusions(ratings, rules)[0] if rules else ratings
    drawn = draw_figures(report) if figures else {}
    progress(2, 3, stage="writing files")
    try:
        written = write_report(report, drawn, out_dir, ratings=ratings)
    finally:
        figure_module.close_figures(drawn)
    progress(3, 3, stage="writing files")
    return report, written
