"""Helpers that management commands share: running a job in the foreground with a progress bar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError

from evalsite.cli import StageProgressBar
from evalsite.jobs import JobFunction, QueueUnavailable, run_in_foreground
from evalsite.models import Job


def run_job_with_progress(
    *, kind: str, function: JobFunction, params: dict[str, Any], quiet: bool = False, expected: tuple = ()
) -> Job:
    """Run a job now with a progress bar; turn expected errors into CommandError with their message."""
    with StageProgressBar(disable=quiet) as bar:
        try:
            return run_in_foreground(kind=kind, function=function, params=params, echo=bar)
        except expected as exc:
            raise CommandError(str(exc)) from exc


def enqueue_or_fail(enqueue: Callable[..., Job], /, **arguments: Any) -> Job:
    """Call a service that queues a job; a Redis that does not answer is the command's error, not a fallback."""
    try:
        return enqueue(**arguments)
    except QueueUnavailable as exc:
        raise CommandError(str(exc)) from exc
