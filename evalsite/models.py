"""Job records: one row per long task, with progress the admin and the command line show."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    class Runner(models.TextChoices):
        RQ = "rq", "RQ worker"
        THREAD = "thread", "background thread"
        FOREGROUND = "foreground", "foreground (command line)"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=64, db_index=True, help_text="What the job does, e.g. teacher_generation.")
    function = models.CharField(max_length=200, help_text="Dotted path of the plain function that runs it.")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    runner = models.CharField(max_length=16, choices=Runner.choices, default=Runner.FOREGROUND)
    rq_job_id = models.CharField(max_length=64, blank=True)

    stage = models.CharField(max_length=120, blank=True)
    done = models.PositiveBigIntegerField(default=0)
    total = models.PositiveBigIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="Traceback of the failure, if any.")
    result = models.JSONField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)

    target_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL)
    target_id = models.CharField(max_length=64, blank=True)
    target = GenericForeignKey("target_type", "target_id")

    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stage_started_at = models.DateTimeField(null=True, blank=True)
    stage_started_done = models.PositiveBigIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["target_type", "target_id"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(total__isnull=True) | models.Q(done__lte=models.F("total")),
                name="job_done_at_most_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    @property
    def rate_per_second(self) -> float | None:
        """Items per second within the current stage."""
        if self.stage_started_at is None or self.status != self.Status.RUNNING:
            return None
        elapsed = (timezone.now() - self.stage_started_at).total_seconds()
        advanced = self.done - self.stage_started_done
        if elapsed <= 0 or advanced <= 0:
            return None
        return advanced / elapsed

    @property
    def eta(self) -> timedelta | None:
        rate = self.rate_per_second
        if rate is None or self.total is None:
            return None
        return timedelta(seconds=max(0.0, (self.total - self.done) / rate))
