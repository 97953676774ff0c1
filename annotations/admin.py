"""Admin for studies and everything that hangs off them: items, explanations, annotators, ratings, batches."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html

from annotations.models import (
    AnalysisReport,
    Annotator,
    Assignment,
    Condition,
    Construct,
    Explanation,
    Item,
    Rating,
    Study,
)
from annotations.services.explanations import explanations_regenerate_enqueue
from annotations.services.studies import study_open
from distillation import admin as distillation_admin
from distillation.models import StudentRun


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
    actions = ["open_studies", "close_studies"]

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


# Student runs are distillation's; explanations are ours, so the action that regenerates them is added here.
admin.site.unregister(StudentRun)


@admin.register(StudentRun)
class StudentRunAdmin(distillation_admin.StudentRunAdmin):
    actions = ["regenerate_explanations", *distillation_admin.StudentRunAdmin.actions]

    @admin.action(
        description="Regenerate explanations in their studies (rated ones are kept as old versions)",
        permissions=["change"],
    )
    def regenerate_explanations(self, request, queryset):
        self.enqueue_for_each(request, queryset, explanations_regenerate_enqueue)


# Crowd-platform admin lives in its own module; importing it registers it.
from annotations.crowd import admin as crowd_admin  # noqa: E402,F401
