"""Admin forms for crowd batches: launch (with its cost shown before confirmation), review and notify."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from annotations.crowd.costs import CostBreakdown, cents_from_amount
from annotations.crowd.prolific import REJECTION_CATEGORIES
from annotations.crowd.selectors import cost_estimate
from annotations.crowd.services import default_fee_rate
from annotations.models import CrowdPlatform, Study


class LaunchForm(forms.Form):
    study = forms.ModelChoiceField(queryset=Study.objects.order_by("slug"), to_field_name="slug")
    platform = forms.ChoiceField(choices=CrowdPlatform.choices)
    sandbox = forms.BooleanField(required=False, initial=True, help_text="MTurk only: the worker sandbox.")
    title = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    keywords = forms.CharField(required=False, initial="rating, explanations, survey, research")
    reward = forms.DecimalField(min_value=Decimal("0.01"), decimal_places=2, help_text="Per assignment, in dollars.")
    n_tasks = forms.IntegerField(min_value=1, initial=1, label="HITs", help_text="Prolific and manual: 1.")
    assignments_per_task = forms.IntegerField(
        min_value=1, initial=9, label="Assignments per HIT (places on Prolific)", help_text="MTurk: at most 9."
    )
    fee_rate = forms.DecimalField(
        required=False, min_value=0, max_value=1, decimal_places=3, help_text="Blank: the platform's own."
    )
    planned_bonus = forms.DecimalField(
        required=False, min_value=0, decimal_places=2, initial=Decimal("0"), help_text="Total bonuses planned, $."
    )
    planned_bonus_count = forms.IntegerField(required=False, min_value=0, initial=0, label="Bonus payments planned")
    min_approval_rate = forms.IntegerField(required=False, min_value=0, max_value=100, initial=95)
    min_approved_hits = forms.IntegerField(required=False, min_value=0, initial=100)
    locales = forms.CharField(required=False, help_text="Country codes, comma-separated, e.g. US,GB.")
    masters = forms.BooleanField(required=False)
    assignment_minutes = forms.IntegerField(min_value=1, initial=60, label="Minutes per assignment")
    lifetime_days = forms.IntegerField(min_value=1, initial=7)
    auto_approval_days = forms.IntegerField(min_value=0, initial=3)
    estimated_minutes = forms.IntegerField(min_value=1, initial=15, help_text="Prolific: estimated completion time.")
    prolific_study_id = forms.CharField(
        required=False,
        max_length=64,
        label="Platform study id (manual)",
        help_text="Manual mode: the id of the study you made on Prolific; only entries with that STUDY_ID are taken.",
    )
    exclusion_group = forms.SlugField(required=False, help_text="Shut out workers of other studies in this group.")
    confirmed_total = forms.DecimalField(required=False, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        platform = data["platform"]
        if platform == CrowdPlatform.MTURK and data["assignments_per_task"] > 9:
            self.add_error("assignments_per_task", "At most 9 per HIT: MTurk's fee rises to 40% at 10 or more.")
        if platform != CrowdPlatform.MTURK and data["n_tasks"] != 1:
            self.add_error("n_tasks", "A Prolific or manual batch is one study.")
        if platform == CrowdPlatform.MANUAL and not (data.get("prolific_study_id") or "").strip():
            self.add_error("prolific_study_id", "Give the id of the study you made on the platform.")
        return data

    def params(self) -> dict[str, Any]:
        data = self.cleaned_data
        params: dict[str, Any] = {
            "keywords": data["keywords"],
            "min_approval_rate": data["min_approval_rate"] or 0,
            "min_approved_hits": data["min_approved_hits"] or 0,
            "locales": [code.strip().upper() for code in (data["locales"] or "").split(",") if code.strip()],
            "masters": data["masters"],
            "assignment_duration_s": data["assignment_minutes"] * 60,
            "lifetime_s": data["lifetime_days"] * 24 * 3600,
            "auto_approval_delay_s": data["auto_approval_days"] * 24 * 3600,
            "estimated_minutes": data["estimated_minutes"],
            "maximum_minutes": data["assignment_minutes"],
            "planned_bonus_count": data["planned_bonus_count"] or 0,
        }
        if data["exclusion_group"]:
            params["exclusion_group"] = data["exclusion_group"]
        if data["platform"] == CrowdPlatform.MANUAL:
            params["prolific_study_id"] = data["prolific_study_id"].strip()
        return params

    def fee_rate_value(self) -> Decimal:
        data = self.cleaned_data
        if data["fee_rate"] is not None:
            return data["fee_rate"]
        return default_fee_rate(
            platform=data["platform"], assignments_per_task=data["assignments_per_task"], masters=data["masters"]
        )

    def cost(self) -> CostBreakdown:
        data = self.cleaned_data
        return cost_estimate(
            platform=data["platform"],
            reward_cents=cents_from_amount(data["reward"]),
            n_tasks=data["n_tasks"],
            assignments_per_task=data["assignments_per_task"],
            fee_rate=self.fee_rate_value(),
            planned_bonus_cents=cents_from_amount(data["planned_bonus"] or 0),
            planned_bonus_count=data["planned_bonus_count"] or 0,
        )


ACTIONS = [
    ("approve", "Approve"),
    ("reject", "Reject"),
    ("bonus", "Pay a bonus"),
    ("request_return", "Ask to return the work (Prolific)"),
    ("overturn", "Overturn a rejection: approve after all (MTurk)"),
    ("message", "Message the workers"),
    ("block", "Block the workers"),
]
NEEDS_REASON = ("reject", "bonus", "block", "request_return", "message")


class ReviewForm(forms.Form):
    action = forms.ChoiceField(choices=ACTIONS)
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        required=False,
        help_text="Sent to the workers: feedback for an approval, rejection or overturn, the reason for a bonus or "
        "a return request, the text of a message.",
    )
    category = forms.ChoiceField(
        choices=[(c, c.replace("_", " ").lower()) for c in REJECTION_CATEGORIES], initial="FAILED_CHECK"
    )
    bonus = forms.DecimalField(required=False, min_value=Decimal("0.01"), decimal_places=2, help_text="Each, $.")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        action = data.get("action")
        if action in NEEDS_REASON and not (data.get("reason") or "").strip():
            self.add_error("reason", "Give a reason: the workers (or your records) will read it.")
        if action == "bonus" and not data.get("bonus"):
            self.add_error("bonus", "Give the bonus amount.")
        return data


class NotifyForm(forms.Form):
    subject = forms.CharField(max_length=200)
    message = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), max_length=4096)
