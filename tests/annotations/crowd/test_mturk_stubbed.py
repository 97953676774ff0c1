"""Every MTurk call the site makes, checked by botocore's Stubber against the MTurk service model."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import ANY, Stubber

from annotations.crowd import services
from annotations.crowd.mturk import (
    EXTERNAL_QUESTION_NAMESPACE,
    MTurkProvider,
    exclusion_qualification_name,
    external_question_xml,
    qualification_requirements,
)
from annotations.crowd.providers import CrowdPlatformError
from annotations.models import CrowdSubmission
from tests.annotations.crowd.conftest import PUBLIC_URL, participant

pytestmark = pytest.mark.django_db

HIT_TYPE = "3HITTYPE0000000000000000000001"
EXCLUSION = "3EXCLUSION00000000000000000001"
ENTRY_URL = f"{PUBLIC_URL}/study/crowd-study/mturk/"


@pytest.fixture
def stubbed(crowd_settings):
    client = boto3.client(
        "mturk",
        region_name="us-east-1",
        endpoint_url="https://mturk-requester-sandbox.us-east-1.amazonaws.com",
        aws_access_key_id="AKIDEVALSITETEST",
        aws_secret_access_key="test-secret",
    )
    with Stubber(client) as stubber:
        yield stubber, MTurkProvider(client=client)
        stubber.assert_no_pending_responses()


def hit_id(index: int) -> str:
    return f"3HIT{index:026d}"


def expect_launch(stubber, batch, *, n_hits: int, requirements: list[dict]) -> None:
    stubber.add_response(
        "list_qualification_types",
        {"NumResults": 0, "QualificationTypes": []},
        {"Query": exclusion_qualification_name("crowd-study"), "MustBeRequestable": False, "MustBeOwnedByCaller": True},
    )
    stubber.add_response(
        "create_qualification_type",
        {"QualificationType": {"QualificationTypeId": EXCLUSION, "Name": "x"}},
        {
            "Name": exclusion_qualification_name("crowd-study"),
            "Keywords": ANY,
            "Description": ANY,
            "QualificationTypeStatus": "Active",
        },
    )
    stubber.add_response(
        "create_hit_type",
        {"HITTypeId": HIT_TYPE},
        {
            "AutoApprovalDelayInSeconds": 259200,
            "AssignmentDurationInSeconds": 3600,
            "Reward": "1.50",
            "Title": "Rate explanations",
            "Keywords": ANY,
            "Description": "Rate short explanations.",
            "QualificationRequirements": requirements,
        },
    )
    for index in range(n_hits):
        stubber.add_response(
            "create_hit_with_hit_type",
            {"HIT": {"HITId": hit_id(index), "HITTypeId": HIT_TYPE}},
            {
                "HITTypeId": HIT_TYPE,
                "MaxAssignments": 9,
                "LifetimeInSeconds": 604800,
                "Question": external_question_xml(ENTRY_URL),
                "RequesterAnnotation": f"{batch.launch_key}-{index}",
                "UniqueRequestToken": f"{batch.launch_key}-{index}",
            },
        )


def new_batch(study, *, n_tasks=2, **params):
    return services.crowd_batch_create(
        study=study,
        platform="mturk",
        title="Rate explanations",
        description="Rate short explanations.",
        reward_cents=150,
        n_tasks=n_tasks,
        assignments_per_task=9,
        params={"min_approval_rate": 97, "min_approved_hits": 1000, "locales": ["US", "CA"], **params},
    )


REQUIREMENTS = [
    {
        "QualificationTypeId": "000000000000000000L0",
        "Comparator": "GreaterThanOrEqualTo",
        "IntegerValues": [97],
        "ActionsGuarded": "Accept",
    },
    {
        "QualificationTypeId": "00000000000000000040",
        "Comparator": "GreaterThanOrEqualTo",
        "IntegerValues": [1000],
        "ActionsGuarded": "Accept",
    },
    {
        "QualificationTypeId": "00000000000000000071",
        "Comparator": "In",
        "LocaleValues": [{"Country": "US"}, {"Country": "CA"}],
        "ActionsGuarded": "Accept",
    },
]
EXCLUDE = {"QualificationTypeId": EXCLUSION, "Comparator": "DoesNotExist", "ActionsGuarded": "DiscoverPreviewAndAccept"}
MASTERS_SANDBOX = {
    "QualificationTypeId": "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6",
    "Comparator": "Exists",
    "ActionsGuarded": "Accept",
}


def launched(study, stubbed, **params):
    stubber, provider = stubbed
    batch = new_batch(study, **params)
    masters = [MASTERS_SANDBOX] if params.get("masters") else []
    expect_launch(stubber, batch, n_hits=2, requirements=[*REQUIREMENTS, *masters, EXCLUDE])
    return services.crowd_batch_launch(batch=batch, provider=provider)


def test_launch_sends_the_hit_type_qualifications_and_external_question(study, stubbed):
    batch = launched(study, stubbed, masters=True)
    assert batch.external_id == HIT_TYPE
    assert batch.exclusion_qualification_id == EXCLUSION
    assert list(batch.tasks.values_list("external_id", "max_assignments")) == [(hit_id(0), 9), (hit_id(1), 9)]


def test_the_external_question_parses_with_the_namespace_and_an_escaped_https_url():
    xml = external_question_xml("https://evalsite.example.org/study/s/mturk/?a=1&b=2", frame_height=800)
    assert "&amp;b=2" in xml
    root = ET.fromstring(xml)
    assert root.tag == f"{{{EXTERNAL_QUESTION_NAMESPACE}}}ExternalQuestion"
    assert root.find(f"{{{EXTERNAL_QUESTION_NAMESPACE}}}ExternalURL").text == (
        "https://evalsite.example.org/study/s/mturk/?a=1&b=2"
    )
    assert root.find(f"{{{EXTERNAL_QUESTION_NAMESPACE}}}FrameHeight").text == "800"
    with pytest.raises(CrowdPlatformError):
        external_question_xml("http://insecure.example.org/")


def test_masters_differs_between_sandbox_and_production():
    sandbox = qualification_requirements({"masters": True}, sandbox=True, exclusion_qualification_ids=[])
    production = qualification_requirements({"masters": True}, sandbox=False, exclusion_qualification_ids=[])
    assert sandbox[-1]["QualificationTypeId"] == "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6"
    assert production[-1]["QualificationTypeId"] == "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH"


def test_more_than_nine_assignments_per_hit_is_refused(study):
    with pytest.raises(CrowdPlatformError, match="at most 9"):
        services.crowd_batch_create(study=study, platform="mturk", title="t", reward_cents=100, assignments_per_task=10)


def test_a_hit_already_made_under_the_token_is_taken_from_the_error(study, stubbed):
    stubber, provider = stubbed
    batch = new_batch(study, n_tasks=1)
    stubber.add_response("list_qualification_types", {"QualificationTypes": [], "NumResults": 0}, None)
    stubber.add_response("create_qualification_type", {"QualificationType": {"QualificationTypeId": EXCLUSION}}, None)
    stubber.add_response("create_hit_type", {"HITTypeId": HIT_TYPE}, None)
    stubber.add_client_error(
        "create_hit_with_hit_type",
        service_error_code="RequestError",
        service_message=f'The HIT with ID "{hit_id(7)}" already exists. (1700000000000)',
        http_status_code=400,
    )
    batch = services.crowd_batch_launch(batch=batch, provider=provider)
    assert batch.tasks.get().external_id == hit_id(7)


def test_sync_follows_next_token_and_grants_the_exclusion(study, stubbed):
    stubber, provider = stubbed
    batch = launched(study, stubbed)
    participant(study, source="mturk", worker_id="W1", assignment_id="3ASSIGN1")
    pages = {
        hit_id(0): [
            ([("W1", "3ASSIGN1")], "page-2"),
            ([("W2", "3ASSIGN2")], None),
        ],
        hit_id(1): [([], None)],
    }
    for hit, hit_pages in pages.items():
        token = None
        for assignments, next_token in hit_pages:
            request = {"HITId": hit, "MaxResults": 100, "AssignmentStatuses": ["Submitted", "Approved", "Rejected"]}
            if token:
                request["NextToken"] = token
            response = {
                "NumResults": len(assignments),
                "Assignments": [
                    {
                        "AssignmentId": assignment_id,
                        "WorkerId": worker,
                        "HITId": hit,
                        "AssignmentStatus": "Submitted",
                        "SubmitTime": datetime(2026, 1, 1, tzinfo=UTC),
                    }
                    for worker, assignment_id in assignments
                ],
            }
            if next_token:
                response["NextToken"] = next_token
            stubber.add_response("list_assignments_for_hit", response, request)
            token = next_token
    for worker in ("W1", "W2"):
        stubber.add_response(
            "associate_qualification_with_worker",
            {},
            {"QualificationTypeId": EXCLUSION, "WorkerId": worker, "IntegerValue": 1, "SendNotification": False},
        )
    assert services.crowd_batch_sync(batch=batch, provider=provider)["submissions"] == 2
    flags = dict(batch.submissions.values_list("worker_id", "flags"))
    assert flags == {"W1": {}, "W2": {"unknown_worker": True, "incomplete": True}}
    assert batch.submissions.filter(excluded_at__isnull=False).count() == 2


def submission(batch, worker, assignment, **fields):
    return CrowdSubmission.objects.create(
        batch=batch, task=batch.tasks.first(), worker_id=worker, external_assignment_id=assignment, **fields
    )


def test_approve_reject_bonus_expire_and_notify_calls(study, stubbed):
    stubber, provider = stubbed
    batch = launched(study, stubbed)
    good = submission(batch, "WGOOD", "3AGOOD")
    bad = submission(batch, "WBAD", "3ABAD", flags={"attention_failed": True})

    stubber.add_response("approve_assignment", {}, {"AssignmentId": "3AGOOD", "RequesterFeedback": "Thank you!"})
    assert services.crowd_submission_approve(submission=good, feedback="Thank you!", provider=provider)
    assert not services.crowd_submission_approve(submission=good, feedback="Thank you!", provider=provider)

    feedback = "You did not pick the answer the check asked for."
    stubber.add_response("reject_assignment", {}, {"AssignmentId": "3ABAD", "RequesterFeedback": feedback})
    assert services.crowd_submission_reject(submission=bad, feedback=feedback, provider=provider)
    bad.refresh_from_db()
    assert (bad.status, bad.feedback, bad.rejection_category) == ("rejected", feedback, "FAILED_CHECK")
    with pytest.raises(CrowdPlatformError):
        services.crowd_submission_reject(submission=bad, feedback=" ", provider=provider)

    stubber.add_response(
        "send_bonus",
        {},
        {
            "WorkerId": "WGOOD",
            "BonusAmount": "0.75",
            "AssignmentId": "3AGOOD",
            "Reason": "Careful ratings",
            "UniqueRequestToken": ANY,
        },
    )
    assert services.crowd_submission_bonus(
        submission=good, amount_cents=75, reason="Careful ratings", provider=provider
    )
    good.refresh_from_db()
    assert len(good.bonus_token) == 32 and good.bonus_paid_at is not None
    assert not services.crowd_submission_bonus(
        submission=good, amount_cents=75, reason="Careful ratings", provider=provider
    ), "paid once: no second SendBonus"

    for index in range(2):
        stubber.add_response(
            "update_expiration_for_hit", {}, {"HITId": hit_id(index), "ExpireAt": datetime(2015, 1, 1, tzinfo=UTC)}
        )
    services.crowd_batch_expire(batch=batch, provider=provider)

    workers = [f"W{index:04d}" for index in range(201)]
    for start in (0, 100, 200):
        stubber.add_response(
            "notify_workers",
            {"NotifyWorkersFailureStatuses": []},
            {"Subject": "News", "MessageText": "A follow-up study is open.", "WorkerIds": workers[start : start + 100]},
        )
    sent = services.crowd_batch_notify(
        batch=batch, subject="News", message="A follow-up study is open.", worker_ids=workers, provider=provider
    )
    assert sent == 201


def test_a_bonus_whose_answer_was_lost_is_checked_before_it_is_sent_again(study, stubbed):
    stubber, provider = stubbed
    batch = launched(study, stubbed)
    good = submission(batch, "WGOOD", "3AGOOD", status="approved")
    stubber.add_client_error("send_bonus", service_error_code="ServiceFault", http_status_code=500)
    with pytest.raises(Exception):  # noqa: B017
        services.crowd_submission_bonus(submission=good, amount_cents=100, reason="Thanks", provider=provider)
    good.refresh_from_db()
    token = good.bonus_token
    assert token and good.bonus_paid_at is None
    stubber.add_response(
        "list_bonus_payments",
        {
            "NumResults": 1,
            "BonusPayments": [
                {"WorkerId": "WGOOD", "BonusAmount": "1.00", "AssignmentId": "3AGOOD", "Reason": "Thanks"}
            ],
        },
        {"AssignmentId": "3AGOOD"},
    )
    assert (
        services.crowd_submission_bonus(submission=good, amount_cents=100, reason="Thanks", provider=provider) is False
    )
    good.refresh_from_db()
    assert good.bonus_paid_at is not None and good.bonus_token == token
