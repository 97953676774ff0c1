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
    """The training split's questions with the teacher's unrevised and revised rationales, in a stable order."""
    from distillation.ml.demo_student import CorpusDocument

    outputs = (
        TeacherOutput.objects.filter(
            run=teacher_run, kind__in=[TeacherOutputKind.RATIONALE, TeacherOutputKind.REVISION], empty=False
        )
        .exclude(text="")
        .order_by("question_id", "kind")
        .values_list("question_id", "text")
    )
    texts: dict[int, list[str]] = {}
    for question_id, text in outputs.iterator(chunk_size=5000):
        texts.setdefault(question_id, []).append(first_line(text))
    question_ids = sorted(texts)[:limit] if limit else sorted(texts)
    questions = Question.objects.in_bulk(question_ids)
    return [
        CorpusDocument(questions[pk].question, tuple(questions[pk].choices), text)
        for pk in question_ids
        for text in texts[pk]
        if text.strip()
    ]


def demo_base_build(
    *, teacher_run: TeacherRun, progress: Progress, limit: int | None = None, steps: int | None = None
) -> Path:
    """Build (or find) the base model for this corpus under ``var/demo-students/<fingerprint>``.

    ``steps`` overrides the pre-training steps (``BasePretraining.steps``), e.g. for a quicker, weaker base.
    """
    from distillation.ml.demo_student import BasePretraining, DemoStudentSize, base_fingerprint, build_base_student

    documents = demo_corpus(teacher_run=teacher_run, limit=limit)
    size, training = DemoStudentSize(), BasePretraining()
    if steps:
        training = replace(training, steps=steps)
    directory = Path(settings.VAR_DIR) / DEMO_BASES_DIR / base_fingerprint(documents, size, training)

    def report(step: int, total: int, stage: str, metrics: dict) -> None:
        loss = metrics.get("loss")
        progress(step, total, stage=stage, message=f"loss {loss:.3f}" if loss is not None else "")

    return build_base_student(documents, directory, size=size, training=training, progress=report)
