"""Train the grid of conditions x seeds (the paper's four conditions by default), evaluate each, print the table.

A rerun skips the runs already evaluated, evaluates those trained but not evaluated and resumes the unfinished
ones from their last checkpoint: a grid killed midway finishes what is missing.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from distillation.management.commands.train_student import (
    add_training_arguments,
    create_run,
    hyperparameters_from,
    run_in_every_process,
    start_training,
)
from distillation.ml.distributed import is_main_process
from distillation.models import StudentRun
from distillation.services.students import default_teacher_run

# The paper's conditions: MT:Unrevised, CF:Unrevised, MT+CF:Unrevised, MT+CF:Revised.
PAPER_CONDITIONS = "mt:unrevised,cf:unrevised,mtcf:unrevised,mtcf:revised"
METHODS = {"mt", "cf", "mtcf"}
DATA = {"unrevised", "revised"}


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            seeds.extend(range(int(low), int(high) + 1))
        elif part.strip():
            seeds.append(int(part))
    return seeds


def parse_conditions(text: str) -> list[tuple[str, str]]:
    conditions = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        method, _, data = part.partition(":")
        if method not in METHODS or data not in DATA:
            raise CommandError(f"unknown condition {part!r}: give method:data, e.g. mtcf:revised")
        conditions.append((method, data))
    return conditions


def existing_run(options, *, method: str, data: str, seed: int) -> StudentRun | None:
    """The newest run of this grid cell made with the same settings (not a failed one with other settings)."""
    teacher_run = default_teacher_run(teacher_name=options["teacher"])
    hyper = hyperparameters_from(options)
    candidates = StudentRun.objects.filter(
        base_checkpoint=options["student"],
        method=method,
        training_data=data,
        seed=seed,
        alpha=options["alpha"],
        beta=options["beta"],
        gamma=options["gamma"],
        teacher_run=teacher_run,
        model_size=options["model_size"] or ("tiny" if options["student"].startswith("tiny") else ""),
    ).order_by("-created_at")
    return next((run for run in candidates if run.hyperparameters == hyper), None)


class Command(BaseCommand):
    help = "Run an experiment grid (queued as jobs with --enqueue, else one after another here); reruns resume it."

    def add_arguments(self, parser):
        parser.add_argument(
            "--conditions",
            default=PAPER_CONDITIONS,
            help=f"method:data pairs (default the paper's: {PAPER_CONDITIONS})",
        )
        parser.add_argument("--seeds", default="0-4", help="e.g. 0-5 or 0,1,2")
        add_training_arguments(parser)

    def handle(self, *args, **options):
        conditions = parse_conditions(options["conditions"])
        try:
            seeds = parse_seeds(options["seeds"])
        except ValueError as exc:
            raise CommandError(f"--seeds {options['seeds']!r}: {exc}") from exc
        runs, counts = [], {"skipped": 0, "resumed": 0, "new": 0}
        for method, data in conditions:
            for seed in seeds:

                def find_or_create(method=method, data=data, seed=seed) -> StudentRun:
                    found = existing_run(options, method=method, data=data, seed=seed)
                    return found or create_run(options, method=method, data=data, seed=seed)

                run = run_in_every_process(find_or_create)
                runs.append(run)
                if run.status == StudentRun.Status.EVALUATED:
                    counts["skipped"] += 1
                    continue
                counts["resumed" if run.status != StudentRun.Status.CREATED else "new"] += 1
                start_training(run, options, enqueue=options["enqueue"])
        if not is_main_process():
            return
        summary = f"{counts['new']} new, {counts['resumed']} resumed, {counts['skipped']} already evaluated"
        if options["enqueue"]:
            queued = [r for r in runs if r.status != StudentRun.Status.EVALUATED]
            self.stdout.write(f"Queued {len(queued)} student runs ({summary}): {', '.join(str(r.pk) for r in queued)}.")
            return
        self.stdout.write(f"Grid of {len(runs)} runs: {summary}.")
        self.stdout.write(f"{'run':>5}  {'condition':<16} {'seed':>4}  {'exact match':>11}  {'choice parser':>13}")
        for run in StudentRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("id"):
            accuracy, lenient = run.metrics.get("accuracy"), run.metrics.get("choice_accuracy")
            shown = f"{100 * accuracy:10.2f}%" if accuracy is not None else f"{'-':>11}"
            diagnostic = f"{100 * lenient:12.2f}%" if lenient is not None else f"{'-':>13}"
            self.stdout.write(f"{run.pk:>5}  {run.condition_label:<16} {run.seed:>4}  {shown}  {diagnostic}")
