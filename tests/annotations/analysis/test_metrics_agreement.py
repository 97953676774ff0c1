"""Automatic metrics against people: a planted score is found (CI excludes 0 and holds the truth), noise is not;
Kendall over conditions, interval alpha, the report section and figures, and metrics read from a tidy file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from annotations.analysis.metrics_agreement import (
    bootstrap_spearman_ci,
    interval_alpha,
    judge_matches,
    kendall_conditions,
    per_explanation,
)
from annotations.analysis.metrics_report import best_per_construct, render_section
from annotations.analysis.render import render_html
from annotations.analysis.report import analyze, run_analysis
from annotations.analysis.schema import validate_report

CONDITIONS = ("A", "B", "C")
CONDITION_SHIFT = {"A": -0.6, "B": 0.0, "C": 0.6}
RATERS_PER_EXPLANATION = 4
N_ANNOTATORS = 24


def simulate(n_items: int, rng: np.random.Generator) -> pd.DataFrame:
    """Tidy ratings of n_items x 3 conditions whose mean depends on a planted per-explanation score; a second
    score is independent noise. Annotator and item effects and rounding to a 1-5 scale as in real data."""
    annotator_effect = rng.normal(0, 0.4, N_ANNOTATORS)
    n_explanations = n_items * len(CONDITIONS)
    items = np.repeat(np.arange(n_items), len(CONDITIONS))
    conditions = np.tile(np.array(CONDITIONS), n_items)
    planted = np.array([CONDITION_SHIFT[c] for c in conditions]) + rng.normal(0, 1, n_explanations)
    noise = rng.normal(0, 1, n_explanations)
    item_effect = rng.normal(0, 0.4, n_items)[items]
    raters = np.argsort(rng.random((n_explanations, N_ANNOTATORS)), axis=1)[:, :RATERS_PER_EXPLANATION]
    k = RATERS_PER_EXPLANATION
    latent = (
        3
        + np.repeat(0.6 * planted + item_effect, k)
        + annotator_effect[raters.ravel()]
        + rng.normal(0, 0.9, n_explanations * k)
    )
    return pd.DataFrame(
        {
            "annotator_id": [f"a{a}" for a in raters.ravel()],
            "item_id": [f"q{i}" for i in np.repeat(items, k)],
            "explanation_id": [f"q{i}" for i in np.repeat(items, k)],
            "condition": np.repeat(conditions, k),
            "construct": "Soundness",
            "value": np.clip(np.round(latent), 1, 5),
            "metric:planted": np.repeat(planted, k),
            "metric:noise": np.repeat(noise, k),
        }
    )


@pytest.fixture(scope="module")
def true_correlation() -> float:
    """Spearman between the planted score and the mean of four ratings, over a very large simulated population
    (the quantity the per-explanation statistic estimates)."""
    population = simulate(20000, np.random.default_rng(99))
    table = per_explanation(population, "metric:planted")
    return float(stats.spearmanr(table["metric"], table["human"]).statistic)


@pytest.fixture(scope="module")
def report() -> dict:
    tidy = simulate(80, np.random.default_rng(7))
    return analyze(tidy, composite=False, models=(), n_boot=1000, seed=0)


def entry(report: dict, metric: str) -> dict:
    return next(e for e in report["automatic_metrics"] if e["metric"] == metric and e["construct"] == "Soundness")


def test_the_planted_score_is_found_and_its_ci_holds_the_true_correlation(report, true_correlation):
    planted = entry(report, "planted")
    print("planted", planted, "true", true_correlation, "noise", entry(report, "noise"))
    assert planted["n"] == 240
    assert 0 < planted["ci_low"] <= true_correlation <= planted["ci_high"]
    assert planted["ci_low"] < planted["spearman"] < planted["ci_high"]
    # People and the planted score order the three conditions alike.
    assert planted["kendall_conditions"] == pytest.approx(1.0)


def test_the_noise_score_is_not_found(report):
    noise = entry(report, "noise")
    assert noise["ci_low"] < 0 < noise["ci_high"]
    [headline] = best_per_construct(report["automatic_metrics"])
    assert headline["best"]["metric"] == "planted" and headline["overlapping"] == []


def test_the_report_validates_and_shows_the_section_and_scatter(report, tmp_path):
    assert validate_report(report) == []
    assert set(report["automatic_metric_points"]["Soundness"]) == {"planted", "noise"}
    html = render_html(report, {"metrics-soundness": "<svg id=scatter></svg>"})
    assert "Automatic metrics against people" in html
    assert "<strong>Soundness</strong>: planted agrees best" in html and "<svg id=scatter>" in html


def test_overlapping_cis_get_a_caution():
    entries = [
        {"metric": "m1", "construct": "X", "spearman": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 50,
         "kendall_conditions": 1.0},
        {"metric": "m2", "construct": "X", "spearman": 0.4, "ci_low": 0.2, "ci_high": 0.6, "n": 50,
         "kendall_conditions": 0.3},
        {"metric": "m3", "construct": "X", "spearman": 0.0, "ci_low": -0.2, "ci_high": 0.2, "n": 50,
         "kendall_conditions": None},
    ]  # fmt: skip
    [row] = best_per_construct(entries)
    assert row["best"]["metric"] == "m1" and row["overlapping"] == ["m2"]
    html = render_section({"automatic_metrics": entries, "settings": {"confidence": 0.95}}, {})
    assert "Caution: its CI overlaps those of m2" in html


def test_item_bootstrap_keeps_an_items_explanations_together():
    # Two items whose explanations agree perfectly within the item: every resample has rho 1 or is degenerate.
    table = pd.DataFrame(
        {
            "item_id": ["q1", "q1", "q1", "q2", "q2", "q2"],
            "condition": list("ABCABC"),
            "metric": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "human": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    assert bootstrap_spearman_ci(table, n_boot=200, seed=0, confidence=0.95) == (1.0, 1.0)


def test_kendall_over_condition_means_and_interval_alpha():
    table = pd.DataFrame({"condition": list("AABBCC"), "human": [1, 2, 3, 4, 5, 6.0], "metric": [3, 3, 2, 2, 1, 1.0]})
    assert kendall_conditions(table) == (pytest.approx(-1.0), 3)
    # Hand-worked: values 1,2,3 and 1,2,4 -> observed mean squared difference 1/3; pairwise over 6 values 3.0.
    first, second = np.array([1.0, 2, 3]), np.array([1.0, 2, 4])
    values = np.concatenate([first, second])
    expected = np.mean([(a - b) ** 2 for i, a in enumerate(values) for j, b in enumerate(values) if i != j])
    assert interval_alpha(first, second) == pytest.approx(1 - (1 / 3) / expected)
    assert interval_alpha(first, first) == pytest.approx(1.0)
    assert judge_matches("judge:completeness", "Completeness") and not judge_matches("length_words", "Completeness")


def test_metric_columns_of_a_tidy_file_are_analysed_and_written_back(tmp_path):
    tidy = simulate(30, np.random.default_rng(3))
    path = tmp_path / "ratings.csv"
    tidy.to_csv(path, index=False)
    from annotations.analysis.io import load_tidy_csv

    report, written = run_analysis(load_tidy_csv(path), tmp_path / "out", composite=False, models=(), n_boot=100)
    assert {e["metric"] for e in report["automatic_metrics"]} == {"planted", "noise"}
    assert (tmp_path / "out" / "metrics-soundness.svg").is_file() and "metrics-soundness.svg" in written
    assert "metric:planted" in pd.read_csv(tmp_path / "out" / "ratings_tidy.csv").columns
