"""The whole rating analysis as one JSON-ready dict, and writing it out (JSON, HTML, figures, tidy CSV)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from evalsite.jsonsafe import to_jsonable

from . import figures as figure_module
from .agreement import agreement
from .blas import single_threaded_blas
from .descriptives import describe, scale_points
from .exclusions import ExclusionRules, apply_exclusions
from .io import (
    ANNOTATOR,
    EXPLANATION_KEYS,
    ITEM,
    QUALITY,
    conditions_of,
    construct_frame,
    constructs_of,
    is_integer_scale,
    validate_tidy,
)
from .metrics_agreement import automatic_metrics
from .mixed import fit_crossed_lmm, variance_shares
from .nonparametric import pairwise_contrasts, rank_test
from .ordinal import fit_ordinal
from .paper import fit_paper_ols
from .power import smallest_design
from .render import render_html
from .results import CONFIDENCE, ModelResult

SCHEMA_VERSION = 1
MODEL_KINDS = ("lmm", "ols", "ordinal")


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
    }
    for kind in models:
        if kind == "ols" and construct != QUALITY:
            continue  # the paper's model is defined on the composite only
        if kind == "ordinal" and not is_integer_scale(frame["value"]):
            continue  # a composite of means has no ordered categories
        try:
            result = attempts[kind]()
        except (ValueError, np.linalg.LinAlgError) as error:
            out.warnings.append(f"{kind} model for {construct} failed: {error}")
            continue
        out.models.append(result)
        lmm = result if kind == "lmm" else lmm
    return lmm


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
) -> dict[str, Any]:
    """Run every analysis on tidy ratings and return the report dict (see docs/report-schema.md).

    `covariates` enter every model; `controls` (e.g. demographics) only the paper's OLS.
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
) -> dict[str, Any]:
    tidy = validate_tidy(tidy)
    summary = None
    if exclusions is not None:
        tidy, summary = apply_exclusions(tidy, exclusions)
    constructs = list(constructs or constructs_of(tidy))
    conditions = conditions_of(tidy, reference)
    names = [*constructs, QUALITY] if composite else constructs
    frames = {name: construct_frame(tidy, name, constructs) for name in names}
    out = _Collector()
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
        agreements[name] = _agreement_entry(frame, name, scale, n_boot=n_boot, seed=seed, confidence=confidence)
        agreements[name]["variance_shares"] = variance_shares(lmm.variance) if lmm else None
        if lmm is not None:
            contrasts[name] = pairwise_contrasts(lmm, conditions, confidence=confidence)
        rank_tests[name] = rank_test(frame, conditions)
    metric_entries, metric_points = automatic_metrics(frames, n_boot=n_boot, seed=seed, confidence=confidence)
    report = {
        "schema_version": SCHEMA_VERSION,
        "settings": {
            "reference": conditions[0],
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
        "power": _power_entry(power, out.models, conditions, seed) if power else None,
        "automatic_metrics": metric_entries,
        "automatic_metric_points": metric_points,
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
        ratings.to_csv(out_dir / "ratings_tidy.csv", index=False)
        written.append("ratings_tidy.csv")
    return written


def run_analysis(tidy: pd.DataFrame, out_dir: str | Path, **options: Any) -> dict[str, Any]:
    """analyze + figures + write_report in one call; the ratings file holds the rows left after exclusions."""
    report = analyze(tidy, **options)
    rules = options.get("exclusions")
    ratings = apply_exclusions(validate_tidy(tidy), rules)[0] if rules else validate_tidy(tidy)
    figures = figure_module.build_figures(report)
    try:
        write_report(report, figures, out_dir, ratings=ratings)
    finally:
        figure_module.close_figures(figures)
    return report
