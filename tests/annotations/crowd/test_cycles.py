"""The whole review cycle of each platform, over HTTP: the MTurk stand-in through boto3, Prolific's through httpx."""

from __future__ import annotations

import pytest
from django.utils import timezone

from annotations.crowd import selectors, services
from annotations.crowd.jobs import JOB_FUNCTIONS
from annotations.crowd.providers import CrowdPlatformError
from annotations.models import Annotator, CrowdBatch, CrowdSubmission
from evalsite.jobs import create_job, execute_job
from evalsite.models import Job
from tests.annotations.crowd.conftest import participant
from tests.annotations.crowd.test_entry import enter_hit, prolific_get
from tests.annotations.crowd.test_mturk_endpoint import launch as launch_hits
from tests.annotations.crowd.test_prolific import launch as launch_prolific

pytestmark = pytest.mark.django_db


def run_job(batch, job_action: str, **params) -> Job:
    """A crowd job run here, recorded on its row as the admin and the commands run it."""
    job = create_job(
        kind=f"crowd_{job_action}", function=JOB_FUNCTIONS[job_action], params={"batch_id": batch.pk, **params}
    )
    return execute_job(job.pk)


def finish(worker_id: str, *, attention_failures: int = 0, finished: bool = True) -> None:
    Annotator.objects.filter(external_id=worker_id).update(
        finished_at=timezone.now() if finished else None, attention_failures=attention_failures
    )


def ops(server) -> list[str]:
    return [name for name, _ in server.calls]


def test_the_full_mturk_cycle(client, mturk_server, study):
    batch = launch_hits(study, n_tasks=2, assignments=3)
    hit_a, hit_b = batch.tasks.values_list("external_id", flat=True)
    workers = {"WGOOD": hit_a, "WSLOPPY": hit_a, "WQUIT": hit_b, "WFAST": hit_b}
    assignments = {}
    for worker, hit in workers.items():
        assignments[worker] = mturk_server.add_assignment(hit, worker)
        assert enter_hit(client, study, hit, worker, assignments[worker]).status_code == 302
    finish("WGOOD")
    finish("WSLOPPY", attention_failures=1)
    finish("WQUIT", finished=False)
    finish("WFAST")
    Annotator.objects.filter(external_id="WFAST").update(flags={"too_fast": True})

    assert run_job(batch, "sync").status == Job.Status.DONE
    review = run_job(batch, "review", approve_passing=True, reject_failing=True)
    assert review.status == Job.Status.DONE
    assert (review.result["approved"], review.result["rejected"], review.result["left_for_review"]) == (1, 2, 1)
    sloppy = mturk_server.assignment(assignments["WSLOPPY"])
    quit_ = mturk_server.assignment(assignments["WQUIT"])
    assert sloppy["AssignmentStatus"] == quit_["AssignmentStatus"] == "Rejected"
    assert "instructed-response" in sloppy["RequesterFeedback"] and "not finished" not in sloppy["RequesterFeedback"]
    assert "not finished" in quit_["RequesterFeedback"] and "instructed-response" not in quit_["RequesterFeedback"]

    good = batch.submissions.get(worker_id="WGOOD")
    bonus = run_job(batch, "act", submission_ids=[good.pk], action="bonus", feedback="Careful work", amount_cents=40)
    assert bonus.status == Job.Status.DONE and [b["WorkerId"] for b in mturk_server.bonuses] == ["WGOOD"]

    # Approving an already-rejected assignment is a skip the job names, not a silent "done".
    quitter = batch.submissions.get(worker_id="WQUIT")
    skipped = run_job(batch, "act", submission_ids=[quitter.pk], action="approve")
    assert skipped.status == Job.Status.DONE and "1 skipped (WQUIT: already rejected)" in skipped.message

    # Refill: each HIT gets back the place its rejected assignment took.
    assert [(task.external_id, extra) for task, extra in selectors.refill_plan(batch)] == [(hit_a, 1), (hit_b, 1)]
    assert run_job(batch, "refill").result == {"added": 2}
    refills = [body for name, body in mturk_server.calls if name == "CreateAdditionalAssignmentsForHIT"]
    assert sorted((body["HITId"], body["NumberOfAdditionalAssignments"]) for body in refills) == sorted(
        [(hit_a, 1), (hit_b, 1)]
    )
    assert mturk_server.hits[hit_a]["MaxAssignments"] == 4
    assert selectors.refill_plan(batch) == [], "refilled once"
    run_job(batch, "refill")
    assert ops(mturk_server).count("CreateAdditionalAssignmentsForHIT") == 2

    # Overturn: the sloppy worker's rejection is reversed with OverrideRejection.
    sloppy_submission = batch.submissions.get(worker_id="WSLOPPY")
    overturn = run_job(
        batch, "act", submission_ids=[sloppy_submission.pk], action="overturn", feedback="Our check was unclear."
    )
    assert overturn.status == Job.Status.DONE
    override = [
        body for name, body in mturk_server.calls if name == "ApproveAssignment" and "OverrideRejection" in body
    ]
    assert override == [
        {
            "AssignmentId": assignments["WSLOPPY"],
            "OverrideRejection": True,
            "RequesterFeedback": "Our check was unclear.",
        }
    ]
    assert mturk_server.assignment(assignments["WSLOPPY"])["AssignmentStatus"] == "Approved"

    # Message one worker.
    assert services.crowd_batch_notify(batch=batch, subject="Thanks", message="Bonus sent.", worker_ids=["WGOOD"]) == 1
    assert mturk_server.notifications[-1]["WorkerIds"] == ["WGOOD"]


