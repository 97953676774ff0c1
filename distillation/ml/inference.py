"""Batched greedy generation of a student's answers and explanations, answer parsing and accuracy.

MT and MT+CF students answer the ``[predict]`` input and explain the ``[explain]`` input. CF-only students
know only ``[factual]``: its output is "{rationale} So the answer is {answer}.", so one generation gives both.

Accuracy is exact match (``answers.exact_match``), as in the paper; the choice that ``parse_answer`` maps the
answer to (letter and similarity fallbacks included) is kept beside it as a diagnostic. Under several processes
(``torchrun``, ``accelerate launch``) ``evaluate_student`` shards the questions and gathers the records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from distillation.ml.answers import ParseStatus, exact_match, normalise, parse_answer, rationale_text_of
from distillation.ml.collate import encode_prompts
from distillation.ml.tasks import Method, TaskKind, task_input
from distillation.ml.text import readable_output

ProgressCallback = Callable[[int, int, str, dict[str, float]], None]


class QuestionLike(Protocol):
    """Anything with a question's fields: ``tasks.Question``, ``tasks.TeacherExample`` or a model row."""

    source_id: str
    question: str
    choices: Sequence[str]
    answer: str | None


@dataclass(frozen=True)
class InferenceConfig:
    batch_size: int = 16
    max_input_tokens: int = 300
    max_answer_tokens: int = 64
    max_explanation_tokens: int = 300


@dataclass(frozen=True)
class PredictionRecord:
    """A student's output for one question; ``is_correct`` (exact match) is None when the answer is not known.

    ``choice_correct``: the choice that the lenient parser picked is the answer (a diagnostic, not the accuracy).
    """

    source_id: str
    raw_answer: str
    predicted_answer: str | None
    parsed_choice: int | None
    parse_status: str
    is_correct: bool | None
    explanation: str
    choice_correct: bool | None = None


@dataclass(frozen=True)
class AccuracyReport:
    """Exact-match accuracy over the questions with a known answer, and the lenient parser's as a diagnostic."""

    n_questions: int
    n_correct: int
    accuracy: float
    n_unparseable: int
    unparseable_rate: float
    n_choice_correct: int = 0
    choice_accuracy: float = 0.0


@dataclass(frozen=True)
class EvaluationResult:
    records: list[PredictionRecord]
    accuracy: AccuracyReport


