"""Prompt builders: exact text per stage, chat structure, versions pinned to the template text, seeded draws."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distillation.ml import prompts
from distillation.ml.prompts import (
    REQUEST_PAIRS,
    TEMPLATES,
    PromptConfig,
    build_counterfactual_prompt,
    build_critique_prompt,
    build_rationale_prompt,
    build_revision_prompt,
    draw_qualities,
    draw_request_pair,
    format_choices,
    load_fewshot,
)

# Each template's text hashed. Editing a template without giving it a new version fails here; a new version
# needs a new line, so outputs of the old and new wording can never be mixed up under one version.
PINNED_FINGERPRINTS = {
    "rationale/v1": "1d6ec940c6796742a74ea46bb32f19c7a209c37e1867005414d7e50c2960e8e2",
    "critique/v1": "a0270bf526f1695b3d207ebb1b65a97f9662d317615e22c94b884daf33628baf",
    "revision/v1": "b9af8164ef10c7be1b9f38b8f41fd86414aa262e4125991a2ae1143e924820ec",
    "counterfactual/v1": "649fa81774357d434c156970a452044aa72dc1a88ff511d34ff797dfe1337e24",
}

ONE_EXAMPLE = {
    "examples": [
        {
            "question": "What do you use to unlock a door?",
            "choices": ["key", "spoon", "cloud", "song", "shoe"],
            "answer": "key",
            "rationale": "A key is made to turn a lock; the other things cannot open one.",
            "negative_rationale": "A key, obviously.",
            "critique": "It gives no reason and ignores the other choices.",
            "revision": "A key fits the lock and turns it, which a spoon, cloud, song or shoe cannot do.",
        }
    ]
}

QUESTION = "Where do fish live?"
CHOICES = ("desert", "water", "tree", "oven", "sky")
ANSWER = "water"


@pytest.fixture
def one_example(tmp_path: Path):
    path = tmp_path / "fewshot.json"
    path.write_text(json.dumps(ONE_EXAMPLE), encoding="utf-8")
    return load_fewshot(path)


def test_choices_are_lettered_like_the_paper():
    assert format_choices(CHOICES) == "(a) desert (b) water (c) tree (d) oven (e) sky"


def test_rationale_prompt_text(one_example):
    prompt = build_rationale_prompt(
        question=QUESTION, choices=CHOICES, answer=ANSWER, fewshot=one_example, qualities=("clear", "concise")
    )
    assert prompt.content == (
        "Each question below has five answer choices, and its correct answer is given. After "
        '"Explanation:", write on a single line an explanation of why that answer is correct that is '
        "clear and concise.\n\n"
        "Question: What do you use to unlock a door?\n"
        "Choices: (a) key (b) spoon (c) cloud (d) song (e) shoe\n"
        "Answer: key\n"
        "Explanation: A key is made to turn a lock; the other things cannot open one.\n\n"
        "Question: Where do fish live?\n"
        "Choices: (a) desert (b) water (c) tree (d) oven (e) sky\n"
        "Answer: water\n"
        "Explanation:"
    )
    assert prompt.draws == {"qualities": ["clear", "concise"]}
    assert prompt.version.startswith("rationale/v1+fewshot=")


def test_critique_prompt_text(one_example):
    request = REQUEST_PAIRS[3][0]
    prompt = build_critique_prompt(
        question=QUESTION,
        choices=CHOICES,
        answer=ANSWER,
        rationale="Fish need water.",
        fewshot=one_example,
        request_pair=3,
    )
    assert prompt.content == (
        "Each question below has five answer choices, its correct answer, and an explanation of that "
        'answer. After "Critique:", write on a single line a critique of the explanation that answers the '
        "critique request.\n\n"
        "Question: What do you use to unlock a door?\n"
        "Choices: (a) key (b) spoon (c) cloud (d) song (e) shoe\n"
        "Answer: key\n"
        "Explanation: A key, obviously.\n"
        f"Critique request: {request}\n"
        "Critique: It gives no reason and ignores the other choices.\n\n"
        "Question: Where do fish live?\n"
        "Choices: (a) desert (b) water (c) tree (d) oven (e) sky\n"
        "Answer: water\n"
        "Explanation: Fish need water.\n"
        f"Critique request: {request}\n"
        "Critique:"
    )
    assert prompt.draws == {"request_pair": 3}


def test_revision_prompt_text(one_example):
    critique_request, revision_request = REQUEST_PAIRS[0]
    prompt = build_revision_prompt(
        question=QUESTION,
        choices=CHOICES,
        answer=ANSWER,
        rationale="Fish need water.",
        critique="Too short.",
        fewshot=one_example,
        request_pair=0,
    )
    assert prompt.content == (
        "Each question below has five answer choices, its correct answer, an explanation of that answer "
        'and a critique of the explanation. After "Revision:", write on a single line a new explanation for '
        "the same answer that answers the revision request.\n\n"
        "Question: What do you use to unlock a door?\n"
        "Choices: (a) key (b) spoon (c) cloud (d) song (e) shoe\n"
        "Answer: key\n"
        "Explanation: A key, obviously.\n"
        f"Critique request: {critique_request}\n"
        "Critique: It gives no reason and ignores the other choices.\n"
        f"Revision request: {revision_request}\n"
        "Revision: A key fits the lock and turns it, which a spoon, cloud, song or shoe cannot do.\n\n"
        "Question: Where do fish live?\n"
        "Choices: (a) desert (b) water (c) tree (d) oven (e) sky\n"
        "Answer: water\n"
        "Explanation: Fish need water.\n"
        f"Critique request: {critique_request}\n"
        "Critique: Too short.\n"
        f"Revision request: {revision_request}\n"
        "Revision:"
    )


def test_counterfactual_prompt_names_the_choice_as_the_answer(one_example):
    prompt = build_counterfactual_prompt(question=QUESTION, choices=CHOICES, choice_index=3, fewshot=one_example)
    assert prompt.content.endswith(
        "Question: Where do fish live?\n"
        "Choices: (a) desert (b) water (c) tree (d) oven (e) sky\n"
        "Answer: oven\n"
        "Explanation:"
    )
    assert "as if it were the correct one" in prompt.content
    assert prompt.draws == {"choice": "oven"}
    assert prompt.version.startswith("counterfactual/v1+fewshot=")


def test_chat_variant_alternates_examples_and_ends_with_the_question(one_example):
    prompt = build_rationale_prompt(
        question=QUESTION,
        choices=CHOICES,
        answer=ANSWER,
        fewshot=one_example,
        qualities=("accurate", "informative"),
        chat=True,
    )
    messages = prompt.content
    assert [message["role"] for message in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].endswith("that is accurate and informative.")
    assert messages[1]["content"] == (
        "Question: What do you use to unlock a door?\n"
        "Choices: (a) key (b) spoon (c) cloud (d) song (e) shoe\n"
        "Answer: key\n"
        "Explain why this answer is correct."
    )
    assert messages[2]["content"] == ONE_EXAMPLE["examples"][0]["rationale"]
    assert messages[3]["content"].startswith("Question: Where do fish live?\n")
    assert "+chat" in prompt.version
    assert json.loads(prompt.text) == messages


def test_default_fewshot_has_seven_complete_examples_and_plain_versions():
    fewshot = load_fewshot()
    assert len(fewshot.examples) == 7
    for example in fewshot.examples:
        assert len(example.choices) == 5 and example.answer in example.choices
        assert example.rationale != example.negative_rationale
    config = PromptConfig()
    assert config.rationale("q1", QUESTION, CHOICES, ANSWER).version == "rationale/v1"
    assert config.critique("q1", QUESTION, CHOICES, ANSWER, "r").version == "critique/v1"
    assert config.revision("q1", QUESTION, CHOICES, ANSWER, "r", "c").version == "revision/v1"
    assert config.counterfactual(QUESTION, CHOICES, 0).version == "counterfactual/v1"


def test_fewshot_file_missing_a_field_is_refused(tmp_path: Path):
    broken = {"examples": [{**ONE_EXAMPLE["examples"][0], "critique": ""}]}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ValueError, match="example 1 lacks critique"):
        load_fewshot(path)


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
def test_template_text_is_pinned_to_its_version(kind: str):
    template = TEMPLATES[kind]
    assert template.version.startswith(f"{kind}/v")
    assert template.version in PINNED_FINGERPRINTS, f"new version {template.version}: pin its fingerprint"
    assert template.fingerprint() == PINNED_FINGERPRINTS[template.version], (
        f"the text of template {kind!r} changed: give it a new version and pin the new fingerprint"
    )


def test_fingerprint_covers_request_pairs():
    before = prompts.CRITIQUE_TEMPLATE.fingerprint()
    edited = prompts.PromptTemplate(**{**prompts.CRITIQUE_TEMPLATE.__dict__, "extra_text": ("a different request",)})
    assert edited.fingerprint() != before


def test_draws_are_seeded_per_question_and_run():
    assert draw_qualities(7, "abc") == draw_qualities(7, "abc")
    qualities = {draw_qualities(7, f"q{i}") for i in range(40)}
    assert len(qualities) > 10
    assert all(first != second for first, second in qualities)
    assert {draw_qualities(seed, "abc") for seed in range(20)} != {draw_qualities(7, "abc")}
    pairs = {draw_request_pair(0, f"q{i}") for i in range(200)}
    assert pairs == set(range(len(REQUEST_PAIRS))) and len(REQUEST_PAIRS) == 10


def test_critique_and_revision_of_one_question_share_the_request_pair():
    config = PromptConfig(seed=3)
    critique = config.critique("q9", QUESTION, CHOICES, ANSWER, "r")
    revision = config.revision("q9", QUESTION, CHOICES, ANSWER, "r", "c")
    assert critique.draws["request_pair"] == revision.draws["request_pair"]
    assert REQUEST_PAIRS[revision.draws["request_pair"]][1] in revision.content
