"""Where and how long tasks run: on RQ when REDIS_URL is set, in-process otherwise, always on a Job row.

A job function is a plain function ``fn(*, progress, **params) -> dict | None`` registered with
:func:`job_function`; callers pass the function itself to :func:`enqueue_job` or :func:`run_in_foreground`,
and the row stores its dotted path, derived from the function. ``progress`` is a :class:`Progress` (here a
:class:`ProgressReporter`): call it with ``(done, total, stage=..., message=...)`` and ask
``progress.should_stop()`` between units of work; cancelling from the admin makes the next call raise
:class:`JobCancelled`, which ends the job as cancelled (work stored so far is kept, so it can resume).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import close_old_connections, connection, models, transaction
from django.utils import timezone

from evalsite.models import Job

logger = logging.getLogger(__name__)

# Progress writes are throttled so a fast loop does not turn into a database benchmark.
PROGRESS_WRITE_INTERVAL_S = 0.5


class QueueUnavailable(RuntimeError):
    """REDIS_URL is set but Redis does not answer: we refuse to run the job silently in-process."""


class JobCancelled(Exception):
    """Raised inside a job when a cancel was requested for it."""


EchoCallback = Callable[[int, int | None, str, str], None]
JobFunction = Callable[..., dict[str, Any] | None]


class Progress(Protocol):
    """What services that do long work are given: report ``done`` of ``total`` in a stage, and ask to stop."""

    def __call__(self, done: int, total: int | None = None, stage: str | None = None, message: str = "") -> None: ...

    def should_stop(self) -> bool: ...


class NoProgress:
    """A :class:`Progress` for callers that do not follow the work (tests, shells): reports nothing, never stops."""

    def __call__(self, done: int, total: int | None = None, stage: str | None = None, message: str = "") -> None:
        return None

    def should_stop(self) -> bool:
        return False


NO_PROGRESS = NoProgress()


class ProgressReporter:
    """The :class:`Progress` of a job: writes done/total/stage/message to its row (throttled), relays cancels."""

    def __init__(self, job_id: int, echo: EchoCallback | None = None) -> None:
        self.job_id = job_id
        self.echo = echo
        self._stage = ""
        self._last_write = 0.0
        self._cancel_seen = False
        self._latest: dict[str, Any] = {}

    def __call__(self, done: int, total: int | None = None, stage: str | None = None, message: str = "") -> None:
        stage_changed = stage is not None and stage != self._stage
        if stage is not None:
            self._stage = stage
        if self.echo is not None:
            self.echo(done, total, self._stage, message)
        self._latest = {
            "done": done,
            "total": max(total, done) if total is not None else None,
            "stage": self._stage[:120],
        }
        now = time.monotonic()
        finished_stage = total is not None and done >= total
        if not (stage_changed or finished_stage or now - self._last_write >= PROGRESS_WRITE_INTERVAL_S):
            return
        self._last_write = now
        fields: dict[str, Any] = {"done": done, "total": total, "stage": self._stage[:120]}
        if message:
            fields["message"] = message
        if stage_changed:
            fields["stage_started_at"] = timezone.now()
            fields["stage_started_done"] = done
        if total is not None and done > total:
            fields["total"] = done
        Job.objects.filter(pk=self.job_id).update(updated_at=timezone.now(), **fields)
        self._raise_if_cancelled()

    def flush(self) -> None:
        """Write the latest progress that throttling held back (before the job is marked finished)."""
        if self._latest:
            Job.objects.filter(pk=self.job_id).update(**self._latest)

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancel_seen and now - self._last_write >= PROGRESS_WRITE_INTERVAL_S:
            self._last_write = now
            self._cancel_seen = Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self._cancel_seen

    def _raise_if_cancelled(self) -> None:
        if Job.objects.filter(pk=self.job_id, cancel_requested=True).exists():
            self._cancel_seen = True
            raise JobCancelled(f"job {self.job_id} was cancelled")


# Dotted path -> job function. Filled by @job_function as job modules are imported.
_JOB_FUNCTIONS: dict[str, JobFunction] = {}


def _dotted_path(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def job_function(function: JobFunction) -> JobFunction:
    """Register a job function under its dotted path, so it can be enqueued by passing the function."""
    if "<" in function.__qualname__:
        raise TypeError(f"{_dotted_path(function)}: a job function must be defined at module level")
    _JOB_FUNCTIONS[_dotted_path(function)] = function
    return function


def job_path(function: JobFunction) -> str:
    """The dotted path a Job row stores for a registered job function."""
    path = _dotted_path(function)
    if _JOB_FUNCTIONS.get(path) is not function:
        raise ValueError(f"{path} is not a registered job function: decorate it with @job_function")
    return path


def resolve_function(dotted_path: str) -> JobFunction:
    """The registered job function a Job row names (importing its module registers it); nothing else runs."""
    module_path, _, _ = dotted_path.rpartition(".")
    try:
        importlib.import_module(module_path)
    except ImportError as exc:
        raise LookupError(f"no job function {dotted_path}: {exc}") from exc
    if dotted_path not in _JOB_FUNCTIONS:
        raise LookupError(f"{dotted_path} is not a registered job function")
    return _JOB_FUNCTIONS[dotted_path]


def registered_jobs() -> dict[str, JobFunction]:
    """Every job function of the installed apps (their ``jobs`` modules are imported), by dotted path."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("jobs")
    return dict(sorted(_JOB_FUNCTIONS.items()))


