"""Fill a study with ratings from simulated annotators (annotator, item and condition effects plus noise)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotations.jobs import studies as jobs
from annotations.models import Study
from evalsite.commands import run_job_with_progress


class Command(BaseCommand):
    help = "Simulated annotators go through the real session services, so dashboards and analyses have data."

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True)
        parser.add_argument("--count", type=int, default=20)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args, **options):
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"no study {options['study']!r}")
        if study.status != Study.Status.OPEN:
            raise CommandError(f"study {study.slug} is {study.status}; open it first")
        job = run_job_with_progress(
            kind="simulate_annotators",
            function=jobs.simulate_annotators,
            params={"study_id": study.pk, "count": options["count"], "seed": options["seed"]},
            quiet=options["quiet"],
        )
        self.stdout.write(f"{job.result['finished']} simulated annotators finished in {study.slug}.")
