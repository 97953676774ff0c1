"""Crowd jobs: load the batch by id and call the service, reporting progress on the job row."""

from __future__ import annotations

from typing import Any

from annotations.crowd import services
from annotations.models import CrowdBatch
from evalsite.jobs import job_function


@job_function
def launch_batch(*, progress, batch_id: int) -> dict[str, Any]:
    batch = services.crowd_batch_launch(batch=CrowdBatch.objects.get(pk=batch_id), progress=progress)
    return {"status": str(batch.status), "tasks": list(batch.tasks.values_list("external_id", flat=True))}


@job_function
def sync_batch(*, progress, batch_id: int) -> dict[str, Any]:
    return services.crowd_batch_sync(batch=CrowdBatch.objects.get(pk=batch_id), progress=progress)


@job_function
def review_batch(
    *,
    progress,
    batch_id: int,
    approve_passing: bool = False,
    reject_failing: bool = False,
    approve_feedback: str = "",
    reject_feedback: str = "",
    category: str = "",
) -> dict[str, Any]:
    return services.raise_if_failed(
        services.crowd_batch_review(
            batch=CrowdBatch.objects.get(pk=batch_id),
            approve_passing=approve_passing,
            reject_failing=reject_failing,
            approve_feedback=approve_feedback,
            reject_feedback=reject_feedback,
            category=category,
            progress=progress,
        )
    )


@job_function
def act_on_submissions(
    *,
    progress,
    batch_id: int,
    submission_ids: list[int],
    action: str,
    feedback: str = "",
    category: str = "",
    amount_cents: int = 0,
) -> dict[str, Any]:
    batch = CrowdBatch.objects.get(pk=batch_id)
    submissions = batch.submissions.filter(pk__in=submission_ids).select_related("batch").order_by("id")
    return services.raise_if_failed(
        services.crowd_submissions_act(
            submissions=submissions,
            action=action,
            feedback=feedback,
            category=category,
            amount_cents=amount_cents,
            progress=progress,
        )
    )


@job_function
def expire_batch(*, progress, batch_id: int) -> dict[str, Any]:
    progress(0, 1, stage="expiring")
    batch = services.crowd_batch_expire(batch=CrowdBatch.objects.get(pk=batch_id))
    progress(1, 1, stage="expiring")
    return {"status": str(batch.status)}


@job_function
def notify_workers(
    *, progress, batch_id: int, subject: str, message: str, worker_ids: list[str] | None = None
) -> dict[str, Any]:
    progress(0, None, stage="notifying")
    sent = services.crowd_batch_notify(
        batch=CrowdBatch.objects.get(pk=batch_id), subject=subject, message=message, worker_ids=worker_ids
    )
    return {"notified": sent}


@job_function
def refill_batch(*, progress, batch_id: int) -> dict[str, Any]:
    progress(0, None, stage="adding places")
    return services.crowd_batch_refill(batch=CrowdBatch.objects.get(pk=batch_id))


@job_function
def pause_batch(*, progress, batch_id: int) -> dict[str, Any]:
    return {"status": str(services.crowd_batch_pause(batch=CrowdBatch.objects.get(pk=batch_id)).status)}


@job_function
def resume_batch(*, progress, batch_id: int) -> dict[str, Any]:
    return {"status": str(services.crowd_batch_resume(batch=CrowdBatch.objects.get(pk=batch_id)).status)}


# What crowd_batch_enqueue and the crowd commands run for each action.
JOB_FUNCTIONS = {
    "launch": launch_batch,
    "refill": refill_batch,
    "pause": pause_batch,
    "resume": resume_batch,
    "sync": sync_batch,
    "review": review_batch,
    "act": act_on_submissions,
    "expire": expire_batch,
    "notify": notify_workers,
}
