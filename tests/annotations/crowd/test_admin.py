"""Admin: the launch form shows the full cost before confirming; progress; bulk review with reasons; block list."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from annotations.crowd import services
from annotations.models import BlockedWorker, CrowdBatch, CrowdSubmission
from evalsite.models import Job

pytestmark = pytest.mark.django_db

LAUNCH = {
    "study": "crowd-study",
    "platform": "mturk",
    "sandbox": "on",
    "title": "Rate explanations",
    "description": "Rate short explanations.",
    "keywords": "rating",
    "reward": "1.50",
    "n_tasks": "10",
    "assignments_per_task": "9",
    "fee_rate": "",
    "planned_bonus": "20.00",
    "planned_bonus_count": "40",
    "min_approval_rate": "95",
    "min_approved_hits": "100",
    "locales": "US, GB",
    "assignment_minutes": "45",
    "lifetime_days": "7",
    "auto_approval_days": "3",
    "estimated_minutes": "15",
    "exclusion_group": "",
}


@pytest.fixture
def admin_client(client, crowd_settings):
    user = User.objects.create_superuser("admin", "admin@example.org", "pw")
    client.force_login(user)
    return client


def test_the_launch_form_shows_the_full_cost_before_it_creates_anything(admin_client, study):
    url = reverse("admin:annotations_crowdbatch_launch")
    assert admin_client.get(url).status_code == 200
    page = admin_client.post(url, LAUNCH)
    assert page.status_code == 200
    expected = Decimal("1.50") * 90 * (1 + Decimal("0.20")) + Decimal("20.00") * (1 + Decimal("0.20"))
    assert expected == Decimal("186.00")
    assert page.context["cost"].total == expected
    assert "$186.00" in page.content.decode()
    assert CrowdBatch.objects.count() == 0, "nothing is created before confirmation"

    hidden = dict(page.context["hidden"])
    assert hidden["confirmed_total"] == "186.00"
    done = admin_client.post(url, {**hidden, "confirm": "1"})
    assert done.status_code == 302
    batch = CrowdBatch.objects.get()
    assert (batch.reward_cents, batch.n_tasks, batch.assignments_per_task) == (150, 10, 9)
    assert batch.fee_rate == Decimal("0.200") and batch.planned_bonus_cents == 2000
    assert batch.params["locales"] == ["US", "GB"] and batch.params["assignment_duration_s"] == 2700
    assert Job.objects.filter(kind="crowd_launch", target_id=str(batch.pk)).exists()
    assert admin_client.get(done["Location"]).status_code == 200


def test_a_confirmation_for_a_different_cost_is_shown_again(admin_client, study):
    url = reverse("admin:annotations_crowdbatch_launch")
    page = admin_client.post(url, {**LAUNCH, "confirm": "1", "confirmed_total": "100.00"})
    assert page.status_code == 200 and page.context["cost"].total == Decimal("186.00")
    assert CrowdBatch.objects.count() == 0


def test_ten_assignments_per_hit_are_refused_by_the_form(admin_client, study):
    page = admin_client.post(reverse("admin:annotations_crowdbatch_launch"), {**LAUNCH, "assignments_per_task": "10"})
    assert "At most 9 per HIT" in page.content.decode()


def make_batch(study, platform="mturk"):
    batch = services.crowd_batch_create(study=study, platform=platform, title="Rate", reward_cents=100)
    for index, flags in enumerate([{}, {"attention_failed": True}, {"too_fast": True}]):
        CrowdSubmission.objects.create(
            batch=batch, worker_id=f"W{index}", external_assignment_id=f"A{index}", flags=flags
        )
    return batch


def test_progress_page_and_its_buttons(admin_client, study):
    batch = make_batch(study)
    url = reverse("admin:annotations_crowdbatch_progress", args=[batch.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    progress = page.context["progress"]
    assert (progress.to_approve, progress.to_reject, progress.to_check) == (1, 1, 1)
    assert admin_client.post(url, {"action": "sync"}).status_code == 302
    assert Job.objects.filter(kind="crowd_sync", target_id=str(batch.pk)).exists()
    admin_client.post(url, {"action": "notify", "subject": "Hi", "message": "Thanks!"})
    job = Job.objects.get(kind="crowd_notify")
    assert job.params == {"batch_id": batch.pk, "subject": "Hi", "message": "Thanks!"}


def test_review_screen_bulk_actions_need_reasons(admin_client, study):
    batch = make_batch(study, platform="prolific")
    url = reverse("admin:annotations_crowdbatch_review", args=[batch.pk])
    page = admin_client.get(url)
    assert [s.worker_id for s, _, _ in page.context["rows"]] == ["W0", "W1", "W2"]
    ids = list(batch.submissions.order_by("id").values_list("pk", flat=True))

    short = admin_client.post(
        url, {"submission": ids[1:2], "action": "reject", "reason": "Bad.", "category": "FAILED_CHECK"}
    )
    assert short.status_code == 200 and "100 characters" in short.content.decode()
    assert not Job.objects.filter(kind="crowd_act").exists()

    reason = "x" * 120
    ok = admin_client.post(
        url, {"submission": ids[1:2], "action": "reject", "reason": reason, "category": "LOW_EFFORT"}
    )
    assert ok.status_code == 302
    job = Job.objects.get(kind="crowd_act")
    assert job.params["submission_ids"] == ids[1:2] and job.params["category"] == "LOW_EFFORT"

    admin_client.post(
        url, {"submission": ids[:1], "action": "bonus", "reason": "Thanks", "bonus": "0.40", "category": "OTHER"}
    )
    assert Job.objects.filter(kind="crowd_act", params__amount_cents=40).exists()

    admin_client.post(url, {"submission": ids[2:], "action": "block", "reason": "Clicked through", "category": "OTHER"})
    assert BlockedWorker.objects.filter(platform="prolific", worker_id="W2", reason="Clicked through").exists()

    admin_client.post(url, {"auto": "1", "reject_failing": "on"})
    assert Job.objects.get(kind="crowd_review").params == {
        "batch_id": batch.pk,
        "approve_passing": True,
        "reject_failing": True,
    }


def test_block_list_admin_adds_through_the_service(admin_client):
    response = admin_client.post(
        reverse("admin:annotations_blockedworker_add"), {"platform": "mturk", "worker_id": " WBLOCK ", "reason": "spam"}
    )
    assert response.status_code == 302
    assert BlockedWorker.objects.filter(worker_id="WBLOCK").exists()


def test_the_review_screen_shows_each_workers_evidence(admin_client, mturk_server, client):
    from annotations.crowd.selectors import worker_preview_url
    from annotations.models import Annotator
    from tests.annotations.crowd.test_entry import enter_hit
    from tests.annotations.crowd.test_mturk_endpoint import launch
    from tests.annotations.factories import build_study
    from tests.annotations.test_sessions import DEMOGRAPHICS, current, screen_form

    study = build_study(slug="evidence", per_annotator=4, attention_positions=[2])
    batch = launch(study, n_tasks=1, assignments=3)
    hit = batch.tasks.get().external_id
    assignment = mturk_server.add_assignment(hit, "WSEEN")
    url = enter_hit(client, study, hit, "WSEEN", assignment)["Location"]
    client.post(url, {"action": "consent", "agree": "yes"})
    client.post(url, {"action": "demographics", **DEMOGRAPHICS})
    client.get(url)
    annotator = Annotator.objects.get(external_id="WSEEN")
    while (screen := current(annotator)) is not None:
        client.get(url)
        form = screen_form(annotator, screen, value=5)
        if screen.kind == "attention":
            form["attention"] = (screen.expected_value % 5) + 1  # the wrong answer
        client.post(url, form)
    assert annotator.assignments.filter(status="completed").count() == 5
    services.crowd_batch_sync(batch=batch)

    page = admin_client.get(reverse("admin:annotations_crowdbatch_review", args=[batch.pk]))
    [(submission, suggested, evidence)] = page.context["rows"]
    assert submission.worker_id == "WSEEN" and suggested == "reject"
    assert (evidence.screens_done, evidence.screens_total) == (5, 5)
    assert evidence.attention_failed == 1 and len(evidence.attention) == 1
    assert evidence.median_seconds is not None
    assert {name: values for name, values in evidence.ratings} == {
        construct.name: [5, 5, 5, 5] for construct in study.constructs.all()
    }
    html = page.content.decode()
    assert "5 / 5" in html and "✗" in html

    progress = admin_client.get(reverse("admin:annotations_crowdbatch_progress", args=[batch.pk])).content.decode()
    assert worker_preview_url(batch) == f"https://workersandbox.mturk.com/mturk/preview?groupId={batch.external_id}"
    assert f'href="{worker_preview_url(batch)}"' in progress


def test_a_prolific_participant_with_no_work_left_gets_the_screen_out_code(prolific_server, study, client):
    from django.template.loader import render_to_string

    from tests.annotations.crowd.conftest import participant
    from tests.annotations.crowd.test_prolific import launch as launch_prolific

    batch = launch_prolific(study)
    session = prolific_server.add_submission(batch.external_id, "PLATE")
    annotator = participant(study, source="prolific", worker_id="PLATE", assignment_id=session, finished=False)
    assert annotator.platform_data["screenout_code"] == batch.params["screenout_code"]
    html = render_to_string("annotations/no_work.html", {"annotator": annotator, "study": study})
    assert f"cc={batch.params['screenout_code']}" in html
