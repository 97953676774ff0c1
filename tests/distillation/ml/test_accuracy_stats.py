"""Tests for the student-accuracy statistics: the paper's numbers, outlier fences, edge cases, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillation.ml.accuracy_stats import (
    ACCURACY,
    CONDITION,
    PAPER_CONDITIONS,
    compare_accuracy,
    condition_order,
    flag_outliers,
    iqr_fences,
    load_experiment_csv,
    plot_accuracy,
    runs_to_frame,
    size_order,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def paper_runs(data_dir: Path) -> pd.DataFrame:
    return load_experiment_csv(data_dir / "paper_study" / "experiment.csv")


@pytest.fixture(scope="module")
def paper_comparison(paper_runs: pd.DataFrame):
    return compare_accuracy(paper_runs)


def runs(method: str, data: str, size: str, accuracies: list[float]) -> list[dict]:
    return [
        {"method": method, "data": data, "size": size, "seed": seed, "accuracy": accuracy}
        for seed, accuracy in enumerate(accuracies)
    ]


def test_reproduces_the_papers_tukey_results(paper_comparison):
    small, large = paper_comparison.size("220M"), paper_comparison.size("770M")

    mt_vs_cf_small = small.pair("MT:Unrevised", "CF:Unrevised")
    mt_vs_cf_large = large.pair("MT:Unrevised", "CF:Unrevised")
    revised_vs_mt_large = large.pair("MT+CF:Revised", "MT:Unrevised")

    assert round(mt_vs_cf_small.diff, 2) == 12.66
    assert mt_vs_cf_small.p_adj < 0.001
    assert round(mt_vs_cf_large.diff, 2) == 6.24
    assert mt_vs_cf_large.p_adj < 0.001
    assert round(revised_vs_mt_large.diff, 2) == -1.90
    assert revised_vs_mt_large.p_adj < 0.05
    assert revised_vs_mt_large.reject


def test_paper_recipe_keeps_four_conditions_and_drops_seven_outliers(paper_runs, paper_comparison):
    assert sorted(set(paper_runs[CONDITION])) == sorted(PAPER_CONDITIONS)
    assert len(paper_runs) == 46  # 69 runs less the 23 revised MT and CF runs the paper does not report
    assert paper_comparison.n_dropped == 7
    assert [s.n for s in paper_comparison.size("220M").conditions] == [5, 5, 4, 6]
    assert [s.n for s in paper_comparison.size("770M").conditions] == [5, 5, 4, 5]


def test_tukey_kramer_agrees_with_statsmodels(paper_comparison):
    from statsmodels.stats.multicomp import pairwise_tukeyhsd

    kept = paper_comparison.runs[~paper_comparison.runs["dropped"]]
    for size in paper_comparison.sizes:
        at_size = kept[kept["size"] == size.size]
        reference = pairwise_tukeyhsd(at_size[ACCURACY].to_numpy(), at_size[CONDITION].to_numpy())
        header, *rows = reference.summary().data
        assert header[:4] == ["group1", "group2", "meandiff", "p-adj"]
        for group1, group2, diff, p_adj, *_ in rows:
            ours = size.pair(str(group2), str(group1))  # statsmodels reports group2 minus group1
            assert ours.diff == pytest.approx(diff, abs=1e-4)
            assert ours.p_adj == pytest.approx(p_adj, abs=1e-3)


def test_standard_errors_are_sd_over_root_n(paper_comparison):
    kept = paper_comparison.runs[~paper_comparison.runs["dropped"]]
    summary = paper_comparison.size("770M").summary("CF:Unrevised")
    values = kept[(kept["size"] == "770M") & (kept[CONDITION] == "CF:Unrevised")][ACCURACY].to_numpy()
    assert summary.mean == pytest.approx(values.mean())
    assert summary.se == pytest.approx(values.std(ddof=1) / np.sqrt(len(values)))


def test_csv_can_keep_every_condition(data_dir: Path):
    everything = load_experiment_csv(data_dir / "paper_study" / "experiment.csv", conditions=None)
    assert len(everything) == 69
    assert condition_order(everything[CONDITION]) == [
        "MT:Unrevised",
        "CF:Unrevised",
        "MT+CF:Unrevised",
        "MT:Revised",
        "CF:Revised",
        "MT+CF:Revised",
    ]


def test_fences_use_linear_quartiles():
    # Quartiles of 1..8 by linear interpolation are 2.75 and 6.25 (IQR 3.5).
    assert iqr_fences([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx((2.75 - 5.25, 6.25 + 5.25))


def test_outliers_are_flagged_per_condition_and_size():
    frame = runs_to_frame(
        runs("mt", "unrevised", "220M", [0.60, 0.61, 0.62, 0.63, 0.20])
        + runs("mt", "unrevised", "770M", [0.20, 0.21, 0.22, 0.23, 0.24])
    )
    flagged = flag_outliers(frame)
    assert flagged["dropped"].tolist() == [False] * 4 + [True] + [False] * 5


def test_runs_to_frame_converts_fractions_to_percent_and_labels_conditions():
    frame = runs_to_frame(runs("mtcf", "revised", "770M", [0.7361]))
    assert frame.loc[0, ACCURACY] == pytest.approx(73.61)
    assert frame.loc[0, CONDITION] == "MT+CF:Revised"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"method": "sft", "data": "unrevised", "size": "220M", "seed": 0, "accuracy": 0.5}, "unknown"),
        ({"method": "mt", "data": "unrevised", "size": "220M", "seed": 0, "accuracy": 65.0}, "fraction"),
    ],
)
def test_runs_to_frame_rejects_bad_rows(row, message):
    with pytest.raises(ValueError, match=message):
        runs_to_frame([row])


def test_size_order_follows_parameter_count():
    assert size_order(["3B", "770M", "t5-custom", "220M", "1.3B"]) == ["220M", "770M", "1.3B", "3B", "t5-custom"]


def test_single_condition_at_a_size_gives_a_note_not_a_crash():
    frame = runs_to_frame(
        runs("mt", "unrevised", "220M", [0.60, 0.61, 0.62])
        + runs("mt", "unrevised", "770M", [0.70, 0.71, 0.73])
        + runs("cf", "unrevised", "770M", [0.65, 0.66, 0.64])
    )
    comparison = compare_accuracy(frame)
    small = comparison.size("220M")
    assert small.tukey == [] and small.anova == []
    assert any("nothing to compare" in note for note in small.notes)
    assert len(comparison.size("770M").tukey) == 1
    assert any("leaves out ['CF:Unrevised']" in note for note in comparison.notes)
    assert any("fewer than two conditions" in note for note in comparison.notes)
    assert "nothing to compare" in comparison.format_table()


def test_condition_with_one_run_is_left_out_of_the_tests():
    frame = runs_to_frame(
        runs("mt", "unrevised", "220M", [0.60, 0.61, 0.62])
        + runs("cf", "unrevised", "220M", [0.50, 0.52])
        + runs("mtcf", "unrevised", "220M", [0.55])
    )
    size = compare_accuracy(frame).size("220M")
    assert [(p.first, p.second) for p in size.tukey] == [("MT:Unrevised", "CF:Unrevised")]
    assert size.summary("MT+CF:Unrevised").se is None
    assert any("MT+CF:Unrevised has 1 run(s)" in note for note in size.notes)


def test_one_size_skips_the_two_way_anova():
    frame = runs_to_frame(
        runs("mt", "unrevised", "220M", [0.60, 0.61, 0.62]) + runs("cf", "unrevised", "220M", [0.50, 0.52, 0.51])
    )
    comparison = compare_accuracy(frame)
    assert comparison.anova == []
    assert comparison.size("220M").anova[0].term == "condition"
    assert any("one model size only" in note for note in comparison.notes)


def test_no_runs_gives_a_note():
    comparison = compare_accuracy(runs_to_frame([]))
    assert comparison.sizes == []
    assert comparison.notes == ["no runs to compare"]
    with pytest.raises(ValueError, match="no runs to plot"):
        plot_accuracy(comparison, "unused.png")


def test_identical_accuracies_give_a_note_not_nan():
    frame = runs_to_frame(
        runs("mt", "unrevised", "220M", [0.6, 0.6, 0.6]) + runs("cf", "unrevised", "220M", [0.5, 0.5, 0.5])
    )
    size = compare_accuracy(frame).size("220M")
    assert size.tukey == []
    assert any("undefined" in note for note in size.notes)


def test_two_way_anova_matches_hand_computed_sums_of_squares():
    # Balanced 2 x 2 design: type II sums of squares equal the classical ones computed from cell means.
    cells = {
        ("mt", "220M"): [0.60, 0.62, 0.61],
        ("cf", "220M"): [0.50, 0.53, 0.52],
        ("mt", "770M"): [0.75, 0.76, 0.74],
        ("cf", "770M"): [0.70, 0.68, 0.69],
    }
    frame = runs_to_frame(
        [row for (method, size), values in cells.items() for row in runs(method, "unrevised", size, values)]
    )
    y = frame[ACCURACY]
    grand = y.mean()
    n_per_cell = 3
    ss_condition = 6 * ((frame.groupby(CONDITION)[ACCURACY].mean() - grand) ** 2).sum()
    ss_size = 6 * ((frame.groupby("size")[ACCURACY].mean() - grand) ** 2).sum()
    cell_means = frame.groupby([CONDITION, "size"])[ACCURACY].transform("mean")
    ss_residual = ((y - cell_means) ** 2).sum()
    ss_cells = n_per_cell * ((frame.groupby([CONDITION, "size"])[ACCURACY].mean() - grand) ** 2).sum()

    table = {row.term: row for row in compare_accuracy(frame).anova}

    assert table["condition"].sum_sq == pytest.approx(ss_condition)
    assert table["size"].sum_sq == pytest.approx(ss_size)
    assert table["condition:size"].sum_sq == pytest.approx(ss_cells - ss_condition - ss_size)
    assert table["Residual"].sum_sq == pytest.approx(ss_residual)
    assert table["Residual"].df == 8
    assert table["condition"].f == pytest.approx(ss_condition / (ss_residual / 8))


def test_pair_lookup_orients_the_difference(paper_comparison):
    size = paper_comparison.size("220M")
    forward = size.pair("MT:Unrevised", "CF:Unrevised")
    backward = size.pair("CF:Unrevised", "MT:Unrevised")
    assert backward.diff == -forward.diff
    assert (backward.ci_low, backward.ci_high) == (-forward.ci_high, -forward.ci_low)
    with pytest.raises(KeyError):
        size.pair("MT:Unrevised", "MT:Revised")


def test_to_dict_is_strict_json(paper_comparison):
    out = json.loads(json.dumps(paper_comparison.to_dict(), allow_nan=False))
    assert out["n_dropped"] == 7
    sizes = {size["size"]: size for size in out["sizes"]}
    assert sizes["770M"]["tukey"][0]["first"] == "MT:Unrevised"
    assert out["anova"][-1] == {
        "term": "Residual",
        "sum_sq": pytest.approx(paper_comparison.anova[-1].sum_sq),
        "df": 31.0,
        "f": None,
        "p": None,
        "partial_eta_sq": None,
    }


def test_format_table_lists_every_size_condition_and_pair(paper_comparison):
    text = paper_comparison.format_table()
    assert "== 220M" in text and "== 770M" in text
    for condition in PAPER_CONDITIONS:
        assert condition in text
    assert "12.66" in text and "Two-way ANOVA" in text


def test_plot_writes_a_png(paper_comparison, tmp_path: Path):
    path = plot_accuracy(paper_comparison, tmp_path / "accuracy.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_import_is_light():
    code = (
        "import sys, distillation.ml.accuracy_stats; "
        "heavy = [m for m in ('torch', 'transformers', 'statsmodels', 'matplotlib', 'django') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
