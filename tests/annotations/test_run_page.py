"""The student-run page in the admin: a typed create form, a read-only summary, and buttons that start jobs."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.models import Condition
from annotations.services.explanations import generation_summary
from annotations.services.studies import study_create
from distillation.forms import training_defaults
from distillation.models import StudentRun, TeacherRun
from distillation.services.students import student_run_create
from evalsite.models import Job

pytestmark = pytest.mark.django_db

ADD_URL = "admin:distillation_studentrun_add"


def form_data(teacher: TeacherRun, **changes) -> dict:
    data = {
        "name": "form run",
        "base_checkpoint": "tiny",
        "model_size": "",
        "method": "mtcf",
        "training_data": "unrevised",
        "teacher_run": teacher.pk,
        "max_steps": 40,
        "batch_size": 8,
        "learning_rate": 0.0005,
        "max_input_tokens": 96,
        "max_target_tokens": 96,
        "precision": "fp32",
        "checkpoint_every": 20,
        "split_seed": 1,
        "eval_every": 0,
        "train_limit": "",
        "alpha": 0.5,
        "beta": 0.5,
        "gamma": 0.5,
        "seed": 3,
    }
    return {**data, **changes}


def test_the_create_form_shows_defaults_preselects_the_newest_teacher_run_and_stores_typed_options(
    admin_client, teacher_data
):
    newest = TeacherRun.objects.order_by("-created_at").first()
    page = admin_client.get(reverse(ADD_URL)).content.decode()
    defaults = training_defaults()
    assert f'name="max_steps" value="{defaults["max_steps"]}"' in page
    assert f"Default: {defaults['learning_rate']}." in page
    assert f'<option value="{newest.pk}" selected>' in page
    assert 'name="hyperparameters"' not in page and 'name="status"' not in page

    # An unknown key cannot be given: the form has no place for it, and it is not stored.
    response = admin_client.post(reverse(ADD_URL), {**form_data(newest), "max_step": 40, "hyperparameters": "{}"})
    assert response.status_code == 302
    run = StudentRun.objects.get()
    assert run.hyperparameters == {
        "max_steps": 40,
        "batch_size": 8,
        "learning_rate": 0.0005,
        "max_input_tokens": 96,
        "max_target_tokens": 96,
        "precision": "fp32",
        "checkpoint_every": 20,
        "split_seed": 1,
        "eval_every": 0,
    }
    assert run.teacher_run == newest and run.model_size == "tiny" and run.seed == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_steps": 0}, "Ensure this value is greater than or equal to 1."),
        ({"learning_rate": "fast"}, "Enter a number."),
        ({"precision": "fp8"}, "Select a valid choice."),
        ({"alpha": 1.5}, "A loss weight lies between 0 and 1."),
        ({"teacher_run": ""}, "This field is required."),
    ],
)
def test_the_create_form_refuses_bad_values_with_a_message_and_saves_nothing(
    admin_client, teacher_data, changes, message
):
    response = admin_client.post(reverse(ADD_URL), form_data(TeacherRun.objects.first(), **changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not StudentRun.objects.exists()


def test_the_run_page_is_read_only_where_jobs_write_and_its_buttons_start_jobs(admin_client, settings):
    settings.REDIS_URL = ""  # a thread after commit, which a test transaction never reaches
    run = student_run_create(base_checkpoint="tiny", method="mt", training_data="unrevised")
    change = reverse("admin:distillation_studentrun_change", args=[run.pk])
    page = admin_client.get(change).content.decode()
    for field in ("status", "metrics", "checkpoint_dir", "hyperparameters", "method"):
        assert f'name="{field}"' not in page
    assert 'name="name"' in page
    assert "MT:Unrevised" in page and "not trained yet" in page
    for label in ("Train (or resume) and evaluate", "Evaluate again", "Generate explanations into a study"):
        assert label in page

    response = admin_client.post(reverse("admin:distillation_studentrun_train", args=[run.pk]), follow=True)
    job = Job.objects.get()
    assert (job.kind, job.target_id) == ("student_training", str(run.pk))
    assert f'href="/admin/evalsite/job/{job.pk}/change/"' in response.content.decode()

    # Evaluating an untrained run is refused with a reason, and starts nothing.
    response = admin_client.post(reverse("admin:distillation_studentrun_evaluate", args=[run.pk]), follow=True)
    assert "is not trained yet" in response.content.decode() and Job.objects.count() == 1
    # A button is a POST: a plain link starts nothing.
    assert admin_client.get(reverse("admin:distillation_studentrun_train", args=[run.pk])).status_code == 403


def test_train_longer_asks_for_more_steps_than_trained_and_starts_one_training_job(admin_client, settings):
    settings.REDIS_URL = ""
    run = student_run_create(
        base_checkpoint="tiny", method="mt", training_data="unrevised", hyperparameters={"max_steps": 40}
    )
    url = reverse("admin:distillation_studentrun_train_longer", args=[run.pk])
    refused = admin_client.post(url, {"max_steps": 80}, follow=True).content.decode()
    assert "has not finished training" in refused and not Job.objects.exists()

    StudentRun.objects.filter(pk=run.pk).update(
        status=StudentRun.Status.EVALUATED, checkpoint_dir="var/students/x/final", metrics={"steps": 40}
    )
    page = admin_client.get(url).content.decode()
    assert 'name="max_steps" value="80" min="41"' in page and "has trained 40 steps" in page
    too_few = admin_client.post(url, {"max_steps": 40}).content.decode()
    assert "greater than or equal to 41" in too_few and not Job.objects.exists()

    response = admin_client.post(url, {"max_steps": 100}, follow=True)
    job = Job.objects.get()
    assert (job.kind, job.target_id) == ("student_training", str(run.pk))
    assert f"/admin/evalsite/job/{job.pk}/change/" in response.content.decode()
    run.refresh_from_db()
    assert run.hyperparameters == {"max_steps": 100}
    # While that job is queued, a second training of the same run (same checkpoints) is refused.
    again = admin_client.post(url, {"max_steps": 120}, follow=True).content.decode()
    assert f"already being trained by job {job.pk}" in again and Job.objects.count() == 1
    assert StudentRun.objects.get(pk=run.pk).hyperparameters == {"max_steps": 100}


def test_generate_into_a_new_condition_through_the_intermediate_form(admin_client, settings):
    settings.REDIS_URL = ""
    run = student_run_create(base_checkpoint="tiny", method="mt", training_data="unrevised")
    study = study_create(config={"slug": "form-study", "conditions": ["Existing"]})
    url = reverse("admin:distillation_studentrun_generate", args=[run.pk])
    assert 'value="MT:Unrevised"' in admin_client.get(url).content.decode()

    both = admin_client.post(url, {"study": study.pk, "condition": study.conditions.get().pk, "new_condition": "X"})
    assert "not both" in both.content.decode() and not Job.objects.exists()
    taken = admin_client.post(url, {"study": study.pk, "new_condition": "Existing", "split": "validation"})
    assert "already has a condition" in taken.content.decode()

    response = admin_client.post(
        url, {"study": study.pk, "new_condition": "MT:Unrevised", "split": "validation", "limit": 8}, follow=True
    )
    job = Job.objects.get()
    assert job.kind == "generate_explanations"
    assert job.params == {
        "run_id": run.pk,
        "study_slug": "form-study",
        "condition": "MT:Unrevised",
        "split": "validation",
        "limit": 8,
    }
    assert f"/admin/evalsite/job/{job.pk}/change/" in response.content.decode()


def test_regenerate_on_a_run_in_no_study_leads_to_the_form_instead_of_failing(admin_client):
    run = student_run_create(base_checkpoint="tiny", method="mt", training_data="unrevised")
    response = admin_client.post(reverse("admin:distillation_studentrun_regenerate", args=[run.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:distillation_studentrun_generate", args=[run.pk])
    assert not Job.objects.exists() and not Condition.objects.exists()


def test_a_generation_says_in_words_what_it_did():
    counts = {"created": 0, "updated": 0, "new_version": 11, "unchanged": 1, "rated_kept": 12}
    assert generation_summary(counts) == "11 new versions, 1 unchanged, ratings kept on 12"
    assert generation_summary({"created": 8, "unchanged": 0}) == "8 new, 0 unchanged, ratings kept on 0"
