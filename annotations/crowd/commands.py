"""What the crowd management commands share: finding batches, printing costs, running crowd jobs."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from annotations.crowd.costs import CostBreakdown
from annotations.crowd.jobs import JOB_FUNCTIONS
from annotations.crowd.providers import CrowdPlatformError
from annotations.crowd.services import crowd_batch_enqueue
from annotations.models import CrowdBatch, Study
from evalsite.commands import run_job_with_progress
from evalsite.models import Job


def add_batch_arguments(parser) -> None:
    parser.add_argument("--study", help="Every batch of this study on the platform that is not a draft.")
    parser.add_argument("--batch", type=int, help="One batch, by id.")
    parser.add_argument("--enqueue", action="store_true", help="Run in the background (RQ) instead of here.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")


def batches_for(options: dict[str, Any], *, platforms: tuple[str, ...]) -> list[CrowdBatch]:
    queryset = CrowdBatch.objects.filter(platform__in=platforms).select_related("study").order_by("id")
    if options.get("batch"):
        batches = list(queryset.filter(pk=options["batch"]))
        if not batches:
            raise CommandError(f"no {'/'.join(platforms)} batch #{options['batch']}")
        return batches
    if options.get("study"):
        study = study_for(options["study"])
        batches = list(queryset.filter(study=study).exclude(status=CrowdBatch.Status.DRAFT))
        if not batches:
            raise CommandError(f"study {study.slug!r} has no launched {'/'.join(platforms)} batch")
        return batches
    raise CommandError("name a --batch or a --study")


def study_for(slug: str) -> Study:
    study = Study.objects.filter(slug=slug).first()
    if study is None:
        raise CommandError(f"no study {slug!r}")
    return study


def cost_lines(cost: CostBreakdown) -> list[str]:
    return [
        f"reward per assignment  ${cost.reward}",
        f"assignments            {cost.assignments}",
        f"rewards                ${cost.rewards}",
        f"fee on rewards ({cost.fee_rate})  ${cost.reward_fees}",
        f"planned bonuses        ${cost.bonuses}",
        f"fee on bonuses ({cost.bonus_fee_rate})  ${cost.bonus_fees}",
        f"total                  ${cost.total}",
    ]


def run_crowd_job(
    *, batch: CrowdBatch, action: str, params: dict[str, Any] | None = None, options: dict[str, Any], stdout
) -> Job:
    """Run a crowd job in the foreground with a progress bar, or enqueue it with --enqueue."""
    if options.get("enqueue"):
        job = crowd_batch_enqueue(batch=batch, action=action, params=params)
        stdout.write(f"batch #{batch.pk}: {action} queued as job #{job.pk}")
        return job
    job = run_job_with_progress(
        kind=f"crowd_{action}",
        function=JOB_FUNCTIONS[action],
        params={"batch_id": batch.pk, **(params or {})},
        quiet=bool(options.get("quiet")),
        expected=(CrowdPlatformError,),
    )
    stdout.write(f"batch #{batch.pk}: {action} {job.status}: {job.result}")
    return job
