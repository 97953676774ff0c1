"""Bradley-Terry with ties (Davidson) against R, and the report's preferences section."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotations.analysis.preferences import PAIR_COLUMNS, analyze_preferences, fit_davidson, preference_probabilities

CONDITIONS = ["A", "B", "C", "D"]
# 120 simulated judgements by 15 annotators: "annotator first second outcome", outcome a/b (which of the two
# was preferred) or tie. Simulated with log-worths (0, 0.5, -0.3, 0.9) and nu = 0.6.
JUDGEMENTS = (
    "0 D C a;0 D C a;0 A B a;0 A B tie;0 A C a;0 A B tie;0 D C a;0 B C a;1 C D tie;1 D A b;1 D A tie;"
    "1 A D a;1 C D b;1 B A a;1 D B a;1 A C b;2 D B a;2 A C tie;2 C B a;2 D B tie;2 C A b;2 C D b;2 D A a;"
    "2 B D b;3 C D b;3 B D a;3 A C a;3 B D a;3 B A a;3 C A b;3 A D b;3 C B a;4 C B b;4 C B b;4 B D b;"
    "4 D A a;4 B C tie;4 D C tie;4 B A a;4 D C a;5 A D a;5 C B b;5 B D a;5 B D a;5 D B a;5 D A a;5 D A a;"
    "5 B C b;6 D B tie;6 C B b;6 C D b;6 B D a;6 C A a;6 C A a;6 A C tie;6 D B a;7 B C tie;7 C B b;"
    "7 D C tie;7 D B tie;7 C A b;7 D C a;7 A C b;7 B A tie;8 C A b;8 B D b;8 C D b;8 B C a;8 C B a;"
    "8 C A b;8 D C a;8 B A a;9 A C tie;9 B A b;9 A B a;9 A C b;9 C A a;9 D B tie;9 A B a;9 B C a;"
    "10 C A b;10 D C a;10 A B b;10 A B tie;10 B D b;10 A D a;10 C D b;10 A B b;11 A C b;11 A C b;"
    "11 B A a;11 C A b;11 B C a;11 C B a;11 A B b;11 A B a;12 D C a;12 A D a;12 B C a;12 A C tie;"
    "12 D C a;12 D A tie;12 D A a;12 C A b;13 B C a;13 D C a;13 B C tie;13 A C a;13 A D tie;13 B D b;"
    "13 D C tie;13 D B a;14 B D tie;14 A B tie;14 D B tie;14 D B b;14 A B tie;14 D B tie;14 D A tie;"
    "14 C A a;"
)


@pytest.fixture
def pairs() -> pd.DataFrame:
    rows = [entry.split() for entry in "".join(JUDGEMENTS).split(";") if entry]
    frame = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    frame["annotator_id"] = "r" + frame["annotator_id"]
    return frame


def test_davidson_ties_match_a_poisson_log_linear_fit_in_r(pairs):
    # R 4.2 glm(n ~ 0 + factor(pair) + lambda_B + lambda_C + lambda_D + tie, family = poisson) on the counts
    # per unordered pair and outcome (win of the first, win of the second, tie; a tie row carries half of
    # each lambda): the multinomial Davidson likelihood. BradleyTerry2 has no ties model.
    fit = fit_davidson(pairs, CONDITIONS)
    np.testing.assert_allclose(fit.log_worth, [0.0, 0.3904257314, -0.6798719748, 0.9738484100], atol=1e-6)
    assert fit.tie == pytest.approx(0.6776030088, abs=1e-6)
    p_a, p_b, p_tie = preference_probabilities(fit, 0, 3)
    assert p_a + p_b + p_tie == pytest.approx(1.0)
    assert p_b > p_a  # D has the largest worth


def test_without_ties_it_is_bradleyterry2(pairs):
    # BradleyTerry2 1.1-2: BTm(cbind(wins, 0), winner, loser) on the judgements without ties.
    fit = fit_davidson(pairs[pairs["outcome"] != "tie"], CONDITIONS)
    assert fit.tie == 0.0
    np.testing.assert_allclose(fit.log_worth, [0.0, 0.3997827289, -0.5990720087, 1.0396553086], atol=1e-6)


def test_preferences_section_has_worth_intervals_from_an_annotator_bootstrap(pairs):
    section = analyze_preferences(pairs, CONDITIONS, n_boot=200, seed=1)
    assert section["n_judgements"] == 120 and section["n_annotators"] == 15
    worths = {row["condition"]: row for row in section["worths"]}
    assert sum(row["worth"] for row in worths.values()) == pytest.approx(1.0)
    for condition in CONDITIONS[1:]:
        row = worths[condition]
        assert row["log_worth_ci_low"] < row["log_worth"] < row["log_worth_ci_high"]
    assert len(section["pairs"]) == 6
    first = section["pairs"][0]
    assert (first["a"], first["b"]) == ("A", "B")
    assert first["n_a"] + first["n_b"] + first["n_tie"] == len(
        pairs[pairs[["condition_a", "condition_b"]].isin(["A", "B"]).all(axis=1)]
    )
    assert first["p_a_ci_low"] < first["p_a"] < first["p_a_ci_high"]


def test_refuses_unknown_conditions_and_outcomes(pairs):
    with pytest.raises(ValueError, match="not in the study"):
        fit_davidson(pairs, ["A", "B"])
    bad = pairs.assign(outcome="left")
    with pytest.raises(ValueError, match="outcomes"):
        fit_davidson(bad, CONDITIONS)
