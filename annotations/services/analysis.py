"""A study's ratings as a tidy table (for the analysis core and for exports), and stored analysis reports
that are reused until the study's ratings change.

pandas and the statistics core are imported inside the functions: the web process imports this module at
startup (through the report views) and must stay light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from django.conf import settings
from django.db import transaction
from django.db.models import Count, IntegerField, Max
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Length

from annotations.models import AnalysisReport, Study
from annotations.selectors import completed_ratings
from distillation.models import StudentRun
from distillation.services.students import teacher_prompt_version
from evalsite.jobs import Progress, enqueue_job

if TYPE_CHECKING:
    import pandas as pd

ANALYSIS_JOB_KIND = "rating_analysis"
DEFAULT_N_BOOT = 2000

# Columns the analysis reads beside the tidy ones: the covariate every model gets (as the paper's
# rationale_length), and what the exclusion rules look at.
LENGTH = "explanation_length"
SECONDS = "seconds"
ATTENTION_FAILED = "attention_failed"

EXPORT_FORMATS = ("csv", "parquet", "jsonl")
DEMOGRAPHIC_PREFIX = "demographic_"

# Column name -> rating field path. Computed columns are annotations under their own names.
_ANALYSIS_FIELDS = {
    "annotator_id": "annotator_id",
    "item_id": "explanation__item__source_id",
    "explanation_id": "explanation_id",
    "condition": "explanation__condition__label",
    "construct": "construct__label",
    "value": "value",
    LENGTH: LENGTH,
    SECONDS: "assignment__seconds_spent",
    "_attention_failures": "annotator__attention_failures",
    # What wrote the text that was rated: the explanation's version and the prediction set behind it (run,
    # checkpoint and step, task format). Explanations imported from files have no set: those stay blank.
    "explanation_version": "explanation__version",
    "student_run_id": "student_run_id",
    "prediction_set": "explanation__prediction__prediction_set__number",
    "checkpoint": "explanation__prediction__prediction_set__checkpoint_path",
    "checkpoint_step": "explanation__prediction__prediction_set__checkpoint_step",
    "task_format": "explanation__prediction__prediction_set__task_format",
    "_set_prompt_version": "explanation__prediction__prediction_set__prompt_version",
}
# Exports add where each explanation came from and who rated it. Worker ids are left out on purpose: they
# identify people on the crowd platforms, and the annotator id (the database key) is enough to join.
_EXPORT_FIELDS = {
    "explanation_source": "explanation__source",
    "_provenance": "explanation__provenance",
    "annotator_source": "annotator__source",
    "rated_at": "updated_at",
    "_demographics": "annotator__demographics",
}


class AnalysisUnavailable(Exception):
    """The study has nothing to analyse yet."""


def ratings_fingerprint(study: Study) -> str:
    """Count and latest change of the study's completed ratings: any new, changed or completed rating alters it."""
    stats = completed_ratings(study).aggregate(n=Count("id"), latest=Max("updated_at"))
    latest = stats["latest"].isoformat() if stats["latest"] else "none"
    return f"{stats['n']}@{latest}"


def study_ratings_frame(study: Study, *, for_export: bool = False) -> pd.DataFrame:
    """One row per rating of a completed screen, with the tidy columns of `annotations.analysis.io` plus
    explanation_length, seconds (on that screen) and attention_failed (the annotator failed any check).

    With `for_export`, also the explanation's version, source and provenance (JSON text), its student run
    and the teacher prompt versions behind it, and the annotator's source and demographics (one column each).
    """
    import pandas as pd

    fields = {**_ANALYSIS_FIELDS, **(_EXPORT_FIELDS if for_export else {})}
    ratings = completed_ratings(study).annotate(
        **{LENGTH: Length("explanation__text")},
        # A generated explanation names its run through its prediction's set (kept: the link is PROTECTed);
        # one generated before sets existed whose prediction was lost, through its provenance; one imported
        # from a file, through its condition.
        student_run_id=Coalesce(
            "explanation__prediction__prediction_set__run_id",
            Cast(KeyTextTransform("student_run", "explanation__provenance"), IntegerField()),
            "explanation__condition__student_run_id",
        ),
    )
    rows = ratings.order_by("annotator_id", "explanation_id", "construct__position", "construct_id").values_list(
        *fields.values()
    )
    frame = pd.DataFrame(list(rows), columns=list(fields))
    frame[ATTENTION_FAILED] = frame.pop("_attention_failures").fillna(0).astype(int) > 0
    frame[SECONDS] = frame[SECONDS].astype(float)
    frame = _with_text_origin(frame)
    if for_export:
        frame = _with_provenance(frame, study)
    return frame


