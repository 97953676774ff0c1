"""Admin for datasets, questions, teachers and their outputs, student runs and predictions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from distillation.forms import StudentRunCreateForm, TrainLongerForm
from distillation.models import Dataset, Prediction, Question, StudentRun, Teacher, TeacherOutput, TeacherRun
from distillation.services.students import (
    latest_prediction_set,
    student_evaluation_enqueue,
    student_run_train_longer_enqueue,
    student_training_enqueue,
    trained_steps,
)
from evalsite.adminlinks import job_url, jobs_started_message
from evalsite.jobs import QueueUnavailable
from evalsite.models import Job

SAMPLE_PREDICTIONS = 5


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ["source_id", "short_question", "answer", "split", "dataset"]
    list_filter = ["dataset", "split"]
    search_fields = ["source_id", "question", "answer"]
    list_select_related = ["dataset"]

    @admin.display(description="question")
    def short_question(self, question: Question) -> str:
        return question.question[:90]


@admin.register(Teacher)
class TeacherAdmin(admin.ModelAdmin):
    list_display = ["name", "backend", "model_id", "created_at"]
    list_filter = ["backend"]
    search_fields = ["name", "model_id"]


@admin.register(TeacherRun)
class TeacherRunAdmin(admin.ModelAdmin):
    list_display = ["id", "teacher", "dataset", "split", "source_file", "created_at"]
    list_filter = ["teacher", "dataset", "split"]
    search_fields = ["teacher__name", "source_file", "notes"]
    list_select_related = ["teacher", "dataset"]


@admin.register(TeacherOutput)
class TeacherOutputAdmin(admin.ModelAdmin):
    list_display = ["question", "kind", "choice_index", "short_text", "prompt_version", "truncated", "empty"]
    list_filter = ["kind", "truncated", "empty", "prompt_version", "run__teacher"]
    search_fields = ["question__source_id", "text"]
    list_select_related = ["question", "run"]
    raw_id_fields = ["question", "run"]

    @admin.display(description="text")
    def short_text(self, output: TeacherOutput) -> str:
        return output.text[:100]


@admin.register(StudentRun)
class StudentRunAdmin(admin.ModelAdmin):
    list_display = ["id", "__str__", "method", "training_data", "base_checkpoint", "seed", "status", "accuracy_display"]
    list_filter = ["status", "method", "training_data", "model_size", "architecture"]
    search_fields = ["name", "base_checkpoint", "checkpoint_dir"]
    change_form_template = "admin/distillation/studentrun/change_form.html"
    # The annotations app adds an action that regenerates a run's explanations in its studies.
    actions = ["train_or_resume"]
    # A run's definition is fixed once it exists (its checkpoints were made with it); what the jobs write
    # (status, metrics, checkpoint folder) is never typed in.
    editable_after_creation = ["name", "model_size"]
    run_page_fields = ["summary", "training_curves", "prediction_sets_display", "sample_predictions", "run_jobs"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = StudentRunCreateForm
            kwargs["fields"] = list(StudentRunCreateForm.base_fields)
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return list(StudentRunCreateForm.base_fields)
        return [*self.run_page_fields, *self.editable_after_creation]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else list(self.run_page_fields)

    def save_form(self, request, form, change):
        return form.save(commit=False) if change else form.save()

    def save_model(self, request, obj, form, change):
        if change:  # a new run was saved by its form, through student_run_create
            obj.save(update_fields=self.editable_after_creation)

    # -- the run page's buttons ---------------------------------------------------------------------------

    def get_urls(self):
        own = [
            path(
                "<int:run_id>/train/", self.admin_site.admin_view(self.train_view), name="distillation_studentrun_train"
            ),
            path(
                "<int:run_id>/train-longer/",
                self.admin_site.admin_view(self.train_longer_view),
                name="distillation_studentrun_train_longer",
            ),
            path(
                "<int:run_id>/evaluate/",
                self.admin_site.admin_view(self.evaluate_view),
                name="distillation_studentrun_evaluate",
            ),
        ]
        return own + super().get_urls()

    def run_buttons(self, run: StudentRun) -> list[tuple[str, str, str]]:
        """(label, url, method) of each button on the run page; the annotations app adds its own."""
        return [
            ("Train (or resume) and evaluate", reverse("admin:distillation_studentrun_train", args=[run.pk]), "post"),
            ("Train longer", reverse("admin:distillation_studentrun_train_longer", args=[run.pk]), "get"),
            ("Evaluate again", reverse("admin:distillation_studentrun_evaluate", args=[run.pk]), "post"),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        # Buttons start jobs: only for staff who may change the run.
        buttons = self.run_buttons(run) if run and self.has_change_permission(request, run) else []
        extra_context = {**(extra_context or {}), "run_buttons": buttons}
        return super().change_view(request, object_id, form_url, extra_context)

    def start_from_page(self, request, run_id: int, start) -> HttpResponseRedirect:
        """POST only: start one job with ``start(run)``, say so with a link, and go back to the run page."""
        run = get_object_or_404(StudentRun, pk=run_id)
        if request.method != "POST" or not self.has_change_permission(request, run):
            raise PermissionDenied
        try:
            job = start(run)
        except (QueueUnavailable, ValueError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, jobs_started_message([job]), messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:distillation_studentrun_change", args=[run.pk]))

    def train_view(self, request, run_id: int):
        return self.start_from_page(request, run_id, lambda run: student_training_enqueue(run=run, user=request.user))

    def start_from_form(self, request, run_id: int, *, form_for, start, title: str, template: str):
        """GET: an intermediate form for the run; a valid POST starts one job with ``start(run, cleaned_data)``,
        says so with a link and goes back to the run page; a refused start is said on the form."""
        run = get_object_or_404(StudentRun, pk=run_id)
        if not self.has_change_permission(request, run):
            raise PermissionDenied
        form = form_for(run, request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = start(run, form.cleaned_data)
            except (QueueUnavailable, ValueError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, jobs_started_message([job]), messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:distillation_studentrun_change", args=[run.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": title.format(run=run),
            "opts": self.model._meta,
            "original": run,
            "form": form,
        }
        return TemplateResponse(request, template, context)

    def train_longer_view(self, request, run_id: int):
        return self.start_from_form(
            request,
            run_id,
            form_for=lambda run, data: TrainLongerForm(data, trained_steps=trained_steps(run)),
            start=lambda run, cleaned: student_run_train_longer_enqueue(
                run=run, max_steps=cleaned["max_steps"], user=request.user
            ),
            title="Train {run} longer",
            template="admin/distillation/studentrun/train_longer.html",
        )

    def evaluate_view(self, request, run_id: int):
        return self.start_from_page(request, run_id, lambda run: student_evaluation_enqueue(run=run, user=request.user))

    # -- the run page's read-only parts -------------------------------------------------------------------

    @admin.display(description="run")
    def summary(self, run: StudentRun) -> str:
        rows = [
            ("status", run.get_status_display()),
            ("method", f"{run.get_method_display()} ({run.condition_label})"),
            ("training data", run.get_training_data_display()),
            ("loss weights", f"alpha {run.alpha}, beta {run.beta}, gamma {run.gamma}"),
            ("base checkpoint", run.base_checkpoint),
            ("seed", run.seed),
            ("teacher run", str(run.teacher_run) if run.teacher_run else "none"),
            ("hyperparameters", ", ".join(f"{k}={v}" for k, v in sorted(run.hyperparameters.items())) or "defaults"),
            ("trained steps", run.metrics.get("steps", "–")),
            ("trained longer", self.extensions_display(run)),
            ("checkpoint", run.checkpoint_dir or "not trained yet"),
            ("dev accuracy", self.accuracy_display(run)),
        ]
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @staticmethod
    def extensions_display(run: StudentRun) -> str:
        extensions = run.metrics.get("extensions") or []
        if not extensions:
            return "no"
        return "; ".join(
            f"from step {e['from_step']} to {e['to_step']} (optimizer moments {e['optimizer']})" for e in extensions
        )

    @admin.display(description="prediction sets")
    def prediction_sets_display(self, run: StudentRun) -> str:
        sets = run.prediction_sets.annotate(
            n=Count("predictions"), correct=Count("predictions", filter=Q(predictions__is_correct=True))
        )
        if not sets:
            return "none yet"
        rows = [
            (
                s.number,
                s.get_kind_display(),
                s.split or "mixed",
                s.n,
                f"{100 * s.correct / s.n:.1f}%" if s.n else "–",
                s.checkpoint_label,
                s.task_format,
                s.created_at.strftime("%Y-%m-%d %H:%M"),
            )
            for s in sets
        ]
        head = "".join(
            f"<th>{name}</th>"
            for name in ("set", "kind", "split", "questions", "correct", "checkpoint", "format", "made")
        )
        head = f"<tr>{head}</tr>"
        return format_html(
            "<table>{}{}</table>",
            mark_safe(head),
            format_html_join("", "<tr>" + "<td>{}</td>" * 8 + "</tr>", rows),
        )

    @admin.display(description="sample predictions (newest set)")
    def sample_predictions(self, run: StudentRun) -> str:
        newest = latest_prediction_set(run)
        if newest is None:
            return "none yet"
        predictions = newest.predictions.select_related("question").order_by("question_id")[:SAMPLE_PREDICTIONS]
        rows = [
            (
                p.question.question,
                p.question.answer,
                p.predicted_answer or p.raw_answer,
                "yes" if p.is_correct else "no",
                p.explanation,
            )
            for p in predictions
        ]
        head = "<tr><th>question</th><th>answer</th><th>predicted</th><th>correct</th><th>explanation</th></tr>"
        return format_html(
            "<table>{}{}</table>", mark_safe(head), format_html_join("", "<tr>" + "<td>{}</td>" * 5 + "</tr>", rows)
        )

    @admin.display(description="jobs")
    def run_jobs(self, run: StudentRun) -> str:
        jobs = Job.objects.filter(
            target_type=ContentType.objects.get_for_model(StudentRun), target_id=str(run.pk)
        ).order_by("-created_at")[:20]
        if not jobs:
            return "none yet"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li><a href="{}">job {}</a> {} – {} {}</li>',
                ((job_url(job), job.pk, job.kind, job.get_status_display(), job.message[:120]) for job in jobs),
            ),
        )

    @admin.display(description="training curves")
    def training_curves(self, run: StudentRun) -> str:
        """The step losses and the validation loss and exact-match accuracy, as stored in the run's metrics."""
        metrics = run.metrics or {}
        losses = [(step + 1, value) for step, value in enumerate(metrics.get("loss_history") or [])]
        validation = metrics.get("validation") or []
        held_out = [(p["step"], p["loss"]) for p in validation if p.get("loss") is not None]
        accuracy = [(p["step"], 100 * p["accuracy"]) for p in validation if p.get("accuracy") is not None]
        if not losses:
            return "no training steps recorded yet"
        charts = [
            line_chart([("training loss", "#1f77b4", losses), ("validation loss", "#d62728", held_out)], "loss"),
        ]
        if accuracy:
            charts.append(line_chart([("validation exact match", "#2ca02c", accuracy)], "exact match (%)"))
        return format_html_join("", "{}", ((chart,) for chart in charts))

    @admin.action(description="Train (or resume from the last checkpoint) and evaluate", permissions=["change"])
    def train_or_resume(self, request, queryset):
        self.enqueue_for_each(request, queryset, student_training_enqueue)

    def enqueue_for_each(self, request, queryset, enqueue) -> None:
        """Start a job per selected run with a service ``enqueue(*, run, user)``; say which jobs started."""
        try:
            jobs = [enqueue(run=run, user=request.user) for run in queryset]
        except (QueueUnavailable, ValueError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, jobs_started_message(jobs), messages.SUCCESS)

    @admin.display(description="accuracy")
    def accuracy_display(self, run: StudentRun) -> str:
        accuracy = run.accuracy
        return "–" if accuracy is None else f"{100 * accuracy:.1f}%"


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = [
        "student_run",
        "prediction_set",
        "question",
        "predicted_answer",
        "parse_status",
        "is_correct",
        "short_explanation",
    ]
    list_filter = ["parse_status", "is_correct", "student_run"]
    search_fields = ["question__source_id", "explanation", "predicted_answer"]
    list_select_related = ["question", "student_run"]
    raw_id_fields = ["question", "student_run", "prediction_set"]

    @admin.display(description="explanation")
    def short_explanation(self, prediction: Prediction) -> str:
        return prediction.explanation[:100]


