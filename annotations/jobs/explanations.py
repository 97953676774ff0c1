"""Jobs that write student runs' explanations into studies."""

from __future__ import annotations

from typing import Any

from annotations.models import Study
from annotations.services import explanations as services
from distillation.models import StudentRun
from evalsite.jobs import Progress, job_function


@job_function
def generate_explanations(
    *,
    progress: Progress,
    run_id: int,
    study_slug: str,
    condition: str,
    split: str = "validation",
    limit: int | None = None,
    source_ids: list[str] | None = None,
) -> dict[str, Any]:
    return services.explanations_generate(
        run=StudentRun.objects.get(pk=run_id),
        study=Study.objects.get(slug=study_slug),
        condition_label=condition,
        progress=progress,
        split=split,
        limit=limit,
        source_ids=source_ids,
    )


@job_function
def regenerate_explanations(*, progress: Progress, run_id: int) -> dict[str, Any]:
    """Regenerate a run's explanations in every study condition that shows them; rated ones get new versions."""
    return services.explanations_regenerate(run=StudentRun.objects.get(pk=run_id), progress=progress)
