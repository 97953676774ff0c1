"""Faults a running site meets: Redis going away mid-study, a worker killed mid-training, a database connection
dropped in the middle of a rating submit. Each runs the real thing (a private redis-server, a real RQ worker
process, a real PostgreSQL backend terminated) and checks what annotators and staff rely on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from io import StringIO
from pathlib import Path

import psutil
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from annotations.models import Annotator, Assignment, Rating
from annotations.services import sessions
from distillation.jobs import train_student
from distillation.ml.training import latest_checkpoint
from distillation.models import StudentRun
from distillation.services.students import student_output_dir, student_run_create
from evalsite.job_health import jobs_mark_abandoned
from evalsite.jobs import QueueUnavailable, enqueue_job, get_queue
from evalsite.models import Job
from tests import job_functions
from tests.annotations.factories import build_study
from tests.annotations.test_sessions import current, screen_form, start_rating

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A redis-server of this test's own, so stopping it cannot disturb the shared one other tests use.

    It keeps an append-only file in its folder, as a production Redis holding a job queue should: a restart
    then brings back the queued jobs.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._answers():
            assert self.process.poll() is None, f"redis-server exited with {self.process.returncode}"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # a clean shutdown, which flushes the append-only file
            self.process.wait(timeout=10)
        self.process = None

    def _answers(self) -> bool:
        from redis import Redis
        from redis.exceptions import RedisError

        try:
            return bool(Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except RedisError:
            return False


@pytest.fixture
def private_redis(settings, tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    settings.REDIS_URL = server.url
    settings.EVALSITE_QUEUE = f"faults-{uuid.uuid4().hex[:8]}"
    yield server
    server.stop()


# -- (1) Redis stopped mid-study ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_annotators_carry_on_while_redis_is_down_and_the_queued_job_runs_after_its_restart(private_redis, client):
    study = build_study(per_annotator=4)
    queued = enqueue_job(kind="count", function=job_functions.count_to, params={"n": 3})
    assert get_queue().count == 1

    private_redis.stop()

    # A whole session, from the invitation to the completion code, with Redis gone.
    url = start_rating(client, study)
    assert client.get(url).status_code == 200
    annotator = Annotator.objects.get()
    while (assignment := current(annotator)) is not None:
        assert client.get(url).status_code == 200
        assert client.post(url, screen_form(annotator, assignment)).status_code == 302
    done = client.get(url)
    assert done.status_code == 200 and study.completion_code in done.content.decode()
    assert Rating.objects.count() == 4 * study.constructs.count()

    # Staff starting a job get a clear error, and no job row that would never run.
    with pytest.raises(QueueUnavailable, match="Redis does not answer"):
        enqueue_job(kind="refused", function=job_functions.count_to, params={"n": 1})
    assert not Job.objects.filter(kind="refused").exists()
    queued.refresh_from_db()
    assert queued.status == Job.Status.QUEUED

    private_redis.start()
    from rq import SimpleWorker

    queue = get_queue()
    assert queue.count == 1, "the queued job survived the restart in Redis's append-only file"
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    queued.refresh_from_db()
    assert queued.status == Job.Status.DONE and queued.result == {"counted": 3}


# -- (2) A worker killed mid-training ----------------------------------------------------------------------------


TINY_RUN = {
    "max_steps": 12,
    "batch_size": 8,
    "max_input_tokens": 64,
    "max_target_tokens": 64,
    "checkpoint_every": 2,
}


def start_worker(settings) -> subprocess.Popen:
    """`manage.py rqworker` as production starts it (forking a work-horse per job), on the test database."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "evalsite.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "EVALSITE_QUEUE": settings.EVALSITE_QUEUE,
        "EVALSITE_ARTIFACTS_DIR": str(settings.EVALSITE_ARTIFACTS_DIR),
    }
    command = [sys.executable, "manage.py", "rqworker", settings.EVALSITE_QUEUE]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(condition, *, timeout: float, what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the worker exited: {process.stderr.read().decode()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


def kill_worker_and_horse(worker: subprocess.Popen) -> None:
    """SIGKILL the worker, then the work-horse it forked (which sits in a process group of its own): the host
    is gone, nothing gets to record anything."""
    horses = psutil.Process(worker.pid).children(recursive=True)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    for horse in horses:
        horse.send_signal(signal.SIGKILL)
    psutil.wait_procs(horses, timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_training_is_marked_failed_and_the_retry_resumes_from_its_checkpoint(
    private_redis,
    settings,
    tmp_path,
    teacher_data,
):
    from rq import SimpleWorker

    settings.EVALSITE_ARTIFACTS_DIR = tmp_path / "artifacts"
    run = student_run_create(base_checkpoint="tiny", method="mt", training_data="unrevised", hyperparameters=TINY_RUN)
    params = {"run_id": run.pk, "evaluate": False}
    job = enqueue_job(kind="student_training", function=train_student, params=params, target=run)

    worker = start_worker(settings)
    try:
        wait_for(
            lambda: latest_checkpoint(student_output_dir(run)) is not None,
            timeout=150,
            what="a first checkpoint",
            process=worker,
        )
        kill_worker_and_horse(worker)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    checkpoint_at_kill = int(latest_checkpoint(student_output_dir(run)).name.removeprefix("step-"))
    assert 0 < checkpoint_at_kill < TINY_RUN["max_steps"], "killed mid-way"
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING, "a hard kill leaves the row claiming to run"

    # Within the grace period a silent job is left alone: a live one may just be between progress writes.
    assert jobs_mark_abandoned(older_than_s=120).abandoned == {}
    time.sleep(1.5)
    out = StringIO()
    call_command("check_jobs", "--older-than", "1", "--retry", stdout=out)

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.message.startswith("the worker running this job died")
    assert "no heartbeat from RQ worker" in job.message
    retry = Job.objects.exclude(pk=job.pk).get()
    assert f"Job {job.pk} marked failed" in out.getvalue()
    assert f"Job {job.pk} retried as job {retry.pk} (queued" in out.getvalue()
    assert (retry.function, retry.params, retry.target_id) == (job.function, job.params, job.target_id)

    queue = get_queue()
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    retry.refresh_from_db()
    assert retry.status == Job.Status.DONE, retry.error
    training = retry.result["training"]
    assert training["resumed_from"] == checkpoint_at_kill
    assert training["steps"] == TINY_RUN["max_steps"]
    run.refresh_from_db()
    assert run.status == StudentRun.Status.TRAINED and run.metrics["steps"] == TINY_RUN["max_steps"]

    # Checking again finds nothing new to retry: the dead job has its successor.
    again = StringIO()
    call_command("check_jobs", "--older-than", "1", "--retry", stdout=again)
    assert "retried" not in again.getvalue() and Job.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_killed_work_horse_is_marked_failed_at_once_from_what_rq_recorded(private_redis, settings):
    # The OOM killer takes the work-horse; the worker survives and tells RQ, but the job row could not.
    job = enqueue_job(kind="wait", function=job_functions.wait_for_cancel, params={"seconds": 60})
    worker = start_worker(settings)
    try:
        wait_for(lambda: Job.objects.get(pk=job.pk).done > 0, timeout=60, what="the job starting", process=worker)
        for horse in psutil.Process(worker.pid).children(recursive=True):
            horse.send_signal(signal.SIGKILL)
        from rq.job import Job as RQJob

        rq_job = RQJob.fetch(f"evalsite-job-{job.pk}", connection=get_queue().connection)
        wait_for(lambda: rq_job.get_status() == "failed", timeout=30, what="RQ recording the failure", process=worker)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    report = jobs_mark_abandoned(older_than_s=3600)  # no waiting: RQ's own record is proof enough
    job.refresh_from_db()
    assert list(report.abandoned) == [job.pk]
    assert job.status == Job.Status.FAILED and "as failed without an outcome" in job.message


@pytest.mark.django_db
def test_a_thread_job_without_progress_for_longer_than_the_limit_is_marked_failed(settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.REDIS_URL = ""
    silent, busy = (
        Job.objects.create(kind=kind, function="tests.job_functions.count_to", status="running", runner="thread")
        for kind in ("silent", "busy")
    )
    Job.objects.filter(pk=silent.pk).update(updated_at=timezone.now() - timedelta(minutes=11))

    report = jobs_mark_abandoned(older_than_s=600)

    assert list(report.abandoned) == [silent.pk]
    silent.refresh_from_db()
    busy.refresh_from_db()
    assert silent.status == Job.Status.FAILED and "no progress since" in silent.message
    assert busy.status == Job.Status.RUNNING


# -- (3) The database connection dropped during a submit ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_submit_whose_database_connection_drops_stores_nothing_and_its_retry_stores_each_rating_once(
    monkeypatch,
):
    import psycopg

    study = build_study(per_annotator=4)
    client = Client(raise_request_exception=False)  # as a browser sees it: a 500 page
    url = start_rating(client, study)
    client.get(url)
    annotator = Annotator.objects.get()
    assignment = current(annotator)
    form = screen_form(annotator, assignment, value=3)
    real_upsert = sessions._upsert_ratings
    db = connection.settings_dict
    dropped = []

    def upsert_then_lose_the_connection(annotator, assignment, answers):
        # Half the screen is written inside the request's transaction, then the server ends the connection
        # (as a failover or a restarted PostgreSQL would), and the rest of the writes fail on it.
        real_upsert(annotator, assignment, answers[:1])
        backend_pid = connection.connection.info.backend_pid
        with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])
        dropped.append(backend_pid)
        real_upsert(annotator, assignment, answers[1:])

    monkeypatch.setattr(sessions, "_upsert_ratings", upsert_then_lose_the_connection)
    failed = client.post(url, form)
    assert dropped, "the connection was dropped mid-submit"
    assert failed.status_code == 500
    assert Rating.objects.count() == 0, "the half-written screen was rolled back"
    assert current(annotator).pk == assignment.pk, "the screen is still the annotator's to submit"

    monkeypatch.setattr(sessions, "_upsert_ratings", real_upsert)
    assert client.post(url, form).status_code == 302
    ratings = Rating.objects.filter(annotator=annotator)
    assert ratings.count() == study.constructs.count()
    assert set(ratings.values_list("explanation_id", flat=True)) == {assignment.explanation_id}
    assert set(ratings.values_list("value", flat=True)) == {3}
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.COMPLETED