def _with_text_origin(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed run and set columns, and the teacher prompt version: the set's, else (no set) the run's now."""
    import pandas as pd

    for column in ("student_run_id", "prediction_set", "checkpoint_step", "explanation_version"):
        frame[column] = frame[column].astype("Int64")
    for column in ("checkpoint", "task_format"):
        frame[column] = frame[column].fillna("")
    run_ids = {int(i) for i in frame["student_run_id"].dropna()}
    runs = StudentRun.objects.select_related("teacher_run").in_bulk(run_ids)
    from_set = frame.pop("_set_prompt_version")
    frame["prompt_version"] = [
        stored if pd.notna(number) else (teacher_prompt_version(runs[run]) if pd.notna(run) and run in runs else "")
        for stored, number, run in zip(from_set, frame["prediction_set"], frame["student_run_id"], strict=True)
    ]
    return frame


def _with_provenance(frame: pd.DataFrame, study: Study) -> pd.DataFrame:
    import pandas as pd

    frame["provenance"] = [json.dumps(p or {}, sort_keys=True) for p in frame.pop("_provenance")]
    run_ids = {int(i) for i in frame["student_run_id"].dropna()}
    runs = StudentRun.objects.in_bulk(run_ids)
    frame["student_run"] = [str(runs[i]) if pd.notna(i) and i in runs else "" for i in frame["student_run_id"]]
    frame["student_checkpoint"] = [
        runs[i].base_checkpoint if pd.notna(i) and i in runs else "" for i in frame["student_run_id"]
    ]
    frame["rated_at"] = pd.to_datetime(frame["rated_at"], utc=True)
    demographics = frame.pop("_demographics")
    for name in _demographic_names(study, demographics):
        frame[DEMOGRAPHIC_PREFIX + name] = [(d or {}).get(name, "") for d in demographics]
    return frame


def _demographic_names(study: Study, answers: pd.Series) -> list[str]:
    """The study's questions in their order, then any other keys stored (questions edited mid-study)."""
    names = [q["name"] for q in study.demographics_questions or []]
    for given in answers:
        names.extend(k for k in (given or {}) if k not in names)
    return names


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


def analysis_write_files(
    tidy: pd.DataFrame,
    out_dir: str | Path,
    *,
    figures: bool = True,
    progress: Progress | None = None,
    **options: Any,
) -> tuple[dict[str, Any], list[str]]:
    """Analyse tidy ratings and write report.json, report.html, the figures (unless `figures` is off) and
    ratings_tidy.csv (the rows left after exclusions) to `out_dir`; return the report and the file names."""
    from annotations.analysis import figures as figure_module
    from annotations.analysis.exclusions import apply_exclusions
    from annotations.analysis.io import validate_tidy
    from annotations.analysis.report import analyze, write_report

    progress = progress or (lambda *args, **kwargs: None)
    progress(0, 3, stage="fitting models")
    report = analyze(tidy, **options)
    progress(1, 3, stage="drawing figures")
    rules = options.get("exclusions")
    analysed = apply_exclusions(validate_tidy(tidy), rules)[0] if rules else validate_tidy(tidy)
    drawn = figure_module.build_figures(report) if figures else {}
    progress(2, 3, stage="writing files")
    try:
        written = write_report(report, drawn, out_dir, ratings=analysed)
    finally:
        figure_module.close_figures(drawn)
    progress(3, 3, stage="writing files")
    return report, written


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
    result, written = analysis_write_files(tidy, out_dir, progress=progress, **options)
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
        frame.to_csv(destination, index=False)
    elif fmt == "jsonl":
        frame.to_json(destination, orient="records", lines=True, date_format="iso")
    else:
        frame.to_parquet(destination, index=False)
    return len(frame)
