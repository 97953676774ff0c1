"""Write a batch CSV and an HTML layout for publishing a study's HITs by hand on the MTurk Requester website."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotations.crowd.commands import study_for
from annotations.crowd.exports import export_mturk_batch


class Command(BaseCommand):
    help = "export_hits --study SLUG --format mturk-csv --out DIR [--hits N]"

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True)
        parser.add_argument("--format", default="mturk-csv", choices=["mturk-csv"])
        parser.add_argument("--out", required=True, help="Folder for the CSV and the HTML layout.")
        parser.add_argument("--hits", type=int, default=1, help="Rows (HITs) in the CSV.")
        parser.add_argument("--minutes", type=int, default=15, help="Time the layout says the study takes.")

    def handle(self, *args, **options):
        study = study_for(options["study"])
        if not settings.EVALSITE_PUBLIC_URL.startswith("https://"):
            raise CommandError("MTurk needs HTTPS: set EVALSITE_PUBLIC_URL to the site's https:// address")
        paths = export_mturk_batch(
            study_slug=study.slug,
            title=study.title,
            public_url=settings.EVALSITE_PUBLIC_URL,
            out_dir=Path(options["out"]),
            n_hits=options["hits"],
            minutes=options["minutes"],
        )
        for path in paths:
            self.stdout.write(str(path))
