"""Approve passing and reject failing Prolific submissions (a 100+ character message and a category)."""

from __future__ import annotations

from annotations.management.commands.review_hits import Command as ReviewHitsCommand


class Command(ReviewHitsCommand):
    help = (
        "Review synced Prolific submissions: --approve-passing, --reject-failing [--reject-feedback TEXT (100+ "
        "characters) --category FAILED_CHECK], --bonus 0.50 --bonus-reason TEXT."
    )
    platforms = ("prolific", "manual")