def generate_texts(
    student: Any,
    inputs: Sequence[str],
    *,
    max_input_tokens: int,
    max_new_tokens: int,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy outputs for ``inputs``, in their order, decoded without special tokens."""
    generated = generate_token_ids(
        student,
        inputs,
        max_input_tokens=max_input_tokens,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    decoded = student.tokenizer.batch_decode(generated, skip_special_tokens=True)
    return [readable_output(text.strip()) for text in decoded]


def generate_token_ids(
    student: Any,
    inputs: Sequence[str],
    *,
    max_input_tokens: int,
    max_new_tokens: int,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Greedy output ids for ``inputs`` (up to and including eos), from length-sorted, dynamically padded batches.

    Decoder-only prompts are padded on the left, so every prompt ends where its generation starts.
    """
    import torch

    model, tokenizer = student.model, student.tokenizer
    device = next(model.parameters()).device
    prompts = encode_prompts(tokenizer, inputs, max_input_tokens, student.is_encoder_decoder)
    # Longest first, so a batch that does not fit in memory fails at once rather than at the end.
    order = np.argsort([-len(prompt) for prompt in prompts], kind="stable")
    outputs: list[list[int]] = [[] for _ in prompts]
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            rows = [prompts[i] for i in indices]
            input_ids, attention_mask = _pad(rows, tokenizer.pad_token_id, left=not student.is_encoder_decoder)
            generated = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            # Seq2seq outputs start with the decoder start token; decoder-only ones with the prompt.
            new_tokens = generated[:, 1:] if student.is_encoder_decoder else generated[:, input_ids.shape[1] :]
            for index, ids in zip(indices, new_tokens.tolist(), strict=True):
                outputs[index] = _until_eos(ids, tokenizer.eos_token_id)
            if progress is not None:
                progress(len(indices))
    return outputs


def _until_eos(ids: list[int], eos_token_id: int) -> list[int]:
    """Drop what follows the first eos: the padding a batch adds after a sequence has finished."""
    return ids[: ids.index(eos_token_id) + 1] if eos_token_id in ids else ids


def _pad(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool) -> tuple[Any, Any]:
    import torch

    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for position, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[position, span] = torch.tensor(row, dtype=torch.long)
        mask[position, span] = 1
    return ids, mask


def predict(
    student: Any,
    questions: Sequence[QuestionLike],
    *,
    method: Method | str,
    config: InferenceConfig = InferenceConfig(),
    progress: ProgressCallback | None = None,
) -> list[PredictionRecord]:
    """Answer and explain every question with a loaded student trained with ``method``."""
    method = Method(method)
    passes = 1 if method is Method.CF else 2
    total = passes * len(questions)
    done = 0

    def advance(stage: str) -> Callable[[int], None]:
        def step(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total, stage, {})

        return step

    def run(kind: TaskKind, max_new_tokens: int, stage: str) -> list[str]:
        inputs = [task_input(kind, question.question, question.choices) for question in questions]
        return generate_texts(
            student,
            inputs,
            max_input_tokens=config.max_input_tokens,
            max_new_tokens=max_new_tokens,
            batch_size=config.batch_size,
            progress=advance(stage),
        )

    if method is Method.CF:
        factual = run(TaskKind.FACTUAL, config.max_explanation_tokens + config.max_answer_tokens, "factual")
        raw_answers, explanations = factual, [rationale_text_of(text) for text in factual]
    else:
        raw_answers = run(TaskKind.ANSWER, config.max_answer_tokens, "answers")
        explanations = run(TaskKind.EXPLAIN, config.max_explanation_tokens, "explanations")
    return [
        _record(question, raw, explanation)
        for question, raw, explanation in zip(questions, raw_answers, explanations, strict=True)
    ]


def predict_answers(
    student: Any, questions: Sequence[QuestionLike], *, method: Method | str, config: InferenceConfig
) -> list[str]:
    """Only the answer pass of ``predict`` (raw outputs, in order): what accuracy needs, at half the cost for MT."""
    method = Method(method)
    if method is Method.CF:
        kind, budget = TaskKind.FACTUAL, config.max_explanation_tokens + config.max_answer_tokens
    else:
        kind, budget = TaskKind.ANSWER, config.max_answer_tokens
    return generate_texts(
        student,
        [task_input(kind, question.question, question.choices) for question in questions],
        max_input_tokens=config.max_input_tokens,
        max_new_tokens=budget,
        batch_size=config.batch_size,
    )


def _record(question: QuestionLike, raw_answer: str, explanation: str) -> PredictionRecord:
    parsed = parse_answer(raw_answer, question.choices)
    predicted = question.choices[parsed.choice_index] if parsed.choice_index is not None else None
    is_correct = choice_correct = None
    if question.answer is not None:
        is_correct = exact_match(raw_answer, question.answer)
        choice_correct = predicted is not None and normalise(predicted) == normalise(question.answer)
    return PredictionRecord(
        source_id=question.source_id,
        raw_answer=raw_answer,
        predicted_answer=predicted,
        parsed_choice=parsed.choice_index,
        parse_status=parsed.status.value,
        is_correct=is_correct,
        explanation=explanation,
        choice_correct=choice_correct,
    )


def accuracy(records: Sequence[PredictionRecord]) -> AccuracyReport:
    scored = [record for record in records if record.is_correct is not None]
    n_correct = sum(record.is_correct is True for record in scored)
    n_unparseable = sum(record.parse_status == ParseStatus.UNPARSEABLE for record in scored)
    n_choice_correct = sum(record.choice_correct is True for record in scored)
    n = len(scored)
    return AccuracyReport(
        n_questions=n,
        n_correct=n_correct,
        accuracy=n_correct / n if n else 0.0,
        n_unparseable=n_unparseable,
        unparseable_rate=n_unparseable / n if n else 0.0,
        n_choice_correct=n_choice_correct,
        choice_accuracy=n_choice_correct / n if n else 0.0,
    )


def load_for_inference(model_dir: Path | str) -> tuple[Any, Method]:
    """A saved student on the best device, and the method it was trained with (from its metadata)."""
    import torch

    from distillation.ml.distributed import process_count
    from distillation.ml.students import load_student, read_student_metadata

    metadata = read_student_metadata(Path(model_dir))
    if "method" not in metadata:
        raise ValueError(f"{model_dir} has no training metadata saying which method trained it")
    student = load_student(model_dir)
    if process_count() > 1:
        from accelerate import PartialState

        from distillation.ml.distributed import accelerate_options

        student.model.to(PartialState(**accelerate_options()).device)  # each process its own GPU (or the CPU)
    else:
        student.model.to("cuda" if torch.cuda.is_available() else "cpu")
    return student, Method(metadata["method"])


def evaluate_student(
    model_dir: Path | str,
    questions: Sequence[QuestionLike],
    *,
    config: InferenceConfig = InferenceConfig(),
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Answers, explanations and accuracy of a trained student on questions with known answers (the dev split).

    Under several processes each predicts every n-th question and every process gets all records, in order.
    """
    from distillation.ml.distributed import gather_in_order, process_count, process_index

    student, method = load_for_inference(model_dir)
    world, rank = process_count(), process_index()
    mine = list(questions)[rank::world]
    records = predict(student, mine, method=method, config=config, progress=progress)
    if world > 1:
        records = gather_in_order(records, len(questions))
    return EvaluationResult(records=records, accuracy=accuracy(records))


def generate_explanations(
    model_dir: Path | str,
    questions: Sequence[QuestionLike],
    batch_size: int = 16,
    progress: ProgressCallback | None = None,
    *,
    config: InferenceConfig | None = None,
) -> list[PredictionRecord]:
    """A trained student's explanation (and answer) for each question, for the explanations of a study."""
    student, method = load_for_inference(model_dir)
    config = config or InferenceConfig(batch_size=batch_size)
    return predict(student, questions, method=method, config=config, progress=progress)
