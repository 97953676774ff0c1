"""The job that analyses a study's ratings for a stored AnalysisReport row (free of heavy imports until it runs)."""

from __future__ import annotations

from typing import Any

from annotations.models import AnalysisReport
from annotations.services import analysis
from evalsite.jobs import job_function


@job_function
def analyze_study(*, progress, report_id: int, n_boot: int = analysis.DEFAULT_N_BOOT) -> dict[str, Any]:
    report = AnalysisReport.objects.select_related("study").get(pk=report_id)
    return analysis.analysis_report_compute(report=report, n_boot=n_boot, progress=progress)


@job_function
def analyze_ratings_files(*, progress, **params: Any) -> dict[str, Any]:
    """`analyze_ratings`: analyse a study or a CSV file into a folder (see analysis.analysis_files_compute)."""
    return analysis.analysis_files_compute(progress=progress, **params)
