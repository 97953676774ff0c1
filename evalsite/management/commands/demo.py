"""The main job on embedded defaults: the whole study end to end, then the server.

Imports CommonsenseQA and the paper's teacher outputs, trains small students for the paper's four
conditions, evaluates them, writes their explanations into a study (with the paper's two T5-large
conditions when the data has them), opens it, optionally fills it with simulated annotators, analyses
the ratings, and serves. Each step is idempotent, so a rerun picks up where the last one stopped.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from evalsite.cli import show_library_logs

ADMIN_USERNAME = "admin"
STUDY_SLUG = "demo"
TEACHER_NAME = "llama2-13b"
# The paper's four conditions: (method, training data).
PAPER_CONDITIONS = [("cf", "unrevised"), ("mt", "unrevised"), ("mtcf", "unrevised"), ("mtcf", "revised")]
# The student the demo trains by default (the MiniLM warm start of README; "tiny" is the fast pipeline check),
# and each student's defaults for the options left unset.
DEMO_STUDENT = "demo"
DEFAULT_STUDENT = DEMO_STUDENT
STUDENT_DEFAULTS = {
    DEMO_STUDENT: {"steps": 40, "lr": 2e-4, "train_limit": 2000, "max_tokens": 128},
    "other": {"steps": 30, "lr": 1e-3, "train_limit": 256, "max_tokens": 128},
}
DEMO_BATCH_SIZE = 4  # questions per step
T5_LARGE_FILES = {
    "T5-large MT+CF:Unrevised": "t5-large-mtcf-unrevised-validation.csv",
    "T5-large MT+CF:Revised": "t5-large-mtcf-revised-validation.csv",
}


class Command(BaseCommand):
    help = "Run the whole study on embedded defaults and serve it (see README)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--data-dir",
            default=os.environ.get("EVALSITE_DATA_DIR", ""),
            help="Reference data folder or a checkout of the paper's repository (default: $EVALSITE_DATA_DIR).",
        )
        parser.add_argument(
            "--student",
            default=DEFAULT_STUDENT,
            help="demo (the default: MiniLM-L6 warm-starting a small encoder-decoder, its base pre-trained here once "
            "and reused, see README), tiny (a random tiny T5: the fast pipeline check, writes noise), tiny-causal, "
            "or a path / hub id (e.g. t5-base).",
        )
        parser.add_argument("--steps", type=int, help="Training steps per student (demo: 40, others: 30).")
        parser.add_argument("--lr", type=float, help="Learning rate (demo: 2e-4, others: 1e-3).")
        parser.add_argument("--base-steps", type=int, help="Pre-training steps of the demo student's base (720).")
        parser.add_argument(
            "--batch-size", type=int, default=DEMO_BATCH_SIZE, help="Questions per step (each with all its tasks)."
        )
        parser.add_argument("--max-tokens", type=int, help="Input and target tokens (128).")
        parser.add_argument("--train-limit", type=int, help="Training questions per student (demo: 2000, others: 256).")
        parser.add_argument("--eval-limit", type=int, default=60, help="Dev questions for accuracy.")
        parser.add_argument("--sample", type=int, default=24, help="Dev questions whose explanations are rated.")
        parser.add_argument(
            "--simulate-annotators",
            type=int,
            default=24,
            metavar="N",
            help="Fill the study with N simulated annotators (0: leave it empty for real ones).",
        )
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="Do everything, print the URLs, and exit.")

    def handle(self, *args, **options):
        started = time.monotonic()
        if options["verbosity"] >= 2:
            show_library_logs()
        data = self._data_dir(options["data_dir"])
        self._step("Migrating the database")
        call_command("migrate", "--noinput", verbosity=0)
        self._import(data)
        runs = self._students(options)
        study = self._study(options, runs, data)
        if options["simulate_annotators"]:
            self._simulate(study, options["simulate_annotators"])
        self._step("Scoring explanations with the cheap automatic metrics (length, overlap with the teacher)")
        call_command("score_explanations", "--study", study.slug, "--metrics", "length,teacher_overlap", "--quiet")
        report_url = self._analyse(study)
        password = self._ensure_admin()
        self._step(f"Ready in {time.monotonic() - started:.0f} s")
        self._print_urls(study, password, options["port"], report_url)
        if not options["no_serve"]:
            call_command("runserver", f"127.0.0.1:{options['port']}", "--noreload")

    def _data_dir(self, raw: str):
        from distillation.paperrepo import data_folder
        from evalsite.errors import DataFileError

        if not raw:
            raise CommandError(
                "No data: set EVALSITE_DATA_DIR (or --data-dir) to the reference data folder (with cqa/ and "
                "teacher/) or to a checkout of github.com/DanielHendriks/llm-distillation. When this machine is "
                "online, `python manage.py import_cqa --from-hub` fetches CommonsenseQA instead, but the teacher "
                "outputs still have to come from a file or a teacher."
            )
        try:
            return data_folder(raw)
        except DataFileError as exc:
            raise CommandError(f"{exc}; point EVALSITE_DATA_DIR at the data.") from exc

    def _import(self, data) -> None:
        self._step("Importing CommonsenseQA")
        call_command("import_cqa", "--path", str(data.cqa_dir), stdout=self.stdout)
        for split in ("train", "validation"):
            teacher_file = data.teacher[split]
            if not teacher_file.exists():
                raise CommandError(f"{teacher_file} is missing: the students need the teacher's outputs")
            self._step(f"Importing the paper's teacher outputs ({split})")
            call_command(
                "import_teacher_outputs", "--path", str(teacher_file), "--teacher", TEACHER_NAME, stdout=self.stdout
            )

    def _students(self, options) -> list:
        from distillation import jobs
        from distillation.ml.training import native_precision
        from distillation.models import StudentRun
        from distillation.services.students import default_teacher_run, student_run_create
        from evalsite.commands import run_job_with_progress

        defaults = STUDENT_DEFAULTS.get(options["student"], STUDENT_DEFAULTS["other"])
        options = {**options, **{key: value for key, value in defaults.items() if options[key] is None}}
        demo = options["student"] == DEMO_STUDENT
        base_checkpoint = self._demo_base(options["base_steps"]) if demo else options["student"]
        # bf16 autocast where the hardware multiplies bf16 (measured 1.3x the steps per second on 2 cores).
        precision = native_precision()
        runs = []
        for method, data in PAPER_CONDITIONS:
            name = f"demo {options['student']} {method}-{data}"
            run = StudentRun.objects.filter(name=name, status=StudentRun.Status.EVALUATED).first()
            if run is None:
                self._step(f"Training and evaluating the {options['student']} student {name.split()[-1]}")
                run = student_run_create(
                    name=name,
                    base_checkpoint=base_checkpoint,
                    method=method,
                    training_data=data,
                    seed=0,
                    teacher_run=default_teacher_run(teacher_name=TEACHER_NAME),
                    hyperparameters={
                        "max_steps": options["steps"],
                        "batch_size": options["batch_size"],
                        "learning_rate": options["lr"],
                        "max_input_tokens": options["max_tokens"],
                        "max_target_tokens": options["max_tokens"],
                        "checkpoint_every": max(10, options["steps"] // 2),
                        "train_limit": options["train_limit"],
                        "precision": precision,
                    },
                )
                run_job_with_progress(
                    kind="student_training",
                    function=jobs.train_student,
                    params={"run_id": run.pk, "eval_limit": options["eval_limit"]},
                )
                run.refresh_from_db()
            else:
                self._step(f"Student {name.split()[-1]} is trained already (run {run.pk})")
            self.stdout.write(
                f"    {run.condition_label}: dev accuracy {100 * run.metrics['accuracy']:.1f}% on "
                f"{run.metrics['n_eval']} questions, loss {run.metrics['first_loss']:.2f} -> "
                f"{run.metrics['last_loss']:.2f}"
            )
            if run.metrics.get("text_quality"):
                self.stdout.write(f"    {_quality_line(run.metrics['text_quality'])}")
            runs.append(run)
        return runs

    def _demo_base(self, steps: int | None) -> str:
        """The demo student's base model (built once from the training corpus, reused by reruns): its path."""
        from distillation import jobs
        from distillation.services.students import default_teacher_run
        from evalsite.commands import run_job_with_progress

        self._step("Pre-training the demo student's base model (once; reruns reuse it)")
        job = run_job_with_progress(
            kind="demo_student_base",
            function=jobs.build_demo_student,
            params={"teacher_run_id": default_teacher_run(teacher_name=TEACHER_NAME).pk, "steps": steps},
        )
        return job.result["path"]

    def _study(self, options, runs, data):
        from annotations.jobs import explanations as jobs
        from annotations.models import Study
        from annotations.services.studies import explanations_import_csv, study_create, study_open
        from distillation.models import Question
        from evalsite.commands import run_job_with_progress

        study = Study.objects.filter(slug=STUDY_SLUG).first()
        if study is None:
            study = study_create(
                config={
                    "slug": STUDY_SLUG,
                    "title": "Rate explanations of small language models",
                    "constructs": "paper",
                    "explanations_per_annotator": 12,
                    "ratings_per_explanation": 3,
                    "attention_check_positions": [5],
                }
            )
        for run in runs:
            if not study.conditions.filter(label=run.condition_label, explanations__isnull=False).exists():
                self._step(f"Writing {run.condition_label} explanations for {options['sample']} dev questions")
                run_job_with_progress(
                    kind="generate_explanations",
                    function=jobs.generate_explanations,
                    params={
                        "run_id": run.pk,
                        "study_slug": study.slug,
                        "condition": run.condition_label,
                        "limit": options["sample"],
                    },
                )
        sample = set(
            Question.objects.filter(split="validation")
            .order_by("id")
            .values_list("source_id", flat=True)[: options["sample"]]
        )
        for label, file_name in T5_LARGE_FILES.items():
            path = data.students_dir / file_name if data.students_dir else None
            if path and path.is_file() and not study.conditions.filter(label=label).exists():
                self._step(f"Adding the paper's {label} explanations")
                counts = explanations_import_csv(
                    study=study,
                    condition_label=label,
                    path=str(path),
                    item_column="input_predict",
                    text_column="rationales_preds",
                    answer_column="answers_labels",
                    prediction_column="answers_preds",
                    only_source_ids=sample,
                )
                self.stdout.write(f"    {counts['created']} explanations")
        if study.status != Study.Status.OPEN:
            study_open(study=study)
        return study

    def _simulate(self, study, count: int) -> None:
        from annotations.jobs import studies as jobs
        from evalsite.commands import run_job_with_progress

        if study.annotators.filter(external_id__startswith="simulated-", finished_at__isnull=False).exists():
            self._step("Simulated annotators have rated already")
            return
        self._step(f"Simulating {count} annotators")
        job = run_job_with_progress(
            kind="simulate_annotators",
            function=jobs.simulate_annotators,
            params={"study_id": study.pk, "count": count, "seed": 0},
        )
        self.stdout.write(f"    {job.result['finished']} finished, {study.annotators.count()} in all")

    def _analyse(self, study) -> str | None:
        """Analyse the ratings (the report page's cached job) so the page opens on a finished report."""
        from annotations.selectors import completed_ratings
        from annotations.services.analysis import analysis_report_get_or_run
        from evalsite.models import Job

        if not completed_ratings(study).exists():
            return None
        self._step("Analysing the ratings (agreement, mixed models, the paper's OLS, figures)")
        report = analysis_report_get_or_run(study=study)
        if report.job_id:
            job = Job.objects.get(pk=report.job_id)
            while job.is_active:
                time.sleep(0.5)
                job.refresh_from_db()
            if job.status != Job.Status.DONE:
                self.stderr.write(f"    the analysis failed: {job.message}")
        return reverse("annotations:report", args=[study.slug])

    def _ensure_admin(self) -> str:
        """Create the demo admin once; its password is kept under var/ so a rerun can print it again."""
        password_file = Path(settings.VAR_DIR) / "demo-admin-password.txt"
        user_model = get_user_model()
        if user_model.objects.filter(username=ADMIN_USERNAME).exists() and password_file.is_file():
            return password_file.read_text().strip()
        password = secrets.token_urlsafe(12)
        user, _ = user_model.objects.get_or_create(username=ADMIN_USERNAME, defaults={"is_staff": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        return password

    def _print_urls(self, study, password: str, port: int, report_url: str | None) -> None:
        from annotations.tokens import invite_token

        base = f"http://127.0.0.1:{port}"
        invite = reverse("annotations:invite", args=[study.slug, invite_token(study_id=study.pk, label="you")])
        self.stdout.write(f"  annotator link: {base}{invite}")
        self.stdout.write(f"  admin:          {base}/admin/  (user {ADMIN_USERNAME}, password {password})")
        self.stdout.write(f"  dashboard:      {base}{reverse('annotations:dashboard', args=[study.slug])}")
        if report_url:
            self.stdout.write(f"  analysis:       {base}{report_url}")
        self.stdout.write(f"  jobs:           {base}/admin/evalsite/job/")

    def _step(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {text}"))


def _quality_line(figures: dict) -> str:
    """A run's text-quality figures in one line, with the readable-text goals it misses."""
    from distillation.ml.text_quality import TextQuality, unmet_goals

    quality = TextQuality(**figures)
    shares = ", ".join(
        f"{name.replace('_', ' ')} {100 * value:.0f}%"
        for name in ("non_empty", "degenerate", "corpus_words", "distinct", "grounded")
        if (value := getattr(quality, name)) is not None
    )
    missed = unmet_goals(quality)
    verdict = f"missed: {'; '.join(missed)}" if missed else "the readable-text goals are met"
    return f"explanations: {shares}, mean length {quality.mean_length:.0f} characters ({verdict})"
