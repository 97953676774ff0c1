"""Score a file of student predictions by exact match, the paper's accuracy: ``exact match: 76.49% (934 of 1221)``."""

from __future__ import annotations

import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Exact-match accuracy of a predictions CSV (e.g. the paper's students/*.csv)."

    def add_arguments(self, parser):
        parser.add_argument("--csv", required=True, dest="path", help="A CSV with a prediction and a label column.")
        parser.add_argument("--pred-column", default="answers_preds")
        parser.add_argument("--label-column", default="answers_labels")

    def handle(self, *args, **options):
        from distillation.ml.answers import exact_match_accuracy

        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        wanted = [options["pred_column"], options["label_column"]]
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in wanted if column not in (reader.fieldnames or [])]
            if missing:
                raise CommandError(
                    f"{path}: no column {', '.join(missing)}; it has {', '.join(reader.fieldnames or []) or 'none'}"
                )
            pairs = [(row[wanted[0]] or "", row[wanted[1]] or "") for row in reader]
        if not pairs:
            raise CommandError(f"{path}: no rows to score")
        correct, total = exact_match_accuracy(pairs)
        self.stdout.write(f"exact match: {100 * correct / total:.2f}% ({correct} of {total})")
