"""Jobs that fill studies: explanations from a CSV file, simulated annotators."""

from __future__ import annotations

from typing import Any

from annotations.models import Study
from annotations.services import studies
from evalsite.jobs import Progress, job_function


@job_function
def import_explanations(
    *, progress: Progress, study_id: int, condition_label: str, path: str, **columns: Any
) -> dict[str, int]:
    study = Study.objects.get(pk=study_id)
    return studies.explanations_import_csv(
        study=study, condition_label=condition_label, path=path, progress=progress, **columns
    )


@job_function
def simulate_annotators(*, progress: Progress, study_id: int, count: int, seed: int = 0) -> dict[str, int]:
    from annotations.services.simulation import annotators_simulate

    return annotators_simulate(study=Study.objects.get(pk=study_id), count=count, seed=seed, progress=progress)
