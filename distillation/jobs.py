"""Job functions of the distillation app: thin shells that call services with a progress reporter."""

from __future__ import annotations

from typing import Any

from distillation.services import imports as services
from evalsite.jobs import JobCancelled, Progress, job_function


@job_function
def import_cqa(*, progress: Progress, path: str, dataset_slug: str = "cqa") -> dict[str, Any]:
    return services.cqa_import(path=path, dataset_slug=dataset_slug, progress=progress)


@job_function
def import_teacher_outputs(
    *, progress: Progress, path: str, teacher_name: str, dataset_slug: str = "cqa"
) -> dict[str, Any]:
    return services.teacher_outputs_import(
        path=path, teacher_name=teacher_name, dataset_slug=dataset_slug, progress=progress
    )


@job_function
def generate_teacher_data(*, progress: Progress, **options: Any) -> dict[str, Any]:
    from distillation.services.teacher import teacher_generation_run

    result = teacher_generation_run(progress=progress, **options)
    if result["stopped"]:
        raise JobCancelled(f"stopped after {result['generated']} outputs; a rerun continues from there")
    return result


@job_function
def train_student(
    *,
    progress: Progress,
    run_id: int,
    evaluate: bool = True,
    eval_split: str = "validation",
    eval_limit: int | None = None,
) -> dict[str, Any]:
    """Train (resuming from the last checkpoint), then evaluate on the dev split.

    Every process of a multi-process launch runs this; the services let only the main one write.
    """
    from distillation.models import StudentRun
    from distillation.services import students

    return students.student_train_and_evaluate(
        run=StudentRun.objects.get(pk=run_id),
        progress=progress,
        evaluate=evaluate,
        eval_split=eval_split,
        eval_limit=eval_limit,
    )


@job_function
def build_demo_student(
    *, progress: Progress, teacher_run_id: int, limit: int | None = None, steps: int | None = None
) -> dict[str, Any]:
    """Pre-train the demo student's base model once (see ``distillation.ml.demo_student``)."""
    from distillation.models import TeacherRun
    from distillation.services.demo_student import demo_base_build

    teacher_run = TeacherRun.objects.get(pk=teacher_run_id)
    path = demo_base_build(teacher_run=teacher_run, progress=progress, limit=limit, steps=steps)
    return {"path": str(path)}


@job_function
def evaluate_student(*, progress: Progress, run_id: int, split: str = "validation", limit: int | None = None):
    """Evaluate a trained run on a split; its predictions become a new set of the run."""
    from distillation.models import StudentRun
    from distillation.services import students

    return students.student_evaluate(run=StudentRun.objects.get(pk=run_id), progress=progress, split=split, limit=limit)
