"""Pre-train the demo student's base model (the MiniLM-L6 warm start) once, and print its path."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from distillation import jobs
from distillation.services.students import default_teacher_run
from evalsite.commands import run_job_with_progress


class Command(BaseCommand):
    help = (
        "Build the demo student's base model from the training split's questions and teacher rationales, under "
        "var/demo-students/; a rerun with the same data reuses it. Pass the printed path to train_student --student."
    )

    def add_arguments(self, parser):
        parser.add_argument("--teacher", help="Teacher name whose training-split outputs to read (default: newest).")
        parser.add_argument("--limit", type=int, help="Only the first N training questions.")
        parser.add_argument("--steps", type=int, help="Pre-training steps (default 720).")
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args, **options):
        teacher_run = default_teacher_run(teacher_name=options["teacher"])
        if teacher_run is None:
            raise CommandError("no teacher run with training rationales: import or generate teacher outputs first")
        job = run_job_with_progress(
            kind="demo_student_base",
            function=jobs.build_demo_student,
            params={"teacher_run_id": teacher_run.pk, "limit": options["limit"], "steps": options["steps"]},
            quiet=options["quiet"],
            expected=(ValueError,),
        )
        self.stdout.write(job.result["path"])
