"""Admin for crowd batches: launch with the full cost shown first, progress, bulk review, and the block list."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from annotations.crowd import selectors, services
from annotations.crowd.costs import cents_from_amount
from annotations.crowd.forms import LaunchForm, NotifyForm, ReviewForm
from annotations.crowd.providers import CrowdPlatformError
from annotations.models import BlockedWorker, CrowdBatch, CrowdPlatform, CrowdSubmission, CrowdTask


class CrowdTaskInline(admin.TabularInline):
    model = CrowdTask
    extra = 0
    can_delete = False
    readonly_fields = ["intent_key", "external_id", "max_assignments", "status", "created_at", "published_at"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CrowdBatch)
class CrowdBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "platform", "sandbox", "status", "progress_summary", "estimated_total", "links"]
    list_filter = ["platform", "sandbox", "status"]
    search_fields = ["title", "external_id", "study__slug"]
    inlines = [CrowdTaskInline]
    actions = ["sync_batches", "approve_passing", "expire_batches"]
    readonly_fields = [
        "study",
        "platform",
        "sandbox",
        "status",
        "reward_cents",
        "n_tasks",
        "assignments_per_task",
        "fee_rate",
        "planned_bonus_cents",
        "external_id",
        "exclusion_qualification_id",
        "launch_key",
        "last_error",
        "created_by",
        "launched_at",
        "synced_at",
    ]

    # -- list columns ----------------------------------------------------------------------------------------
    @admin.display(description="progress")
    def progress_summary(self, batch: CrowdBatch) -> str:
        progress = selectors.batch_progress(batch)
        return f"{progress.submitted_total}/{progress.assignments_planned} ({progress.percent}%)"

    @admin.display(description="cost")
    def estimated_total(self, batch: CrowdBatch) -> str:
        return f"{selectors.money_label(selectors.batch_currency(batch))}{selectors.batch_cost_estimate(batch).total}"

    @admin.display(description="")
    def links(self, batch: CrowdBatch) -> str:
        return format_html(
            '<a href="{}">progress</a> · <a href="{}">review</a>',
            reverse("admin:annotations_crowdbatch_progress", args=[batch.pk]),
            reverse("admin:annotations_crowdbatch_review", args=[batch.pk]),
        )

    # -- urls --------------------------------------------------------------------------------------------------
    def get_urls(self):
        own = [
            path("launch/", self.admin_site.admin_view(self.launch_view), name="annotations_crowdbatch_launch"),
            path(
                "<int:batch_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="annotations_crowdbatch_progress",
            ),
            path(
                "<int:batch_id>/review/",
                self.admin_site.admin_view(self.review_view),
                name="annotations_crowdbatch_review",
            ),
        ]
        return own + super().get_urls()

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:annotations_crowdbatch_launch"))

    def _context(self, request: HttpRequest, title: str, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "can_change": self.has_change_permission(request),
            **extra,
        }

    def _check(self, request: HttpRequest, permission: str = "change") -> None:
        if not getattr(self, f"has_{permission}_permission")(request):
            raise PermissionDenied

    # -- launch: form, then the full cost, then confirmation -----------------------------------------------------
    def launch_view(self, request: HttpRequest) -> HttpResponse:
        self._check(request, "add")
        if request.method != "POST":
            form = LaunchForm(initial={"study": request.GET.get("study")})
            return self._launch_page(request, form)
        form = LaunchForm(request.POST)
        if not form.is_valid() or "edit" in request.POST:
            return self._launch_page(request, form)
        cost = form.cost()
        confirmed = form.cleaned_data.get("confirmed_total")
        if "confirm" not in request.POST or confirmed != cost.total:
            if "confirm" in request.POST:
                messages.warning(request, "The cost changed since it was shown; check it and confirm again.")
            return self._launch_page(request, form, cost=cost)
        data = form.cleaned_data
        try:
            batch = services.crowd_batch_create(
                study=data["study"],
                platform=data["platform"],
                title=data["title"],
                description=data["description"],
                reward_cents=cents_from_amount(data["reward"]),
                n_tasks=data["n_tasks"],
                assignments_per_task=data["assignments_per_task"],
                sandbox=data["sandbox"],
                fee_rate=form.fee_rate_value(),
                planned_bonus_cents=cents_from_amount(data["planned_bonus"] or 0),
                params=form.params(),
                created_by=request.user,
            )
            services.crowd_batch_enqueue(batch=batch, action="launch", user=request.user)
        except CrowdPlatformError as exc:
            messages.error(request, str(exc))
            return self._launch_page(request, form)
        messages.success(request, f"Launching batch #{batch.pk} (${cost.total}); progress below.")
        return HttpResponseRedirect(reverse("admin:annotations_crowdbatch_progress", args=[batch.pk]))

    def _launch_page(self, request: HttpRequest, form: LaunchForm, cost=None) -> HttpResponse:
        hidden = []
        if cost is not None:
            hidden = [(name, value) for name, value in request.POST.items() if name not in ("csrfmiddlewaretoken",)]
            hidden = [(name, value) for name, value in hidden if name not in ("confirm", "confirmed_total")]
            hidden.append(("confirmed_total", str(cost.total)))
        context = self._context(
            request,
            "Confirm the cost and launch" if cost else "Launch a crowd batch",
            form=form,
            cost=cost,
            hidden=hidden,
        )
        return TemplateResponse(request, "annotations/crowd/launch.html", context)

    # -- progress ----------------------------------------------------------------------------------------------
    def progress_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        self._check(request, "view")
        batch = get_object_or_404(CrowdBatch.objects.select_related("study"), pk=batch_id)
        notify_form = NotifyForm()
        if request.method == "POST":
            self._check(request)
            action = request.POST.get("action", "")
            try:
                if action in ("sync", "expire", "launch", "refill", "pause", "resume"):
                    services.crowd_batch_enqueue(batch=batch, action=action, user=request.user)
                    messages.success(request, f"Started: {action}.")
                elif action == "notify":
                    notify_form = NotifyForm(request.POST)
                    if notify_form.is_valid():
                        services.crowd_batch_enqueue(
                            batch=batch, action="notify", params=notify_form.cleaned_data, user=request.user
                        )
                        messages.success(request, "Notifying the workers of this batch.")
                        return HttpResponseRedirect(request.path)
                    return self._progress_page(request, batch, notify_form)
                else:
                    messages.error(request, f"Unknown action {action!r}.")
            except CrowdPlatformError as exc:
                messages.error(request, str(exc))
            return HttpResponseRedirect(request.path)
        return self._progress_page(request, batch, notify_form)

    def _progress_page(self, request: HttpRequest, batch: CrowdBatch, notify_form: NotifyForm) -> HttpResponse:
        context = self._context(
            request,
            f"Batch #{batch.pk}: {batch.title}",
            batch=batch,
            progress=selectors.batch_progress(batch),
            cost=selectors.batch_cost_estimate(batch),
            jobs=selectors.batch_jobs(batch),
            tasks=batch.tasks.all(),
            manual=selectors.manual_links(batch) if batch.platform == CrowdPlatform.MANUAL else None,
            preview_url=selectors.worker_preview_url(batch),
            refill=selectors.refill_cost(batch),
            money=selectors.money_label(selectors.batch_currency(batch)),
            notify_form=notify_form,
            relaunchable=batch.status in services.LAUNCHABLE,
        )
        return TemplateResponse(request, "annotations/crowd/progress.html", context)

    # -- review: bulk approve, reject, bonus, block ---------------------------------------------------------------
    def review_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        self._check(request, "view")
        batch = get_object_or_404(CrowdBatch.objects.select_related("study"), pk=batch_id)
        status = request.GET.get("status", "")
        form = ReviewForm()
        if request.method == "POST":
            self._check(request)
            if "auto" in request.POST:
                services.crowd_batch_enqueue(
                    batch=batch,
                    action="review",
                    params={"approve_passing": True, "reject_failing": "reject_failing" in request.POST},
                    user=request.user,
                )
                messages.success(
                    request,
                    "Reviewing: passing work is approved"
                    + (", failing work rejected." if "reject_failing" in request.POST else "."),
                )
                return HttpResponseRedirect(request.get_full_path())
            form = ReviewForm(request.POST)
            ids = [int(pk) for pk in request.POST.getlist("submission") if pk.isdigit()]
            if not ids:
                messages.error(request, "Select at least one submission.")
            elif form.is_valid() and self._act(request, batch, ids, form):
                return HttpResponseRedirect(request.get_full_path())
        context = self._context(
            request,
            f"Review batch #{batch.pk}: {batch.title}",
            batch=batch,
            rows=selectors.submissions_with_evidence(batch, status=status or None),
            money=selectors.money_label(selectors.batch_currency(batch)),
            statuses=CrowdSubmission.Status.choices,
            status=status,
            form=form,
            progress=selectors.batch_progress(batch),
        )
        return TemplateResponse(request, "annotations/crowd/review.html", context)

    def _act(self, request: HttpRequest, batch: CrowdBatch, ids: list[int], form: ReviewForm) -> bool:
        data = form.cleaned_data
        action = data["action"]
        if action == "block":
            workers = batch.submissions.filter(pk__in=ids).values_list("worker_id", flat=True).distinct()
            for worker_id in workers:
                services.blocked_worker_add(platform=batch.platform, worker_id=worker_id, reason=data["reason"])
            messages.success(request, f"Blocked {len(workers)} worker(s).")
            return True
        try:
            if action == "message":
                workers = sorted(set(batch.submissions.filter(pk__in=ids).values_list("worker_id", flat=True)))
                services.crowd_batch_enqueue(
                    batch=batch,
                    action="notify",
                    params={
                        "subject": f"About your work on {batch.title}"[:200],
                        "message": data["reason"],
                        "worker_ids": workers,
                    },
                    user=request.user,
                )
                messages.success(request, f"Messaging {len(workers)} worker(s).")
                return True
            if action == "reject":
                services.clean_rejection(platform=batch.platform, feedback=data["reason"], category=data["category"])
            services.crowd_batch_enqueue(
                batch=batch,
                action="act",
                params={
                    "submission_ids": ids,
                    "action": action,
                    "feedback": data["reason"],
                    "category": data["category"] if action == "reject" else "",
                    "amount_cents": cents_from_amount(data["bonus"]) if action == "bonus" else 0,
                },
                user=request.user,
            )
        except CrowdPlatformError as exc:
            form.add_error("reason", str(exc))
            return False
        messages.success(request, f"Started: {action} for {len(ids)} submission(s).")
        return True

    # -- list actions ------------------------------------------------------------------------------------------
    @admin.action(description="Sync submissions from the platform", permissions=["change"])
    def sync_batches(self, request: HttpRequest, queryset) -> None:
        for batch in queryset:
            services.crowd_batch_enqueue(batch=batch, action="sync", user=request.user)
        self.message_user(request, f"Syncing {queryset.count()} batch(es).")

    @admin.action(description="Approve passing submissions (no flags)", permissions=["change"])
    def approve_passing(self, request: HttpRequest, queryset) -> None:
        for batch in queryset:
            services.crowd_batch_enqueue(
                batch=batch, action="review", params={"approve_passing": True}, user=request.user
            )
        self.message_user(request, f"Reviewing {queryset.count()} batch(es).")

    @admin.action(description="Expire (stop taking new workers)", permissions=["change"])
    def expire_batches(self, request: HttpRequest, queryset) -> None:
        for batch in queryset:
            services.crowd_batch_enqueue(batch=batch, action="expire", user=request.user)
        self.message_user(request, f"Expiring {queryset.count()} batch(es).")


@admin.register(CrowdSubmission)
class CrowdSubmissionAdmin(admin.ModelAdmin):
    list_display = ["worker_id", "batch", "status", "flag_list", "bonus_cents", "bonus_paid_at", "submitted_at"]
    list_filter = ["status", "batch__platform", "batch"]
    search_fields = ["worker_id", "external_assignment_id"]
    raw_id_fields = ["batch", "task", "annotator"]
    readonly_fields = ["bonus_token", "bonus_attempted_at", "bonus_paid_at", "excluded_at"]
    actions = ["mark_bonus_paid"]

    @admin.display(description="flags")
    def flag_list(self, submission: CrowdSubmission) -> str:
        return ", ".join(sorted(submission.flags or {}))

    @admin.action(
        description="Mark the started bonus as paid (after checking it on the platform)", permissions=["change"]
    )
    def mark_bonus_paid(self, request: HttpRequest, queryset) -> None:
        marked = 0
        for submission in queryset.exclude(bonus_token=""):
            services.crowd_submission_mark_bonus_paid(submission=submission)
            marked += 1
        self.message_user(request, f"Marked {marked} bonus(es) as paid.")


@admin.register(BlockedWorker)
class BlockedWorkerAdmin(admin.ModelAdmin):
    list_display = ["worker_id", "platform", "reason", "created_at"]
    list_filter = ["platform"]
    search_fields = ["worker_id", "reason"]
    fields = ["platform", "worker_id", "reason"]

    def save_model(self, request: HttpRequest, obj: BlockedWorker, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        saved = services.blocked_worker_add(platform=obj.platform, worker_id=obj.worker_id, reason=obj.reason)
        obj.pk = saved.pk
