"""Write teacher outputs in the import format (JSONL, optionally gzipped), so data moves between machines."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from distillation.models import TeacherOutput, TeacherRun

FIELD_FOR_KIND = {
    "rationale": "rationale",
    "negative_rationale": "negative_rationale",
    "critique": "critique",
    "revision": "revision",
}


class Command(BaseCommand):
    help = "Export a teacher run's outputs in the format import_teacher_outputs reads."

    def add_arguments(self, parser):
        parser.add_argument("--run", type=int, help="Teacher run id (default: the latest).")
        parser.add_argument("--format", default="jsonl", choices=["jsonl"])
        parser.add_argument("--out", help="Output file; .gz compresses. Default: standard output.")
        parser.add_argument("--quiet", action="store_true", help="No summary line.")

    def handle(self, *args, **options):
        run = TeacherRun.objects.filter(pk=options["run"]).first() if options["run"] else TeacherRun.objects.first()
        if run is None:
            raise CommandError("no such teacher run")
        rows = self._rows(run)
        out = options["out"]
        if out:
            opener = gzip.open if out.endswith(".gz") else open
            with opener(Path(out), "wt", encoding="utf-8") as handle:
                self._write(handle, rows)
            if not options["quiet"]:
                self.stdout.write(f"Wrote {len(rows)} questions of teacher run {run.pk} to {out}.")
        else:
            self._write(sys.stdout if self.stdout is None else self.stdout, rows)

    def _rows(self, run: TeacherRun) -> list[dict]:
        rows: dict[int, dict] = {}
        outputs = TeacherOutput.objects.filter(run=run).select_related("question").order_by("question_id")
        for output in outputs.iterator(chunk_size=2000):
            question = output.question
            row = rows.setdefault(
                question.pk,
                {
                    "id": question.source_id,
                    "question": question.question,
                    "choices": question.choices,
                    "answer": question.answer,
                    **dict.fromkeys(FIELD_FOR_KIND.values()),
                    "counterfactual_rationales": [None] * len(question.choices),
                },
            )
            if output.kind == "counterfactual":
                row["counterfactual_rationales"][output.choice_index] = output.text
            else:
                row[FIELD_FOR_KIND[output.kind]] = output.text
        return list(rows.values())

    def _write(self, handle, rows: list[dict]) -> None:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
