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