def test_a_failed_review_action_fails_its_job_with_one_line(mturk_server, study):
    batch = launch_hits(study, n_tasks=1, assignments=3)
    hit = batch.tasks.get().external_id
    assignment = mturk_server.add_assignment(hit, "WGONE")
    participant(study, source="mturk", worker_id="WGONE", assignment_id=assignment)
    services.crowd_batch_sync(batch=batch)
    mturk_server.assignment(assignment)["AssignmentStatus"] = "Approved"  # approved on the website meanwhile
    CrowdSubmission.objects.filter(batch=batch).update(status="submitted")
    mturk_server.assignments[hit].clear()  # and then gone from MTurk: GetAssignment fails too
    job = run_job(batch, "act", submission_ids=list(batch.submissions.values_list("pk", flat=True)), action="approve")
    assert job.status == Job.Status.FAILED
    assert job.message.startswith("CrowdActionsFailed: approve: 0 done, 1 failed (WGONE: MTurk approve refused")
    assert "\n" not in job.message and "Traceback" not in job.message


def test_platform_errors_are_one_line_that_says_what_to_do(mturk_server, study, crowd_settings):
    crowd_settings.MTURK_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    batch = services.crowd_batch_create(study=study, platform="mturk", title="Rate", reward_cents=100)
    with pytest.raises(CrowdPlatformError) as caught:
        services.crowd_batch_launch(batch=batch)
    message = str(caught.value)
    assert "\n" not in message and "MTURK_ENDPOINT_URL" in message, message
    batch.refresh_from_db()
    assert batch.status == CrowdBatch.Status.FAILED and batch.last_error == message


def test_the_https_check_comes_before_any_request(mturk_server, study, crowd_settings):
    crowd_settings.EVALSITE_PUBLIC_URL = "http://evalsite.example.org"
    batch = services.crowd_batch_create(study=study, platform="mturk", title="Rate", reward_cents=100)
    with pytest.raises(CrowdPlatformError, match="HTTPS"):
        services.crowd_batch_launch(batch=batch)
    assert mturk_server.calls == [], "not even CreateQualificationType or CreateHITType went out"


