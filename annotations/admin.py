"""Admin for studies and everything that hangs off them: items, explanations, annotators, ratings, batches."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from annotations.models import (
    AnalysisReport,
    Annotator,
    Assignment,
    Condition,
    Construct,
    Explanation,
    ExplanationMetric,
    Item,
    Rating,
    Study,
)
from annotations.services.explanations import explanations_generate_enqueue, explanations_regenerate_enqueue
from annotations.services.metrics import ADMIN_METRICS, MetricsUnavailable, explanation_metrics_start
from annotations.services.studies import study_open
from distillation import admin as distillation_admin
from distillation.models import Split, StudentRun
from evalsite.jobs import QueueUnavailable


class ConstructInline(admin.TabularInline):
    model = Construct
    extra = 0


class ConditionInline(admin.TabularInline):
    model = Condition
    extra = 0
    raw_id_fields = ["student_run"]


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "mode", "status", "explanations_per_annotator", "ratings_per_explanation"]
    list_filter = ["status", "mode"]
    search_fields = ["slug", "title"]
    inlines = [ConstructInline, ConditionInline]
    prepopulated_fields = {"slug": ["title"]}
    actions = ["open_studies", "close_studies", "score_explanations"]

    def get_list_display(self, request):
        return [*self.list_display, "dashboard_link"]

    @admin.display(description="dashboard")
    def dashboard_link(self, study: Study) -> str:
        return format_html('<a href="{}">dashboard</a>', reverse("annotations:dashboard", args=[study.slug]))

    @admin.action(description="Open selected studies to annotators", permissions=["change"])
    def open_studies(self, request, queryset):
        for study in queryset:
            try:
                study_open(study=study)
            except ValidationError as exc:
                self.message_user(request, f"{study.slug}: {'; '.join(exc.messages)}", messages.ERROR)
            else:
                self.message_user(request, f"{study.slug} is open.", messages.SUCCESS)

    @admin.action(
        description="Score explanations with automatic metrics (length, teacher overlap, consistency)",
        permissions=["change"],
    )
    def score_explanations(self, request, queryset):
        for study in queryset:
            try:
                job = explanation_metrics_start(study=study, metrics=ADMIN_METRICS, user=request.user)
            except (MetricsUnavailable, QueueUnavailable) as exc:
                self.message_user(request, f"{study.slug}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{study.slug}: scoring started (job {job.pk}).", messages.SUCCESS)

    @admin.action(description="Close selected studies", permissions=["change"])
    def close_studies(self, request, queryset):
        closed = queryset.update(status=Study.Status.CLOSED)
        self.message_user(request, f"Closed {closed} stud{'y' if closed == 1 else 'ies'}.", messages.SUCCESS)


@admin.register(Construct)
class ConstructAdmin(admin.ModelAdmin):
    list_display = ["name", "study", "label", "scale_size", "position"]
    list_filter = ["study", "scale_size"]
    search_fields = ["name", "label", "prompt"]


@admin.register(Condition)
class ConditionAdmin(admin.ModelAdmin):
    list_display = ["label", "study", "student_run", "position"]
    list_filter = ["study"]
    search_fields = ["label", "description"]
    raw_id_fields = ["student_run"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["source_id", "study", "short_question"]
    list_filter = ["study"]
    search_fields = ["source_id", "question_text"]
    raw_id_fields = ["question"]

    @admin.display(description="question")
    def short_question(self, item: Item) -> str:
        return item.question_text[:90]


@admin.register(Explanation)
class ExplanationAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "condition", "version", "is_current", "source", "short_text"]
    list_filter = ["is_current", "source", "condition__study", "condition"]
    search_fields = ["text", "item__source_id"]
    list_select_related = ["item", "condition"]
    raw_id_fields = ["item", "condition", "prediction", "supersedes"]

    @admin.display(description="text")
    def short_text(self, explanation: Explanation) -> str:
        return explanation.text[:100]


@admin.register(Annotator)
class AnnotatorAdmin(admin.ModelAdmin):
    list_display = ["external_id", "study", "source", "started_at", "finished_at", "attention_failures"]
    list_filter = ["study", "source", "finished_at"]
    search_fields = ["external_id", "external_assignment_id", "public_id"]
    readonly_fields = ["public_id"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["annotator", "position", "kind", "explanation", "status", "seconds_spent"]
    list_filter = ["status", "kind", "annotator__study"]
    search_fields = ["annotator__external_id"]
    raw_id_fields = ["annotator", "explanation", "second_explanation", "preferred_explanation"]


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ["annotator", "explanation", "construct", "value", "created_at"]
    list_filter = ["construct__study", "construct__name", "value"]
    search_fields = ["annotator__external_id"]
    raw_id_fields = ["annotator", "explanation", "construct", "assignment"]


@admin.register(AnalysisReport)
class AnalysisReportAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "reference", "created_at"]
    list_filter = ["study"]


@admin.register(ExplanationMetric)
class ExplanationMetricAdmin(admin.ModelAdmin):
    list_display = ["id", "explanation", "name", "value", "version", "created_at"]
    list_filter = ["name", "explanation__item__study"]
    search_fields = ["name", "version", "raw_reply"]
    raw_id_fields = ["explanation", "job"]
    readonly_fields = ["created_at"]


# Student runs are distillation's; explanations are ours, so the run page's study parts are added here.
admin.site.unregister(StudentRun)


class GenerateIntoStudyForm(forms.Form):
    """Where a run's explanations go: a study, and one of its conditions or a new one."""

    study = forms.ModelChoiceField(queryset=Study.objects.all())
    condition = forms.ModelChoiceField(
        queryset=Condition.objects.select_related("study"),
        required=False,
        help_text="An existing condition of that study; leave blank to create the one named below.",
    )
    new_condition = forms.CharField(max_length=120, required=False, label="or a new condition named")
    split = forms.ChoiceField(choices=Split.choices, initial=Split.VALIDATION)
    limit = forms.IntegerField(required=False, min_value=1, help_text="Only the first N questions (blank: all).")

    def clean(self):
        cleaned = super().clean()
        study, condition = cleaned.get("study"), cleaned.get("condition")
        label = (cleaned.get("new_condition") or "").strip()
        if condition is not None and label:
            raise ValidationError("Pick an existing condition or name a new one, not both.")
        if condition is None and not label:
            raise ValidationError("Pick an existing condition or name a new one.")
        if condition is not None and study is not None and condition.study_id != study.pk:
            self.add_error("condition", f"{condition} is not a condition of {study}.")
        if study is not None and label and study.conditions.filter(label=label).exists():
            self.add_error("new_condition", f"{study} already has a condition {label!r}: pick it above.")
        cleaned["condition_label"] = condition.label if condition is not None else label
        return cleaned


