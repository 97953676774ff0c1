"""Admin for job records: progress, ETA, errors, and a cancel action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.html import format_html

from evalsite.adminlinks import admin_url_for
from evalsite.jobs import request_cancel
from evalsite.models import Job

# Seconds between reloads of the job pages while a job runs.
REFRESH_SECONDS = 5


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "stage",
        "progress_display",
        "eta_display",
        "target_display",
        "runner",
        "created_at",
    ]
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
        "target_display",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    ]
    exclude = ["stage_started_at", "stage_started_done", "target_type", "target_id"]
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

    @admin.display(description="target")
    def target_display(self, job: Job) -> str:
        if job.target_type is None:
            return "–"
        label = f"{job.target_type.name} {job.target_id}"
        url = admin_url_for(job.target_type, job.target_id)
        return format_html('<a href="{}">{}</a>', url, label) if url else label

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

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("target_type", "created_by")

    def changelist_view(self, request, extra_context=None):
        running = Job.objects.filter(status__in=Job.ACTIVE_STATUSES).exists()
        return super().changelist_view(request, {**(extra_context or {}), **self._refresh_context(running)})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = Job.objects.filter(pk=object_id).only("status").first()
        running = job is not None and job.is_active
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), **self._refresh_context(running)}
        )

    @staticmethod
    def _refresh_context(running: bool) -> dict:
        """While something runs, the page reloads itself (templates/admin/evalsite/job/)."""
        return {"refresh_seconds": REFRESH_SECONDS if running else None}
