"""End to end: boto3 talks HTTP to a local MTurk stand-in named by MTURK_ENDPOINT_URL."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from annotations.crowd import selectors, services
from annotations.crowd.mturk import EXTERNAL_QUESTION_NAMESPACE, mturk_client
from annotations.models import CrowdBatch, CrowdSubmission, CrowdTask
from annotations.services.sessions import WorkerExcluded, annotator_enter
from tests.annotations.crowd.conftest import PUBLIC_URL, participant

pytestmark = pytest.mark.django_db


def launch(study, *, n_tasks=3, assignments=9, **params):
    batch = services.crowd_batch_create(
        study=study,
        platform="mturk",
        title="Rate explanations",
        description="Rate short explanations on five scales.",
        reward_cents=150,
        n_tasks=n_tasks,
        assignments_per_task=assignments,
        params={"min_approval_rate": 98, "min_approved_hits": 500, "locales": ["US", "GB"], **params},
    )
    return services.crowd_batch_launch(batch=batch)


def test_the_client_uses_the_endpoint_override_and_us_east_1(mturk_server, crowd_settings):
    client = mturk_client(sandbox=True)
    assert client.meta.endpoint_url == crowd_settings.MTURK_ENDPOINT_URL
    assert client.meta.region_name == "us-east-1"
    assert client.get_account_balance()["AvailableBalance"] == "10000.00"


def test_launch_creates_hits_with_the_external_question_and_qualifications(mturk_server, study):
    batch = launch(study)
    assert batch.status == CrowdBatch.Status.LIVE
    hits = list(mturk_server.hits.values())
    assert len(hits) == 3
    assert all(hit["MaxAssignments"] <= 9 for hit in hits)
    root = ET.fromstring(hits[0]["Question"])
    assert root.tag == f"{{{EXTERNAL_QUESTION_NAMESPACE}}}ExternalQuestion"
    assert root.find(f"{{{EXTERNAL_QUESTION_NAMESPACE}}}ExternalURL").text == f"{PUBLIC_URL}/study/crowd-study/mturk/"
    hit_type = mturk_server.hit_types[batch.external_id]
    assert hit_type["Reward"] == "1.50"
    requirements = {r["QualificationTypeId"]: r for r in hit_type["QualificationRequirements"]}
    assert requirements["000000000000000000L0"]["IntegerValues"] == [98]
    assert requirements["00000000000000000040"]["IntegerValues"] == [500]
    assert requirements["00000000000000000071"]["LocaleValues"] == [{"Country": "US"}, {"Country": "GB"}]
    assert requirements[batch.exclusion_qualification_id]["Comparator"] == "DoesNotExist"
    assert set(batch.tasks.values_list("external_id", flat=True)) == set(mturk_server.hits)


def test_a_launch_that_crashes_half_way_and_runs_again_makes_no_duplicate_hits(mturk_server, study, monkeypatch):
    batch = services.crowd_batch_create(study=study, platform="mturk", title="Rate", reward_cents=100, n_tasks=4)
    real_record = services._task_record_created
    calls = {"n": 0}

    def crash_on_second(task, external_id):
        calls["n"] += 1
        if calls["n"] == 2:  # MTurk made the HIT; we die before storing its id
            raise KeyboardInterrupt("power cut")
        real_record(task, external_id)

    monkeypatch.setattr(services, "_task_record_created", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        services.crowd_batch_launch(batch=batch)
    assert len(mturk_server.hits) == 2
    assert CrowdTask.objects.filter(batch=batch).count() == 4, "every intent was stored before the first call"

    monkeypatch.setattr(services, "_task_record_created", real_record)
    CrowdBatch.objects.filter(pk=batch.pk).update(status=CrowdBatch.Status.FAILED)
    services.crowd_batch_launch(batch=batch)
    services.crowd_batch_launch(batch=batch)  # and once more for good measure: nothing to do
    assert len(mturk_server.hits) == 4
    external_ids = list(batch.tasks.values_list("external_id", flat=True))
    assert sorted(external_ids) == sorted(mturk_server.hits)
    assert "ListHITs" in mturk_server.operations(), "the HIT whose id was lost is found by its annotation"
    creates = [body for name, body in mturk_server.calls if name == "CreateHITWithHITType"]
    tokens = sorted(body["UniqueRequestToken"] for body in creates)
    assert tokens == sorted(batch.tasks.values_list("intent_key", flat=True)), "each HIT was asked for once"


def test_sync_review_bonus_and_exclusion_round_trip(mturk_server, study):
    batch = launch(study, n_tasks=2)
    hit_a, hit_b = batch.tasks.values_list("external_id", flat=True)
    good = mturk_server.add_assignment(hit_a, "WGOOD")
    sloppy = mturk_server.add_assignment(hit_a, "WSLOPPY")
    fast = mturk_server.add_assignment(hit_a, "WFAST")
    mturk_server.add_assignment(hit_b, "WGHOST")
    participant(study, source="mturk", worker_id="WGOOD", assignment_id=good)
    participant(study, source="mturk", worker_id="WSLOPPY", assignment_id=sloppy, attention_failures=1)
    participant(study, source="mturk", worker_id="WFAST", assignment_id=fast, flags={"too_fast": True})

    result = services.crowd_batch_sync(batch=batch)
    assert result["submissions"] == 4
    assert [n for n, _ in mturk_server.calls].count("ListAssignmentsForHIT") >= 3, "pages followed by NextToken"
    by_worker = {s.worker_id: s for s in batch.submissions.all()}
    assert by_worker["WGOOD"].flags == {}
    assert by_worker["WSLOPPY"].flags == {"attention_failed": True}
    assert by_worker["WFAST"].flags == {"too_fast": True}
    assert by_worker["WGHOST"].flags == {"unknown_worker": True, "incomplete": True}
    assert mturk_server.grants[batch.exclusion_qualification_id] == {"WGOOD", "WSLOPPY", "WFAST", "WGHOST"}

    review = services.crowd_batch_review(batch=batch, approve_passing=True, reject_failing=True)
    assert {k: review[k] for k in ("approved", "rejected", "left_for_review", "failed")} == {
        "approved": 1,
        "rejected": 2,
        "left_for_review": 1,
        "failed": 0,
    }
    assert mturk_server.assignment(good)["AssignmentStatus"] == "Approved"
    assert mturk_server.assignment(sloppy)["AssignmentStatus"] == "Rejected"
    # Each worker is told their own reason, not the union of everyone's.
    sloppy_feedback = mturk_server.assignment(sloppy)["RequesterFeedback"]
    assert "instructed-response check" in sloppy_feedback and "not finished" not in sloppy_feedback
    ghost = CrowdSubmission.objects.get(batch=batch, worker_id="WGHOST").external_assignment_id
    ghost_feedback = mturk_server.assignment(ghost)["RequesterFeedback"]
    assert "not finished" in ghost_feedback and "instructed-response" not in ghost_feedback
    assert mturk_server.assignment(fast)["AssignmentStatus"] == "Submitted", "suspect work waits for a person"

    submission = CrowdSubmission.objects.get(batch=batch, worker_id="WGOOD")
    assert services.crowd_submission_bonus(submission=submission, amount_cents=50, reason="Careful work") is True
    assert services.crowd_submission_bonus(submission=submission, amount_cents=50, reason="Careful work") is False
    assert len(mturk_server.bonuses) == 1
    assert mturk_server.bonuses[0]["BonusAmount"] == "0.50"
    assert mturk_server.bonuses[0]["UniqueRequestToken"] == submission.bonus_token != ""

    services.crowd_batch_sync(batch=batch)  # statuses come back from MTurk unchanged
    assert CrowdSubmission.objects.get(batch=batch, worker_id="WGOOD").status == "approved"


def test_a_bonus_retried_after_a_lost_answer_is_paid_once(mturk_server, study, monkeypatch):
    batch = launch(study, n_tasks=1)
    hit = batch.tasks.get().external_id
    assignment = mturk_server.add_assignment(hit, "WBONUS")
    participant(study, source="mturk", worker_id="WBONUS", assignment_id=assignment)
    services.crowd_batch_sync(batch=batch)
    submission = batch.submissions.get()

    from annotations.crowd.mturk import MTurkProvider

    real_send = MTurkProvider.send_bonus

    def send_then_lose_answer(self, *args, **kwargs):
        real_send(self, *args, **kwargs)
        raise ConnectionError("read timeout")

    monkeypatch.setattr(MTurkProvider, "send_bonus", send_then_lose_answer)
    with pytest.raises(ConnectionError):
        services.crowd_submission_bonus(submission=submission, amount_cents=125, reason="Thanks")
    monkeypatch.setattr(MTurkProvider, "send_bonus", real_send)
    assert services.crowd_submission_bonus(submission=submission, amount_cents=125, reason="Thanks") is False
    assert len(mturk_server.bonuses) == 1
    submission.refresh_from_db()
    assert submission.bonus_paid_at is not None and submission.bonus_cents == 125


def test_a_worker_from_batch_one_cannot_take_part_in_batch_two(mturk_server, study):
    first = launch(study, n_tasks=1)
    assignment = mturk_server.add_assignment(first.tasks.get().external_id, "WREPEAT")
    participant(study, source="mturk", worker_id="WREPEAT", assignment_id=assignment)
    services.crowd_batch_sync(batch=first)

    second = launch(study, n_tasks=1)
    assert second.exclusion_qualification_id == first.exclusion_qualification_id
    second_hit = second.tasks.get().external_id
    requirement = [
        r
        for r in mturk_server.hit_types[second.external_id]["QualificationRequirements"]
        if r["QualificationTypeId"] == first.exclusion_qualification_id
    ]
    assert requirement == [
        {
            "QualificationTypeId": first.exclusion_qualification_id,
            "Comparator": "DoesNotExist",
            "ActionsGuarded": "DiscoverPreviewAndAccept",
        }
    ]
    assert "WREPEAT" in mturk_server.grants[first.exclusion_qualification_id]
    assert not mturk_server.worker_may_accept(second_hit, "WREPEAT")
    assert mturk_server.worker_may_accept(second_hit, "WNEW")
    assert selectors.worker_is_excluded(study=study, platform="mturk", worker_id="WREPEAT") is True
    assert selectors.worker_is_excluded(study=study, platform="mturk", worker_id="WNEW") is False


def test_a_worker_of_a_study_in_the_same_exclusion_group_is_turned_away(mturk_server, study):
    from tests.annotations.factories import build_study

    follow_up = build_study(slug="crowd-follow-up", conditions=("MT:Unrevised",), n_items=2, per_annotator=1)
    first = launch(study, n_tasks=1)
    assignment = mturk_server.add_assignment(first.tasks.get().external_id, "WOLD")
    participant(study, source="mturk", worker_id="WOLD", assignment_id=assignment)
    services.crowd_batch_sync(batch=first)
    second = launch(follow_up, n_tasks=1, exclusion_group="crowd-study")
    assert selectors.worker_is_excluded(study=follow_up, platform="mturk", worker_id="WOLD")
    with pytest.raises(WorkerExcluded, match="taken part"):
        annotator_enter(
            study=follow_up,
            source="mturk",
            external_id="WOLD",
            external_assignment_id="A2",
            platform_data={"hitId": second.tasks.get().external_id},
        )
    assert not follow_up.annotators.exists()


def test_expire_and_notify(mturk_server, study):
    batch = launch(study, n_tasks=2)
    for hit in batch.tasks.values_list("external_id", flat=True):
        for index in range(2):
            mturk_server.add_assignment(hit, f"W{hit[:4]}{index:03d}")
    services.crowd_batch_sync(batch=batch)
    sent = services.crowd_batch_notify(batch=batch, subject="Thanks", message="Bonuses are on their way.")
    assert sent == 4
    assert [len(n["WorkerIds"]) for n in mturk_server.notifications] == [4]
    services.crowd_batch_expire(batch=batch)
    assert {hit["HITStatus"] for hit in mturk_server.hits.values()} == {"Unassignable"}
    batch.refresh_from_db()
    assert batch.status == CrowdBatch.Status.EXPIRED


def test_the_stand_in_refuses_what_botocores_model_does_not_allow(mturk_server, crowd_settings):
    import json
    import urllib.request

    request = urllib.request.Request(
        crowd_settings.MTURK_ENDPOINT_URL,
        data=json.dumps({"HITId": "X", "Bogus": 1}).encode(),
        headers={"X-Amz-Target": "MTurkRequesterServiceV20170117.CreateAdditionalAssignmentsForHIT"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    message = json.loads(refused.value.read())["Message"]
    assert message == "missing NumberOfAdditionalAssignments; unknown member Bogus"
    assert mturk_server.calls == []
