"""Students through the commands: train and evaluate, grid, accuracy statistics, explanations into studies."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from annotations.jobs.explanations import regenerate_explanations
from annotations.models import Explanation, Rating
from annotations.services.studies import study_create, study_open
from distillation.models import Prediction, StudentRun
from evalsite.jobs import run_in_foreground

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """Two shared cores: one intra-op thread avoids oversubscription."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_TRAINING = [
    "--student",
    "tiny",
    "--max-steps",
    "6",
    "--batch-size",
    "4",
    "--max-tokens",
    "96",
    "--eval-every",
    "0",
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
    predictions = Prediction.objects.filter(student_run=run)
    assert predictions.count() == 8
    assert run.metrics["accuracy"] == sum(p.is_correct for p in predictions) / 8
    assert run.metrics["choice_accuracy"] == sum(p.choice_correct for p in predictions) / 8
    quality = run.metrics["text_quality"]
    assert quality["n"] == 8 and quality["accuracy"] == run.metrics["accuracy"]
    assert quality["chance"] == pytest.approx(0.2)
    assert 0.0 <= quality["corpus_words"] <= 1.0 and 0.0 <= quality["degenerate"] <= 1.0
    assert {p.parse_status for p in Prediction.objects.all()} <= {"exact", "letter", "similar", "unparseable"}
    assert f"Student run {run.pk} (MT+CF:Revised, seed 3): 6 steps" in output
    assert f"dev exact match {100 * run.metrics['accuracy']:.2f}% ({run.metrics['n_correct']} of 8" in output
    assert Path(run.checkpoint_dir, "evalsite_student.json").is_file()
    assert len(run.metrics["loss_history"]) == 6 and run.metrics["truncation"].keys() == {
        "answer",
        "explain",
        "factual",
        "counterfactual",
    }
    # Byte tokens at 96: most counterfactual inputs are cut, and the command says so before the summary.
    assert "Tokens cut, counterfactual:" in output and "WARNING: more than 5% cut" in output
    # The finished run keeps its weights and tokenizer, not its optimizer checkpoints.
    folder = Path(run.checkpoint_dir).parent
    assert not (folder / "checkpoints").exists() and not list(folder.rglob("optimizer*"))


def test_score_predictions_gives_the_papers_exact_match(data_dir):
    students = data_dir / "students"
    revised = call("score_predictions", "--csv", str(students / "t5-large-mtcf-revised-validation.csv"))
    unrevised = call(
        "score_predictions",
        "--csv",
        str(students / "t5-large-mtcf-unrevised-validation.csv"),
        "--pred-column",
        "answers_preds",
        "--label-column",
        "answers_labels",
    )
    assert revised.strip() == "exact match: 76.49% (934 of 1221)"
    assert unrevised.strip() == "exact match: 76.33% (932 of 1221)"


def test_score_predictions_refuses_a_missing_column(tmp_path):
    from django.core.management.base import CommandError

    path = tmp_path / "p.csv"
    path.write_text("pred,gold\nThe answer is a,The answer is a\n")
    with pytest.raises(CommandError, match="no column answers_preds, answers_labels; it has pred, gold"):
        call("score_predictions", "--csv", str(path))
    assert call("score_predictions", "--csv", str(path), "--pred-column", "pred", "--label-column", "gold").strip() == (
        "exact match: 100.00% (1 of 1)"
    )


def test_run_experiment_runs_the_papers_four_conditions_and_a_rerun_trains_nothing(teacher_data, tmp_path):
    from evalsite.models import Job

    output = call("run_experiment", "--seeds", "0", *TINY_TRAINING)
    runs = StudentRun.objects.all()
    assert sorted(run.condition_label for run in runs) == [
        "CF:Unrevised",
        "MT+CF:Revised",
        "MT+CF:Unrevised",
        "MT:Unrevised",
    ]
    assert all(run.status == StudentRun.Status.EVALUATED for run in runs)
    assert "Grid of 4 runs: 4 new, 0 resumed, 0 already evaluated." in output
    jobs = Job.objects.count()

    again = call("run_experiment", "--seeds", "0", *TINY_TRAINING)
    assert "Grid of 4 runs: 0 new, 0 resumed, 4 already evaluated." in again
    assert StudentRun.objects.count() == 4 and Job.objects.count() == jobs  # nothing trained, nothing evaluated
    for run in runs:
        assert f"{run.pk:>5}  {run.condition_label:<16}" in again

    table = call("compare_accuracy", "--from-db", "--out", str(tmp_path))
    assert "tiny" in table and "MT:Unrevised" in table
    report = json.loads((tmp_path / "accuracy.json").read_text())
    assert report["sizes"][0]["size"] == "tiny"
    assert (tmp_path / "accuracy.png").stat().st_size > 1000


