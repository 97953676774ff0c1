"""Reads of the distillation app that more than one caller needs: the training corpus's vocabulary."""

from __future__ import annotations

from django.db.models import Count, Max

from distillation.models import Question, Split, TeacherOutput, TeacherOutputKind, TeacherRun

# (teacher run id, outputs, newest output id, training questions) -> vocabulary; a new import changes the key.
_vocabulary_cache: dict[tuple, frozenset[str]] = {}


def corpus_vocabulary(*, teacher_run: TeacherRun | None) -> frozenset[str] | None:
    """Every word of the training split's questions, choices and the teacher's rationales and revisions."""
    from distillation.ml.text_quality import vocabulary

    if teacher_run is None:
        return None
    outputs = TeacherOutput.objects.filter(
        run=teacher_run, kind__in=[TeacherOutputKind.RATIONALE, TeacherOutputKind.REVISION]
    )
    questions = Question.objects.filter(dataset_id=teacher_run.dataset_id, split=Split.TRAIN)
    stats = outputs.aggregate(n=Count("id"), newest=Max("id"))
    key = (teacher_run.pk, stats["n"], stats["newest"], questions.count())
    if key not in _vocabulary_cache:

        def texts():
            yield from outputs.values_list("text", flat=True).iterator(chunk_size=5000)
            for question, choices in questions.values_list("question", "choices").iterator(chunk_size=5000):
                yield question
                yield from choices

        _vocabulary_cache.clear()
        _vocabulary_cache[key] = vocabulary(texts())
    return _vocabulary_cache[key]
