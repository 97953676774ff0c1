"""Pull Prolific submissions (or, for a manual batch, finished participants) into the site and flag them."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from annotations.crowd.commands import add_batch_arguments, batches_for, run_crowd_job


class Command(BaseCommand):
    help = "Sync Prolific (and manual) batches: --batch ID or --study SLUG; --expire stops the study first."

    def add_arguments(self, parser):
        add_batch_arguments(parser)
        parser.add_argument("--expire", action="store_true", help="Stop the study (no new participants) first.")

    def handle(self, *args, **options):
        for batch in batches_for(options, platforms=("prolific", "manual")):
            if options["expire"]:
                run_crowd_job(batch=batch, action="expire", options=options, stdout=self.stdout)
            run_crowd_job(batch=batch, action="sync", options=options, stdout=self.stdout)
