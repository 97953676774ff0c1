"""Crowd-platform batches: MTurk HIT batches, Prolific studies, their submissions and blocked workers."""

from __future__ import annotations

import secrets

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from annotations.models.studies import Annotator, Study


def new_launch_key() -> str:
    """A per-batch random prefix of intent keys, so keys never repeat across databases (MTurk dedupes on them)."""
    return secrets.token_hex(8)


class CrowdPlatform(models.TextChoices):
    MTURK = "mturk", "Amazon Mechanical Turk"
    PROLIFIC = "prolific", "Prolific"
    MANUAL = "manual", "manual (link and completion code)"


class CrowdBatch(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        LAUNCHING = "launching", "launching"
        LIVE = "live", "live"
        PAUSED = "paused", "paused"
        EXPIRED = "expired", "expired"
        COMPLETED = "completed", "completed"
        FAILED = "failed", "failed"

    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="crowd_batches")
    platform = models.CharField(max_length=16, choices=CrowdPlatform.choices)
    sandbox = models.BooleanField(default=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT, db_index=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    reward_cents = models.PositiveIntegerField(validators=[MinValueValidator(1)], help_text="Per assignment, in cents.")
    assignments_per_task = models.PositiveSmallIntegerField(default=9, validators=[MinValueValidator(1)])
    n_tasks = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)], help_text="HITs (MTurk) or 1.")
    fee_rate = models.DecimalField(
        max_digits=5,
        decimal_places=3,
        default=0.2,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="The platform's commission on rewards and bonuses, e.g. 0.200.",
    )
    planned_bonus_cents = models.PositiveIntegerField(
        default=0, help_text="Bonuses planned for the whole batch (before fees), in cents; part of the cost shown."
    )
    params = models.JSONField(default=dict, blank=True, help_text="Qualifications, durations, keywords, ...")
    launch_key = models.CharField(max_length=24, unique=True, default=new_launch_key, editable=False)
    external_id = models.CharField(max_length=128, blank=True, help_text="HIT type id or Prolific study id.")
    exclusion_qualification_id = models.CharField(
        max_length=128, blank=True, help_text="MTurk qualification type granted to participants, to shut them out."
    )
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    launched_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "crowd batches"
        constraints = [
            models.CheckConstraint(condition=models.Q(reward_cents__gte=1), name="crowd_batch_reward_positive"),
            models.CheckConstraint(condition=models.Q(assignments_per_task__gte=1), name="crowd_batch_assignments"),
            models.CheckConstraint(condition=models.Q(n_tasks__gte=1), name="crowd_batch_tasks_positive"),
            models.CheckConstraint(condition=models.Q(fee_rate__gte=0, fee_rate__lte=1), name="crowd_batch_fee_rate"),
        ]

    def __str__(self) -> str:
        return f"{self.platform} batch #{self.pk} for {self.study.slug}"


class CrowdTask(models.Model):
    """A HIT on MTurk (or the study on Prolific). ``intent_key`` is written before the platform call."""

    batch = models.ForeignKey(CrowdBatch, on_delete=models.CASCADE, related_name="tasks")
    intent_key = models.CharField(max_length=64, unique=True, help_text="Our idempotency key for the create call.")
    external_id = models.CharField(max_length=128, blank=True, db_index=True)
    max_assignments = models.PositiveSmallIntegerField(validators=[MinValueValidator(1)])
    status = models.CharField(max_length=24, default="intended")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "external_id"],
                condition=~models.Q(external_id=""),
                name="crowd_task_unique_external_id",
            ),
        ]

    def __str__(self) -> str:
        return self.external_id or self.intent_key


class CrowdSubmission(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", "submitted"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        RETURNED = "returned", "returned"

    batch = models.ForeignKey(CrowdBatch, on_delete=models.CASCADE, related_name="submissions")
    task = models.ForeignKey(CrowdTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="submissions")
    annotator = models.ForeignKey(
        Annotator, null=True, blank=True, on_delete=models.SET_NULL, related_name="crowd_submissions"
    )
    worker_id = models.CharField(max_length=128, db_index=True)
    external_assignment_id = models.CharField(max_length=128)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SUBMITTED)
    platform_status = models.CharField(max_length=32, blank=True, help_text="The status as the platform names it.")
    flags = models.JSONField(default=dict, blank=True, help_text="attention_failed, too_fast, incomplete, ...")
    feedback = models.TextField(blank=True, help_text="Sent with an approval or rejection.")
    rejection_category = models.CharField(max_length=32, blank=True)
    bonus_cents = models.PositiveIntegerField(default=0)
    bonus_reason = models.TextField(blank=True)
    bonus_token = models.CharField(max_length=64, blank=True, help_text="Written before the bonus call; dedupes it.")
    bonus_attempted_at = models.DateTimeField(null=True, blank=True)
    bonus_paid_at = models.DateTimeField(null=True, blank=True)
    excluded_at = models.DateTimeField(null=True, blank=True, help_text="When the exclusion qualification was granted.")
    submitted_at = models.DateTimeField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "submitted_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["batch", "external_assignment_id"], name="crowd_submission_unique_assignment"
            ),
            models.UniqueConstraint(
                fields=["bonus_token"], condition=~models.Q(bonus_token=""), name="crowd_submission_unique_bonus_token"
            ),
            models.CheckConstraint(
                condition=models.Q(bonus_paid_at__isnull=True) | ~models.Q(bonus_token=""),
                name="crowd_submission_paid_bonus_has_token",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.worker_id} in batch {self.batch_id}"


class BlockedWorker(models.Model):
    platform = models.CharField(max_length=16, choices=CrowdPlatform.choices)
    worker_id = models.CharField(max_length=128)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["platform", "worker_id"], name="blocked_worker_unique")]

    def __str__(self) -> str:
        return f"{self.platform}:{self.worker_id}"
