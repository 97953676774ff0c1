"""Generate teacher rationales, critiques, revisions and counterfactual rationales; resumable."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from distillation import jobs
from distillation.ml.prompts import STAGE_KINDS
from distillation.services.teacher import teacher_generation_enqueue
from evalsite.commands import enqueue_or_fail, run_job_with_progress


class Command(BaseCommand):
    help = (
        "Run the teacher over a split: stages run in dependency order, each batch is stored in one transaction, "
        "and a rerun skips everything already stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", default="cqa")
        parser.add_argument("--split", default="train", choices=["train", "validation", "test"])
        parser.add_argument(
            "--stages",
            default="rationale,critique,revision,counterfactual",
            help=f"Comma-separated, from {', '.join(STAGE_KINDS)}.",
        )
        parser.add_argument("--teacher", required=True, help="hf:PATH_OR_HUB_ID | openai:MODEL | replay:FILE | tiny")
        parser.add_argument("--limit", type=int, help="Only the first N questions of the split.")
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--seed", type=int, default=0, help="Seeds the drawn prompt qualities and requests.")
        parser.add_argument("--shots", type=int, help="Use only the first N few-shot examples (tiny: 1).")
        parser.add_argument("--fewshot", help="A few-shot examples file (JSON) instead of the defaults.")
        parser.add_argument("--prompt-style", default="auto", choices=["auto", "plain", "chat"])
        parser.add_argument("--max-new-tokens", type=int, help="Cap every stage's token limit (tiny: 48).")
        parser.add_argument("--enqueue", action="store_true", help="Run as a background job instead.")
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args, **options):
        stages = [s.strip() for s in options["stages"].split(",") if s.strip()]
        unknown = sorted(set(stages) - set(STAGE_KINDS))
        if unknown:
            raise CommandError(f"unknown stages: {', '.join(unknown)}")
        params = {
            "dataset_slug": options["dataset"],
            "split": options["split"],
            "stages": stages,
            "teacher_spec": options["teacher"],
            "limit": options["limit"],
            "batch_size": options["batch_size"],
            "seed": options["seed"],
            "shots": options["shots"],
            "fewshot_path": options["fewshot"],
            "prompt_style": options["prompt_style"],
            "max_new_tokens": options["max_new_tokens"],
        }
        if options["enqueue"]:
            job = enqueue_or_fail(teacher_generation_enqueue, params=params)
            self.stdout.write(f"Queued job {job.pk}; follow it in the admin under Jobs.")
            return
        from distillation.ml.teachers import TeacherError

        job = run_job_with_progress(
            kind="teacher_generation",
            function=jobs.generate_teacher_data,
            params=params,
            quiet=options["quiet"],
            expected=(TeacherError, ValueError, OSError),
        )
        result = job.result
        per_stage = ", ".join(f"{stage} {count}" for stage, count in result["by_stage"].items())
        self.stdout.write(
            f"Teacher run {result['run_id']}: {result['generated']} outputs generated ({per_stage or 'none'}), "
            f"{result['skipped']} already stored, for {result['questions']} questions."
        )
