"""The rating analysis end to end: the command on the paper's study and on a study in the database, the
exports, and the staff report page with its job, cache and files."""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import call_command
from django.urls import reverse

from annotations.analysis.schema import validate_report
from annotations.jobs.analysis import analyze_study
from annotations.models import AnalysisReport, Annotator, Study
from annotations.services import analysis, sessions
from annotations.services.studies import condition_get_or_create
from distillation.services.imports import dataset_get_or_create
from distillation.services.students import student_run_create
from distillation.services.teacher import prompt_config_summary, teacher_for_spec, teacher_run_get_or_create
from evalsite.jobs import create_job
from evalsite.models import Job
from tests.annotations.factories import build_study

PAPER_CONSTRUCTS = "Completeness,Contrastiveness,Plausibility,Satisfaction,Understandability"
# Three conditions: the core's Friedman test (chosen once five annotators rated every condition) needs three.
CONDITIONS = ("CF:Unrevised", "MT:Unrevised", "MT+CF:Revised")
DEMOGRAPHICS = {
    "gender": "Woman",
    "age": "25-34",
    "country": "Netherlands",
    "education": "Master's degree",
    "employment": "Student",
}
SCREENS = 6
N_BOOT = 50


def rate_as(study: Study, label: str, *, seed: int, straight: int | None = None) -> Annotator:
    """One annotator's whole session through the real services; MT+CF:Revised gets a little higher ratings."""
    rng = random.Random(seed)
    annotator = sessions.annotator_enter(study=study, source=Annotator.Source.LINK, external_id=label)
    sessions.annotator_consent(annotator=annotator)
    sessions.annotator_save_demographics(annotator=annotator, answers=DEMOGRAPHICS)
    sessions.assignments_allocate(annotator=annotator)
    constructs = list(study.constructs.all())
    for assignment in annotator.assignments.filter(status="assigned").select_related("explanation__condition"):
        sessions.mark_shown(assignment)
        lift = 1 if assignment.explanation.condition.label == "MT+CF:Revised" else 0
        answers = [
            sessions.ScreenAnswer(assignment.explanation_id, c.pk, straight or min(5, rng.randint(2, 4) + lift))
            for c in constructs
        ]
        sessions.screen_submit(annotator=annotator, assignment_id=assignment.pk, answers=answers)
    sessions.annotator_finish(annotator=annotator)
    return annotator


def build_rated_study(slug: str, n_annotators: int = 5) -> Study:
    """Three conditions, eight items, annotators rating six screens each, the last of whom straight-lines."""
    study = build_study(slug=slug, conditions=CONDITIONS, n_items=8, per_annotator=SCREENS, ratings_per_explanation=4)
    teacher_run = teacher_run_get_or_create(
        teacher=teacher_for_spec("tiny"),
        dataset=dataset_get_or_create(slug="cqa"),
        split="train",
        prompt_config=prompt_config_summary(
            versions={"rationale": "rationale/v2", "revision": "revision/v1"},
            seed=0,
            chat=False,
            fewshot_digest="abc",
            max_new_tokens=None,
        ),
        stages=["rationale", "revision"],
    )
    run = student_run_create(base_checkpoint="tiny", method="mtcf", training_data="revised", teacher_run=teacher_run)
    condition_get_or_create(study=study, label="MT+CF:Revised", student_run=run)
    for index in range(n_annotators - 1):
        rate_as(study, f"ann-{index}", seed=index)
    rate_as(study, "straight-liner", seed=99, straight=3)
    return study


@pytest.fixture
def artifacts(settings, tmp_path) -> Path:
    settings.EVALSITE_ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings.EVALSITE_ARTIFACTS_DIR


# The command on the paper's data ------------------------------------------------------------------------


