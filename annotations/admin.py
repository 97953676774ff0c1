"""Admin for studies and everything that hangs off them: items, explanations, annotators, ratings, batches."""

from __future__ import annotations

from django.contrib import admin

from annotations.models import (
    AnalysisReport,
    Annotator,
    Assignment,
    BlockedWorker,
    Condition,
    Construct,
    CrowdBatch,
    CrowdSubmission,
    CrowdTask,
    Explanation,
    Item,
    Rating,
    Study,
)


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


class CrowdTaskInline(admin.TabularInline):
    model = CrowdTask
    extra = 0
    readonly_fields = ["intent_key", "external_id", "max_assignments", "status", "created_at", "published_at"]


@admin.register(CrowdBatch)
class CrowdBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "platform", "sandbox", "status", "reward_cents", "n_tasks", "assignments_per_task"]
    list_filter = ["platform", "sandbox", "status"]
    search_fields = ["title", "external_id", "study__slug"]
    inlines = [CrowdTaskInline]


@admin.register(CrowdSubmission)
class CrowdSubmissionAdmin(admin.ModelAdmin):
    list_display = ["worker_id", "batch", "status", "bonus_cents", "submitted_at", "reviewed_at"]
    list_filter = ["status", "batch__platform", "batch"]
    search_fields = ["worker_id", "external_assignment_id"]
    raw_id_fields = ["batch", "task", "annotator"]


@admin.register(BlockedWorker)
class BlockedWorkerAdmin(admin.ModelAdmin):
    list_display = ["worker_id", "platform", "reason", "created_at"]
    list_filter = ["platform"]
    search_fields = ["worker_id", "reason"]


@admin.register(AnalysisReport)
class AnalysisReportAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "reference", "created_at"]
    list_filter = ["study"]
