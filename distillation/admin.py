"""Admin for datasets, questions, teachers and their outputs, student runs and predictions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from distillation.models import Dataset, Prediction, Question, StudentRun, Teacher, TeacherOutput, TeacherRun
from distillation.services.students import student_training_enqueue
from evalsite.adminlinks import jobs_started_message
from evalsite.jobs import QueueUnavailable


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
    raw_id_fields = ["teacher_run"]
    readonly_fields = ["training_curves"]
    # The annotations app adds an action that regenerates a run's explanations in its studies.
    actions = ["train_or_resume"]

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
        except QueueUnavailable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, jobs_started_message(jobs), messages.SUCCESS)

    @admin.display(description="accuracy")
    def accuracy_display(self, run: StudentRun) -> str:
        accuracy = run.accuracy
        return "–" if accuracy is None else f"{100 * accuracy:.1f}%"


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["student_run", "question", "predicted_answer", "parse_status", "is_correct", "short_explanation"]
    list_filter = ["parse_status", "is_correct", "student_run"]
    search_fields = ["question__source_id", "explanation", "predicted_answer"]
    list_select_related = ["question", "student_run"]
    raw_id_fields = ["question", "student_run"]

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
