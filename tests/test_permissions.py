"""Model permissions, not just is_staff: a view-only staff user reads, and is refused everything that changes
state; a staff user with no permission reads nothing of a study's results."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client, RequestFactory
from django.urls import reverse

from annotations.crowd import services
from annotations.crowd.jobs import JOB_FUNCTIONS
from annotations.models import AnalysisReport, CrowdBatch, CrowdSubmission, Study
from evalsite.jobs import create_job
from evalsite.models import Job
from tests.annotations.factories import build_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer() -> User:
    user = User.objects.create_user("viewer", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return User.objects.get(pk=user.pk)  # a fresh row: permissions are cached per instance


@pytest.fixture
def viewer_client(viewer) -> Client:
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture
def setting(db, settings):
    settings.EVALSITE_PUBLIC_URL = "https://evalsite.example.org"
    study = build_study(slug="perm-study", n_items=2)
    batch = services.crowd_batch_create(study=study, platform="mturk", title="Rate", reward_cents=100)
    submission = CrowdSubmission.objects.create(batch=batch, worker_id="W1", external_assignment_id="A1")
    job = create_job(kind="crowd_sync", function=JOB_FUNCTIONS["sync"], params={"batch_id": batch.pk})
    return study, batch, submission, job


def test_every_admin_action_declares_the_permission_it_needs():
    undeclared = [
        f"{type(model_admin).__name__}.{name}"
        for model_admin in admin.site._registry.values()
        for name in (model_admin.actions or [])
        if not getattr(getattr(model_admin, name), "allowed_permissions", None)
    ]
    assert undeclared == []


def test_a_view_only_user_is_offered_no_admin_action(viewer):
    request = RequestFactory().get("/admin/")
    request.user = viewer
    offered = {
        type(model_admin).__name__: sorted(model_admin.get_actions(request))
        for model_admin in admin.site._registry.values()
        if model_admin.get_actions(request)
    }
    assert offered == {}


def test_a_view_only_user_changes_nothing(viewer_client, setting):
    study, batch, submission, job = setting
    posts = [
        (reverse("admin:annotations_study_changelist"), {"action": "close_studies", "_selected_action": [study.pk]}),
        (reverse("admin:evalsite_job_changelist"), {"action": "cancel_jobs", "_selected_action": [job.pk]}),
        (
            reverse("admin:annotations_crowdbatch_changelist"),
            {"action": "sync_batches", "_selected_action": [batch.pk]},
        ),
        (
            reverse("admin:annotations_crowdbatch_changelist"),
            {"action": "approve_passing", "_selected_action": [batch.pk]},
        ),
        (
            reverse("admin:annotations_crowdbatch_changelist"),
            {"action": "expire_batches", "_selected_action": [batch.pk]},
        ),
        (
            reverse("admin:annotations_crowdsubmission_changelist"),
            {"action": "mark_bonus_paid", "_selected_action": [submission.pk]},
        ),
    ]
    for url, data in posts:
        response = viewer_client.post(url, data)
        assert response.status_code in (200, 302, 403), url
    refused = [
        ("post", reverse("admin:annotations_crowdbatch_progress", args=[batch.pk]), {"action": "sync"}),
        ("post", reverse("admin:annotations_crowdbatch_progress", args=[batch.pk]), {"action": "refill"}),
        ("post", reverse("admin:annotations_crowdbatch_progress", args=[batch.pk]), {"action": "launch"}),
        ("post", reverse("admin:annotations_crowdbatch_review", args=[batch.pk]), {"auto": "1"}),
        (
            "post",
            reverse("admin:annotations_crowdbatch_review", args=[batch.pk]),
            {"submission": [submission.pk], "action": "approve", "reason": "", "category": "OTHER"},
        ),
        ("get", reverse("admin:annotations_crowdbatch_launch"), {}),
        ("post", reverse("annotations:report", args=[study.slug]), {}),
        ("post", reverse("admin:annotations_study_change", args=[study.pk]), {"title": "Renamed"}),
    ]
    for method, url, data in refused:
        assert getattr(viewer_client, method)(url, data).status_code == 403, (method, url)

    # What a viewer may do: read.
    for name in ("admin:annotations_crowdbatch_progress", "admin:annotations_crowdbatch_review"):
        page = viewer_client.get(reverse(name, args=[batch.pk]))
        html = page.content.decode()
        assert page.status_code == 200
        assert 'name="action"' not in html and 'name="auto"' not in html, "no button offered"
    assert viewer_client.get(reverse("annotations:dashboard", args=[study.slug])).status_code == 200
    assert viewer_client.get(reverse("annotations:report", args=[study.slug])).status_code == 200

    study.refresh_from_db()
    job.refresh_from_db()
    submission.refresh_from_db()
    assert study.status == Study.Status.OPEN and study.title == "Study perm-study"
    assert not job.cancel_requested
    assert Job.objects.count() == 1, "no job was started"
    assert CrowdBatch.objects.get().status == CrowdBatch.Status.DRAFT
    assert submission.status == "submitted" and submission.bonus_paid_at is None
    assert not AnalysisReport.objects.exists()


def test_staff_without_permissions_read_no_study_results(setting):
    study, *_ = setting
    staff = Client()
    staff.force_login(User.objects.create_user("bare-staff", is_staff=True))
    for url in (reverse("annotations:dashboard", args=[study.slug]), reverse("annotations:report", args=[study.slug])):
        assert staff.get(url).status_code == 403, url
    report = AnalysisReport.objects.create(study=study, ratings_fingerprint="x")
    tidy = reverse("annotations:report_file", args=[study.slug, report.pk, "ratings_tidy.csv"])
    assert staff.get(tidy).status_code == 403


def test_a_get_starts_no_job_and_a_post_needs_the_change_permission(setting):
    study, *_ = setting
    editor = User.objects.create_user("editor", is_staff=True)
    editor.user_permissions.set(Permission.objects.filter(codename__in=["view_study", "change_study"]))
    client = Client()
    client.force_login(editor)
    url = reverse("annotations:report", args=[study.slug])
    before = Job.objects.count()
    assert client.get(url).status_code == 200
    assert Job.objects.count() == before
    assert client.post(url).status_code in (200, 302)
