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
    counts = services.explanations_generate(
        run=StudentRun.objects.get(pk=run_id),
        study=Study.objects.get(slug=study_slug),
        condition_label=condition,
        progress=progress,
        split=split,
        limit=limit,
        source_ids=source_ids,
    )
    total = sum(counts[key] for key in ("created", "updated", "new_version", "unchanged"))
    progress(total, total, stage="done", message=f"{study_slug}:{condition}: {services.generation_summary(counts)}")
    return counts


@job_function
def regenerate_explanations(*, progress: Progress, run_id: int) -> dict[str, Any]:
    """Regenerate a run's explanations in every study condition that shows them; rated ones get new versions."""
    results = services.explanations_regenerate(run=StudentRun.objects.get(pk=run_id), progress=progress)
    summary = "; ".join(f"{where}: {services.generation_summary(counts)}" for where, counts in results.items())
    total = sum(
        counts[key] for counts in results.values() for key in ("created", "updated", "new_version", "unchanged")
    )
    progress(total, total, stage="done", message=summary)
    return results
