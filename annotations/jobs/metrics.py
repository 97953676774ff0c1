"""The job that scores a study's explanations with automatic metrics (heavy imports wait until it runs)."""

from __future__ import annotations

from typing import Any

from annotations.models import Study
from annotations.services import metrics as services
from evalsite.jobs import Progress, job_function


@job_function
def score_explanations(
    *, progress: Progress, study_id: int, metrics: list[str], judge: str = "", checkpoint: str = "", embedder: str = ""
) -> dict[str, Any]:
    """Score the study's explanation versions with each metric; what is stored already is skipped (resumes)."""
    return services.explanation_metrics_compute(
        study=Study.objects.get(pk=study_id),
        metrics=metrics,
        judge=judge,
        checkpoint=checkpoint,
        embedder=embedder,
        progress=progress,
        job_id=getattr(progress, "job_id", None),
    )
