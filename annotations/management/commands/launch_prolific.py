"""Create and publish a Prolific study for a study (or a manual batch: a link and codes to paste anywhere)."""

from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from annotations.crowd import selectors, services
from annotations.crowd.commands import cost_lines, run_crowd_job, study_for
from annotations.crowd.costs import cents_from_amount
from annotations.crowd.providers import CrowdPlatformError
from annotations.models import CrowdBatch


class Command(BaseCommand):
    help = "launch_prolific --study SLUG --places N --reward 2.25 [--minutes 15] [--manual] --yes"

    def add_arguments(self, parser):
        parser.add_argument("--study", help="Study slug (for a new batch).")
        parser.add_argument("--batch", type=int, help="Resume the launch of this batch instead.")
        parser.add_argument("--places", type=int, default=10)
        parser.add_argument("--reward", help="Per participant, in the account's currency, e.g. 2.25.")
        parser.add_argument("--title", default="")
        parser.add_argument("--description", default="")
        parser.add_argument("--minutes", type=int, default=15, help="Estimated completion time.")
        parser.add_argument("--max-minutes", type=int, default=60, help="Maximum allowed time.")
        parser.add_argument("--planned-bonus", default="0")
        parser.add_argument("--exclusion-group", default="")
        parser.add_argument("--fee-rate", default="", help="Override the platform fee (default 0.333).")
        parser.add_argument("--manual", action="store_true", help="Create a manual batch: print link and codes.")
        parser.add_argument(
            "--prolific-study-id",
            default="",
            help="Manual batch: the id of the study you made on Prolific; only entries with that STUDY_ID are taken.",
        )
        parser.add_argument("--yes", action="store_true", help="Confirm the cost shown.")
        parser.add_argument("--enqueue", action="store_true")
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args, **options):
        if options["batch"]:
            batch = CrowdBatch.objects.filter(pk=options["batch"], platform__in=("prolific", "manual")).first()
            if batch is None:
                raise CommandError(f"no Prolific or manual batch #{options['batch']}")
        else:
            batch = self._create(options)
        for line in cost_lines(selectors.batch_cost_estimate(batch)):
            self.stdout.write(line)
        if batch.platform == "prolific" and not options["yes"]:
            raise CommandError(f"check the cost above, then re-run with --batch {batch.pk} --yes")
        run_crowd_job(batch=batch, action="launch", options=options, stdout=self.stdout)
        batch.refresh_from_db()
        self.stdout.write(f"batch #{batch.pk} {batch.status}; study {batch.external_id}")
        if batch.platform == "manual":
            for name, value in selectors.manual_links(batch).items():
                self.stdout.write(f"{name}\t{value}")

    def _create(self, options) -> CrowdBatch:
        if not options["study"] or not options["reward"]:
            raise CommandError("a new batch needs --study and --reward")
        study = study_for(options["study"])
        params = {
            "estimated_minutes": options["minutes"],
            "maximum_minutes": options["max_minutes"],
            "annotator_source": "prolific",
        }
        if options["exclusion_group"]:
            params["exclusion_group"] = options["exclusion_group"]
        if options["manual"]:
            params["prolific_study_id"] = options["prolific_study_id"].strip()
        try:
            return services.crowd_batch_create(
                study=study,
                platform="manual" if options["manual"] else "prolific",
                title=options["title"] or study.title,
                description=options["description"] or study.description,
                reward_cents=cents_from_amount(Decimal(options["reward"])),
                n_tasks=1,
                assignments_per_task=options["places"],
                fee_rate=Decimal(options["fee_rate"]) if options["fee_rate"] else None,
                planned_bonus_cents=cents_from_amount(Decimal(options["planned_bonus"])),
                params=params,
            )
        except (CrowdPlatformError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
