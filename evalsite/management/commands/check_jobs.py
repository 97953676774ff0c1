"""Mark running jobs whose worker died as failed, and optionally start them again (run it from cron)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from evalsite.job_health import job_retry, jobs_mark_abandoned, jobs_to_retry
from evalsite.jobs import QueueUnavailable
from evalsite.models import Job

DEFAULT_OLDER_THAN_S = 600


class Command(BaseCommand):
    help = (
        "Find running jobs that nothing runs any more (worker killed, host lost), mark them failed, and with "
        "--retry start them again with the same parameters; they resume from what they stored."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=float,
            default=DEFAULT_OLDER_THAN_S,
            metavar="SECONDS",
            help="A job with neither progress nor a worker heartbeat for this long is dead "
            f"(default {DEFAULT_OLDER_THAN_S}; keep it well above RQ's 30 s heartbeat interval).",
        )
        parser.add_argument("--retry", action="store_true", help="Start every abandoned job again.")
        parser.add_argument(
            "--retry-job", type=int, action="append", default=[], metavar="JOB_ID", help="Start this failed job again."
        )

    def handle(self, *args, **options):
        report = jobs_mark_abandoned(older_than_s=options["older_than"])
        for job_id, reason in report.abandoned.items():
            self.stdout.write(f"Job {job_id} marked failed: {reason}.")
        if report.unchecked:
            ids = ", ".join(str(pk) for pk in report.unchecked)
            self.stderr.write(f"Could not check RQ jobs {ids}: {report.unchecked_reason}")
        if not report.abandoned and not report.unchecked:
            self.stdout.write("No abandoned jobs.")

        to_retry = jobs_to_retry() if options["retry"] else []
        for job_id in options["retry_job"]:
            job = Job.objects.filter(pk=job_id).first()
            if job is None:
                raise CommandError(f"no job {job_id}")
            to_retry.append(job)
        for job in to_retry:
            try:
                new = job_retry(job=job)
            except (ValueError, QueueUnavailable) as exc:
                raise CommandError(f"job {job.pk}: {exc}") from exc
            verb = "queued" if new.runner == Job.Runner.RQ else "ran"
            self.stdout.write(f"Job {job.pk} retried as job {new.pk} ({verb}, {new.status}).")
