"""Admin for job records: progress, ETA, errors, and a cancel action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from evalsite.jobs import request_cancel
from evalsite.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "stage", "progress_display", "eta_display", "runner", "created_at"]
    list_filter = ["status", "kind", "runner"]
    search_fields = ["kind", "stage", "message", "rq_job_id", "target_id"]
    readonly_fields = [
        "kind",
        "function",
        "params",
        "status",
        "runner",
        "rq_job_id",
        "stage",
        "done",
        "total",
        "progress_display",
        "eta_display",
        "message",
        "error",
        "result",
        "cancel_requested",
        "target_type",
        "target_id",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    ]
    exclude = ["stage_started_at", "stage_started_done"]
    actions = ["cancel_jobs"]
    date_hierarchy = "created_at"

    @admin.display(description="progress")
    def progress_display(self, job: Job) -> str:
        if job.total is None:
            return f"{job.done}" if job.done else "–"
        percent = 100 * (job.fraction or 0)
        return format_html(
            '<progress value="{}" max="{}" aria-label="{} of {}"></progress> {}/{} ({}%)',
            job.done,
            job.total,
            job.done,
            job.total,
            job.done,
            job.total,
            f"{percent:.0f}",
        )

    @admin.display(description="ETA")
    def eta_display(self, job: Job) -> str:
        eta = job.eta
        if eta is None:
            return "–"
        seconds = int(eta.total_seconds())
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m {seconds % 60:02d}s"

    @admin.action(description="Cancel selected jobs (work stored so far is kept)", permissions=["change"])
    def cancel_jobs(self, request, queryset):
        cancelled = sum(1 for job in queryset if request_cancel(job))
        self.message_user(request, f"Asked {cancelled} job(s) to stop.", messages.SUCCESS)

    def has_add_permission(self, request) -> bool:
        return False
