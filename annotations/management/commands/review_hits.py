"""Approve passing and reject failing MTurk assignments; optionally pay approved workers a bonus."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotations.crowd.commands import add_batch_arguments, batches_for, run_crowd_job
from annotations.crowd.costs import cents_from_amount
from annotations.models import CrowdSubmission


class Command(BaseCommand):
    help = "Review synced MTurk assignments: --approve-passing, --reject-failing, --bonus 0.50 --bonus-reason TEXT."
    platforms = ("mturk",)

    def add_arguments(self, parser):
        add_batch_arguments(parser)
        parser.add_argument("--approve-passing", action="store_true", help="Approve work with no flag.")
        parser.add_argument("--reject-failing", action="store_true", help="Reject failed checks, unfinished work.")
        parser.add_argument("--feedback", default="", help="Sent with approvals.")
        parser.add_argument("--reject-feedback", default="", help="Sent with rejections (a clear default if empty).")
        parser.add_argument("--category", default="", help="Rejection category (Prolific); e.g. FAILED_CHECK.")
        parser.add_argument("--bonus", default="", help="Pay each approved worker without a bonus this many dollars.")
        parser.add_argument("--bonus-reason", default="")

    def handle(self, *args, **options):
        if not (options["approve_passing"] or options["reject_failing"] or options["bonus"]):
            raise CommandError("say what to do: --approve-passing, --reject-failing and/or --bonus")
        if options["bonus"] and not options["bonus_reason"].strip():
            raise CommandError("a bonus needs --bonus-reason")
        for batch in batches_for(options, platforms=self.platforms):
            if options["approve_passing"] or options["reject_failing"]:
                params = {
                    "approve_passing": options["approve_passing"],
                    "reject_failing": options["reject_failing"],
                    "approve_feedback": options["feedback"],
                    "reject_feedback": options["reject_feedback"],
                    "category": options["category"],
                }
                run_crowd_job(batch=batch, action="review", params=params, options=options, stdout=self.stdout)
            if options["bonus"]:
                ids = list(
                    batch.submissions.filter(status=CrowdSubmission.Status.APPROVED, bonus_token="").values_list(
                        "pk", flat=True
                    )
                )
                params = {
                    "submission_ids": ids,
                    "action": "bonus",
                    "feedback": options["bonus_reason"],
                    "amount_cents": cents_from_amount(options["bonus"]),
                }
                run_crowd_job(batch=batch, action="act", params=params, options=options, stdout=self.stdout)
