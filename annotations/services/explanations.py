"""Explanations from student runs: generate them into a study condition, regenerate them, start those jobs."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from annotations.models import Condition, Study
from annotations.services.studies import condition_get_or_create, explanation_set_text, item_get_or_create
from distillation.models import PredictionSet, Question, Split, StudentRun
from distillation.services.students import evaluation_questions, inference_config, predictions_store
from evalsite.jobs import Progress, enqueue_job

# What a study shows where the student wrote nothing; the text-quality measures count it as empty.
NO_EXPLANATION_TEXT = "(no explanation)"


def explanations_generate(
    *,
    run: StudentRun,
    study: Study,
    condition_label: str,
    progress: Progress,
    split: str = Split.VALIDATION,
    limit: int | None = None,
    source_ids: list[str] | None = None,
    batch_size: int = 16,
) -> dict[str, int]:
    """Generate the run's explanations and make them the current ones of a study condition.

    Explanations that annotators have seen keep their ratings: new text becomes a new version.
    """
    from distillation.ml.inference import generate_explanations

    if not run.checkpoint_dir:
        raise ValueError(f"student run {run.pk} has no trained model")
    if source_ids is not None:
        questions = list(Question.objects.filter(source_id__in=source_ids).order_by("id"))
    else:
        questions = evaluation_questions(split, limit, run.teacher_run.dataset if run.teacher_run else None)
    records = generate_explanations(
        run.checkpoint_dir,
        questions,
        config=inference_config(run, batch_size=batch_size),
        progress=lambda done, total, *rest: progress(done, total, stage="generating explanations"),
    )
    counts = {"created": 0, "updated": 0, "new_version": 0, "unchanged": 0}
    with transaction.atomic():
        stored = predictions_store(
            run=run, questions=questions, records=records, kind=PredictionSet.Kind.GENERATION, split=split_of(questions)
        )
        predictions = {p.question_id: p for p in stored}
        condition = condition_get_or_create(study=study, label=condition_label, student_run=run)
        for question in questions:
            prediction = predictions[question.pk]
            item = item_get_or_create(
                study=study,
                key=question.source_id,
                question_text=question.question,
                choices=list(question.choices),
                answer=question.answer,
                question=question,
            )
            _, outcome = explanation_set_text(
                item=item,
                condition=condition,
                text=prediction.explanation or NO_EXPLANATION_TEXT,
                source="student_run",
                provenance={
                    "student_run": run.pk,
                    "prediction_set": prediction.prediction_set.number,
                    "generated_at": timezone.now().isoformat(),
                },
                prediction=prediction,
                predicted_answer=prediction.predicted_answer,
            )
            counts[outcome] += 1
        # Versions of this condition that carry ratings: none of them was changed.
        counts["rated_kept"] = (
            condition.explanations.filter(item__question__in=questions, ratings__isnull=False).distinct().count()
        )
    return counts


def generation_summary(counts: dict[str, int]) -> str:
    """What a generation did, in words: '11 new versions, 1 unchanged, ratings kept on 12'."""
    parts = [
        f"{counts.get(key, 0)} {words}"
        for key, words in (("created", "new"), ("new_version", "new versions"), ("updated", "updated"))
        if counts.get(key)
    ]
    parts.append(f"{counts.get('unchanged', 0)} unchanged")
    parts.append(f"ratings kept on {counts.get('rated_kept', 0)}")
    return ", ".join(parts)


def split_of(questions: list[Question]) -> str:
    """The split the questions share, or blank for a mix."""
    splits = {question.split for question in questions}
    return splits.pop() if len(splits) == 1 else ""


def explanations_regenerate(*, run: StudentRun, progress: Progress) -> dict[str, dict[str, int]]:
    """Regenerate a run's explanations in every study condition that shows them; rated ones get new versions."""
    results = {}
    for condition in Condition.objects.filter(student_run=run).select_related("study"):
        source_ids = list(
            condition.explanations.filter(is_current=True, item__question__isnull=False).values_list(
                "item__question__source_id", flat=True
            )
        )
        results[f"{condition.study.slug}:{condition.label}"] = explanations_generate(
            run=run,
            study=condition.study,
            condition_label=condition.label,
            progress=progress,
            source_ids=source_ids,
        )
    if not results:
        raise ValueError(
            f"student run {run.pk} feeds no study condition yet: generate its explanations into a study first "
            "(the run page's button, or manage.py generate_explanations)"
        )
    return results


def explanations_generate_enqueue(
    *,
    run: StudentRun,
    study: Study,
    condition_label: str,
    split: str = Split.VALIDATION,
    limit: int | None = None,
    user: Any = None,
):
    """Generate a run's explanations into a study in the background, once the transaction commits."""
    from annotations.jobs import explanations as jobs

    params = {"run_id": run.pk, "study_slug": study.slug, "condition": condition_label, "split": split, "limit": limit}
    return enqueue_job(
        kind="generate_explanations", function=jobs.generate_explanations, params=params, target=run, user=user
    )


def explanations_regenerate_enqueue(*, run: StudentRun, user: Any = None):
    """Regenerate a run's explanations in its studies in the background, once the transaction commits."""
    from annotations.jobs import explanations as jobs

    return enqueue_job(
        kind="regenerate_explanations",
        function=jobs.regenerate_explanations,
        params={"run_id": run.pk},
        target=run,
        user=user,
    )
