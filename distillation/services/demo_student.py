"""The demo student's base model: its corpus read from the database, built once under var/ and reused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from django.conf import settings

from distillation.ml.text import first_line
from distillation.models import Question, TeacherOutput, TeacherOutputKind, TeacherRun
from evalsite.jobs import Progress

DEMO_BASES_DIR = "demo-students"


def demo_corpus(*, teacher_run: TeacherRun, limit: int | None = None) -> list:
    """The training split's questions (with their answers) and the teacher's unrevised and revised rationales, each
    with the teacher's rationales for wrong choices, in a stable order."""
    from distillation.ml.demo_student import CorpusDocument

    kinds = [TeacherOutputKind.RATIONALE, TeacherOutputKind.REVISION, TeacherOutputKind.COUNTERFACTUAL]
    outputs = (
        TeacherOutput.objects.filter(run=teacher_run, kind__in=kinds, empty=False)
        .exclude(text="")
        .order_by("question_id", "kind", "choice_index")
        .values_list("question_id", "kind", "choice_index", "text")
    )
    texts: dict[int, list[str]] = {}
    counterfactuals: dict[int, list[tuple[int, str]]] = {}
    for question_id, kind, choice, text in outputs.iterator(chunk_size=5000):
        line = first_line(text)
        if kind != TeacherOutputKind.COUNTERFACTUAL:
            texts.setdefault(question_id, []).append(line)
        elif choice is not None and line.strip():
            counterfactuals.setdefault(question_id, []).append((choice, line))
    question_ids = sorted(texts)[:limit] if limit else sorted(texts)
    questions = Question.objects.in_bulk(question_ids)
    return [
        CorpusDocument(
            questions[pk].question,
            tuple(questions[pk].choices),
            text,
            questions[pk].answer,
            _wrong_choice_rationales(questions[pk], counterfactuals.get(pk, [])),
        )
        for pk in question_ids
        for text in texts[pk]
        if text.strip()
    ]


def _wrong_choice_rationales(question: Question, rationales: list[tuple[int, str]]) -> tuple[tuple[int, str], ...]:
    """The rationales of choices that exist and differ from the answer (some questions list the answer twice)."""
    from distillation.ml.answers import normalise

    answer = normalise(question.answer)
    choices = question.choices
    return tuple((i, text) for i, text in rationales if i < len(choices) and normalise(choices[i]) != answer)


def demo_base_build(
    *, teacher_run: TeacherRun, progress: Progress, limit: int | None = None, steps: int | None = None
) -> Path:
    """Build (or find) the base model for this corpus under ``var/demo-students/<fingerprint>``.

    ``steps`` overrides the pre-training steps (``BasePretraining.steps``), e.g. for a quicker, weaker base. It
    trains under bf16 autocast where the CPU multiplies bf16 in hardware, else in fp32.
    """
    from distillation.ml.demo_student import BasePretraining, DemoStudentSize, base_fingerprint, build_base_student
    from distillation.ml.training import native_precision

    documents = demo_corpus(teacher_run=teacher_run, limit=limit)
    size, training = DemoStudentSize(), BasePretraining(precision=native_precision())
    if steps:
        training = replace(training, steps=steps)
    directory = Path(settings.VAR_DIR) / DEMO_BASES_DIR / base_fingerprint(documents, size, training)

    def report(step: int, total: int, stage: str, metrics: dict) -> None:
        loss = metrics.get("loss")
        progress(step, total, stage=stage, message=f"loss {loss:.3f}" if loss is not None else "")

    return build_base_student(documents, directory, size=size, training=training, progress=report)
