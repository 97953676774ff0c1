"""Running the rating analysis (for a stored report row, or into a folder for `analyze_ratings`), stored
reports that are reused until the study's ratings change, and the ratings export. The tidy tables
themselves are selectors (`annotations.selectors`).

pandas and the statistics core are imported inside the functions: the web process imports this module at
startup (through the report views) and must stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from django.conf import settings
from django.db import transaction

from annotations.models import AnalysisReport, Study
from annotations.selectors import (
    ATTENTION_FAILED,
    LENGTH,
    SECONDS,
    ratings_fingerprint,
    study_pairs_frame,
    study_ratings_frame,
)
from evalsite.csvsafe import safe_frame
from evalsite.jobs import Progress, enqueue_job

if TYPE_CHECKING:
    import pandas as pd

ANALYSIS_JOB_KIND = "rating_analysis"
FILES_JOB_KIND = "analyze_ratings"
DEFAULT_N_BOOT = 2000
EXPORT_FORMATS = ("csv", "parquet", "jsonl")


class AnalysisUnavailable(Exception):
    """The study has nothing to analyse yet."""


def study_analysis_options(
    study: Study, tidy: pd.DataFrame, *, reference: str = "", n_boot: int = DEFAULT_N_BOOT, exclusions: bool = True
) -> dict[str, Any]:
    """`analyze` options for a study from the database: the paper's length covariate, the study's scale,
    and the pre-registered exclusions (failed attention check, too fast for the study, straight-lining)."""
    from annotations.analysis.exclusions import ExclusionRules

    sizes = list(study.constructs.values_list("scale_size", flat=True))
    rules = None
    if exclusions:
        rules = ExclusionRules(
            attention_column=ATTENTION_FAILED,
            seconds_column=SECONDS,
            min_seconds=study.min_seconds_per_screen or None,
        )
    return {
        "reference": reference or None,
        "covariates": [LENGTH] if _varies_within_conditions(tidy, LENGTH) else [],
        "scale": (1, max(sizes, default=5)),
        "n_boot": n_boot,
        "exclusions": rules,
    }


def _varies_within_conditions(tidy: pd.DataFrame, column: str) -> bool:
    # A covariate that is constant within every condition is a linear function of the condition dummies,
    # which makes every model's design singular (e.g. one explanation per condition, or templated texts).
    return bool(len(tidy) and tidy.groupby("condition")[column].nunique().max() > 1)


def analysis_files_compute(
    *,
    out_dir: str,
    progress: Progress,
    study_slug: str = "",
    input_path: str = "",
    wide: dict[str, Any] | None = None,
    exclusions: bool = True,
    figures: bool = True,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Analyse a study's ratings (`study_slug`) or a CSV file (`input_path`, tidy, or wide with `wide` naming
    its columns) and write the report files to `out_dir`; `options` are `analyze` options that override the
    study's defaults. Returns the counts and the file names, for the job row."""
    from annotations.analysis.io import load_tidy_csv, load_wide_csv
    from annotations.analysis.report import run_analysis

    progress(0, None, stage="loading ratings")
    pairs = None
    if study_slug:
        study = Study.objects.filter(slug=study_slug).first()
        if study is None:
            raise AnalysisUnavailable(f"no study {study_slug!r}")
        tidy = study_ratings_frame(study)
        if tidy.empty:
            raise AnalysisUnavailable(f"study {study.slug!r} has no ratings from completed screens yet")
        defaults = study_analysis_options(study, tidy, exclusions=exclusions)
        pairs = study_pairs_frame(study)
    else:
        path = Path(input_path)
        if not path.is_file():
            raise AnalysisUnavailable(f"no file {path}")
        tidy = load_wide_csv(path, **wide) if wide else load_tidy_csv(path)
        defaults = {}
    report, written = run_analysis(
        tidy, out_dir, progress, figures=figures, pairs=pairs, **{**defaults, **(options or {})}
    )
    return {"out_dir": str(out_dir), "files": written, "n_ratings": report["n_ratings"]}


def _report_dir(report: AnalysisReport) -> Path:
    return Path(settings.EVALSITE_ARTIFACTS_DIR) / "reports" / report.study.slug / str(report.pk)


def latest_analysis_report(study: Study, *, reference: str = "", fingerprint: str | None = None):
    """The newest stored report (or one under way) for these ratings and reference, if any."""
    reports = AnalysisReport.objects.filter(study=study, reference=reference).select_related("job")
    if fingerprint is not None:
        reports = reports.filter(ratings_fingerprint=fingerprint)
    # A row with neither a report nor a job (its job row deleted) can never finish: skip it.
    return reports.exclude(report__isnull=True, job__isnull=True).order_by("-created_at", "-pk").first()