@admin.register(StudentRun)
class StudentRunAdmin(distillation_admin.StudentRunAdmin):
    actions = ["regenerate_explanations", *distillation_admin.StudentRunAdmin.actions]
    run_page_fields = [*distillation_admin.StudentRunAdmin.run_page_fields, "shown_in"]

    @admin.action(
        description="Regenerate explanations in their studies (rated ones are kept as old versions)",
        permissions=["change"],
    )
    def regenerate_explanations(self, request, queryset):
        self.enqueue_for_each(request, queryset, explanations_regenerate_enqueue)

    def get_urls(self):
        own = [
            path(
                "<int:run_id>/generate/",
                self.admin_site.admin_view(self.generate_view),
                name="distillation_studentrun_generate",
            ),
            path(
                "<int:run_id>/regenerate/",
                self.admin_site.admin_view(self.regenerate_view),
                name="distillation_studentrun_regenerate",
            ),
        ]
        return own + super().get_urls()

    def run_buttons(self, run: StudentRun) -> list[tuple[str, str, str]]:
        return [
            *super().run_buttons(run),
            (
                "Generate explanations into a study",
                reverse("admin:distillation_studentrun_generate", args=[run.pk]),
                "get",
            ),
            ("Regenerate explanations", reverse("admin:distillation_studentrun_regenerate", args=[run.pk]), "post"),
        ]

    def regenerate_view(self, request, run_id: int):
        run = get_object_or_404(StudentRun, pk=run_id)
        if request.method == "POST" and not run.conditions.exists():
            self.message_user(
                request, f"Run {run.pk} feeds no study condition yet: choose where its explanations go.", messages.INFO
            )
            return HttpResponseRedirect(reverse("admin:distillation_studentrun_generate", args=[run.pk]))
        return self.start_from_page(
            request, run_id, lambda run: explanations_regenerate_enqueue(run=run, user=request.user)
        )

    def generate_view(self, request, run_id: int):
        return self.start_from_form(
            request,
            run_id,
            form_for=lambda run, data: GenerateIntoStudyForm(data, initial={"new_condition": run.condition_label}),
            start=lambda run, cleaned: explanations_generate_enqueue(
                run=run,
                study=cleaned["study"],
                condition_label=cleaned["condition_label"],
                split=cleaned["split"],
                limit=cleaned["limit"],
                user=request.user,
            ),
            title="Generate explanations of {run} into a study",
            template="admin/distillation/studentrun/generate.html",
        )

    @admin.display(description="studies that show it")
    def shown_in(self, run: StudentRun) -> str:
        conditions = run.conditions.select_related("study").annotate(
            current=Count("explanations", filter=Q(explanations__is_current=True)),
            ratings=Count("explanations__ratings"),
        )
        if not conditions:
            return "no study yet"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li><a href="{}">{}</a>: condition <a href="{}">{}</a>, {} current explanations, {} ratings</li>',
                (
                    (
                        reverse("admin:annotations_study_change", args=[c.study_id]),
                        c.study.slug,
                        reverse("admin:annotations_condition_change", args=[c.pk]),
                        c.label,
                        c.current,
                        c.ratings,
                    )
                    for c in conditions
                ),
            ),
        )


# Crowd-platform admin lives in its own module; importing it registers it.
from annotations.crowd import admin as crowd_admin  # noqa: E402,F401
