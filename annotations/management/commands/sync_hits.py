"""Pull MTurk assignments into the site, flag them and shut their workers out of later batches."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from annotations.crowd.commands import add_batch_arguments, batches_for, run_crowd_job


class Command(BaseCommand):
    help = "Sync the assignments of MTurk batches (--batch ID or --study SLUG); --expire stops them first."

    def add_arguments(self, parser):
        add_batch_arguments(parser)
        parser.add_argument("--expire", action="store_true", help="Expire the HITs (no new workers) before syncing.")
        parser.add_argument(
            "--refill", action="store_true", help="After syncing, add an assignment for each rejected one."
        )
        parser.add_argument("--notify-subject", default="")
        parser.add_argument("--notify-message", default="", help="Message every worker of the batch (after syncing).")

    def handle(self, *args, **options):
        for batch in batches_for(options, platforms=("mturk",)):
            if options["expire"]:
                run_crowd_job(batch=batch, action="expire", options=options, stdout=self.stdout)
            run_crowd_job(batch=batch, action="sync", options=options, stdout=self.stdout)
            if options["refill"]:
                run_crowd_job(batch=batch, action="refill", options=options, stdout=self.stdout)
            if options["notify_message"]:
                params = {"subject": options["notify_subject"] or batch.title, "message": options["notify_message"]}
                run_crowd_job(batch=batch, action="notify", params=params, options=options, stdout=self.stdout)
