"""Job functions of the distillation app: thin shells that call services with a progress reporter."""

from __future__ import annotations

from typing import Any

from distillation.services import imports as services
from evalsite.jobs import JobCancelled


def import_cqa(*, progress, path: str, dataset_slug: str = "cqa") -> dict[str, Any]:
    return services.cqa_import(path=path, dataset_slug=dataset_slug, progress=progress)


def import_teacher_outputs(*, progress, path: str, teacher_name: str, dataset_slug: str = "cqa") -> dict[str, Any]:
    return services.teacher_outputs_import(
        path=path, teacher_name=teacher_name, dataset_slug=dataset_slug, progress=progress
    )


def generate_teacher_data(*, progress, **options: Any) -> dict[str, Any]:
    from distillation.services.teacher import teacher_generation_run

    result = teacher_generation_run(progress=progress, **options)
    if result["stopped"]:
        raise JobCancelled(f"stopped after {result['generated']} outputs; a rerun continues from there")
    return result


def train_student(
    *, progress, run_id: int, evaluate: bool = True, eval_split: str = "validation", eval_limit: int | None = None
) -> dict[str, Any]:
    """Train (resuming from the last checkpoint), then evaluate on the dev split."""
    from distillation.models import StudentRun
    from distillation.services import students

    run = StudentRun.objects.get(pk=run_id)
    try:
        trained = students.student_train(run=run, progress=progress)
        if not trained["completed"]:
            raise JobCancelled(f"stopped at step {trained['steps']}; a retry resumes from the last checkpoint")
        result = {"training": trained}
        if evaluate:
            result["evaluation"] = students.student_evaluate(
                run=run, progress=progress, split=eval_split, limit=eval_limit
            )
        return result
    except JobCancelled:
        raise
    except Exception:
        StudentRun.objects.filter(pk=run_id).update(status=StudentRun.Status.FAILED)
        raise


def generate_explanations(
    *,
    progress,
    run_id: int,
    study_slug: str,
    condition: str,
    split: str = "validation",
    limit: int | None = None,
    source_ids: list[str] | None = None,
) -> dict[str, Any]:
    from annotations.models import Study
    from distillation.models import StudentRun
    from distillation.services import students

    return students.explanations_generate(
        run=StudentRun.objects.get(pk=run_id),
        study=Study.objects.get(slug=study_slug),
        condition_label=condition,
        progress=progress,
        split=split,
        limit=limit,
        source_ids=source_ids,
    )


def regenerate_explanations(*, progress, run_id: int) -> dict[str, Any]:
    """Regenerate a run's explanations in every study condition that shows them; rated ones get new versions."""
    from annotations.models import Condition
    from distillation.models import StudentRun
    from distillation.services import students

    run = StudentRun.objects.get(pk=run_id)
    results = {}
    for condition in Condition.objects.filter(student_run=run).select_related("study"):
        source_ids = list(
            condition.explanations.filter(is_current=True, item__question__isnull=False).values_list(
                "item__question__source_id", flat=True
            )
        )
        results[f"{condition.study.slug}:{condition.label}"] = students.explanations_generate(
            run=run,
            study=condition.study,
            condition_label=condition.label,
            progress=progress,
            source_ids=source_ids,
        )
    if not results:
        raise ValueError(f"student run {run_id} feeds no study condition; use generate_explanations first")
    return results


def build_demo_student(
    *, progress, teacher_run_id: int, limit: int | None = None, steps: int | None = None
) -> dict[str, Any]:
    """Pre-train the demo student's base model once (see ``distillation.ml.demo_student``)."""
    from distillation.models import TeacherRun
    from distillation.services.demo_student import demo_base_build

    teacher_run = TeacherRun.objects.get(pk=teacher_run_id)
    path = demo_base_build(teacher_run=teacher_run, progress=progress, limit=limit, steps=steps)
    return {"path": str(path)}
