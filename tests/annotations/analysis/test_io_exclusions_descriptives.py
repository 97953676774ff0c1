"""Loading, exclusion rules and descriptives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from annotations.analysis.descriptives import describe, item_bootstrap_mean_ci
from annotations.analysis.exclusions import ExclusionRules, apply_exclusions
from annotations.analysis.io import (
    QUALITY,
    TIDY_COLUMNS,
    composite_scores,
    conditions_of,
    load_tidy_csv,
    load_wide_csv,
    wide_to_tidy,
)

CONSTRUCTS = ["Completeness", "Contrastiveness", "Plausibility", "Satisfaction", "Understandability"]


def test_wide_study_becomes_tidy_with_covariates(data_dir: Path):
    tidy = load_wide_csv(
        data_dir / "paper_study" / "study.csv",
        annotator="CASE",
        explanation="rationale_id",
        condition="model",
        constructs=CONSTRUCTS,
    )
    assert list(tidy.columns[:6]) == list(TIDY_COLUMNS)
    assert len(tidy) == 1114 * 5
    assert {"rationale_length", "gender", "rationale"} <= set(tidy.columns)
    assert (tidy["item_id"] == tidy["explanation_id"]).all()  # no item column: the explanation is the item
    assert conditions_of(tidy, "CF:PosRationales")[0] == "CF:PosRationales"


def test_tidy_csv_round_trip(tmp_path: Path):
    wide = pd.DataFrame(
        {
            "who": ["a", "b"],
            "text": [1, 2],
            "question": [10, 10],
            "arm": ["x", "y"],
            "C1": [3, 4],
            "C2": [5, 1],
            "explanation_length": [100, 120],
        }
    )
    tidy = wide_to_tidy(
        wide, annotator="who", explanation="text", condition="arm", constructs=["C1", "C2"], item="question"
    )
    assert tidy["item_id"].tolist() == [10, 10, 10, 10]
    assert "question" not in tidy.columns and "explanation_length" in tidy.columns
    tidy.to_csv(tmp_path / "r.csv", index=False)
    again = load_tidy_csv(tmp_path / "r.csv")
    pd.testing.assert_frame_equal(again, tidy, check_dtype=False)


def test_composite_is_the_mean_per_judgement():
    tidy = pd.DataFrame(
        {
            "annotator_id": ["a"] * 4,
            "item_id": [1, 1, 1, 1],
            "explanation_id": [1, 1, 1, 1],
            "condition": ["x", "x", "y", "y"],
            "construct": ["C1", "C2", "C1", "C2"],
            "value": [2.0, 4.0, 5.0, 5.0],
        }
    )
    quality = composite_scores(tidy, ["C1", "C2"])
    # Same explanation id, different conditions: two judgements, not one.
    assert sorted(quality["value"]) == [3.0, 5.0]
    assert set(quality["construct"]) == {QUALITY}


def _ratings() -> pd.DataFrame:
    rows = []
    for annotator, values in {
        "steady": [3, 3, 3, 3, 3, 3],
        "normal": [1, 4, 5, 2, 3, 4],
        "fast": [5, 4, 4, 2, 1, 3],
        "careless": [2, 3, 4, 4, 5, 1],
    }.items():
        for k, value in enumerate(values):
            rows.append(
                {
                    "annotator_id": annotator,
                    "item_id": k,
                    "explanation_id": k,
                    "condition": "xy"[k % 2],
                    "construct": "C",
                    "value": float(value),
                    "seconds": 2.0 if annotator == "fast" else 30.0,
                    "attention_failed": annotator == "careless" and k == 0,
                }
            )
    return pd.DataFrame(rows)


def test_exclusion_rules_are_counted_per_rule():
    kept, summary = apply_exclusions(
        _ratings(), ExclusionRules(attention_column="attention_failed", seconds_column="seconds", min_seconds=5)
    )
    assert set(kept["annotator_id"]) == {"normal"}
    counts = summary.to_dict()
    assert counts["by_rule"]["straightlining"]["annotators"] == ["steady"]
    assert counts["by_rule"]["too_fast"]["annotators"] == ["fast"]
    assert counts["by_rule"]["attention_check"]["annotators"] == ["careless"]
    assert counts["n_ratings_excluded"] == 18 and summary.n_excluded == 18


def test_straightlining_needs_enough_ratings():
    _, summary = apply_exclusions(_ratings(), ExclusionRules(straightlining_min_ratings=7))
    assert summary.annotators_by_rule["straightlining"] == []


def test_descriptives_cell_contents():
    frame = pd.DataFrame(
        {"condition": ["x"] * 6, "item_id": [1, 1, 2, 2, 3, 3], "value": [1.0, 2.0, 4.0, 5.0, 5.0, 4.0]}
    )
    cell = describe({"C": frame}, ["x"], n_boot=500, seed=1)["C"]["x"]
    assert cell["n"] == 6 and cell["mean"] == pytest.approx(3.5) and cell["median"] == 4.0
    assert cell["top2"] == pytest.approx(4 / 6)
    assert cell["distribution"] == {"1": 1, "2": 1, "3": 0, "4": 2, "5": 2}
    assert cell["ci_low"] < 3.5 < cell["ci_high"]
    assert describe({"C": frame}, ["x"], n_boot=500, seed=1) == describe({"C": frame}, ["x"], n_boot=500, seed=1)


def test_bootstrap_resamples_items_not_ratings():
    # Two items whose ratings never vary within the item: every replicate mean is a mix of 1.0 and 5.0 in
    # item-sized blocks, so only the three values 1, 3, 5 can appear.
    values = np.array([1.0] * 10 + [5.0] * 10)
    items = np.repeat([0, 1], 10)
    low, high = item_bootstrap_mean_ci(values, items, n_boot=200, rng=np.random.default_rng(0), confidence=0.999)
    assert {low, high} <= {1.0, 3.0, 5.0}
