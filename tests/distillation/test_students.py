"""Students through the commands: train and evaluate, grid, accuracy statistics, explanations into studies."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from annotations.models import Explanation, Rating
from annotations.services.studies import study_create, study_open
from distillation.models import Prediction, StudentRun
from evalsite.jobs import run_in_foreground

pytestmark = pytest.mark.django_db

TINY_TRAINING = [
    "--student",
    "tiny",
    "--max-steps",
    "6",
    "--batch-size",
    "8",
    "--max-tokens",
    "96",
    "--checkpoint-every",
    "3",
    "--eval-limit",
    "8",
    "--quiet",
]


def call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_train_student_trains_evaluates_and_stores_predictions(teacher_data):
    output = call("train_student", "--method", "mtcf", "--data", "revised", "--seed", "3", *TINY_TRAINING)
    run = StudentRun.objects.get()
    assert run.status == StudentRun.Status.EVALUATED
    assert run.condition_label == "MT+CF:Revised"
    assert run.metrics["steps"] == 6 and run.metrics["train_questions"] == 48
    assert 0.0 <= run.metrics["accuracy"] <= 1.0
    assert Prediction.objects.filter(student_run=run).count() == 8
    quality = run.metrics["text_quality"]
    assert quality["n"] == 8 and quality["accuracy"] == run.metrics["accuracy"]
    assert quality["chance"] == pytest.approx(0.2)
    assert 0.0 <= quality["corpus_words"] <= 1.0 and 0.0 <= quality["degenerate"] <= 1.0
    assert {p.parse_status for p in Prediction.objects.all()} <= {"exact", "letter", "similar", "unparseable"}
    assert f"Student run {run.pk} (MT+CF:Revised, seed 3): 6 steps" in output
    assert Path(run.checkpoint_dir, "evalsite_student.json").is_file()


def test_run_experiment_and_compare_accuracy_from_the_database(teacher_data, tmp_path):
    output = call("run_experiment", "--methods", "mt,cf", "--data", "unrevised", "--seeds", "0-1", *TINY_TRAINING)
    assert StudentRun.objects.filter(status=StudentRun.Status.EVALUATED).count() == 4
    assert output.count("MT:Unrevised") == 2 and output.count("CF:Unrevised") == 2
    table = call("compare_accuracy", "--from-db", "--out", str(tmp_path))
    assert "tiny" in table and "MT:Unrevised" in table
    report = json.loads((tmp_path / "accuracy.json").read_text())
    assert report["sizes"][0]["size"] == "tiny"
    assert (tmp_path / "accuracy.png").stat().st_size > 1000


def test_compare_accuracy_reproduces_the_paper(data_dir):
    table = call("compare_accuracy", "--input", str(data_dir / "paper_study" / "experiment.csv"))
    sections = table.split("== ")
    small = next(s for s in sections if s.startswith("220M"))
    large = next(s for s in sections if s.startswith("770M"))
    assert "MT:Unrevised        CF:Unrevised   12.66" in small and "<0.001" in small
    assert "MT:Unrevised        CF:Unrevised   6.24" in large
    assert "MT:Unrevised       MT+CF:Revised   1.90    [0.31, 3.49]   0.017" in large


def test_explanations_go_into_a_study_and_regeneration_keeps_every_rating(teacher_data, client):
    from tests.annotations.test_sessions import current, screen_form, start_rating

    call("train_student", "--method", "mt", "--data", "unrevised", *TINY_TRAINING)
    run = StudentRun.objects.get()
    study = study_create(config={"slug": "students", "explanations_per_annotator": 2, "ratings_per_explanation": 1})
    output = call("generate_explanations", str(run.pk), "--study", "students", "--limit", "8", "--quiet")
    assert "MT:Unrevised in students: 8 new" in output
    condition = study.conditions.get()
    assert condition.student_run_id == run.pk
    assert condition.explanations.filter(is_current=True).count() == 8
    assert all(e.prediction_id for e in Explanation.objects.all())

    study_open(study=study)
    url = start_rating(client, study)
    client.get(url)
    annotator = study.annotators.get()
    while (assignment := current(annotator)) is not None:
        client.get(url)
        client.post(url, screen_form(annotator, assignment, value=2))
    rated = list(Explanation.objects.filter(ratings__isnull=False).distinct())
    assert len(rated) == 2 and Rating.objects.count() == 2 * 3
    # Pretend the model changed since those were written: the rated texts differ from what it now says.
    Explanation.objects.filter(pk__in=[e.pk for e in rated]).update(text="An older explanation.")

    job = run_in_foreground(
        kind="regenerate", function="distillation.jobs.regenerate_explanations", params={"run_id": run.pk}
    )
    counts = job.result["students:MT:Unrevised"]
    assert counts["new_version"] == 2 and counts["unchanged"] == 6
    assert Rating.objects.count() == 6
    for old in rated:
        old.refresh_from_db()
        assert not old.is_current and old.text == "An older explanation." and old.ratings.count() == 3
        successor = old.superseded_by.get()
        assert successor.is_current and successor.version == 2 and successor.text != old.text
    assert condition.explanations.filter(is_current=True).count() == 8


def test_a_missing_model_is_a_clear_error_and_the_run_says_failed(teacher_data):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no model at /no/such/student: give an existing folder"):
        call("train_student", "--method", "mt", "--student", "/no/such/student", "--quiet")
    assert StudentRun.objects.get().status == StudentRun.Status.FAILED
