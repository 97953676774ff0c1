"""The crowd commands, end to end against the local MTurk and Prolific stand-ins."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import CommandError, call_command

from annotations.models import CrowdBatch
from tests.annotations.crowd.conftest import PUBLIC_URL, participant

pytestmark = pytest.mark.django_db


def run(*args, **kwargs) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO(), **kwargs)
    return out.getvalue()


def test_launch_sync_and_review_hits(mturk_server, study):
    output = run(
        "launch_hits",
        "--study",
        study.slug,
        "--hits",
        "2",
        "--assignments",
        "9",
        "--reward",
        "1.50",
        "--sandbox",
        "--locales",
        "US,GB",
        "--quiet",
    )
    assert "total                  $32.40" in output  # 1.50 x 18 x 1.2
    batch = CrowdBatch.objects.get()
    assert batch.status == "live" and batch.sandbox
    assert len(mturk_server.hits) == 2
    assert all(hit["MaxAssignments"] == 9 for hit in mturk_server.hits.values())

    hit = batch.tasks.first().external_id
    good = mturk_server.add_assignment(hit, "WGOOD")
    bad = mturk_server.add_assignment(hit, "WBAD")
    participant(study, source="mturk", worker_id="WGOOD", assignment_id=good)
    participant(study, source="mturk", worker_id="WBAD", assignment_id=bad, finished=False)
    assert "'submissions': 2" in run("sync_hits", "--study", study.slug, "--quiet")

    output = run(
        "review_hits",
        "--study",
        study.slug,
        "--approve-passing",
        "--reject-failing",
        "--quiet",
        "--bonus",
        "0.25",
        "--bonus-reason",
        "Thanks for careful work",
    )
    assert "'approved': 1" in output and "'rejected': 1" in output
    assert mturk_server.assignment(good)["AssignmentStatus"] == "Approved"
    assert mturk_server.assignment(bad)["AssignmentStatus"] == "Rejected"
    assert [b["WorkerId"] for b in mturk_server.bonuses] == ["WGOOD"]
    run("review_hits", "--batch", str(batch.pk), "--bonus", "0.25", "--bonus-reason", "again", "--quiet")
    assert len(mturk_server.bonuses) == 1, "a bonus is paid once"


def test_ten_assignments_and_unconfirmed_production_are_refused(mturk_server, study):
    with pytest.raises(CommandError, match="at most 9"):
        run("launch_hits", "--study", study.slug, "--assignments", "10", "--reward", "1.00")
    with pytest.raises(CommandError, match="--yes"):
        run("launch_hits", "--study", study.slug, "--reward", "1.00", "--production")
    assert mturk_server.hits == {}


def test_export_hits_writes_a_batch_csv_and_a_layout(crowd_settings, study, tmp_path):
    output = run("export_hits", "--study", study.slug, "--format", "mturk-csv", "--out", str(tmp_path), "--hits", "3")
    csv_path, html_path = (tmp_path / "crowd-study-mturk-batch.csv", tmp_path / "crowd-study-mturk-layout.html")
    assert str(csv_path) in output
    rows = list(csv.DictReader(csv_path.open()))
    assert rows == [{"study_url": f"{PUBLIC_URL}/study/crowd-study/mturk/"}] * 3
    html = html_path.read_text()
    assert "${study_url}" in html and "crowd-form" in html and "turkSubmitTo" in html


def test_prolific_commands(prolific_server, study):
    with pytest.raises(CommandError, match="--yes"):
        run("launch_prolific", "--study", study.slug, "--places", "30", "--reward", "2.25")
    batch = CrowdBatch.objects.get()
    output = run("launch_prolific", "--batch", str(batch.pk), "--yes", "--quiet")
    assert "total                  $89.98" in output  # 67.50 + 22.48 (67.50 x 0.333 = 22.4775)
    batch.refresh_from_db()
    assert prolific_server.studies[batch.external_id]["status"] == "ACTIVE"
    session = prolific_server.add_submission(batch.external_id, "PONE")
    participant(study, source="prolific", worker_id="PONE", assignment_id=session)
    run("sync_prolific", "--study", study.slug, "--quiet")
    run("review_prolific", "--study", study.slug, "--approve-passing", "--quiet")
    assert prolific_server.submission(session)["status"] == "APPROVED"


def test_manual_mode_prints_the_link_and_codes_and_syncs_finished_participants(crowd_settings, study):
    output = run(
        "launch_prolific",
        "--study",
        study.slug,
        "--places",
        "5",
        "--reward",
        "2.00",
        "--manual",
        "--quiet",
        "--prolific-study-id",
        "64f0manualstudy",
    )
    assert f"{PUBLIC_URL}/study/crowd-study/prolific/?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}" in output
    assert study.completion_code in output
    participant(study, source="prolific", worker_id="PMANUAL", assignment_id="S1")
    run("sync_prolific", "--study", study.slug, "--quiet")
    batch = CrowdBatch.objects.get()
    assert list(batch.submissions.values_list("worker_id", "status")) == [("PMANUAL", "submitted")]
    run("review_prolific", "--study", study.slug, "--approve-passing", "--quiet")
    assert batch.submissions.get().status == "approved"


def test_refill_and_pause_from_the_commands(prolific_server, mturk_server, study):
    from annotations.crowd import services
    from tests.annotations.crowd.test_mturk_endpoint import launch as launch_hits
    from tests.annotations.crowd.test_prolific import launch as launch_prolific

    hits = launch_hits(study, n_tasks=1, assignments=3)
    hit = hits.tasks.get().external_id
    bad = mturk_server.add_assignment(hit, "WBAD")
    participant(study, source="mturk", worker_id="WBAD", assignment_id=bad, attention_failures=1)
    run("sync_hits", "--batch", str(hits.pk), "--quiet")
    services.crowd_batch_review(batch=hits, approve_passing=False, reject_failing=True)
    run("sync_hits", "--batch", str(hits.pk), "--refill", "--quiet")
    assert mturk_server.hits[hit]["MaxAssignments"] == 4

    study_batch = launch_prolific(study)
    run("sync_prolific", "--batch", str(study_batch.pk), "--pause", "--quiet")
    assert prolific_server.studies[study_batch.external_id]["status"] == "PAUSED"
    run("sync_prolific", "--batch", str(study_batch.pk), "--resume", "--quiet")
    assert prolific_server.studies[study_batch.external_id]["status"] == "ACTIVE"
    with pytest.raises(CommandError, match="only a paused batch can be resumed"):
        run("sync_prolific", "--batch", str(study_batch.pk), "--resume", "--quiet")
