"""Exact match (the accuracy) and the lenient answer parser: prefixes, choice text, letters, near misses, garbage."""

from __future__ import annotations

import pytest

from distillation.ml.answers import ParseStatus, exact_match, exact_match_accuracy, parse_answer, rationale_text_of

CHOICES = ("bank", "library", "department store", "mall", "new york")


@pytest.mark.parametrize(
    ("generated", "index", "status"),
    [
        ("The answer is mall", 3, ParseStatus.EXACT),
        ("the answer is   Department  Store", 2, ParseStatus.EXACT),
        ("Banks are safe. So the answer is bank.", 0, ParseStatus.EXACT),
        ("library", 1, ParseStatus.EXACT),
        ('The answer is "new york".', 4, ParseStatus.EXACT),
        ("The answer is (c)", 2, ParseStatus.LETTER),
        ("c", 2, ParseStatus.LETTER),
        ("C)", 2, ParseStatus.LETTER),
        ("So the answer is (e) new yrok.", 4, ParseStatus.LETTER),
        ("The answer is librry", 1, ParseStatus.SIMILAR),
        ("The answer is department stores", 2, ParseStatus.SIMILAR),
        ("The answer is banks", 0, ParseStatus.SIMILAR),
        ("The answer is zebra crossing", None, ParseStatus.UNPARSEABLE),
        ("", None, ParseStatus.UNPARSEABLE),
        ("qwxz", None, ParseStatus.UNPARSEABLE),
        ("The answer is f", None, ParseStatus.UNPARSEABLE),
    ],
)
def test_parse_answer(generated, index, status):
    parsed = parse_answer(generated, CHOICES)
    assert (parsed.choice_index, parsed.status) == (index, status)


def test_the_last_answer_phrase_wins():
    parsed = parse_answer("Not the mall, the answer is not that. So the answer is library.", CHOICES)
    assert parsed.choice_index == 1


def test_duplicate_choices_resolve_to_the_first():
    assert parse_answer("The answer is bridge", ("bus", "bridge", "train", "bridge", "car")).choice_index == 1


def test_threshold_is_adjustable():
    strict = parse_answer("The answer is lib", CHOICES, similarity_threshold=0.7)
    assert (strict.status, strict.similarity) == (ParseStatus.UNPARSEABLE, pytest.approx(0.6))
    assert parse_answer("The answer is lib", CHOICES, similarity_threshold=0.5).choice_index == 1


def test_rationale_part_of_a_factual_output():
    assert rationale_text_of("Books are lent there. So the answer is library.") == "Books are lent there."
    assert rationale_text_of("No answer given") == "No answer given"


def test_exact_match_is_the_answer_text_itself_not_the_nearest_choice():
    assert exact_match("The answer is wooded area", "The answer is wooded area")
    assert exact_match("Beavers use wood. So the answer is wooded area.", "wooded area")
    assert exact_match("  The answer is mall ", "mall")
    # The lenient parser takes these for the right choice; exact match does not.
    assert parse_answer("The answer is texas city", ("texas", "ohio")).choice_index == 0
    assert not exact_match("The answer is texas city", "texas")
    assert parse_answer("The answer is (a)", ("texas", "ohio")).choice_index == 0
    assert not exact_match("The answer is (a)", "texas")
    assert not exact_match("The answer is Mall", "mall")  # as the paper's string comparison
    assert exact_match_accuracy([("The answer is a", "a"), ("The answer is b", "c"), ("c", "c")]) == (2, 3)
