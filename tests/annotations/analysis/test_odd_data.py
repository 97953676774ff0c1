"""Odd data: the report is always written; each part that cannot be computed is skipped with a warning."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from annotations.analysis.exclusions import ExclusionRules
from annotations.analysis.report import run_analysis
from annotations.analysis.schema import validate_report


def _ratings(n_annotators: int = 8, n_items: int = 12, conditions=("A", "B"), seed: int = 0) -> pd.DataFrame:
    """Every annotator rates every item's explanation in each condition on two constructs."""
    rng = np.random.default_rng(seed)
    rows = []
    for annotator in range(n_annotators):
        for item in range(n_items):
            for condition in conditions:
                for construct in ("Clarity", "Accuracy"):
                    rows.append(
                        {
                            "annotator_id": f"a{annotator}",
                            "item_id": f"i{item}",
                            "explanation_id": f"i{item}",
                            "condition": condition,
                            "construct": construct,
                            "value": float(rng.integers(1, 6)),
                            "failed": False,
                        }
                    )
    return pd.DataFrame(rows)


def _one_condition():
    return _ratings(conditions=("A",))


def _one_rating():
    return _ratings().iloc[:1]


def _constant_values():
    frame = _ratings()
    frame["value"] = 3.0
    return frame


def _blank_values():
    frame = _ratings()
    frame["value"] = np.nan
    return frame


def _some_blank_values():
    frame = _ratings()
    frame.loc[frame["condition"] == "B", "value"] = np.nan
    return frame


def _everyone_excluded():
    frame = _ratings()
    frame["failed"] = True
    return frame


def _single_annotator():
    frame = _ratings()
    return frame[frame["annotator_id"] == "a0"]


CASES = {
    "one condition": (_one_condition, "lmm"),
    "one rating": (_one_rating, "lmm"),
    "constant values": (_constant_values, "clmm"),
    "blank values": (_blank_values, "lmm"),
    "blank in one condition": (_some_blank_values, "lmm"),
    "everyone excluded": (_everyone_excluded, "lmm"),
    "single annotator": (_single_annotator, "ordinal"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_odd_data_give_a_report_with_warnings_not_a_crash(case, tmp_path):
    build, skipped_kind = CASES[case]
    rules = ExclusionRules(attention_column="failed", straightlining=False)
    report, _ = run_analysis(build(), tmp_path, n_boot=50, exclusions=rules)

    assert validate_report(report) == []
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["warnings"] == report["warnings"]
    # The model that cannot be fitted is named in a warning, and is not in the models.
    assert any(w.startswith(f"{skipped_kind} model") for w in report["warnings"]), report["warnings"]
    assert all(w in (tmp_path / "report.html").read_text() for w in map(_escaped, report["warnings"]))
    assert (tmp_path / "ratings_tidy.csv").exists()


def _escaped(text: str) -> str:
    from html import escape

    return escape(text)


def test_one_failing_model_leaves_the_others(tmp_path):
    frame = _single_annotator()
    report, _ = run_analysis(frame, tmp_path, n_boot=50)
    kinds = {m["kind"] for m in report["models"]}
    assert "ols" in kinds  # the composite's OLS needs no second annotator
