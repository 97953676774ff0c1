"""Prolific through its v1 API against a local stand-in: create and publish, sync, approve, reject, bonus."""

from __future__ import annotations

from decimal import Decimal

import pytest

from annotations.crowd import selectors, services
from annotations.crowd.prolific import study_url
from annotations.crowd.providers import CrowdPlatformError
from annotations.models import CrowdBatch
from tests.annotations.crowd.conftest import PUBLIC_URL, participant

pytestmark = pytest.mark.django_db

REJECTION = (
    "Thank you for taking part. We cannot approve this submission because the answer to the instructed-response "
    "check did not follow the instruction given on that screen."
)


def launch(study, places=20):
    batch = services.crowd_batch_create(
        study=study,
        platform="prolific",
        title="Rate explanations",
        description="Rate short explanations.",
        reward_cents=225,
        assignments_per_task=places,
        params={"estimated_minutes": 12},
    )
    return services.crowd_batch_launch(batch=batch)


def test_launch_creates_and_publishes_a_study_with_participant_parameters_and_codes(prolific_server, study):
    batch = launch(study)
    assert batch.status == CrowdBatch.Status.LIVE
    assert batch.fee_rate == Decimal("0.333")
    created = prolific_server.studies[batch.external_id]
    assert created["status"] == "ACTIVE"
    assert created["external_study_url"] == (
        f"{PUBLIC_URL}/study/crowd-study/prolific/"
        "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )
    assert created["external_study_url"] == study_url(PUBLIC_URL, "crowd-study")
    assert created["total_available_places"] == 20
    assert created["reward"] == 225
    assert created["estimated_completion_time"] == 12
    codes = {code["code_type"]: code["code"] for code in created["completion_codes"]}
    assert codes == {
        "COMPLETED": study.completion_code,
        "FAILED_ATTENTION_CHECK": study.failed_attention_code,
        "FIXED_SCREENOUT": batch.params["screenout_code"],
    }
    assert batch.params["currency"] == "GBP", "the account's currency, asked at launch"
    assert created["filters"] == []

    services.crowd_batch_launch(batch=batch)
    assert len(prolific_server.studies) == 1, "launching again makes no second study"


def test_a_study_created_before_a_crash_is_found_not_made_again(prolific_server, study, monkeypatch):
    batch = services.crowd_batch_create(study=study, platform="prolific", title="Rate", reward_cents=200)
    monkeypatch.setattr(
        services, "_task_record_created", lambda task, external_id: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        services.crowd_batch_launch(batch=batch)
    monkeypatch.undo()
    CrowdBatch.objects.filter(pk=batch.pk).update(status=CrowdBatch.Status.FAILED)
    batch = services.crowd_batch_launch(batch=batch)
    assert len(prolific_server.studies) == 1
    assert batch.external_id in prolific_server.studies


def test_sync_review_and_bonus(prolific_server, study):
    batch = launch(study)
    good = prolific_server.add_submission(batch.external_id, "PGOOD")
    bad = prolific_server.add_submission(batch.external_id, "PBAD")
    prolific_server.add_submission(batch.external_id, "PRETURNED", status="RETURNED")
    prolific_server.add_submission(batch.external_id, "PACTIVE", status="ACTIVE")
    participant(study, source="prolific", worker_id="PGOOD", assignment_id=good)
    participant(study, source="prolific", worker_id="PBAD", assignment_id=bad, attention_failures=2)

    result = services.crowd_batch_sync(batch=batch)
    assert result["submissions"] == 3, "active ones are not submissions yet; pages followed"
    statuses = dict(batch.submissions.values_list("worker_id", "status"))
    assert statuses == {"PGOOD": "submitted", "PBAD": "submitted", "PRETURNED": "returned"}
    assert selectors.worker_is_excluded(study=study, platform="prolific", worker_id="PRETURNED")

    with pytest.raises(CrowdPlatformError, match="100 characters"):
        services.crowd_batch_review(
            batch=batch, approve_passing=False, reject_failing=True, reject_feedback="Too short."
        )
    review = services.crowd_batch_review(
        batch=batch, approve_passing=True, reject_failing=True, reject_feedback=REJECTION, category="FAILED_CHECK"
    )
    assert (review["approved"], review["rejected"], review["left_for_review"]) == (1, 1, 0)
    assert prolific_server.submission(good)["status"] == "APPROVED"
    assert prolific_server.submission(bad)["status"] == "REJECTED"
    reject_call = [body for method, path, body in prolific_server.calls if body and body.get("action") == "REJECT"]
    assert reject_call == [{"action": "REJECT", "message": REJECTION, "rejection_category": "FAILED_CHECK"}]

    approved = batch.submissions.get(worker_id="PGOOD")
    assert services.crowd_submission_bonus(submission=approved, amount_cents=150, reason="Great work") is True
    assert services.crowd_submission_bonus(submission=approved, amount_cents=150, reason="Great work") is False
    [bulk] = prolific_server.bulk_bonuses.values()
    assert bulk["lines"] == [[good, "1.50"]]
    assert prolific_server.paid == [bulk["id"]], "set up, then paid once"


def test_a_prolific_bonus_with_an_unknown_outcome_is_never_paid_twice(prolific_server, study, monkeypatch):
    from annotations.crowd.prolific import ProlificClient

    batch = launch(study)
    session = prolific_server.add_submission(batch.external_id, "PBONUS")
    participant(study, source="prolific", worker_id="PBONUS", assignment_id=session)
    services.crowd_batch_sync(batch=batch)
    submission = batch.submissions.get()
    real_pay = ProlificClient.pay_bonus_payments

    def pay_then_time_out(self, bulk_id):
        real_pay(self, bulk_id)
        raise CrowdPlatformError("read timeout")

    monkeypatch.setattr(ProlificClient, "pay_bonus_payments", pay_then_time_out)
    with pytest.raises(CrowdPlatformError):
        services.crowd_submission_bonus(submission=submission, amount_cents=100, reason="Thanks")
    monkeypatch.undo()
    with pytest.raises(CrowdPlatformError, match="check it on Prolific"):
        services.crowd_submission_bonus(submission=submission, amount_cents=100, reason="Thanks")
    assert len(prolific_server.paid) == 1
    assert selectors.batch_progress(batch).bonuses_unconfirmed == 1
    services.crowd_submission_mark_bonus_paid(submission=submission)
    assert selectors.batch_progress(batch).bonuses_paid == Decimal("1.00")


def test_a_later_prolific_batch_shuts_out_earlier_participants(prolific_server, study):
    first = launch(study)
    second = launch(study)
    filters = prolific_server.studies[second.external_id]["filters"]
    assert filters == [{"filter_id": "previous_studies", "selected_values": [first.external_id]}]


def test_expire_stops_the_study_and_notify_messages_participants(prolific_server, study):
    batch = launch(study)
    prolific_server.add_submission(batch.external_id, "PONE")
    services.crowd_batch_sync(batch=batch)
    assert services.crowd_batch_notify(batch=batch, subject="Thanks", message="Bonus coming.") == 1
    assert prolific_server.messages[0]["recipient_id"] == "PONE"
    services.crowd_batch_expire(batch=batch)
    assert prolific_server.studies[batch.external_id]["status"] == "AWAITING REVIEW"
