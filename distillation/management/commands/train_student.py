"""Train a student with the MT, CF or MT+CF objective, then evaluate it on the dev split.

Under ``torchrun --nproc_per_node N`` or ``accelerate launch`` every process runs this command: the main process
creates the one StudentRun and records the job, every process trains and evaluates its share.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from distillation import jobs
from distillation.ml.distributed import is_main_process, process_count, share_from_main
from distillation.models import StudentRun
from distillation.services.students import (
    TrainingDataMissing,
    default_teacher_run,
    student_run_create,
    student_run_extend,
    student_training_enqueue,
    truncation_summary,
)
from evalsite.commands import enqueue_or_fail, run_job_with_progress
from evalsite.jobs import NO_PROGRESS


def add_training_arguments(parser) -> None:
    parser.add_argument("--student", default="tiny", help="PATH | HUB_ID | tiny | tiny-causal")
    parser.add_argument("--teacher", help="Teacher name whose training-split outputs to learn from (default: newest).")
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument(
        "--batch-size", type=int, default=48, help="Questions per step, each with every task of its method."
    )
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--gamma", type=float, default=0.5)
    parser.add_argument(
        "--grad-accum", type=int, default=1, help="Split each step into N passes (same step, less memory)."
    )
    parser.add_argument("--max-tokens", type=int, default=300, help="Inputs and targets are cut to this length.")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument(
        "--eval-every",
        type=int,
        default=250,
        help="Validation accuracy every N steps; the best model is kept (0: off).",
    )
    parser.add_argument("--early-stop", type=int, default=0, help="Stop after K evaluations without improvement.")
    parser.add_argument("--split-seed", type=int, default=0, help="Seed of the validation split (the same for all).")
    parser.add_argument("--dropout", type=float, help="Override the student's dropout rate (e.g. 0 for exact checks).")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument(
        "--keep-checkpoints", action="store_true", help="Keep optimizer checkpoints once a run has finished."
    )
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
        "precision": options["precision"],
        "eval_every": options["eval_every"],
        "early_stop": options["early_stop"],
        "split_seed": options["split_seed"],
        "keep_checkpoints_after": options["keep_checkpoints"],
    }
    if options["dropout"] is not None:
        hyper["dropout"] = options["dropout"]
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
    """Run (or queue) the training job; under several processes only the main one records a job row."""
    if enqueue:
        return enqueue_or_fail(student_training_enqueue, run=run, eval_limit=options["eval_limit"])
    if not is_main_process():
        try:
            return jobs.train_student(progress=NO_PROGRESS, run_id=run.pk, eval_limit=options["eval_limit"])
        except (TrainingDataMissing, ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
    return run_job_with_progress(
        kind="student_training",
        function=jobs.train_student,
        params={"run_id": run.pk, "eval_limit": options["eval_limit"]},
        quiet=options["quiet"],
        expected=(TrainingDataMissing, ValueError, OSError),
    )


def run_in_every_process(create) -> StudentRun:
    """The main process calls ``create`` and the others get the same run (or the same error)."""
    if process_count() == 1:
        return create()
    run_id, error = None, None
    if is_main_process():
        try:
            run_id = create().pk
        except CommandError as exc:
            error = str(exc)
    run_id, error = share_from_main((run_id, error))
    if error:
        raise CommandError(error)
    return StudentRun.objects.get(pk=run_id)


def resumed_run(run_id: int, train_to: int | None) -> StudentRun:
    run = StudentRun.objects.filter(pk=run_id).first()
    if run is None:
        raise CommandError(f"no student run {run_id}")
    if train_to:
        try:
            student_run_extend(run=run, max_steps=train_to)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
    return run


def describe(run: StudentRun) -> str:
    metrics = run.metrics
    accuracy = metrics.get("accuracy")
    text = (
        f"Student run {run.pk} ({run.condition_label}, seed {run.seed}): {metrics.get('steps')} steps, "
        f"loss {metrics.get('first_loss') or 0:.3f} -> {metrics.get('last_loss') or 0:.3f}"
    )
    if metrics.get("validation_accuracy") is not None:
        text += (
            f"; best validation exact match {100 * metrics['validation_accuracy']:.1f}% at step {metrics['best_step']}"
        )
    if accuracy is not None:
        text += (
            f"; dev exact match {100 * accuracy:.2f}% ({metrics.get('n_correct')} of {metrics.get('n_eval')}; "
            f"choice parser {100 * metrics.get('choice_accuracy', 0):.1f}%, "
            f"{100 * metrics.get('unparseable_rate', 0):.1f}% unparseable)"
        )
    return text


class Command(BaseCommand):
    help = "Train a student (checkpoints every N steps; a rerun with --resume RUN_ID continues), then evaluate it."

    def add_arguments(self, parser):
        parser.add_argument("--method", choices=["mt", "cf", "mtcf"], required=False)
        parser.add_argument("--data", choices=["unrevised", "revised"], default="unrevised")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="Continue a stopped run from its checkpoint.")
        parser.add_argument(
            "--train-to",
            type=int,
            metavar="STEPS",
            help="With --resume: train a finished run longer, from its last weights on to STEPS steps.",
        )
        add_training_arguments(parser)

    def handle(self, *args, **options):
        if options["enqueue"] and process_count() > 1:
            raise CommandError("--enqueue queues one job for a worker; do not start it under torchrun/accelerate")
        if options["train_to"] and not options["resume"]:
            raise CommandError("--train-to needs --resume RUN_ID: the finished run to train longer")
        if options["resume"]:
            run = run_in_every_process(lambda: resumed_run(options["resume"], options["train_to"]))
        elif not options["method"]:
            raise CommandError("give --method mt|cf|mtcf (or --resume RUN_ID)")
        else:
            run = run_in_every_process(
                lambda: create_run(options, method=options["method"], data=options["data"], seed=options["seed"])
            )
        job = start_training(run, options, enqueue=options["enqueue"])
        if options["enqueue"]:
            self.stdout.write(f"Queued student run {run.pk} as job {job.pk}.")
            return
        if not is_main_process():
            return
        run.refresh_from_db()
        limits = (run.hyperparameters.get("max_input_tokens", 300), run.hyperparameters.get("max_target_tokens", 300))
        for line in truncation_summary(run.metrics.get("truncation", {}), limits):
            self.stdout.write(f"Tokens cut, {line}")
        self.stdout.write(describe(run))
