"""Write a trained student's explanations into a study, as one condition (batched inference)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotations.jobs import explanations as jobs
from annotations.models import Study
from annotations.services.explanations import explanations_generate_enqueue
from distillation.models import StudentRun
from evalsite.commands import enqueue_or_fail, run_job_with_progress


class Command(BaseCommand):
    help = "Generate a student's explanations for a split and make them a study condition."

    def add_arguments(self, parser):
        parser.add_argument("run_id", type=int)
        parser.add_argument("--split", default="validation")
        parser.add_argument("--study", required=True, help="Study slug (create it first with create_study).")
        parser.add_argument("--condition", help="Condition label (default: the run's, e.g. MT+CF:Revised).")
        parser.add_argument("--limit", type=int, help="Only the first N questions of the split.")
        parser.add_argument("--enqueue", action="store_true")
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args, **options):
        run = StudentRun.objects.filter(pk=options["run_id"]).first()
        if run is None:
            raise CommandError(f"no student run {options['run_id']}")
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"no study {options['study']!r}")
        params = {
            "run_id": run.pk,
            "study_slug": options["study"],
            "condition": options["condition"] or run.condition_label,
            "split": options["split"],
            "limit": options["limit"],
        }
        if options["enqueue"]:
            job = enqueue_or_fail(
                explanations_generate_enqueue,
                run=run,
                study=study,
                condition_label=params["condition"],
                split=params["split"],
                limit=params["limit"],
            )
            self.stdout.write(f"Queued job {job.pk}.")
            return
        job = run_job_with_progress(
            kind="generate_explanations",
            function=jobs.generate_explanations,
            params=params,
            quiet=options["quiet"],
            expected=(ValueError, OSError),
        )
        counts = job.result
        self.stdout.write(
            f"{params['condition']} in {options['study']}: {counts['created']} new, {counts['new_version']} new "
            f"versions (rated ones kept), {counts['updated']} updated, {counts['unchanged']} unchanged."
        )