def line_chart(series: list[tuple[str, str, list[tuple[float, float]]]], y_label: str) -> SafeString:
    """A small SVG line chart of (name, colour, points) series over training steps; numbers only, no script."""
    width, height, margin = 560, 220, 44
    points = [point for _, _, values in series for point in values]
    x_max = max(x for x, _ in points) or 1
    y_min, y_max = min(y for _, y in points), max(y for _, y in points)
    span = (y_max - y_min) or 1.0

    def position(x: float, y: float) -> str:
        left = margin + (width - 2 * margin) * x / x_max
        top = height - margin - (height - 2 * margin) * (y - y_min) / span
        return f"{left:.1f},{top:.1f}"

    lines, legend = [], []
    for index, (name, colour, values) in enumerate(series):
        if not values:
            continue
        path = " ".join(position(x, y) for x, y in values)
        lines.append(format_html('<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>', colour, path))
        if len(values) < 40:
            lines.extend(
                format_html('<circle cx="{}" cy="{}" r="2.5" fill="{}"/>', *position(x, y).split(","), colour)
                for x, y in values
            )
        legend.append(
            format_html('<text x="{}" y="14" fill="{}" font-size="12">{}</text>', margin + 170 * index, colour, name)
        )
    axes = format_html(
        '<line x1="{m}" y1="{b}" x2="{r}" y2="{b}" stroke="#888"/><line x1="{m}" y1="{t}" x2="{m}" y2="{b}" '
        'stroke="#888"/><text x="{m}" y="{lb}" font-size="11">step 0</text><text x="{r}" y="{lb}" font-size="11" '
        'text-anchor="end">step {xm}</text><text x="2" y="{t}" font-size="11">{ymax}</text>'
        '<text x="2" y="{b}" font-size="11">{ymin}</text><text x="{r}" y="{t}" font-size="11" text-anchor="end">{yl}'
        "</text>",
        m=margin,
        b=height - margin,
        r=width - margin,
        t=margin,
        lb=height - margin + 16,
        xm=int(x_max),
        ymax=f"{y_max:.3g}",
        ymin=f"{y_min:.3g}",
        yl=y_label,
    )
    body = mark_safe("".join([axes, *lines, *legend]))  # every piece above went through format_html
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" aria-label="{}">{}</svg>',
        width,
        height,
        y_label,
        body,
    )
