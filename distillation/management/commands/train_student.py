"""Train a student with the MT, CF or MT+CF objective, then evaluate it on the dev split."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from distillation import jobs
from distillation.models import StudentRun
from distillation.services.students import (
    TrainingDataMissing,
    default_teacher_run,
    student_run_create,
    student_training_enqueue,
)
from evalsite.commands import enqueue_or_fail, run_job_with_progress


def add_training_arguments(parser) -> None:
    parser.add_argument("--student", default="tiny", help="PATH | HUB_ID | tiny | tiny-causal")
    parser.add_argument("--teacher", help="Teacher name whose training-split outputs to learn from (default: newest).")
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--gamma", type=float, default=0.5)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=300, help="Inputs and targets are cut to this length.")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--train-limit", type=int, help="Only the first N training questions.")
    parser.add_argument("--eval-limit", type=int, help="Only the first N dev questions.")
    parser.add_argument("--model-size", default="", help="A label for comparisons, e.g. 220M.")
    parser.add_argument("--enqueue", action="store_true", help="Run as a background job.")
    parser.add_argument("--quiet", action="store_true")


def hyperparameters_from(options) -> dict:
    hyper = {
        "max_steps": options["max_steps"],
        "batch_size": options["batch_size"],
        "learning_rate": options["lr"],
        "grad_accum_steps": options["grad_accum"],
        "max_input_tokens": options["max_tokens"],
        "max_target_tokens": options["max_tokens"],
        "checkpoint_every": options["checkpoint_every"],
    }
    if options["train_limit"]:
        hyper["train_limit"] = options["train_limit"]
    return hyper


def create_run(options, *, method: str, data: str, seed: int) -> StudentRun:
    teacher_run = default_teacher_run(teacher_name=options["teacher"])
    if teacher_run is None:
        raise CommandError("no teacher outputs for the training split: run import_teacher_outputs first")
    try:
        return student_run_create(
            base_checkpoint=options["student"],
            method=method,
            training_data=data,
            seed=seed,
            alpha=options["alpha"],
            beta=options["beta"],
            gamma=options["gamma"],
            hyperparameters=hyperparameters_from(options),
            teacher_run=teacher_run,
            model_size=options["model_size"],
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def start_training(run: StudentRun, options, *, enqueue: bool):
    if enqueue:
        return enqueue_or_fail(student_training_enqueue, run=run, eval_limit=options["eval_limit"])
    return run_job_with_progress(
        kind="student_training",
        function=jobs.train_student,
        params={"run_id": run.pk, "eval_limit": options["eval_limit"]},
        quiet=options["quiet"],
        expected=(TrainingDataMissing, ValueError, OSError),
    )


class Command(BaseCommand):
    help = "Train a student (checkpoints every N steps; a rerun with --resume RUN_ID continues), then evaluate it."

    def add_arguments(self, parser):
        parser.add_argument("--method", choices=["mt", "cf", "mtcf"], required=False)
        parser.add_argument("--data", choices=["unrevised", "revised"], default="unrevised")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="Continue a stopped run from its checkpoint.")
        add_training_arguments(parser)

    def handle(self, *args, **options):
        if options["resume"]:
            run = StudentRun.objects.filter(pk=options["resume"]).first()
            if run is None:
                raise CommandError(f"no student run {options['resume']}")
        elif not options["method"]:
            raise CommandError("give --method mt|cf|mtcf (or --resume RUN_ID)")
        else:
            run = create_run(options, method=options["method"], data=options["data"], seed=options["seed"])
        job = start_training(run, options, enqueue=options["enqueue"])
        if options["enqueue"]:
            self.stdout.write(f"Queued student run {run.pk} as job {job.pk}.")
            return
        run.refresh_from_db()
        accuracy = run.metrics.get("accuracy")
        self.stdout.write(
            f"Student run {run.pk} ({run.condition_label}, seed {run.seed}): {run.metrics.get('steps')} steps, "
            f"loss {run.metrics.get('first_loss', 0):.3f} -> {run.metrics.get('last_loss', 0):.3f}; "
            + (
                f"dev accuracy {100 * accuracy:.1f}% ({100 * run.metrics['unparseable_rate']:.1f}% unparseable)"
                if accuracy is not None
                else ""
            )
        )
