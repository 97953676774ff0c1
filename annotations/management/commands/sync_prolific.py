"""Pull Prolific submissions (or, for a manual batch, finished participants) into the site and flag them."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from annotations.crowd.commands import add_batch_arguments, batches_for, run_crowd_job


class Command(BaseCommand):
    help = "Sync Prolific (and manual) batches: --batch ID or --study SLUG; --expire stops the study first."

    def add_arguments(self, parser):
        add_batch_arguments(parser)
        parser.add_argument("--expire", action="store_true", help="Stop the study (no new participants) first.")
        parser.add_argument(
            "--refill",
            action="store_true",
            help="After syncing, add places for rejected, returned and timed-out submissions.",
        )
        parser.add_argument("--pause", action="store_true", help="Pause the study (no new participants for now).")
        parser.add_argument("--resume", action="store_true", help="Start a paused study again.")

    def handle(self, *args, **options):
        for batch in batches_for(options, platforms=("prolific", "manual")):
            if options["expire"]:
                run_crowd_job(batch=batch, action="expire", options=options, stdout=self.stdout)
            if options["pause"]:
                run_crowd_job(batch=batch, action="pause", options=options, stdout=self.stdout)
            if options["resume"]:
                run_crowd_job(batch=batch, action="resume", options=options, stdout=self.stdout)
            run_crowd_job(batch=batch, action="sync", options=options, stdout=self.stdout)
            if options["refill"] and batch.platform == "prolific":
                run_crowd_job(batch=batch, action="refill", options=options, stdout=self.stdout)
