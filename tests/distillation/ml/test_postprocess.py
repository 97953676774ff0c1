"""Cleaning of teacher completions and the mid-sentence check."""

from __future__ import annotations

import pytest

from distillation.ml.postprocess import clean_completion, cut_at_first, looks_truncated


def test_first_line_is_kept_and_trimmed():
    cleaned = clean_completion("  Fish breathe through gills in water.\nQuestion: next one")
    assert cleaned.text == "Fish breathe through gills in water."
    assert not cleaned.truncated and not cleaned.empty


def test_echoed_prompt_and_repeated_label_are_stripped():
    prompt = "Question: Where do fish live?\nAnswer: water\nExplanation:"
    cleaned = clean_completion(prompt + " Fish need water to breathe.\n", prompt=prompt)
    assert cleaned.text == "Fish need water to breathe."
    assert clean_completion(" Explanation: Fish need water.", prompt=prompt).text == "Fish need water."


def test_a_new_question_ends_the_answer_even_without_a_line_break():
    cleaned = clean_completion("Fish need water. Question: Where do birds live?", stop=())
    assert cleaned.text == "Fish need water."


def test_a_leading_line_break_does_not_empty_the_answer():
    assert clean_completion("\n Fish need water.\nMore").text == "Fish need water."


def test_other_stop_sequences_cut_at_the_earliest():
    assert clean_completion("one ### two END three", stop=("END", "###")).text == "one"
    assert cut_at_first("abc", ["x"]) == ("abc", False)


def test_token_limit_marks_truncation_only_when_nothing_was_cut():
    assert clean_completion("Fish need wat", hit_token_limit=True).truncated
    # The limit was hit after a complete first line: what is kept is whole.
    assert not clean_completion("Fish need water.\nQuestion: Where", hit_token_limit=True).truncated
    assert not clean_completion("Fish need wat", hit_token_limit=False).truncated


@pytest.mark.parametrize("raw", ["", "   ", "\nQuestion: Where do birds live?", "Question: again"])
def test_empty_outputs_are_flagged(raw: str):
    cleaned = clean_completion(raw)
    assert cleaned.text == "" and cleaned.empty


@pytest.mark.parametrize(
    ("text", "truncated"),
    [
        ("Beavers build dams from wood.", False),
        ("Is that right?", False),
        ("What a surprise!", False),
        ('He said "go home."', False),
        ("It is the best choice (as shown above.)", False),
        ("Therefore, the car was heading east towards the", True),
        ("This choice aligns", True),
        ("such as sticks, branches,", True),
        ("The answer is water.  ", False),
        ("", False),
    ],
)
def test_looks_truncated(text: str, truncated: bool):
    assert looks_truncated(text) is truncated


def test_an_uncased_students_output_reads_as_written_text_and_cased_output_keeps_its_case():
    from distillation.ml.text import readable_output

    uncased = "this choice aligns with the child ' s well - known wish. i think so? yes"
    assert readable_output(uncased) == "This choice aligns with the child's well-known wish. I think so? Yes"
    cased = "The answer is iPhone. it stays"
    assert readable_output(cased) == cased