def create_job(
    *,
    kind: str,
    function: JobFunction,
    params: dict[str, Any] | None = None,
    target: models.Model | None = None,
    user: Any = None,
    runner: str = Job.Runner.FOREGROUND,
) -> Job:
    job = Job(kind=kind, function=job_path(function), params=params or {}, runner=runner)
    if target is not None:
        job.target_type = ContentType.objects.get_for_model(target)
        job.target_id = str(target.pk)
    if user is not None and getattr(user, "is_authenticated", False):
        job.created_by = user
    job.full_clean()
    job.save()
    return job


def execute_job(job_id: int, echo: EchoCallback | None = None, raise_errors: bool = False) -> Job:
    """Run a job row's function. The RQ entry point, and what the other runners call too."""
    job = Job.objects.get(pk=job_id)
    if job.status not in Job.ACTIVE_STATUSES:
        logger.info("job %s is %s; not running it again", job_id, job.status)
        return job
    if job.cancel_requested:
        _finish(job, Job.Status.CANCELLED, message="cancelled before it started")
        return job
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.RUNNING, started_at=now, stage_started_at=now, error="", updated_at=now
    )
    reporter = ProgressReporter(job.pk, echo=echo)
    try:
        result = resolve_function(job.function)(progress=reporter, **job.params)
    except JobCancelled:
        reporter.flush()
        job.refresh_from_db()
        _finish(job, Job.Status.CANCELLED, message="cancelled; work stored so far is kept")
        return job
    except BaseException as exc:
        reporter.flush()
        job.refresh_from_db()
        _finish(job, Job.Status.FAILED, error=traceback.format_exc(), message=f"{type(exc).__name__}: {exc}")
        if not raise_errors:  # in the foreground the caller reports it; the traceback is on the row either way
            logger.exception("job %s (%s) failed", job.pk, job.kind)
        if raise_errors or not isinstance(exc, Exception):
            raise
        return job
    reporter.flush()
    job.refresh_from_db()
    _finish(job, Job.Status.DONE, result=result if isinstance(result, dict) else None)
    return job


def _finish(job: Job, status: str, *, error: str = "", message: str = "", result: dict | None = None) -> None:
    job.status = status
    job.finished_at = timezone.now()
    job.error = error
    if message:
        job.message = message[:2000]
    if result is not None:
        job.result = result
    if status == Job.Status.DONE and job.total is not None:
        job.done = job.total
    job.save()


def redis_connection():
    from redis import Redis

    return Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=10)


def get_queue():
    from rq import Queue

    return Queue(settings.EVALSITE_QUEUE, connection=redis_connection(), default_timeout=24 * 3600)


def assert_queue_available() -> None:
    from redis.exceptions import RedisError

    try:
        redis_connection().ping()
    except RedisError as exc:
        raise QueueUnavailable(
            f"REDIS_URL is set ({settings.REDIS_URL}) but Redis does not answer: {exc}. Start Redis, "
            "or unset REDIS_URL to run jobs in-process."
        ) from exc


def enqueue_job(
    *,
    kind: str,
    function: JobFunction,
    params: dict[str, Any] | None = None,
    target: models.Model | None = None,
    user: Any = None,
) -> Job:
    """Start a job without blocking the caller: on RQ with REDIS_URL, else in a background thread.

    The job starts after the surrounding transaction commits, so it sees the rows that made it.
    """
    if settings.REDIS_URL:
        assert_queue_available()
        job = create_job(kind=kind, function=function, params=params, target=target, user=user, runner=Job.Runner.RQ)
        transaction.on_commit(lambda: _push_to_rq(job))
    else:
        job = create_job(
            kind=kind, function=function, params=params, target=target, user=user, runner=Job.Runner.THREAD
        )
        transaction.on_commit(lambda: _start_thread(job.pk))
    return job


def _push_to_rq(job: Job) -> None:
    rq_job = get_queue().enqueue(execute_job, job.pk, job_id=f"evalsite-job-{job.pk}", result_ttl=7 * 24 * 3600)
    Job.objects.filter(pk=job.pk).update(rq_job_id=rq_job.id)


def _thread_main(job_id: int) -> None:
    close_old_connections()
    try:
        execute_job(job_id)
    finally:
        connection.close()


def _start_thread(job_id: int) -> threading.Thread:
    thread = threading.Thread(target=_thread_main, args=(job_id,), name=f"evalsite-job-{job_id}", daemon=True)
    thread.start()
    return thread


def run_in_foreground(
    *,
    kind: str,
    function: JobFunction,
    params: dict[str, Any] | None = None,
    target: models.Model | None = None,
    echo: EchoCallback | None = None,
) -> Job:
    """Run a job in this process now (management commands), recorded on a Job row like any other."""
    job = create_job(kind=kind, function=function, params=params, target=target, runner=Job.Runner.FOREGROUND)
    return execute_job(job.pk, echo=echo, raise_errors=True)


def request_cancel(job: Job) -> bool:
    """Ask a job to stop; a queued job that never started is cancelled at once. Returns whether it was active."""
    if not job.is_active:
        return False
    Job.objects.filter(pk=job.pk).update(cancel_requested=True, updated_at=timezone.now())
    if job.status == Job.Status.QUEUED and job.runner == Job.Runner.RQ and job.rq_job_id and settings.REDIS_URL:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job as RQJob

        with contextlib.suppress(NoSuchJobError):
            RQJob.fetch(job.rq_job_id, connection=redis_connection()).cancel()
        Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
            status=Job.Status.CANCELLED, finished_at=timezone.now(), message="cancelled before it started"
        )
    return True
