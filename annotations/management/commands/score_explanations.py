"""Score a study's explanation versions with automatic metrics, in the foreground or on a worker."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotations.jobs import metrics as jobs
from annotations.models import Study
from annotations.services import metrics as metric_services
from distillation.ml.explanation_metrics import parse_metric_list
from distillation.ml.teachers import TeacherError
from evalsite.commands import run_job_with_progress
from evalsite.jobs import QueueUnavailable


class Command(BaseCommand):
    help = (
        "Automatic metrics per explanation version (length, teacher_overlap, consistency, judge:<construct>, "
        "embedding_similarity); a rerun skips what is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("--study", required=True, help="Study slug.")
        parser.add_argument(
            "--metrics",
            default="length,teacher_overlap",
            help="Comma-separated: length, teacher_overlap, consistency, judge:<construct>, embedding_similarity.",
        )
        parser.add_argument("--judge", default="", help="For judge:<construct>: hf:PATH, openai:MODEL or replay:FILE.")
        parser.add_argument(
            "--checkpoint",
            default="",
            help="For consistency: this checkpoint reads every explanation (default: the student run that wrote it).",
        )
        parser.add_argument("--embedder", default="", help="For embedding_similarity: a sentence-embedding checkpoint.")
        parser.add_argument("--enqueue", action="store_true", help="Queue the job for a worker instead.")
        parser.add_argument("--quiet", action="store_true")

    def handle(self, *args, **options):
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"no study {options['study']!r}")
        try:
            families = parse_metric_list(options["metrics"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        params = {
            "study_id": study.pk,
            "metrics": families,
            "judge": options["judge"],
            "checkpoint": options["checkpoint"],
            "embedder": options["embedder"],
        }
        if options["enqueue"]:
            options_only = {name: params[name] for name in ("judge", "checkpoint", "embedder")}
            try:
                metric_services.explanation_metrics_start(study=study, metrics=families, **options_only)
            except (metric_services.MetricsUnavailable, QueueUnavailable) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Queued scoring of {study.slug} ({', '.join(families)}).")
            return
        job = run_job_with_progress(
            kind=metric_services.METRICS_JOB_KIND,
            function=jobs.score_explanations,
            params=params,
            quiet=options["quiet"],
            expected=(metric_services.MetricsUnavailable, TeacherError, FileNotFoundError),
        )
        result = job.result or {}
        self.stdout.write(
            f"{result.get('stored', 0)} scores stored for {result.get('explanations', 0)} explanation versions "
            f"of {study.slug}."
        )
        for reason, count in sorted((result.get("skipped") or {}).items()):
            self.stdout.write(f"  {count} skipped: {reason}")
        for message in result.get("messages") or []:
            self.stdout.write(f"  {message}")
