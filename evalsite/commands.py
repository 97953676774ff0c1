"""Helpers that management commands share: running a job in the foreground with a progress bar."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from evalsite.cli import StageProgressBar
from evalsite.jobs import QueueUnavailable, enqueue_job, run_in_foreground
from evalsite.models import Job


def run_job_with_progress(
    *, kind: str, function: str, params: dict[str, Any], quiet: bool = False, expected: tuple = ()
) -> Job:
    """Run a job now with a progress bar; turn expected errors into CommandError with their message."""
    with StageProgressBar(disable=quiet) as bar:
        try:
            return run_in_foreground(kind=kind, function=function, params=params, echo=bar)
        except expected as exc:
            raise CommandError(str(exc)) from exc


def enqueue_or_fail(*, kind: str, function: str, params: dict[str, Any], target=None) -> Job:
    """Queue a job for a worker; a Redis that does not answer is the command's error, not a silent fallback."""
    try:
        return enqueue_job(kind=kind, function=function, params=params, target=target)
    except QueueUnavailable as exc:
        raise CommandError(str(exc)) from exc