@pytest.mark.django_db
def test_command_on_the_paper_study_reproduces_its_models(data_dir, tmp_path):
    out = io.StringIO()
    call_command(
        "analyze_ratings",
        "--input", str(data_dir / "paper_study" / "study.csv"),
        "--wide", "--annotator", "CASE", "--explanation", "rationale_id", "--condition", "model",
        "--constructs", PAPER_CONSTRUCTS,
        "--reference", "CF:PosRationales", "--covariates", "rationale_length",
        "--models", "lmm,ols", "--n-boot", str(N_BOOT),
        "--out", str(tmp_path),
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    names = {p.name for p in tmp_path.iterdir()}
    assert {"report.json", "report.html", "ratings_tidy.csv", "means.png", "means.svg"} <= names
    report = json.loads((tmp_path / "report.json").read_text())
    assert validate_report(report) == []
    models = {m["name"]: {c["term"]: c for c in m["coefficients"]} for m in report["models"]}
    assert round(models["paper_ols:Quality"]["MT+CF:RevRationales"]["estimate"], 3) == 0.285
    assert round(models["lmm:Quality"]["MT+CF:RevRationales"]["estimate"], 3) == 0.252
    printed = out.getvalue()
    assert "paper_ols:Quality" in printed and "0.285" in printed and "0.252" in printed
    assert len(pd.read_csv(tmp_path / "ratings_tidy.csv")) == 5570
    job = Job.objects.get(kind="analyze_ratings")  # recorded like every other long command
    assert job.status == Job.Status.DONE and "report.json" in job.result["files"]


def test_command_refuses_a_wide_file_without_constructs(data_dir, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--wide needs --constructs"):
        call_command(
            "analyze_ratings", "--input", str(data_dir / "paper_study" / "study.csv"), "--wide", "--out", str(tmp_path)
        )


# A study in the database --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_command_on_a_study_in_the_database_applies_the_exclusions(tmp_path):
    study = build_rated_study("db-analysis")
    out = io.StringIO()
    call_command(
        "analyze_ratings", "--study", study.slug, "--out", str(tmp_path), "--no-figures", "--n-boot", str(N_BOOT),
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    report = json.loads((tmp_path / "report.json").read_text())
    assert validate_report(report) == []
    assert report["conditions"] == sorted(CONDITIONS)
    # The factory's templated texts have one length per condition, so the length covariate would be collinear.
    assert report["settings"]["covariates"] == []
    straight_liner = Annotator.objects.get(study=study, external_id="straight-liner")
    assert report["exclusions"]["by_rule"]["straightlining"]["annotators"] == [str(straight_liner.pk)]
    per_annotator = SCREENS * study.constructs.count()
    assert report["n_excluded"] == per_annotator
    assert report["n_ratings"] == 4 * per_annotator and report["n_annotators"] == 4
    assert {"lmm:Quality", "paper_ols:Quality"} <= {m["name"] for m in report["models"]}
    tidy = pd.read_csv(tmp_path / "ratings_tidy.csv")
    assert len(tidy) == report["n_ratings"]
    assert {"explanation_length", "seconds", "attention_failed"} <= set(tidy.columns)
    assert not (tmp_path / "means.png").exists()
    assert "lmm:Quality" in out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_export_in_every_format(tmp_path, fmt):
    study = build_rated_study(f"export-{fmt}", n_annotators=3)
    target = tmp_path / f"ratings.{fmt}"
    out = io.StringIO()
    call_command("export_ratings", "--study", study.slug, "--format", fmt, "--out", str(target), stdout=out)
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet, "jsonl": lambda p: pd.read_json(p, lines=True)}[fmt]
    frame = read(target)
    assert len(frame) == 3 * SCREENS * study.constructs.count()
    assert f"{len(frame)} ratings" in out.getvalue()
    expected = {
        "annotator_id", "item_id", "explanation_id", "condition", "construct", "value", "explanation_length",
        "seconds", "attention_failed", "explanation_version", "provenance", "student_run_id", "student_run",
        "prompt_version", "annotator_source", *(f"demographic_{name}" for name in DEMOGRAPHICS),
    }  # fmt: skip
    assert expected <= set(frame.columns)
    revised = frame[frame["condition"] == "MT+CF:Revised"]
    assert set(revised["prompt_version"]) == {"rationale=rationale/v2;revision=revision/v1"}
    assert revised["student_run_id"].notna().all()
    assert frame.loc[frame["condition"] == "CF:Unrevised", "student_run_id"].isna().all()
    assert set(frame["demographic_country"]) == {"Netherlands"}
    assert json.loads(frame["provenance"].iloc[0]) == {"test": True}


@pytest.mark.django_db
def test_csv_export_goes_to_standard_output_without_a_file():
    study = build_rated_study("export-stdout", n_annotators=2)
    out = io.StringIO()
    call_command("export_ratings", "--study", study.slug, stdout=out)
    frame = pd.read_csv(io.StringIO(out.getvalue()))
    assert len(frame) == 2 * SCREENS * study.constructs.count()


# The report page ----------------------------------------------------------------------------------------


def wait_for(job: Job, timeout: float = 90.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if not job.is_active:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job.pk} still {job.status} after {timeout}s")


@pytest.fixture
def small_bootstrap(monkeypatch):
    monkeypatch.setattr(analysis, "DEFAULT_N_BOOT", N_BOOT)


@pytest.mark.django_db
def test_report_page_needs_staff(client):
    study = build_study(slug="report-anon", n_items=2)
    url = reverse("annotations:report", args=[study.slug])
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not AnalysisReport.objects.exists()


@pytest.mark.django_db
def test_report_page_without_ratings_says_so(admin_client, artifacts):
    study = build_study(slug="report-empty", n_items=2)
    response = admin_client.get(reverse("annotations:report", args=[study.slug]))
    assert response.status_code == 200
    assert "no ratings from completed screens yet" in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_report_page_runs_the_job_caches_the_report_and_reruns_after_new_ratings(
    admin_client, artifacts, small_bootstrap
):
    study = build_rated_study("report-page")
    url = reverse("annotations:report", args=[study.slug])

    first = admin_client.get(url)
    assert first.status_code == 200 and "Run the analysis" in first.content.decode()
    assert not AnalysisReport.objects.exists(), "a GET starts nothing"
    assert admin_client.post(url).status_code == 302
    report = AnalysisReport.objects.get(study=study)
    assert report.job is not None and report.job.params == {"report_id": report.pk, "n_boot": N_BOOT}
    assert wait_for(report.job).status == Job.Status.DONE, report.job.error

    page = admin_client.get(url)
    html = page.content.decode()
    assert "Models of Quality" in html and "lmm:Quality" in html and "Descriptives" in html
    assert 'http-equiv="refresh"' not in html
    report.refresh_from_db()
    assert report.output_dir.startswith(str(artifacts / "reports" / study.slug / str(report.pk)))
    assert validate_report(report.report) == []
    assert Job.objects.count() == 1, "the stored report is reused while no new ratings arrive"

    json_url = reverse("annotations:report_file", args=[study.slug, report.pk, "report.json"])
    assert json_url in html and reverse("annotations:report_file", args=[study.slug, report.pk, "means.svg"]) in html
    download = admin_client.get(json_url)
    assert download.status_code == 200
    assert json.loads(b"".join(download.streaming_content)) == report.report
    assert "sandbox" in download["Content-Security-Policy"]

    rate_as(study, "latecomer", seed=7)
    assert "No analysis of the current ratings yet" in admin_client.get(url).content.decode()
    assert Job.objects.count() == 1
    admin_client.post(url)
    assert Job.objects.count() == 2, "a new rating makes the stored report stale"
    newest = AnalysisReport.objects.filter(study=study).latest("pk")
    assert newest.pk != report.pk
    assert wait_for(newest.job).status == Job.Status.DONE, newest.job.error
    newest.refresh_from_db()
    assert newest.report["n_annotators"] == 5


@pytest.mark.django_db
def test_report_files_are_served_only_from_the_reports_own_folder(admin_client, artifacts, tmp_path):
    study = build_study(slug="report-files", n_items=2)
    folder = artifacts / "reports" / study.slug / "1"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text("{}")
    (artifacts / "secret.txt").write_text("no")
    report = AnalysisReport.objects.create(study=study, ratings_fingerprint="x", output_dir=str(folder))

    def get(name: str, report: AnalysisReport = report) -> int:
        url = reverse("annotations:report_file", args=[study.slug, report.pk, "x"]).removesuffix("x") + name
        return admin_client.get(url).status_code

    assert get("report.json") == 200
    assert get("..") == 404
    assert get("%2E%2E%2F%2E%2E%2Fsecret.txt") == 404
    assert get("missing.csv") == 404
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "report.json").write_text("{}")
    stray = AnalysisReport.objects.create(study=study, ratings_fingerprint="x", output_dir=str(outside))
    assert get("report.json", stray) == 404, "a row pointing outside the artifacts folder is not served"


@pytest.mark.django_db
def test_a_failed_analysis_shows_why_and_runs_again_on_request(admin_client, artifacts):
    study = build_rated_study("report-failed", n_annotators=2)
    failed = create_job(kind=analysis.ANALYSIS_JOB_KIND, function=analyze_study)
    Job.objects.filter(pk=failed.pk).update(status=Job.Status.FAILED, message="ValueError: singular matrix")
    AnalysisReport.objects.create(study=study, ratings_fingerprint=analysis.ratings_fingerprint(study), job=failed)
    url = reverse("annotations:report", args=[study.slug])

    page = admin_client.get(url).content.decode()
    assert "ValueError: singular matrix" in page and "Run the analysis again" in page
    assert Job.objects.count() == 1, "a failed report is shown, not silently retried on every visit"

    response = admin_client.post(url)
    assert response.status_code == 302 and response["Location"] == url
    assert Job.objects.count() == 2
