"""The training tasks of each distillation method (MT, CF, MT+CF), built per question from teacher outputs.

Texts follow the paper's code. For a question q with choices c1..c5 and answer A:

- MT (Hsieh et al. 2023): ``[predict] Question: q\\nChoices: (a) c1 ... (e) c5`` -> ``The answer is A`` and
  ``[explain] ...`` -> the rationale; ``L = a * L_answer + (1 - a) * L_explain``.
- CF (Wang et al. 2023, SCOTT): ``[factual] ...`` -> ``{rationale} So the answer is A.`` and
  ``[counterfactual] ... Rationale: {rationale for wrong choice W}`` -> ``So the answer is W.``;
  ``L = b * L_factual + (1 - b) * L_counterfactual``.
- MT+CF: ``L = g * L_MT + (1 - g) * L_CF``.

Loss weights. A training step holds whole questions: every task of each of its questions. Each task example
carries its formula weight (MT+CF: g*a, g*(1-a), (1-g)*b, (1-g)*(1-b)); the trainer takes each task's loss as
the token mean over that task's sequences in the step (as a Hugging Face loss over a batch of that task) and the
step loss as ``sum_k w_k * L_k``: the paper's formula on every step, not only on average.

Validation: a question is held out when a hash of (split seed, question id) falls below the fraction, so the
held-out questions are the same for every method, training data, run seed and set of available rationales.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from distillation.ml.answers import CHOICE_LETTERS, normalise
from distillation.ml.records import read_json_lines
from distillation.ml.text import first_line

HasSourceId = TypeVar("HasSourceId", bound="Question | TeacherExample")


class Method(StrEnum):
    MT = "mt"
    CF = "cf"
    MTCF = "mtcf"


class TaskKind(StrEnum):
    ANSWER = "answer"
    EXPLAIN = "explain"
    FACTUAL = "factual"
    COUNTERFACTUAL = "counterfactual"


# The version of the input format below (prefixes and question layout): prediction sets store it, so a
# rating names the format its text was generated from. Change it whenever the format changes.
TASK_FORMAT_VERSION = "tasks/v1"

TASK_PREFIXES: dict[TaskKind, str] = {
    TaskKind.ANSWER: "[predict]",
    TaskKind.EXPLAIN: "[explain]",
    TaskKind.FACTUAL: "[factual]",
    TaskKind.COUNTERFACTUAL: "[counterfactual]",
}


@dataclass(frozen=True)
class Question:
    """A multiple-choice question; ``answer`` (the correct choice's text) is None where it is unknown."""

    source_id: str
    question: str
    choices: tuple[str, ...]
    answer: str | None = None


@dataclass(frozen=True)
class TeacherExample:
    """A training question with the teacher's texts; ``rationale`` is the unrevised or the revised one."""

    source_id: str
    question: str
    choices: tuple[str, ...]
    answer: str
    rationale: str
    counterfactual_rationales: tuple[str, ...]


@dataclass(frozen=True)
class ObjectiveWeights:
    """The mixing weights of the paper's losses: a (MT), b (CF), g (MT+CF); the paper uses 0.5 for all."""

    alpha: float = 0.5
    beta: float = 0.5
    gamma: float = 0.5

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    def formula_weights(self, method: Method) -> dict[TaskKind, float]:
        """Each task's weight in the method's loss formula; they sum to 1."""
        a, b, g = self.alpha, self.beta, self.gamma
        if method is Method.MT:
            return {TaskKind.ANSWER: a, TaskKind.EXPLAIN: 1 - a}
        if method is Method.CF:
            return {TaskKind.FACTUAL: b, TaskKind.COUNTERFACTUAL: 1 - b}
        return {
            TaskKind.ANSWER: g * a,
            TaskKind.EXPLAIN: g * (1 - a),
            TaskKind.FACTUAL: (1 - g) * b,
            TaskKind.COUNTERFACTUAL: (1 - g) * (1 - b),
        }


@dataclass(frozen=True)
class TaskExample:
    """One sequence to train on: input text, target text, and its task's weight in the loss formula."""

    source_id: str
    kind: TaskKind
    input_text: str
    target_text: str
    weight: float


def format_question(question: str, choices: Sequence[str]) -> str:
    listed = " ".join(f"({letter}) {choice}" for letter, choice in zip(CHOICE_LETTERS, choices, strict=False))
    return f"Question: {question}\nChoices: {listed}"


def task_input(kind: TaskKind, question: str, choices: Sequence[str], rationale: str | None = None) -> str:
    """The model input of a task; the counterfactual task also shows the rationale it must follow."""
    text = f"{TASK_PREFIXES[kind]} {format_question(question, choices)}"
    if kind is TaskKind.COUNTERFACTUAL:
        if rationale is None:
            raise ValueError("the counterfactual task needs the rationale written for the wrong choice")
        text = f"{text} Rationale: {rationale}"
    return text


def answer_target(answer: str) -> str:
    return f"The answer is {answer}"


def factual_target(rationale: str, answer: str) -> str:
    return f"{rationale} So the answer is {answer}."


def counterfactual_target(choice: str) -> str:
    return f"So the answer is {choice}."


def wrong_choice_indices(example: TeacherExample) -> list[int]:
    """Choices whose text differs from the answer and that have a counterfactual rationale to show.

    Compared by text, not position: some questions list the right answer twice, and neither copy is wrong.
    """
    answer = normalise(example.answer)
    return [
        index
        for index, choice in enumerate(example.choices)
        if normalise(choice) != answer
        and index < len(example.counterfactual_rationales)
        and first_line(example.counterfactual_rationales[index])
    ]


def pick_counterfactual_choice(example: TeacherExample, seed: int) -> int | None:
    """A wrong choice drawn with an RNG seeded by (seed, question), so the draw does not depend on data order."""
    candidates = wrong_choice_indices(example)
    if not candidates:
        return None
    return random.Random(f"{seed}:{example.source_id}").choice(candidates)


def build_tasks(
    example: TeacherExample, method: Method, weights: ObjectiveWeights = ObjectiveWeights(), seed: int = 0
) -> list[TaskExample]:
    """The task examples of one question under a method, each with its loss weight.

    A question without any wrong choice that has a rationale gets no counterfactual task (none exist in the
    reference data); its other tasks keep their weights.
    """
    method = Method(method)
    rationale = first_line(example.rationale)
    if not rationale:
        raise ValueError(f"question {example.source_id} has an empty rationale")
    kind_weights = weights.formula_weights(method)
    tasks: list[TaskExample] = []

    def add(kind: TaskKind, input_text: str, target_text: str) -> None:
        tasks.append(TaskExample(example.source_id, kind, input_text, target_text, kind_weights[kind]))

    if TaskKind.ANSWER in kind_weights:
        predict_input = task_input(TaskKind.ANSWER, example.question, example.choices)
        add(TaskKind.ANSWER, predict_input, answer_target(example.answer))
        explain_input = task_input(TaskKind.EXPLAIN, example.question, example.choices)
        add(TaskKind.EXPLAIN, explain_input, rationale)
    if TaskKind.FACTUAL in kind_weights:
        factual_input = task_input(TaskKind.FACTUAL, example.question, example.choices)
        add(TaskKind.FACTUAL, factual_input, factual_target(rationale, example.answer))
        wrong = pick_counterfactual_choice(example, seed)
        if wrong is not None:
            wrong_rationale = first_line(example.counterfactual_rationales[wrong])
            counterfactual_input = task_input(
                TaskKind.COUNTERFACTUAL, example.question, example.choices, wrong_rationale
            )
            add(TaskKind.COUNTERFACTUAL, counterfactual_input, counterfactual_target(example.choices[wrong]))
    return tasks


def build_task_examples(
    examples: Iterable[TeacherExample],
    method: Method,
    weights: ObjectiveWeights = ObjectiveWeights(),
    seed: int = 0,
) -> list[TaskExample]:
    return [task for example in examples for task in build_tasks(example, method, weights, seed)]


def is_held_out(source_id: str, fraction: float, split_seed: int = 0) -> bool:
    """Whether a question belongs to the validation split: a function of its id and the split seed alone."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must lie in [0, 1), got {fraction}")
    digest = hashlib.sha256(f"validation:{split_seed}:{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_validation(
    examples: Sequence[HasSourceId], fraction: float, split_seed: int = 0
) -> tuple[list[HasSourceId], list[HasSourceId]]:
    """Training and held-out questions (all tasks of a question go together), by ``is_held_out``."""
    validation = [example for example in examples if is_held_out(example.source_id, fraction, split_seed)]
    held = {example.source_id for example in validation}
    return [example for example in examples if example.source_id not in held], validation


def teacher_example_from_record(record: dict[str, Any], *, revised: bool = False) -> TeacherExample | None:
    """A teacher-output record (the reference JSONL's fields) as a training example; ``revised`` picks the text.

    None when the chosen text is missing or blank (five revisions of the reference training split are).
    """
    rationale = record.get("revision" if revised else "rationale") or ""
    if not first_line(rationale):
        return None
    return TeacherExample(
        source_id=str(record["id"]),
        question=record["question"],
        choices=tuple(record["choices"]),
        answer=record["answer"],
        rationale=rationale,
        counterfactual_rationales=tuple(record.get("counterfactual_rationales") or ()),
    )


def load_teacher_examples(path: Path, *, revised: bool = False, limit: int | None = None) -> list[TeacherExample]:
    """Teacher outputs from a JSON-lines file (plain or gzipped), skipping those without the chosen text."""
    examples: list[TeacherExample] = []
    for _, record in read_json_lines(path):
        if limit is not None and len(examples) >= limit:
            break
        example = teacher_example_from_record(record, revised=revised)
        if example is not None:
            examples.append(example)
    return examples
