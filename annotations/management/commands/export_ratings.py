"""Export a study's ratings as a tidy table with condition, student run, prompt version and demographics."""

from __future__ import annotations

import io

from django.core.management.base import BaseCommand, CommandError

from annotations.models import Study
from annotations.services import analysis


class Command(BaseCommand):
    help = "Write a study's ratings from completed screens, one row per rating, as csv, parquet or jsonl."

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument("--format", choices=analysis.EXPORT_FORMATS, default="csv")
        parser.add_argument("--out", help="File to write (default: standard output; parquet needs a file).")

    def handle(self, *args, **options):
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"no study {options['study']!r}")
        fmt, out = options["format"], options["out"]
        if out is None and fmt == "parquet":
            raise CommandError("parquet is binary: give --out FILE")
        if out:
            rows = analysis.ratings_export(study=study, fmt=fmt, destination=out)
            self.stdout.write(f"{rows} ratings of {study.slug} written to {out}")
            return
        # Through a buffer: the command's stdout wrapper ends every write with a newline of its own.
        buffer = io.StringIO()
        analysis.ratings_export(study=study, fmt=fmt, destination=buffer)
        self.stdout.write(buffer.getvalue(), ending="")
