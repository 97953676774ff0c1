"""Following a job in the admin: the start message and the target link, pages that refresh while it runs."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType

from evalsite.adminlinks import jobs_started_message
from evalsite.models import Job
from tests.annotations.factories import build_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("staff", "staff@example.org", "pw"))
    return client


def job_for(target, status: str) -> Job:
    return Job.objects.create(
        kind="analysis",
        function="tests.job_functions.count_to",
        params={},
        status=status,
        target_type=ContentType.objects.get_for_model(target),
        target_id=str(target.pk),
    )


def test_the_start_message_links_to_each_job():
    study = build_study(n_items=2)
    first, second = job_for(study, Job.Status.QUEUED), job_for(study, Job.Status.QUEUED)
    message = str(jobs_started_message([first, second]))
    assert f'<a href="/admin/evalsite/job/{first.pk}/change/">job {first.pk}</a> (analysis)' in message
    assert f'<a href="/admin/evalsite/job/{second.pk}/change/">job {second.pk}</a>' in message


def test_job_pages_refresh_while_a_job_runs_and_link_to_the_target(staff_client):
    study = build_study(n_items=2)
    job = job_for(study, Job.Status.RUNNING)
    target_link = f'<a href="/admin/annotations/study/{study.pk}/change/">study {study.pk}</a>'

    listing = staff_client.get("/admin/evalsite/job/").content.decode()
    assert '<meta http-equiv="refresh" content="5">' in listing
    assert target_link in listing
    page = staff_client.get(f"/admin/evalsite/job/{job.pk}/change/").content.decode()
    assert '<meta http-equiv="refresh" content="5">' in page
    assert target_link in page

    Job.objects.filter(pk=job.pk).update(status=Job.Status.DONE)
    assert 'http-equiv="refresh"' not in staff_client.get("/admin/evalsite/job/").content.decode()
    assert 'http-equiv="refresh"' not in staff_client.get(f"/admin/evalsite/job/{job.pk}/change/").content.decode()
