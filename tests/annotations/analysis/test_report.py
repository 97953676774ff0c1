"""The full report on study.csv: schema, JSON safety, files written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from annotations.analysis.io import load_wide_csv
from annotations.analysis.report import PowerPlan, analyze, run_analysis
from annotations.analysis.schema import validate_report
from evalsite.jsonsafe import to_jsonable

CONSTRUCTS = ["Completeness", "Contrastiveness", "Plausibility", "Satisfaction", "Understandability"]


@pytest.fixture(scope="module")
def study(data_dir: Path):
    return load_wide_csv(
        data_dir / "paper_study" / "study.csv",
        annotator="CASE",
        explanation="rationale_id",
        condition="model",
        constructs=CONSTRUCTS,
    )


@pytest.fixture(scope="module")
def written(study, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("report")
    report, _ = run_analysis(
        study, out_dir, reference="CF:PosRationales", covariates=["rationale_length"], n_boot=200, seed=0
    )
    return report, out_dir


def test_report_follows_the_schema(written):
    report, out_dir = written
    assert validate_report(report) == []
    on_disk = json.loads((out_dir / "report.json").read_text())
    assert validate_report(on_disk) == []
    assert on_disk["n_ratings"] == 5570 and on_disk["n_annotators"] == 117 and on_disk["n_items"] == 375
    assert on_disk["n_excluded"] == 0


def test_report_holds_the_models_by_construct(written):
    report, _ = written
    kinds = {(m["kind"], m["construct"]) for m in report["models"]}
    assert ("lmm", "Quality") in kinds and ("ols", "Quality") in kinds and ("ordinal", "Plausibility") in kinds
    lmm = next(m for m in report["models"] if m["kind"] == "lmm" and m["construct"] == "Quality")
    terms = [c["term"] for c in lmm["coefficients"]]
    assert terms == ["Intercept", "MT+CF:PosRationales", "MT+CF:RevRationales", "MT:PosRationales", "rationale_length"]
    assert lmm["variance"]["annotator"] == pytest.approx(0.4947, abs=1e-3)
    ols = next(m for m in report["models"] if m["kind"] == "ols")
    assert ols["variance"]["annotator"] is None
    assert report["descriptives"]["Quality"]["CF:PosRationales"]["n"] == 277
    # Every explanation in study.csv was rated by one annotator only: alpha is undefined and says why.
    assert report["agreement"]["Plausibility"]["alpha"] is None
    assert "note" in report["agreement"]["Plausibility"]


def test_files_are_written_and_html_is_self_contained(written):
    _, out_dir = written
    names = {p.name for p in out_dir.iterdir()}
    expected = {"report.json", "report.html", "ratings_tidy.csv"}
    expected |= {f"{stem}.{ext}" for stem in ("means", "distributions", "coefficients") for ext in ("png", "svg")}
    assert expected <= names
    html = (out_dir / "report.html").read_text()
    assert html.count("<svg") == 3
    assert "src=" not in html and 'href="http' not in html


def test_json_never_holds_nan():
    cleaned = to_jsonable({"a": float("nan"), "b": [math.inf, 1.0], "c": {"d": 2}})
    assert cleaned == {"a": None, "b": [None, 1.0], "c": {"d": 2}}
    json.dumps(cleaned, allow_nan=False)


def test_power_section_when_planned(study):
    constructs = CONSTRUCTS[:1]
    report = analyze(
        study,
        reference="CF:PosRationales",
        constructs=constructs,
        n_boot=50,
        models=("lmm",),
        power=PowerPlan(annotators=[30], items=[60], ratings_per_item=[3], n_sims=20),
    )
    assert validate_report(report) == []
    assert report["power"]["tried"][0]["n_sims"] == 20
    assert report["power"]["variance"]["from_model"] == "lmm:Quality"


def test_page_leads_with_the_headline_and_collapses_the_rest(written):
    _, out_dir = written
    html = (out_dir / "report.html").read_text()
    first_details = html.index("<details>")
    # Summary, the composite's models and the means figure come before any collapsed section.
    assert html.index('<section id="summary">') < html.index('<section id="headline">') < first_details
    assert html.index('id="lmm:Quality"') < html.index('<section id="means">') < first_details
    for anchor in ("descriptives", "agreement", "contrasts", "models"):
        section = html.index(f'<section id="{anchor}">')
        assert html.startswith("<details>", section + len(f'<section id="{anchor}">'))
    # The LMM's coefficient table gives Satterthwaite df beside the Wald p-value; the CLMM its thresholds.
    assert '<th scope="col">df</th>' in html and "p (Wald z)" in html
    assert 'id="clmm:Completeness"' in html and "Thresholds" in html
