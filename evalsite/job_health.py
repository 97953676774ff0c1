"""Finding jobs whose worker died, and starting them again.

A job that raises is recorded as failed by `evalsite.jobs.execute_job`. A job whose process dies outright
(SIGKILL, the OOM killer, a lost host, a web process restarted under a background thread) records nothing:
its row stays "running" for ever. `jobs_mark_abandoned` finds those rows and marks them failed, so the admin
tells the truth and `job_retry` can start them again; jobs resume from what they stored (teacher generation
skips stored outputs, training resumes from its last checkpoint).

A running job counts as alive while it shows a sign of life within ``older_than_s``: a progress write
(``Job.updated_at``) or, on RQ, a heartbeat of the worker holding it. A forking RQ worker heartbeats every
``job_monitoring_interval`` (30 s by default) while its work-horse runs, so ``older_than_s`` must be well
above that. Some signs of death need no waiting: RQ says the job failed or stopped (its work-horse was
killed and the worker noticed), the RQ job is gone from Redis, or the worker that took it is gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from evalsite.jobs import QueueUnavailable, enqueue_job, redis_connection, resolve_function, run_in_foreground
from evalsite.models import Job

logger = logging.getLogger(__name__)

# The prefix of every abandoned job's message: `jobs_to_retry` finds them by it.
ABANDONED_PREFIX = "the worker running this job died"


@dataclass
class HealthReport:
    """What one check found: jobs marked failed (id -> why) and RQ jobs it could not check (Redis down)."""

    abandoned: dict[int, str] = field(default_factory=dict)
    unchecked: list[int] = field(default_factory=list)
    unchecked_reason: str = ""


def jobs_mark_abandoned(*, older_than_s: float) -> HealthReport:
    """Mark running jobs failed when nothing runs them any more; see the module docstring for the rules."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    report = HealthReport()
    running = list(Job.objects.filter(status=Job.Status.RUNNING).order_by("pk"))
    rq_jobs = [job for job in running if job.runner == Job.Runner.RQ]
    local_jobs = [job for job in running if job.runner != Job.Runner.RQ]

    for job in local_jobs:
        # A thread or foreground command has no heartbeat but its progress writes.
        if job.updated_at < cutoff:
            _mark(job, f"no progress since {_when(job.updated_at)} (a {job.get_runner_display()})", cutoff, report)

    if rq_jobs:
        try:
            connection = _checked_redis()
        except QueueUnavailable as exc:
            # Without Redis we cannot tell a dead worker from a live one cut off from us: leave them be.
            report.unchecked = [job.pk for job in rq_jobs]
            report.unchecked_reason = str(exc)
            return report
        for job in rq_jobs:
            reason, definitive = _rq_verdict(job, cutoff, connection)
            if reason:
                _mark(job, reason, None if definitive else cutoff, report)
    return report


def _checked_redis():
    from redis.exceptions import RedisError

    if not settings.REDIS_URL:
        raise QueueUnavailable("REDIS_URL is not set, so jobs that ran on RQ workers cannot be checked")
    connection = redis_connection()
    try:
        connection.ping()
    except RedisError as exc:
        raise QueueUnavailable(f"Redis at {settings.REDIS_URL} does not answer: {exc}") from exc
    return connection


def _rq_verdict(job: Job, cutoff: datetime, connection) -> tuple[str, bool]:
    """Why an RQ job is abandoned ("" when it may be alive), and whether that holds however recent its progress."""
    from rq import Worker
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob
    from rq.job import JobStatus

    # The row is marked running by the worker before `_push_to_rq` may have written the id; the id is fixed.
    rq_job_id = job.rq_job_id or f"evalsite-job-{job.pk}"
    try:
        rq_job = RQJob.fetch(rq_job_id, connection=connection)
    except NoSuchJobError:
        return f"its RQ job {rq_job_id} is no longer in Redis", True
    status = rq_job.get_status(refresh=False)
    if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED, JobStatus.FINISHED):
        # The worker noticed its work-horse die (or finished it) but the job never recorded an outcome.
        return f"RQ reports its RQ job {rq_job_id} as {status.value} without an outcome recorded here", True
    if status != JobStatus.STARTED:
        return "", False
    worker = None
    if rq_job.worker_name:
        worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + rq_job.worker_name, connection=connection)
    if worker is None:
        return f"its RQ worker {rq_job.worker_name or '(unknown)'} is gone", True
    heartbeat = worker.last_heartbeat
    if job.updated_at >= cutoff or (heartbeat is not None and heartbeat >= cutoff):
        return "", False
    return (
        f"no progress since {_when(job.updated_at)} and no heartbeat from RQ worker {worker.name} "
        f"since {_when(heartbeat)}",
        False,
    )


def _mark(job: Job, reason: str, cutoff: datetime | None, report: HealthReport) -> None:
    message = f"{ABANDONED_PREFIX}: {reason}. Retry it (manage.py check_jobs --retry); it resumes from what it stored."
    rows = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING)
    if cutoff is not None:
        rows = rows.filter(updated_at__lt=cutoff)  # it may have reported progress since we looked
    now = timezone.now()
    if rows.update(status=Job.Status.FAILED, finished_at=now, updated_at=now, message=message, error=message):
        logger.warning("job %s (%s) marked failed: %s", job.pk, job.kind, reason)
        report.abandoned[job.pk] = reason


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "never"


def jobs_to_retry() -> list[Job]:
    """Abandoned jobs that no later job with the same function and parameters has taken over.

    Only the latest attempt counts, so running the check twice, or after a retry that died too, never starts
    the same work twice.
    """
    abandoned = Job.objects.filter(status=Job.Status.FAILED, message__startswith=ABANDONED_PREFIX).order_by("pk")
    return [job for job in abandoned if not _has_later_attempt(job)]


def _has_later_attempt(job: Job) -> bool:
    return Job.objects.filter(function=job.function, params=job.params, pk__gt=job.pk).exists()


def job_retry(*, job: Job, foreground_echo: Any = None) -> Job:
    """Start a failed or cancelled job again with the same parameters, as a new job row.

    With REDIS_URL it is queued for a worker; without, it runs here and now, since a command's background
    thread would die with the command.
    """
    if job.is_active:
        raise ValueError(f"job {job.pk} is {job.status}; only a finished job can be retried")
    if job.status == Job.Status.DONE:
        raise ValueError(f"job {job.pk} is done; there is nothing to retry")
    function = resolve_function(job.function)
    arguments = {"kind": job.kind, "function": function, "params": job.params, "target": job.target}
    if settings.REDIS_URL:
        return enqueue_job(**arguments, user=job.created_by)
    return run_in_foreground(**arguments, echo=foreground_echo)
