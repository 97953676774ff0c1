"""Train the grid of methods x training data x seeds, evaluate each student, and print the result table."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from distillation.management.commands.train_student import add_training_arguments, create_run, start_training
from distillation.models import StudentRun


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            seeds.extend(range(int(low), int(high) + 1))
        elif part.strip():
            seeds.append(int(part))
    return seeds


class Command(BaseCommand):
    help = "Run an experiment grid (queued as jobs with --enqueue, else one after another here)."

    def add_arguments(self, parser):
        parser.add_argument("--methods", default="mt,cf,mtcf")
        parser.add_argument("--data", default="unrevised,revised")
        parser.add_argument("--seeds", default="0-4", help="e.g. 0-5 or 0,1,2")
        add_training_arguments(parser)

    def handle(self, *args, **options):
        methods = [m for m in options["methods"].split(",") if m]
        datas = [d for d in options["data"].split(",") if d]
        bad = sorted(set(methods) - {"mt", "cf", "mtcf"}) + sorted(set(datas) - {"unrevised", "revised"})
        if bad:
            raise CommandError(f"unknown methods or data: {', '.join(bad)}")
        try:
            seeds = parse_seeds(options["seeds"])
        except ValueError as exc:
            raise CommandError(f"--seeds {options['seeds']!r}: {exc}") from exc
        runs = []
        for method in methods:
            for data in datas:
                for seed in seeds:
                    run = create_run(options, method=method, data=data, seed=seed)
                    start_training(run, options, enqueue=options["enqueue"])
                    runs.append(run)
        if options["enqueue"]:
            self.stdout.write(f"Queued {len(runs)} student runs: {', '.join(str(r.pk) for r in runs)}.")
            return
        self.stdout.write(f"{'run':>5}  {'condition':<16} {'seed':>4}  {'accuracy':>8}")
        for run in StudentRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("id"):
            accuracy = run.metrics.get("accuracy")
            shown = f"{100 * accuracy:7.2f}%" if accuracy is not None else "       –"
            self.stdout.write(f"{run.pk:>5}  {run.condition_label:<16} {run.seed:>4}  {shown}")
