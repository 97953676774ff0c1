"""Builders of study data through the real services, for annotation tests."""

from __future__ import annotations

from annotations.models import Study
from annotations.services.studies import (
    condition_get_or_create,
    explanation_set_text,
    item_get_or_create,
    study_create,
    study_open,
)

CHOICES = ["river", "desert", "kitchen", "attic", "library"]


def build_study(
    *,
    slug: str = "demo-study",
    conditions: tuple[str, ...] = ("CF:Unrevised", "MT:Unrevised", "MT+CF:Unrevised", "MT+CF:Revised"),
    n_items: int = 12,
    mode: str = "single",
    per_annotator: int = 8,
    ratings_per_explanation: int = 3,
    attention_positions: list[int] | None = None,
    constructs: str = "default",
) -> Study:
    study = study_create(
        config={
            "slug": slug,
            "title": f"Study {slug}",
            "mode": mode,
            "constructs": constructs,
            "explanations_per_annotator": per_annotator,
            "ratings_per_explanation": ratings_per_explanation,
            "attention_check_positions": attention_positions or [],
            "min_seconds_per_screen": 0.0,
        }
    )
    for label in conditions:
        condition = condition_get_or_create(study=study, label=label)
        for index in range(n_items):
            item = item_get_or_create(
                study=study,
                key=f"q{index:03d}",
                question_text=f"Question number {index}: where would you find item {index}?",
                choices=CHOICES,
                answer=CHOICES[index % 5],
            )
            explanation_set_text(
                item=item,
                condition=condition,
                text=f"Explanation by {label} for question {index}: it is found there because of reason {index}.",
                source="manual",
                provenance={"test": True},
            )
    return study_open(study=study)


class _FixedIdsProvider:
    """A platform that hands out the given task ids (HIT ids or one Prolific study id) and does nothing else."""

    bonus_retry_safe = True

    def __init__(self, platform: str, external_ids: list[str]) -> None:
        from annotations.crowd.providers import ManualProvider

        self.platform = platform
        self._ids = list(external_ids)
        self._manual = ManualProvider()

    def prepare(self, spec):
        from annotations.crowd.providers import PreparedBatch

        return PreparedBatch(external_id=f"TYPE{spec.batch_id}" if self.platform == "mturk" else "")

    def create_task(self, spec, *, intent_key: str, max_assignments: int) -> str:
        return self._ids.pop(0)

    def __getattr__(self, name):
        return getattr(self._manual, name)


def launch_crowd_batch(study: Study, *, platform: str, external_ids: list[str]):
    """A crowd batch of the study launched through the real launch service, its tasks named ``external_ids``
    (HIT ids for MTurk; the Prolific study id for Prolific; for a manual batch, the platform study id it
    admits), as if the platform had made them."""
    from django.test import override_settings

    from annotations.crowd import services as crowd_services

    batch = crowd_services.crowd_batch_create(
        study=study,
        platform=platform,
        title=f"Rate {study.slug}",
        reward_cents=100,
        n_tasks=len(external_ids),
        params={"prolific_study_id": external_ids[0]} if platform == "manual" else None,
    )
    with override_settings(EVALSITE_PUBLIC_URL="https://testserver"):  # MTurk takes HTTPS pages only
        return crowd_services.crowd_batch_launch(batch=batch, provider=_FixedIdsProvider(platform, external_ids))