def analysis_report_get_or_run(
    *, study: Study, reference: str = "", user: Any = None, n_boot: int | None = None, rerun: bool = False
) -> AnalysisReport:
    """The stored report for the study's current ratings and this reference, or a new one whose job is
    enqueued (after commit). A failed report is returned as it is, so the page can show why, until `rerun`.
    `n_boot` defaults to DEFAULT_N_BOOT as it is when called (tests lower it)."""
    from annotations.jobs.analysis import analyze_study  # the job module imports this one

    n_boot = DEFAULT_N_BOOT if n_boot is None else n_boot
    if reference and not study.conditions.filter(label=reference).exists():
        raise AnalysisUnavailable(f"{reference!r} is not a condition of this study")
    with transaction.atomic():
        # The study row is the lock: two staff opening the page at once start one job, not two.
        Study.objects.select_for_update().filter(pk=study.pk).first()
        fingerprint = ratings_fingerprint(study)
        if fingerprint.startswith("0@"):
            raise AnalysisUnavailable("the study has no ratings from completed screens yet")
        cached = latest_analysis_report(study, reference=reference, fingerprint=fingerprint)
        if cached is not None and not rerun:
            return cached
        report = AnalysisReport(study=study, reference=reference, ratings_fingerprint=fingerprint)
        report.full_clean()
        report.save()
        report.job = enqueue_job(
            kind=ANALYSIS_JOB_KIND,
            function=analyze_study,
            params={"report_id": report.pk, "n_boot": n_boot},
            target=report,
            user=user,
        )
        report.save(update_fields=["job"])
    return report


def analysis_report_compute(*, report: AnalysisReport, n_boot: int, progress: Progress) -> dict[str, Any]:
    """Run the analysis for a stored report row, write its files and store the report JSON on the row."""
    from annotations.analysis.report import run_analysis

    study = report.study
    progress(0, None, stage="loading ratings")
    # Read before the ratings: a rating that lands in between makes the stored report look stale (one
    # extra run later) rather than making a report that lacks it look current.
    fingerprint = ratings_fingerprint(study)
    tidy = study_ratings_frame(study)
    if tidy.empty:
        raise AnalysisUnavailable("the study has no ratings from completed screens yet")
    out_dir = _report_dir(report)
    options = study_analysis_options(study, tidy, reference=report.reference, n_boot=n_boot)
    result, written = run_analysis(tidy, out_dir, progress, pairs=study_pairs_frame(study), **options)
    report.report = result
    report.output_dir = str(out_dir)
    report.ratings_fingerprint = fingerprint
    report.full_clean()
    report.save(update_fields=["report", "output_dir", "ratings_fingerprint"])
    return {"report_id": report.pk, "n_ratings": result["n_ratings"], "files": written}


def analysis_report_files(report: AnalysisReport) -> list[str]:
    """Names of the plain files in the report's folder, for download links."""
    folder = _served_folder(report)
    if folder is None:
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink())


def analysis_report_file(report: AnalysisReport, name: str) -> Path | None:
    """The file `name` of the report's folder, or None. Only names listed in that folder are answered,
    so `..`, slashes and links never reach outside it."""
    if name not in analysis_report_files(report):
        return None
    return Path(report.output_dir).resolve() / name


def _served_folder(report: AnalysisReport) -> Path | None:
    if not report.output_dir:
        return None
    folder = Path(report.output_dir).resolve()
    root = Path(settings.EVALSITE_ARTIFACTS_DIR).resolve()
    # A row edited to point elsewhere (the admin shows output_dir) is not served.
    if not folder.is_relative_to(root) or not folder.is_dir():
        return None
    return folder


def ratings_export(*, study: Study, fmt: str, destination: str | Path | BinaryIO | TextIO) -> int:
    """Write the study's tidy ratings with provenance and demographics as csv, parquet or jsonl; return
    the number of rows written."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    frame = study_ratings_frame(study, for_export=True)
    if fmt == "csv":
        safe_frame(frame).to_csv(destination, index=False)
    elif fmt == "jsonl":
        frame.to_json(destination, orient="records", lines=True, date_format="iso")
    else:
        frame.to_parquet(destination, index=False)
    return len(frame)
