"""One payment per person per study: a worker who takes two HITs of a study is approved and bonused once."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from annotations.crowd import selectors, services
from annotations.crowd.providers import CrowdPlatformError
from annotations.models import Annotator, CrowdSubmission
from tests.annotations.crowd.test_entry import enter_hit
from tests.annotations.crowd.test_mturk_endpoint import launch

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_the_double_hit_worker_is_approved_once_and_bonused_once(client, mturk_server, study):
    batch = launch(study, n_tasks=2)
    hit_1, hit_2 = batch.tasks.values_list("external_id", flat=True)
    # W1 accepts both HITs before entering either (MTurk lets a worker hold several).
    first = mturk_server.add_assignment(hit_1, "W1")
    second = mturk_server.add_assignment(hit_2, "W1")
    other = mturk_server.add_assignment(hit_2, "W2")

    assert enter_hit(client, study, hit_1, "W1", first).status_code == 302
    refused = enter_hit(client, study, hit_2, "W1", second)
    assert refused.status_code == 409 and "return this HIT" in refused.content.decode()
    assert enter_hit(client, study, hit_2, "W2", other).status_code == 302
    assert Annotator.objects.count() == 2
    Annotator.objects.update(finished_at=timezone.now(), completion_code=study.completion_code)

    run("sync_hits", "--study", study.slug, "--quiet")
    by_assignment = {s.external_assignment_id: s for s in batch.submissions.all()}
    assert by_assignment[first].flags == {} and by_assignment[first].annotator.external_id == "W1"
    assert by_assignment[second].flags == {"duplicate_worker": True}
    assert by_assignment[second].annotator is None, "the second assignment holds no session of its own"
    assert selectors.batch_progress(batch).to_check == 1

    run("review_hits", "--study", study.slug, "--approve-passing", "--reject-failing", "--quiet")
    run("review_hits", "--study", study.slug, "--bonus", "0.40", "--bonus-reason", "Thanks for careful work", "--quiet")
    approvals = [body["AssignmentId"] for name, body in mturk_server.calls if name == "ApproveAssignment"]
    assert sorted(approvals) == sorted([first, other])
    assert [b["AssignmentId"] for b in mturk_server.bonuses if b["WorkerId"] == "W1"] == [first]
    assert [b["WorkerId"] for b in mturk_server.bonuses].count("W1") == 1
    assert mturk_server.assignment(second)["AssignmentStatus"] == "Submitted", "left for a person"
    assert [n for n, _ in mturk_server.calls].count("RejectAssignment") == 0

    # A person cannot pay it by hand either.
    duplicate = CrowdSubmission.objects.get(external_assignment_id=second)
    with pytest.raises(CrowdPlatformError, match="one payment per person"):
        services.crowd_submission_approve(submission=duplicate)
    with pytest.raises(CrowdPlatformError, match="one payment per person"):
        services.crowd_submission_bonus(submission=duplicate, amount_cents=40, reason="Thanks")
    counts = services.crowd_submissions_act(submissions=[duplicate], action="approve")
    assert counts["failed"] == 1 and "one payment per person" in counts["errors"][0]
    assert mturk_server.assignment(second)["AssignmentStatus"] == "Submitted"
    duplicate.refresh_from_db()
    assert duplicate.status == "submitted" and duplicate.bonus_token == ""

    # Syncing again keeps the flag (the order HITs are listed in does not matter).
    run("sync_hits", "--study", study.slug, "--quiet")
    assert CrowdSubmission.objects.get(external_assignment_id=second).flags == {"duplicate_worker": True}
    assert CrowdSubmission.objects.get(external_assignment_id=first).status == "approved"


def test_a_second_assignment_in_a_later_batch_is_not_paid_either(client, mturk_server, study):
    first_batch = launch(study, n_tasks=1)
    hit_1 = first_batch.tasks.get().external_id
    first = mturk_server.add_assignment(hit_1, "W1")
    assert enter_hit(client, study, hit_1, "W1", first).status_code == 302
    Annotator.objects.update(finished_at=timezone.now())
    services.crowd_batch_sync(batch=first_batch)
    services.crowd_batch_review(batch=first_batch, approve_passing=True, reject_failing=False)

    second_batch = launch(study, n_tasks=1)
    late = mturk_server.add_assignment(second_batch.tasks.get().external_id, "W1")  # slipped past the qualification
    services.crowd_batch_sync(batch=second_batch)
    submission = second_batch.submissions.get()
    assert submission.external_assignment_id == late and submission.flags == {"duplicate_worker": True}
    assert services.crowd_batch_review(batch=second_batch, approve_passing=True, reject_failing=True)["approved"] == 0
