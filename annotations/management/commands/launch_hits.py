"""Launch a batch of MTurk HITs for a study (or resume one whose launch stopped half-way)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotations.crowd import selectors, services
from annotations.crowd.commands import cost_lines, run_crowd_job, study_for
from annotations.crowd.costs import cents_from_amount
from annotations.crowd.providers import CrowdPlatformError
from annotations.models import CrowdBatch


class Command(BaseCommand):
    help = "Create HITs on MTurk for a study: --hits N --assignments K (at most 9) --reward 1.50."

    def add_arguments(self, parser):
        parser.add_argument("--study", help="Study slug (for a new batch).")
        parser.add_argument("--batch", type=int, help="Resume the launch of this batch instead.")
        parser.add_argument("--hits", type=int, default=1)
        parser.add_argument("--assignments", type=int, default=9, help="Per HIT; at most 9 (fee 20%%, not 40%%).")
        parser.add_argument("--reward", help="Per assignment, in dollars, e.g. 1.50.")
        parser.add_argument("--title", default="")
        parser.add_argument("--description", default="")
        parser.add_argument("--keywords", default="rating, explanations, survey, research")
        env = parser.add_mutually_exclusive_group()
        env.add_argument("--sandbox", action="store_true", default=None, help="Use the worker sandbox.")
        env.add_argument("--production", action="store_true", help="Use production (real money).")
        parser.add_argument("--min-approval", type=int, default=95, help="Approval rate at least (percent).")
        parser.add_argument("--min-approved", type=int, default=100, help="Approved HITs at least.")
        parser.add_argument("--locales", default="", help="Country codes, comma-separated, e.g. US,GB.")
        parser.add_argument("--masters", action="store_true")
        parser.add_argument("--minutes", type=int, default=60, help="Time allowed per assignment.")
        parser.add_argument("--lifetime-days", type=int, default=7)
        parser.add_argument("--auto-approve-days", type=int, default=3)
        parser.add_argument("--frame-height", type=int, default=0)
        parser.add_argument("--planned-bonus", default="0", help="Total bonuses planned, dollars (in the cost).")
        parser.add_argument("--exclusion-group", default="", help="Shut out workers of studies in this group.")
        parser.add_argument("--allow-ten-or-more", action="store_true", help="Allow 10+ assignments (fee 40%%).")
        parser.add_argument("--yes", action="store_true", help="Confirm the cost shown (needed for production).")
        parser.add_argument("--enqueue", action="store_true")
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args, **options):
        if options["batch"]:
            batch = CrowdBatch.objects.filter(pk=options["batch"], platform="mturk").first()
            if batch is None:
                raise CommandError(f"no MTurk batch #{options['batch']}")
        else:
            batch = self._create(options)
        for line in cost_lines(selectors.batch_cost_estimate(batch)):
            self.stdout.write(line)
        if not batch.sandbox and not options["yes"]:
            raise CommandError(
                f"batch #{batch.pk} is a production batch: check the cost above, then re-run with "
                f"--batch {batch.pk} --yes"
            )
        run_crowd_job(batch=batch, action="launch", options=options, stdout=self.stdout)
        batch.refresh_from_db()
        self.stdout.write(f"batch #{batch.pk} {batch.status}; HIT type {batch.external_id}")
        for hit_id in batch.tasks.values_list("external_id", flat=True):
            self.stdout.write(f"HIT {hit_id}")

    def _create(self, options) -> CrowdBatch:
        if not options["study"] or not options["reward"]:
            raise CommandError("a new batch needs --study and --reward")
        study = study_for(options["study"])
        sandbox = settings.MTURK_SANDBOX
        if options["sandbox"]:
            sandbox = True
        if options["production"]:
            sandbox = False
        params = {
            "keywords": options["keywords"],
            "min_approval_rate": options["min_approval"],
            "min_approved_hits": options["min_approved"],
            "locales": [code.strip().upper() for code in options["locales"].split(",") if code.strip()],
            "masters": options["masters"],
            "assignment_duration_s": options["minutes"] * 60,
            "lifetime_s": options["lifetime_days"] * 24 * 3600,
            "auto_approval_delay_s": options["auto_approve_days"] * 24 * 3600,
            "frame_height": options["frame_height"],
            "allow_ten_or_more": options["allow_ten_or_more"],
        }
        if options["exclusion_group"]:
            params["exclusion_group"] = options["exclusion_group"]
        try:
            return services.crowd_batch_create(
                study=study,
                platform="mturk",
                title=options["title"] or study.title,
                description=options["description"] or study.description,
                reward_cents=cents_from_amount(Decimal(options["reward"])),
                n_tasks=options["hits"],
                assignments_per_task=options["assignments"],
                sandbox=sandbox,
                planned_bonus_cents=cents_from_amount(Decimal(options["planned_bonus"])),
                params=params,
            )
        except (CrowdPlatformError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
