"""The student-run admin: its actions start jobs through services, named by the job functions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from distillation.models import StudentRun
from distillation.services.students import student_run_create
from evalsite.models import Job

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("action", "kind", "function"),
    [
        ("train_or_resume", "student_training", "distillation.jobs.train_student"),
        (
            "regenerate_explanations",
            "regenerate_explanations",
            "annotations.jobs.explanations.regenerate_explanations",
        ),
    ],
)
def test_an_action_queues_one_job_per_selected_run(admin_client, settings, action, kind, function):
    settings.REDIS_URL = ""  # a thread after commit, which a test transaction never reaches
    runs = [
        student_run_create(base_checkpoint="tiny", method="mt", training_data="unrevised", seed=seed) for seed in (0, 1)
    ]
    response = admin_client.post(
        reverse("admin:distillation_studentrun_changelist"),
        {"action": action, "_selected_action": [run.pk for run in runs]},
        follow=True,
    )
    assert response.status_code == 200
    jobs = list(Job.objects.order_by("pk"))
    assert sorted((job.kind, job.function, job.target_id) for job in jobs) == sorted(
        (kind, function, str(run.pk)) for run in runs
    )
    assert 'Started <a href="/admin/evalsite/job/' in response.content.decode()
    assert set(StudentRun.objects.values_list("status", flat=True)) == {StudentRun.Status.CREATED}