def test_run_experiment_killed_midway_finishes_only_what_is_missing(teacher_data):
    from distillation.services.students import student_train

    grid = ["--conditions", "mt:unrevised,cf:unrevised", "--seeds", "0-1", *TINY_TRAINING]
    call("run_experiment", "--conditions", "mt:unrevised", *grid[2:])  # the first two runs finished before the kill
    finished = {run.pk: run.updated_at for run in StudentRun.objects.all()}
    assert len(finished) == 2

    # The kill: CF seed 0 had trained 4 of its 6 steps (a stop checkpoints them); CF seed 1 never started.
    from distillation.management.commands.run_experiment import Command
    from distillation.management.commands.train_student import create_run

    parser = Command().create_parser("manage.py", "run_experiment")
    options = vars(parser.parse_args(grid))
    interrupted = create_run(options, method="cf", data="unrevised", seed=0)
    steps = []

    def progress(step, total, stage="", message=""):
        if stage == "training":
            steps.append(step)

    progress.should_stop = lambda: len(steps) >= 4
    assert student_train(run=interrupted, progress=progress)["completed"] is False
    interrupted.refresh_from_db()
    assert interrupted.status == StudentRun.Status.TRAINING

    output = call("run_experiment", *grid)
    assert "Grid of 4 runs: 1 new, 1 resumed, 2 already evaluated." in output
    assert StudentRun.objects.count() == 4
    assert all(run.status == StudentRun.Status.EVALUATED for run in StudentRun.objects.all())
    assert {run.pk: run.updated_at for run in StudentRun.objects.filter(pk__in=finished)} == finished
    interrupted.refresh_from_db()
    assert interrupted.metrics["resumed_from"] == 4 and interrupted.metrics["steps"] == 6


def test_the_run_admin_page_plots_the_training_curves(teacher_data, admin_client):
    call("train_student", "--method", "mt", "--data", "unrevised", *TINY_TRAINING, "--eval-every", "3")
    run = StudentRun.objects.get()
    assert [p["step"] for p in run.metrics["validation"] if p["accuracy"] is not None] == [3, 6]
    page = admin_client.get(f"/admin/distillation/studentrun/{run.pk}/change/").content.decode()
    assert "Training curves" in page and page.count('<svg xmlns="http://www.w3.org/2000/svg" width="560"') == 2
    assert "training loss" in page and "validation exact match" in page and page.count("<polyline") == 3


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

    job = run_in_foreground(kind="regenerate", function=regenerate_explanations, params={"run_id": run.pk})
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


def test_train_to_trains_a_finished_run_longer_and_evaluates_it_again(teacher_data):
    from django.core.management.base import CommandError

    call("train_student", "--method", "mt", "--data", "unrevised", *TINY_TRAINING)
    run = StudentRun.objects.get()
    with pytest.raises(CommandError, match="has trained 6 steps: to train longer, ask for more than 6"):
        call("train_student", "--resume", str(run.pk), "--train-to", "6", "--quiet")
    with pytest.raises(CommandError, match="--train-to needs --resume"):
        call("train_student", "--method", "mt", "--train-to", "9", "--quiet")

    output = call("train_student", "--resume", str(run.pk), "--train-to", "9", "--eval-limit", "8", "--quiet")
    run.refresh_from_db()
    assert "9 steps" in output and run.status == StudentRun.Status.EVALUATED
    assert run.hyperparameters["max_steps"] == 9 and run.metrics["steps"] == 9
    assert len(run.metrics["loss_history"]) == 9
    assert run.metrics["extensions"] == [{"from_step": 6, "to_step": 9, "optimizer": "restarted"}]
    # Two evaluations, two prediction sets: the first is kept, with the checkpoint label of 6 steps.
    sets = list(run.prediction_sets.order_by("number"))
    assert [s.number for s in sets] == [1, 2] and all(s.predictions.count() == 8 for s in sets)
    assert StudentRun.objects.count() == 1
