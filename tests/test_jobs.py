"""Jobs run on the real Redis through a burst worker, in a background thread, and in the foreground."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from django.test import override_settings

from evalsite.jobs import QueueUnavailable, enqueue_job, execute_job, get_queue, request_cancel, run_in_foreground
from evalsite.models import Job
from tests import job_functions


def wait_until_finished(job: Job, timeout: float = 20.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if not job.is_active:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job.pk} still {job.status} after {timeout}s")


@pytest.fixture
def redis_queue(settings):
    """Point the site at the real Redis with a queue of this test's own."""
    settings.REDIS_URL = settings.TEST_REDIS_URL
    settings.EVALSITE_QUEUE = f"test-{uuid.uuid4().hex[:8]}"
    queue = get_queue()
    yield queue
    queue.delete(delete_jobs=True)


@pytest.mark.django_db(transaction=True)
def test_enqueued_job_runs_on_a_burst_worker_and_reports_progress(redis_queue):
    from rq import SimpleWorker

    job = enqueue_job(kind="count", function=job_functions.count_to, params={"n": 7, "stage": "tally"})
    job.refresh_from_db()
    assert job.runner == Job.Runner.RQ
    assert job.status == Job.Status.QUEUED
    assert job.rq_job_id, "the job was pushed to Redis after commit"
    assert redis_queue.count == 1

    SimpleWorker([redis_queue], connection=redis_queue.connection).work(burst=True)

    job.refresh_from_db()
    assert job.status == Job.Status.DONE
    assert (job.done, job.total, job.stage) == (7, 7, "tally")
    assert job.result == {"counted": 7}
    assert job.started_at and job.finished_at


@pytest.mark.django_db(transaction=True)
def test_failure_on_a_worker_is_stored_with_its_traceback(redis_queue):
    from rq import SimpleWorker

    job = enqueue_job(kind="fail", function=job_functions.fail_halfway, params={"n": 10})
    SimpleWorker([redis_queue], connection=redis_queue.connection).work(burst=True)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "ValueError: broke at 5" in job.error
    assert job.done == 5
    assert job.message == "ValueError: broke at 5"


@pytest.mark.django_db(transaction=True)
def test_without_redis_url_the_job_runs_in_a_background_thread(settings):
    settings.REDIS_URL = ""
    job = enqueue_job(kind="count", function=job_functions.count_to, params={"n": 5})
    assert job.runner == Job.Runner.THREAD
    job = wait_until_finished(job)
    assert job.status == Job.Status.DONE
    assert (job.done, job.total) == (5, 5)
    assert job.result == {"counted": 5}


@pytest.mark.django_db(transaction=True)
def test_redis_down_is_an_error_not_a_silent_fallback(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with pytest.raises(QueueUnavailable, match="Redis does not answer"):
        enqueue_job(kind="count-refused", function=job_functions.count_to, params={"n": 1})
    assert not Job.objects.filter(kind="count-refused").exists()


@pytest.mark.django_db(transaction=True)
def test_a_running_job_stops_when_cancelled(settings):
    settings.REDIS_URL = ""
    job = enqueue_job(kind="wait", function=job_functions.wait_for_cancel, params={"seconds": 30})
    deadline = time.monotonic() + 10
    while Job.objects.get(pk=job.pk).status != Job.Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert request_cancel(Job.objects.get(pk=job.pk))
    job = wait_until_finished(job, timeout=10)
    assert job.status == Job.Status.CANCELLED


@pytest.mark.django_db
def test_foreground_job_echoes_progress_and_raises_on_failure():
    seen = []
    job = run_in_foreground(
        kind="count",
        function=job_functions.count_to,
        params={"n": 3},
        echo=lambda done, total, stage, message: seen.append((done, total, stage)),
    )
    assert job.status == Job.Status.DONE
    assert seen == [(1, 3, "counting"), (2, 3, "counting"), (3, 3, "counting")]

    with pytest.raises(ValueError, match="broke at 2"):
        run_in_foreground(kind="fail", function=job_functions.fail_halfway, params={"n": 4})
    failed = Job.objects.get(kind="fail")
    assert failed.status == Job.Status.FAILED and "Traceback" in failed.error


@pytest.mark.django_db
def test_a_finished_job_is_not_run_twice():
    job = run_in_foreground(kind="count", function=job_functions.count_to, params={"n": 2})
    again = execute_job(job.pk)
    assert again.status == Job.Status.DONE and again.finished_at == job.finished_at


@pytest.mark.django_db
def test_a_function_that_is_not_a_registered_job_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match=r"tests\.job_functions\.not_a_job is not a registered job function"):
        run_in_foreground(kind="x", function=job_functions.not_a_job, params={})
    assert not Job.objects.filter(kind="x").exists()


