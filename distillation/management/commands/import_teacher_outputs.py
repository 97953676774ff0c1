"""Import a file of teacher outputs (plain or gzipped JSONL) and tie each output to its question."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from distillation import jobs
from evalsite.commands import run_job_with_progress
from evalsite.errors import DataFileError


class Command(BaseCommand):
    help = "Import teacher rationales, critiques, revisions and counterfactual rationales. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--path",
            required=True,
            help="A teacher-output file (.jsonl or .jsonl.gz), or a save_to_disk folder of the paper's layout "
            "(llm_outputs/consolidated/cqa-llama-train of its repository).",
        )
        parser.add_argument("--teacher", required=True, help="Name of the teacher that wrote it, e.g. llama2-13b.")
        parser.add_argument("--dataset", default="cqa")
        parser.add_argument("--quiet", action="store_true", help="No progress bar.")

    def handle(self, *args, **options):
        job = run_job_with_progress(
            kind="import_teacher_outputs",
            function=jobs.import_teacher_outputs,
            params={
                "path": options["path"],
                "teacher_name": options["teacher"],
                "dataset_slug": options["dataset"],
            },
            quiet=options["quiet"],
            expected=(DataFileError,),
        )
        result = job.result
        self.stdout.write(
            f"{result['questions']} questions ({', '.join(result['splits'])}) from teacher {result['teacher']}: "
            f"{result['created']} outputs stored; {result['truncated_revisions']} revisions look truncated "
            "(they end mid-sentence)."
        )
