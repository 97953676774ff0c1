"""Text-quality measures: each on hand-made cases, and the paper's T5-large explanations as a reference."""

from __future__ import annotations

import csv
import gzip
import json

import pytest

from distillation.ml.answers import normalise
from distillation.ml.text_quality import (
    ExplainedQuestion,
    is_degenerate,
    is_empty,
    is_grounded,
    text_quality,
    unmet_goals,
    vocabulary,
)

CHOICES = ("bank", "library", "grocery store", "park", "school")


def letters_only(text: str) -> str:
    """The student files spell some questions with other spaces than the dev split does."""
    return "".join(character for character in text.lower() if character.isalnum())


def item(text: str, question: str = "Where would you borrow a book?", is_correct: bool | None = None):
    return ExplainedQuestion(text, question, CHOICES, is_correct)


def test_degenerate_means_a_character_six_times_or_a_word_four_times_in_a_row():
    assert is_degenerate("o the an an abbbbbbbbbbbbbbbbbbbbbb")
    assert is_degenerate("it is the the the the end")
    assert is_degenerate("The The the THE end")
    assert not is_degenerate("aaaaa is five; the the the is three")
    assert not is_degenerate("A library lends books to its members.")
    assert is_degenerate("......")


def test_empty_means_no_letter_or_digit():
    assert is_empty("") and is_empty("  .  ") and not is_empty("a")


def test_grounded_needs_a_content_word_of_its_own_question_or_choices():
    assert is_grounded("Libraries lend books.", "Where would you borrow a book?", CHOICES)
    assert is_grounded("You go to a grocery.", "Where would you borrow a book?", CHOICES)
    assert is_grounded("The farmer's field.", "Where is the farmer?", CHOICES), "a possessive is its word"
    assert is_grounded("Farmers' fields.", "Where is the farmer?", CHOICES)
    # "would", "where" are stop words; "you" is too short; "answer" names the task, not the question.
    assert not is_grounded("Where would you find the answer?", "Where would you borrow a book?", CHOICES)
    assert not is_grounded("This choice aligns with the context.", "Where would you borrow a book?", CHOICES)


def test_text_quality_shares_and_accuracy():
    items = [
        item("A library lends books.", is_correct=True),
        item("A library lends books.", is_correct=False),
        item("the the the the", is_correct=False),
        item("", is_correct=False),
        item("Parks have zebras.", is_correct=True),
    ]
    corpus = vocabulary(["a library lends books", "parks"])
    quality = text_quality(items, corpus)
    assert quality.n == 5
    assert quality.non_empty == pytest.approx(4 / 5)
    assert quality.degenerate == pytest.approx(1 / 5)
    assert quality.distinct == pytest.approx(2 / 5)  # the repeated sentence counts for neither copy
    assert quality.grounded == pytest.approx(3 / 5)  # two library ones and the park one
    # 4 + 4 + 4 + 3 word tokens; "the" (4 times), "have" and "zebras" are not in the corpus.
    assert quality.corpus_words == pytest.approx(9 / 15)
    assert quality.mean_length == pytest.approx(sum(len(i.explanation) for i in items) / 5)
    assert quality.accuracy == pytest.approx(2 / 5) and quality.chance == pytest.approx(1 / 5)


def test_unmet_goals_names_each_missed_goal_with_its_figure():
    books = ["You borrow books from a library.", "A library lends books.", "Libraries keep books to borrow."]
    readable = text_quality([item(text) for text in books], vocabulary(books))
    assert unmet_goals(readable) == []
    same = text_quality([item("It is a place.") for _ in range(3)], vocabulary(["it is a place"]))
    assert unmet_goals(same) == ["distinct 0% < 90%", "grounded 0% < 70%"]
    noise = text_quality([item("o the an an abbbbbbbb")] * 2 + [item("")], vocabulary(["the", "an"]))
    assert unmet_goals(noise) == [
        "non empty 67% < 98%",
        "degenerate 67% > 5%",
        "corpus words 60% < 90%",
        "distinct 0% < 90%",
        "grounded 0% < 70%",
    ]


def test_without_vocabulary_or_answers_those_measures_are_none():
    quality = text_quality([item("A library.")])
    assert quality.corpus_words is None and quality.accuracy is None and quality.chance is None
    assert text_quality([]).n == 0


@pytest.mark.parametrize("training_data", ["revised", "unrevised"])
def test_the_paper_t5_large_students_are_distinct_and_grounded(data_dir, training_data):
    dev = {}
    with open(data_dir / "cqa" / "validation.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            dev[letters_only(row["question"])] = row
    texts = []
    with gzip.open(data_dir / "teacher" / "cqa-llama2-13b-train.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts += [row["question"], *row["choices"], row["rationale"] or "", row["revision"] or ""]
    items = []
    with open(data_dir / "students" / f"t5-large-mtcf-{training_data}-validation.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            question = row["input_predict"].removeprefix("[predict] Question: ").split(" Choices: ")[0]
            source = dev[letters_only(question)]
            correct = normalise(row["answers_preds"]) == normalise(row["answers_labels"])
            items.append(ExplainedQuestion(row["rationales_preds"], source["question"], source["choices"], correct))
    quality = text_quality(items, vocabulary(texts))
    assert quality.n == 1221
    assert quality.non_empty == 1.0 and quality.degenerate == 0.0
    assert quality.distinct >= 0.99
    assert 0.97 <= quality.grounded <= 0.995
    assert quality.corpus_words > 0.99
    assert quality.accuracy > 0.7 and quality.chance == pytest.approx(0.2)