@pytest.mark.django_db
def test_a_row_naming_an_unregistered_function_fails_without_running_it():
    job = Job.objects.create(kind="x", function="tests.job_functions.not_a_job", runner=Job.Runner.FOREGROUND)
    execute_job(job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "is not a registered job function" in job.message
    assert not job_functions.CALLED, "the function never ran"


@override_settings(REDIS_URL="")
def test_job_eta_comes_from_the_rate_of_the_current_stage():
    from datetime import timedelta

    from django.utils import timezone

    job = Job(status=Job.Status.RUNNING, done=50, total=150, stage_started_done=0)
    job.stage_started_at = timezone.now() - timedelta(seconds=10)
    assert job.rate_per_second == pytest.approx(5.0, rel=0.05)
    assert job.eta.total_seconds() == pytest.approx(20.0, rel=0.05)


APP_JOB_MODULES = [
    "distillation.jobs",
    "annotations.jobs.analysis",
    "annotations.jobs.explanations",
    "annotations.jobs.metrics",
    "annotations.jobs.studies",
    "annotations.crowd.jobs",
]


def test_every_job_of_the_apps_is_registered_under_the_path_of_its_function():
    import importlib
    import inspect

    from evalsite.jobs import job_path, registered_jobs

    registered = registered_jobs()
    app_jobs = {path: function for path, function in registered.items() if not path.startswith("tests.")}
    assert sorted(app_jobs) == [
        "annotations.crowd.jobs.act_on_submissions",
        "annotations.crowd.jobs.expire_batch",
        "annotations.crowd.jobs.launch_batch",
        "annotations.crowd.jobs.notify_workers",
        "annotations.crowd.jobs.pause_batch",
        "annotations.crowd.jobs.refill_batch",
        "annotations.crowd.jobs.resume_batch",
        "annotations.crowd.jobs.review_batch",
        "annotations.crowd.jobs.sync_batch",
        "annotations.jobs.analysis.analyze_ratings_files",
        "annotations.jobs.analysis.analyze_study",
        "annotations.jobs.explanations.generate_explanations",
        "annotations.jobs.explanations.regenerate_explanations",
        "annotations.jobs.metrics.score_explanations",
        "annotations.jobs.studies.import_explanations",
        "annotations.jobs.studies.simulate_annotators",
        "distillation.jobs.build_demo_student",
        "distillation.jobs.evaluate_student",
        "distillation.jobs.generate_teacher_data",
        "distillation.jobs.import_cqa",
        "distillation.jobs.import_teacher_outputs",
        "distillation.jobs.train_student",
    ]
    for path, function in app_jobs.items():
        assert job_path(function) == path
    # A function in a job module that takes `progress` is a job: none may be left unregistered.
    for module_name in APP_JOB_MODULES:
        module = importlib.import_module(module_name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ == module_name and "progress" in inspect.signature(function).parameters:
                assert registered.get(f"{module_name}.{name}") is function, f"{module_name}.{name} is not registered"


DOTTED_JOB_PATH = re.compile(r"^[a-z_]+(\.[a-z_]+)*\.jobs(\.[a-z_]+)*\.[a-z_]+$")  # e.g. "app.jobs.train_student"


def test_no_job_path_is_typed_into_the_apps():
    import ast
    from pathlib import Path

    from evalsite.jobs import registered_jobs

    paths = set(registered_jobs())
    root = Path(__file__).resolve().parent.parent
    typed = [
        f"{file.relative_to(root)}:{node.lineno}: {node.value}"
        for app in ("evalsite", "distillation", "annotations")
        for file in sorted((root / app).rglob("*.py"))
        if "migrations" not in file.parts
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if node.value in paths or DOTTED_JOB_PATH.match(node.value)
    ]
    assert typed == [], "pass the job function instead of its dotted path"


@pytest.mark.django_db(transaction=True)
def test_an_app_job_passed_by_function_runs_on_a_burst_worker(redis_queue, tmp_path):
    import json

    from rq import SimpleWorker

    from distillation import jobs
    from distillation.models import Question

    questions = [
        {"id": f"q{i}", "question": f"Where is thing {i}?", "choices": ["a", "b", "c", "d", "e"], "answer": "c"}
        for i in range(3)
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions), encoding="utf-8")
    job = enqueue_job(kind="import_cqa", function=jobs.import_cqa, params={"path": str(tmp_path)})
    job.refresh_from_db()
    assert job.function == "distillation.jobs.import_cqa" and job.runner == Job.Runner.RQ

    SimpleWorker([redis_queue], connection=redis_queue.connection).work(burst=True)

    job.refresh_from_db()
    assert job.status == Job.Status.DONE, job.error
    assert job.result == {"train": {"created": 3, "skipped": 0}}
    assert sorted(Question.objects.values_list("source_id", flat=True)) == ["q0", "q1", "q2"]
