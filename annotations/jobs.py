"""Job functions of the annotations app: thin shells over services, with a progress reporter."""

from __future__ import annotations

from typing import Any

from annotations.models import Study
from annotations.services import studies


def import_explanations(*, progress, study_id: int, condition_label: str, path: str, **columns: Any) -> dict[str, int]:
    study = Study.objects.get(pk=study_id)
    return studies.explanations_import_csv(
        study=study, condition_label=condition_label, path=path, progress=progress, **columns
    )


def simulate_annotators(*, progress, study_id: int, count: int, seed: int = 0) -> dict[str, int]:
    from annotations.services.simulation import annotators_simulate

    return annotators_simulate(study=Study.objects.get(pk=study_id), count=count, seed=seed, progress=progress)
