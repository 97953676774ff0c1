"""Provenance that never breaks: predictions are appended in sets, each explanation version keeps the
prediction that wrote it, and every exported rating names the run, checkpoint and version of what was rated."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from django.core.management import call_command
from django.db.models import ProtectedError

from annotations.models import Explanation, Rating
from annotations.services.explanations import explanations_generate
from annotations.services.studies import study_create, study_open
from distillation.models import Prediction, PredictionSet, StudentRun
from distillation.services.students import student_evaluate, student_train_and_evaluate
from evalsite.jobs import NO_PROGRESS
from tests.annotations.test_sessions import current, screen_form, start_rating
from tests.distillation.test_students import TINY_TRAINING, call

pytestmark = pytest.mark.django_db

LABEL = "MT:Unrevised"


def rate_session(client, study, label: str) -> list[int]:
    """One annotator rates every screen of a session; returns the explanation ids they rated."""
    url = start_rating(client, study, label=label)
    client.get(url)
    annotator = study.annotators.get(external_id=label)
    rated = []
    while (assignment := current(annotator)) is not None:
        client.get(url)
        client.post(url, screen_form(annotator, assignment, value=3))
        rated.append(assignment.explanation_id)
    return rated


def generate(run: StudentRun, study) -> dict[str, int]:
    return explanations_generate(run=run, study=study, condition_label=LABEL, progress=NO_PROGRESS, limit=8)


def exported(study) -> pd.DataFrame:
    out = io.StringIO()
    call_command("export_ratings", "--study", study.slug, stdout=out)
    return pd.read_csv(io.StringIO(out.getvalue()))


def test_every_exported_rating_names_the_run_checkpoint_and_version_that_wrote_the_rated_text(teacher_data, client):
    call("train_student", "--method", "mt", "--data", "unrevised", "--seed", "0", *TINY_TRAINING)
    call("train_student", "--method", "mt", "--data", "unrevised", "--seed", "1", *TINY_TRAINING)
    first, second = StudentRun.objects.order_by("pk")
    study = study_create(config={"slug": "provenance", "explanations_per_annotator": 3, "ratings_per_explanation": 3})
    generate(first, study)
    study_open(study=study)
    screens = rate_session(client, study, "before")

    # From its own run: the model is unchanged, so are the texts; the predictions are a new set all the same.
    assert generate(first, study)["unchanged"] == 8
    screens += rate_session(client, study, "own-run")
    # From another run: the condition now shows what that run writes; rated texts stay as old versions.
    from_other = generate(second, study)
    screens += rate_session(client, study, "other-run")
    # Retrain (resume: already complete) and re-evaluate the first: its predictions are appended, not rewritten.
    first.refresh_from_db()
    student_train_and_evaluate(run=first, progress=NO_PROGRESS, eval_limit=8)
    student_evaluate(run=first, progress=NO_PROGRESS, limit=8)

    assert list(first.prediction_sets.order_by("number").values_list("kind", flat=True)) == [
        "evaluation", "generation", "generation", "evaluation", "evaluation",
    ]  # fmt: skip
    assert first.predictions.count() == 5 * 8  # nothing deleted
    assert from_other["new_version"] + from_other["updated"] + from_other["unchanged"] == 8
    assert not Explanation.objects.filter(prediction__isnull=True).exists()

    frame = exported(study)
    assert len(screens) == 9
    assert len(frame) == Rating.objects.count() == len(screens) * study.constructs.count()
    explanations = Explanation.objects.select_related("prediction__prediction_set").in_bulk(
        set(frame["explanation_id"])
    )
    for row in frame.itertuples():
        explanation = explanations[row.explanation_id]
        prediction_set = explanation.prediction.prediction_set
        # The named prediction wrote exactly the text that was rated.
        assert (explanation.prediction.explanation or "(no explanation)") == explanation.text
        assert row.student_run_id == prediction_set.run_id
        assert row.prediction_set == prediction_set.number
        assert row.checkpoint == prediction_set.checkpoint_path and row.checkpoint_step == 6
        assert row.explanation_version == explanation.version
        assert row.task_format == "tasks/v1"
    # Ratings made before the switch name the first run, even where the condition now shows the second.
    assert set(frame["student_run_id"]) <= {first.pk, second.pk}
    before = frame[frame["annotator_id"] == study.annotators.get(external_id="before").pk]
    assert set(before["student_run_id"]) == {first.pk}
    assert set(before["prediction_set"]) == {2}  # set 1 is the first run's evaluation
    if from_other["new_version"] + from_other["updated"]:
        after = frame[frame["annotator_id"] == study.annotators.get(external_id="other-run").pk]
        assert second.pk in set(after["student_run_id"])


def test_a_prediction_behind_an_explanation_cannot_be_deleted(teacher_data):
    call("train_student", "--method", "mt", "--data", "unrevised", *TINY_TRAINING)
    run = StudentRun.objects.get()
    study = study_create(config={"slug": "protected"})
    generate(run, study)
    prediction = Explanation.objects.first().prediction
    with pytest.raises(ProtectedError):
        prediction.delete()
    with pytest.raises(ProtectedError):
        PredictionSet.objects.filter(pk=prediction.prediction_set_id).delete()
    assert Prediction.objects.filter(pk=prediction.pk).exists()
