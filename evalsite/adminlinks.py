"""Links in the admin from a message or a field to the jobs and objects it names."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.contenttypes.models import ContentType
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from evalsite.models import Job


def job_url(job: Job) -> str:
    return reverse("admin:evalsite_job_change", args=[job.pk])


def jobs_started_message(jobs: Iterable[Job]) -> SafeString:
    """'Started job 16 (student_training)', each job a link to its page."""
    jobs = list(jobs)
    links = format_html_join(", ", '<a href="{}">job {}</a> ({})', ((job_url(job), job.pk, job.kind) for job in jobs))
    return format_html("Started {}; its page shows progress and the result.", links)


def admin_url_for(content_type: ContentType | None, object_id: str) -> str | None:
    """The admin change page of an object, or None where the admin does not show its model."""
    if content_type is None or not object_id:
        return None
    try:
        return reverse(f"admin:{content_type.app_label}_{content_type.model}_change", args=[object_id])
    except NoReverseMatch:
        return None
