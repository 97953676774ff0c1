"""The job that scores a study's explanations with automatic metrics (heavy imports wait until it runs)."""

from __future__ import annotations

from typing import Any

from annotations.models import Study
from annotations.services import metrics as metric_services


def score_explanations(
    *, progress, study_id: int, metrics: list[str], judge: str = "", checkpoint: str = "", embedder: str = ""
) -> dict[str, Any]:
    return metric_services.explanation_metrics_compute(
        study=Study.objects.get(pk=study_id),
        metrics=metrics,
        judge=judge,
        checkpoint=checkpoint,
        embedder=embedder,
        progress=progress,
        job_id=getattr(progress, "job_id", None),
    )
