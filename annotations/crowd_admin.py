"""Admin for crowd-platform batches, their HITs, submissions and blocked workers."""

from __future__ import annotations

from django.contrib import admin

from annotations.models import BlockedWorker, CrowdBatch, CrowdSubmission, CrowdTask


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
