"""Crowd entry only through a launched batch: made-up HITs, studies and reused assignments are refused."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotations.crowd import services
from annotations.models import Annotator, BlockedWorker
from annotations.tokens import invite_token
from tests.annotations.crowd.test_mturk_endpoint import launch

pytestmark = pytest.mark.django_db

SANDBOX = "https://workersandbox.mturk.com"


def mturk_get(client, study, **query):
    return client.get(reverse("annotations:mturk", args=[study.slug]), query)


def prolific_get(client, study, **query):
    return client.get(reverse("annotations:prolific", args=[study.slug]), query)


def enter_hit(client, study, hit_id, worker_id, assignment_id):
    return mturk_get(client, study, assignmentId=assignment_id, hitId=hit_id, workerId=worker_id, turkSubmitTo=SANDBOX)


def test_made_up_entries_on_a_study_never_launched_get_403_and_store_nothing(client, study, crowd_settings):
    assert study.status == "open" and not study.crowd_batches.exists()
    for index in range(4):  # the attack: a few entries that would reserve every screen
        fake_mturk = enter_hit(client, study, "NOSUCHHIT", f"W{index}", f"FAKE{index}")
        assert fake_mturk.status_code == 403
        assert "Please return it on MTurk" in fake_mturk.content.decode()
        fake_prolific = prolific_get(
            client, study, PROLIFIC_PID=f"P{index}", STUDY_ID="anything", SESSION_ID=f"S{index}"
        )
        assert fake_prolific.status_code == 403
        assert "Prolific dashboard" in fake_prolific.content.decode()
    assert Annotator.objects.count() == 0
    assert not study.annotators.exists()
    preview = mturk_get(client, study, assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE", hitId="NOSUCHHIT")
    assert preview.status_code == 403


def test_a_study_with_no_crowd_batch_admits_signed_links_only(client, study, crowd_settings):
    link = reverse("annotations:invite", args=[study.slug, invite_token(study_id=study.pk, label="lab-01")])
    assert client.get(link).status_code == 302
    assert list(Annotator.objects.values_list("source", flat=True)) == ["link"]


def test_entries_through_a_launched_batch_work_and_shut_the_worker_out_at_once(
    client, mturk_server, study, django_capture_on_commit_callbacks
):
    batch = launch(study, n_tasks=2)
    hit_a, hit_b = batch.tasks.values_list("external_id", flat=True)
    preview = mturk_get(client, study, assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE", hitId=hit_a)
    assert preview.status_code == 200 and Annotator.objects.count() == 0
    assignment = mturk_server.add_assignment(hit_a, "WREAL")
    with django_capture_on_commit_callbacks(execute=True):
        entered = enter_hit(client, study, hit_a, "WREAL", assignment)
    assert entered.status_code == 302
    annotator = Annotator.objects.get()
    assert (annotator.external_id, annotator.external_assignment_id) == ("WREAL", assignment)
    assert annotator.platform_data["batch_id"] == batch.pk
    assert "WREAL" in mturk_server.grants[batch.exclusion_qualification_id], "granted at entry, not at sync"
    assert not mturk_server.worker_may_accept(hit_b, "WREAL")
    assert annotator.platform_data["excluded_at"]


def test_a_reused_assignment_id_is_refused(client, mturk_server, study):
    batch = launch(study, n_tasks=1)
    hit = batch.tasks.get().external_id
    assignment = mturk_server.add_assignment(hit, "WFIRST")
    assert enter_hit(client, study, hit, "WFIRST", assignment).status_code == 302
    reused = enter_hit(client, study, hit, "WSECOND", assignment)
    assert reused.status_code == 403
    assert "belongs to another worker" in reused.content.decode()
    assert list(Annotator.objects.values_list("external_id", flat=True)) == ["WFIRST"]


def test_a_prolific_entry_needs_the_study_id_of_a_batch(client, prolific_server, study):
    from tests.annotations.crowd.test_prolific import launch as launch_prolific

    batch = launch_prolific(study)
    session = prolific_server.add_submission(batch.external_id, "P1")
    wrong = prolific_get(client, study, PROLIFIC_PID="P1", STUDY_ID="someotherstudy", SESSION_ID=session)
    assert wrong.status_code == 403
    right = prolific_get(client, study, PROLIFIC_PID="P1", STUDY_ID=batch.external_id, SESSION_ID=session)
    assert right.status_code == 302
    reused = prolific_get(client, study, PROLIFIC_PID="P2", STUDY_ID=batch.external_id, SESSION_ID=session)
    assert reused.status_code == 403
    # A made-up participant id with the real STUDY_ID: Prolific knows no such session for them.
    for made_up in ("S404", ""):
        forged = prolific_get(client, study, PROLIFIC_PID="P3", STUDY_ID=batch.external_id, SESSION_ID=made_up)
        assert forged.status_code == 403 and "Prolific dashboard" in forged.content.decode()
    other = prolific_server.add_submission(batch.external_id, "P4")
    stolen = prolific_get(client, study, PROLIFIC_PID="P5", STUDY_ID=batch.external_id, SESSION_ID=other)
    assert stolen.status_code == 403, "a real session of someone else who has not entered yet"
    assert list(Annotator.objects.values_list("external_id", flat=True)) == ["P1"]


def test_manual_mode_admits_the_prolific_study_id_the_admin_gave(client, crowd_settings, study):
    with pytest.raises(services.CrowdPlatformError, match="prolific_study_id"):
        services.crowd_batch_create(study=study, platform="manual", title="Manual", reward_cents=200)
    batch = services.crowd_batch_create(
        study=study, platform="manual", title="Manual", reward_cents=200, params={"prolific_study_id": "64abc"}
    )
    before_launch = prolific_get(client, study, PROLIFIC_PID="P1", STUDY_ID="64abc", SESSION_ID="S1")
    assert before_launch.status_code == 403, "a draft batch admits nobody"
    services.crowd_batch_launch(batch=batch)
    assert prolific_get(client, study, PROLIFIC_PID="P1", STUDY_ID="64abc", SESSION_ID="S1").status_code == 302
    assert prolific_get(client, study, PROLIFIC_PID="P2", STUDY_ID="64abd", SESSION_ID="S2").status_code == 403
    assert list(Annotator.objects.values_list("external_id", flat=True)) == ["P1"]


def test_a_blocked_worker_who_never_took_part_is_not_told_they_did(client, mturk_server, study):
    batch = launch(study, n_tasks=1)
    hit = batch.tasks.get().external_id
    BlockedWorker.objects.create(platform="mturk", worker_id="WBLOCKED", reason="spam elsewhere")
    page = enter_hit(client, study, hit, "WBLOCKED", mturk_server.add_assignment(hit, "WBLOCKED"))
    assert page.status_code == 403
    text = page.content.decode()
    assert "not open to your account" in text and "taken part" not in text
    assert Annotator.objects.count() == 0
