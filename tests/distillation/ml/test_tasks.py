"""The tasks of each distillation method, checked text by text on a hand-written question."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from distillation.ml.tasks import (
    Method,
    ObjectiveWeights,
    Question,
    TaskKind,
    TeacherExample,
    build_task_examples,
    build_tasks,
    load_teacher_examples,
    pick_counterfactual_choice,
    split_validation,
    teacher_example_from_record,
)

QUESTION = TeacherExample(
    source_id="q1",
    question="Where do you keep milk cold?",
    choices=("oven", "fridge", "garden", "desk", "car"),
    answer="fridge",
    rationale="A fridge keeps food cold.\nIt also has a light.",
    counterfactual_rationales=(
        "An oven can be switched off.",
        "A fridge keeps food cold.",
        "Gardens are cool at night.\nMore text.",
        "A desk drawer is dark.",
        "A car has air conditioning.",
    ),
)
STEM = "Question: Where do you keep milk cold?\nChoices: (a) oven (b) fridge (c) garden (d) desk (e) car"


def texts(tasks):
    return {task.kind: (task.input_text, task.target_text) for task in tasks}


def test_multitask_texts_and_weights():
    tasks = build_tasks(QUESTION, Method.MT, ObjectiveWeights(alpha=0.25))
    assert texts(tasks) == {
        TaskKind.ANSWER: (f"[predict] {STEM}", "The answer is fridge"),
        TaskKind.EXPLAIN: (f"[explain] {STEM}", "A fridge keeps food cold."),
    }
    # The formula weights a and 1 - a.
    assert [task.weight for task in tasks] == [0.25, 0.75]


def test_counterfactual_texts_use_a_really_wrong_choice():
    tasks = build_tasks(QUESTION, Method.CF, seed=7)
    wrong = pick_counterfactual_choice(QUESTION, seed=7)
    assert wrong != 1
    wrong_rationale = QUESTION.counterfactual_rationales[wrong].split("\n")[0]
    assert texts(tasks) == {
        TaskKind.FACTUAL: (f"[factual] {STEM}", "A fridge keeps food cold. So the answer is fridge."),
        TaskKind.COUNTERFACTUAL: (
            f"[counterfactual] {STEM} Rationale: {wrong_rationale}",
            f"So the answer is {QUESTION.choices[wrong]}.",
        ),
    }
    assert [task.weight for task in tasks] == [0.5, 0.5]


def test_counterfactual_choice_is_seeded_per_question_and_never_the_answer():
    draws = [pick_counterfactual_choice(QUESTION, seed) for seed in range(200)]
    assert set(draws) == {0, 2, 3, 4}
    assert draws == [pick_counterfactual_choice(QUESTION, seed) for seed in range(200)]
    # When (a) is the answer, the reference always trained on it as the "wrong" one.
    answer_first = TeacherExample(**{**QUESTION.__dict__, "answer": "oven"})
    assert 0 not in {pick_counterfactual_choice(answer_first, seed) for seed in range(200)}
    # A duplicated right answer is not wrong in either position.
    duplicated = TeacherExample(**{**QUESTION.__dict__, "choices": ("oven", "fridge", "garden", "fridge", "car")})
    assert {pick_counterfactual_choice(duplicated, seed) for seed in range(200)} == {0, 2, 4}


def test_mtcf_has_all_four_tasks_with_the_nested_weights():
    tasks = build_tasks(QUESTION, Method.MTCF, ObjectiveWeights(alpha=0.5, beta=0.75, gamma=0.8))
    by_kind = {task.kind: task.weight for task in tasks}
    assert by_kind == pytest.approx(
        {
            TaskKind.ANSWER: 0.8 * 0.5,
            TaskKind.EXPLAIN: 0.8 * 0.5,
            TaskKind.FACTUAL: 0.2 * 0.75,
            TaskKind.COUNTERFACTUAL: 0.2 * 0.25,
        }
    )
    assert sum(by_kind.values()) == pytest.approx(1.0)
    assert texts(tasks)[TaskKind.ANSWER] == texts(build_tasks(QUESTION, Method.MT))[TaskKind.ANSWER]


def test_weights_must_be_probabilities():
    with pytest.raises(ValueError, match="alpha"):
        ObjectiveWeights(alpha=1.5)


def test_empty_rationale_is_refused_and_missing_revisions_are_skipped():
    with pytest.raises(ValueError, match="empty rationale"):
        build_tasks(TeacherExample(**{**QUESTION.__dict__, "rationale": "\n"}), Method.MT)
    record = {"id": "x", "question": "q", "choices": list("vwxyz"), "answer": "v", "rationale": "r", "revision": None}
    assert teacher_example_from_record(record, revised=True) is None
    assert teacher_example_from_record(record).rationale == "r"


def test_validation_split_is_seeded_and_by_question():
    examples = [TeacherExample(**{**QUESTION.__dict__, "source_id": f"q{i}"}) for i in range(2000)]
    train, validation = split_validation(examples, 0.1, split_seed=1)
    assert 150 < len(validation) < 250 and len(train) + len(validation) == 2000
    assert {e.source_id for e in train}.isdisjoint(e.source_id for e in validation)
    assert split_validation(examples, 0.1, split_seed=1) == (train, validation)
    assert split_validation(examples, 0.1, split_seed=2)[1] != validation


def test_validation_split_is_the_same_for_every_method_data_and_seed(data_dir: Path):
    """The held-out questions depend on the split seed alone: not on the method, the rationales (revised or
    unrevised, some revisions missing), the run's seed, or the order and subset of questions given."""
    path = data_dir / "teacher" / "cqa-llama2-13b-train.jsonl.gz"
    unrevised = load_teacher_examples(path)
    revised = load_teacher_examples(path, revised=True)
    assert len(revised) < len(unrevised)  # some revisions are missing
    questions = [Question(e.source_id, e.question, e.choices, e.answer) for e in unrevised]
    held_out = {q.source_id for q in split_validation(questions, 0.1)[1]}
    assert 900 < len(held_out) < 1050
    for examples in (unrevised, revised, list(reversed(revised)), unrevised[::3]):
        chosen = {e.source_id for e in split_validation(examples, 0.1)[1]}
        assert chosen == held_out & {e.source_id for e in examples}
    # What the trainer holds out is the same for every method and run seed (it is built from the split alone).
    for method in Method:
        for seed in (0, 1, 7):
            kept = {t.source_id for t in build_task_examples(split_validation(revised, 0.1)[0], method, seed=seed)}
            assert kept.isdisjoint(held_out) and len(kept) == len(revised) - len(
                held_out & {e.source_id for e in revised}
            )
    assert {q.source_id for q in split_validation(questions, 0.1, split_seed=1)[1]} != held_out


def test_reference_teacher_data_builds_every_task(data_dir: Path):
    examples = load_teacher_examples(data_dir / "teacher" / "cqa-llama2-13b-train.jsonl.gz", revised=True, limit=300)
    tasks = build_task_examples(examples, Method.MTCF, seed=0)
    assert Counter(task.kind for task in tasks) == {kind: len(examples) for kind in TaskKind}
    assert all("\n" not in task.target_text for task in tasks)
    by_id = {example.source_id: example for example in examples}
    for task in tasks:
        if task.kind is TaskKind.COUNTERFACTUAL:
            chosen = task.target_text.removeprefix("So the answer is ").removesuffix(".")
            assert chosen != by_id[task.source_id].answer
