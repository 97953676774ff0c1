"""Automatic metrics of explanation versions (length, overlap with the teacher, consistency, LLM judges)."""

from __future__ import annotations

from django.db import models


class ExplanationMetric(models.Model):
    """One metric of one explanation version; a null value is a failure, whose reason is in `detail`."""

    explanation = models.ForeignKey(
        "annotations.Explanation", on_delete=models.CASCADE, related_name="metrics", help_text="The version scored."
    )
    name = models.CharField(max_length=120, help_text="e.g. length_words, teacher_overlap, judge:completeness")
    version = models.CharField(max_length=500, help_text="How it was computed: implementation, prompt, model.")
    value = models.FloatField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    raw_reply = models.TextField(blank=True, help_text="A judge's or model's reply as it came.")
    job = models.ForeignKey("evalsite.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["explanation_id", "name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["explanation", "name", "version"], name="explanation_metric_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value} on explanation {self.explanation_id}"
