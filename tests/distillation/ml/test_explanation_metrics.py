"""The metric cores without a database: metric lists, ROUGE-L on hand-worked cases, the judge's prompt and
strict reading of its replies, lengths; and that the cores import neither Django nor torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distillation.ml.explanation_metrics import (
    JudgeCase,
    JudgeRubric,
    judge_prompt,
    length_scores,
    parse_metric_list,
    parse_scale_point,
    rouge_l,
)


def test_cores_import_neither_django_nor_torch():
    code = (
        "import sys\nimport distillation.ml.explanation_metrics, annotations.analysis.metrics_agreement\n"
        "import annotations.analysis.metrics_report\n"
        "heavy = sorted({'torch', 'transformers', 'django', 'rouge_score'} & set(sys.modules))\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])


def test_metric_lists_are_checked():
    assert parse_metric_list(" length, judge:completeness,length ") == ["length", "judge:completeness"]
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        parse_metric_list("length,bleu")
    with pytest.raises(ValueError, match="needs a construct name"):
        parse_metric_list("judge:")
    with pytest.raises(ValueError, match="at least one"):
        parse_metric_list(" , ")


def test_rouge_l_on_hand_worked_cases():
    # LCS of "the cat sat on the mat" and "the cat was on a mat" is "the cat on mat": 4 of 6 tokens each way.
    scores = rouge_l("the cat was on a mat", "the cat sat on the mat")
    assert scores["precision"] == pytest.approx(4 / 6) and scores["recall"] == pytest.approx(4 / 6)
    # Candidate of 3 tokens inside a reference of 6: P = 3/3, R = 3/6, F = 2PR/(P+R) = 2/3.
    assert rouge_l("cat on mat", "the cat sat on the mat")["f1"] == pytest.approx(2 / 3)
    # Stemming: "running dogs" matches "run dog".
    assert rouge_l("running dogs", "run dog")["f1"] == pytest.approx(1.0)
    assert rouge_l("nothing shared", "entirely different")["f1"] == 0.0


def test_lengths():
    chars, words = length_scores("A river  flows\nto the sea.")
    assert (chars.name, chars.value, words.name, words.value) == ("length_chars", 26.0, "length_words", 6.0)


def test_judge_prompt_carries_the_constructs_wording_and_scale():
    rubric = JudgeRubric("completeness", "Completeness", "Does it say everything needed?", 5, ("no", "", "", "", "yes"))
    case = JudgeCase("q1/A/v1", "Where is water?", ("river", "desert"), "river", "Rivers hold water.")
    plain = judge_prompt(rubric, case, "plain")
    assert "Completeness: Does it say everything needed?" in plain and "1 = no" in plain and "5 = yes" in plain
    assert "(a) river (b) desert" in plain and "Answer: river" in plain and plain.endswith("Rating:")
    [message] = judge_prompt(rubric, case, "chat")
    assert message["role"] == "user" and "one whole number from 1 to 5" in message["content"]


@pytest.mark.parametrize(
    ("reply", "point"),
    [("4", 4), (" 5.\n", 5), ("1", 1), ("0", None), ("6", None), ("4/5", None), ("four", None), ("4 or 5", None),
     ("", None), ("3.5", None), ("Rating: 3", None)],
)  # fmt: skip
def test_only_a_bare_scale_point_counts(reply, point):
    assert parse_scale_point(reply, 5) == point
