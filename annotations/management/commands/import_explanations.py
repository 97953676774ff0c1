"""Import one condition's explanations of a study from a CSV file (e.g. a student's outputs)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotations.jobs import studies as jobs
from annotations.models import Study
from evalsite.commands import run_job_with_progress
from evalsite.errors import DataFileError


class Command(BaseCommand):
    help = "Import explanations for one condition; rated explanations are kept and new text becomes a new version."

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--condition", required=True, help="Condition label, e.g. MT+CF:Revised.")
        parser.add_argument("--csv", required=True, help="The CSV file.")
        parser.add_argument("--item-column", required=True, help="Column naming the item (an id, or the input text).")
        parser.add_argument("--text-column", required=True, help="Column with the explanation.")
        parser.add_argument(
            "--question-column", help="Column with 'Question: ... Choices: (a) ...' (default: the item column)."
        )
        parser.add_argument("--answer-column", help="Column with the correct answer.")
        parser.add_argument("--prediction-column", help="Column with the model's predicted answer.")
        parser.add_argument(
            "--allow-unmatched",
            action="store_true",
            help="Keep rows that match no stored question, with the file's own text and answer.",
        )
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args, **options):
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"no study {options['study']!r}")
        columns = {
            key: options[key]
            for key in ("item_column", "text_column", "question_column", "answer_column", "prediction_column")
            if options[key]
        }
        job = run_job_with_progress(
            kind="import_explanations",
            function=jobs.import_explanations,
            params={
                "study_id": study.pk,
                "condition_label": options["condition"],
                "path": options["csv"],
                "allow_unmatched": options["allow_unmatched"],
                **columns,
            },
            quiet=options["quiet"],
            expected=(DataFileError,),
        )
        counts = job.result
        self.stdout.write(
            f"{options['condition']}: {counts['created']} new, {counts['new_version']} new versions, "
            f"{counts['updated']} updated, {counts['unchanged']} unchanged."
        )