def test_the_full_prolific_cycle(client, prolific_server, study):
    batch = launch_prolific(study, places=12)
    study_id = batch.external_id
    assert selectors.batch_currency(batch) == "GBP" and selectors.money_label("GBP") == "£"
    entered = {}
    for pid in ("PGOOD", "PALSO", "PPART", "PQUIT", "PBAD"):
        session = prolific_server.add_submission(study_id, pid)
        entered[pid] = session
        assert prolific_get(client, study, PROLIFIC_PID=pid, STUDY_ID=study_id, SESSION_ID=session).status_code == 302
    finish("PGOOD")
    finish("PALSO")
    finish("PPART")
    finish("PQUIT", finished=False)
    finish("PBAD", attention_failures=1)
    prolific_server.submission(entered["PPART"])["status"] = "PARTIALLY APPROVED"  # decided on the website
    others = {
        status: prolific_server.add_submission(study_id, f"P{index}", status=status)
        for index, status in enumerate(["ACTIVE", "RESERVED", "RETURNED", "TIMED-OUT", "SCREENED OUT"])
    }

    sync = run_job(batch, "sync")
    assert sync.status == Job.Status.DONE and sync.result["submissions"] == 8, "every status but the active ones"
    lists = [(path, body) for method, path, body in prolific_server.calls if path == "/api/v1/submissions/"]
    assert len(lists) >= 5, "documented pages followed"
    statuses = dict(batch.submissions.values_list("external_assignment_id", "status"))
    assert statuses[entered["PPART"]] == "approved"
    assert [statuses[others[s]] for s in ("RETURNED", "TIMED-OUT", "SCREENED OUT")] == ["returned"] * 3
    assert others["ACTIVE"] not in statuses and others["RESERVED"] not in statuses

    review = run_job(batch, "review", approve_passing=True, reject_failing=True)
    assert review.status == Job.Status.DONE
    assert (review.result["approved"], review.result["rejected"], review.result["returns_requested"]) == (2, 1, 1)
    bulk = [body for method, path, body in prolific_server.calls if path == "/api/v1/submissions/bulk-approve/"]
    assert bulk == [{"study_id": study_id, "submission_ids": [entered["PGOOD"], entered["PALSO"]]}]
    assert not [p for m, p, b in prolific_server.calls if b and b.get("action") == "APPROVE"], "no one-by-one calls"
    assert prolific_server.submission(entered["PBAD"])["status"] == "REJECTED"
    assert [r["id"] for r in prolific_server.returns] == [entered["PQUIT"]]
    assert prolific_server.submission(entered["PQUIT"])["status"] == "AWAITING REVIEW", "asked back, not rejected"
    run_job(batch, "sync")
    again = run_job(batch, "review", approve_passing=True, reject_failing=True)
    assert again.result["returns_requested"] == again.result["rejected"] == 0, "asked once, then left to a person"
    assert batch.submissions.get(worker_id="PQUIT").flags == {"incomplete": True, "return_requested": True}

    good = batch.submissions.get(worker_id="PGOOD")
    assert run_job(
        batch, "act", submission_ids=[good.pk], action="bonus", feedback="Thanks", amount_cents=75
    ).status == (Job.Status.DONE)
    [bulk_bonus] = prolific_server.bulk_bonuses.values()
    assert bulk_bonus["lines"] == [[entered["PGOOD"], "0.75"]] and prolific_server.paid == [bulk_bonus["id"]]

    # More places: one for the rejected, one each for the returned and timed-out (not the screened-out).
    assert selectors.refill_plan(batch)[0][1] == 3
    assert run_job(batch, "refill").result == {"added": 3}
    assert prolific_server.studies[study_id]["total_available_places"] == 15
    run_job(batch, "refill")
    assert prolific_server.studies[study_id]["total_available_places"] == 15, "refilled once"

    services.crowd_batch_pause(batch=batch)
    assert prolific_server.studies[study_id]["status"] == "PAUSED"
    assert CrowdBatch.objects.get(pk=batch.pk).status == "paused"
    services.crowd_batch_resume(batch=CrowdBatch.objects.get(pk=batch.pk))
    assert prolific_server.studies[study_id]["status"] == "ACTIVE"


def test_an_unknown_prolific_status_stops_the_sync_instead_of_skipping(prolific_server, study):
    batch = launch_prolific(study)
    prolific_server.add_submission(batch.external_id, "PODD")
    prolific_server.submissions[batch.external_id][0]["status"] = "SOMETHING NEW"
    with pytest.raises(CrowdPlatformError, match="SOMETHING NEW"):
        services.crowd_batch_sync(batch=batch)
