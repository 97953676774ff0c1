"""Reads of the annotations app: an annotator's current screen, and a study's progress dashboard."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Avg, Count, Q

from annotations.models import Annotator, Assignment, Condition, Construct, Explanation, Rating, Study


def study_for_slug(slug: str) -> Study | None:
    return Study.objects.filter(slug=slug).first()


def annotator_by_public_id(study: Study, public_id: str) -> Annotator | None:
    return Annotator.objects.filter(study=study, public_id=public_id).select_related("study").first()


def current_assignment(annotator: Annotator) -> Assignment | None:
    return (
        annotator.assignments.filter(status=Assignment.Status.ASSIGNED)
        .select_related("explanation__item", "explanation__condition", "second_explanation")
        .order_by("position")
        .first()
    )


def session_progress(annotator: Annotator) -> tuple[int, int]:
    """(screens done, screens in the session) for the progress bar."""
    held = annotator.assignments.exclude(status=Assignment.Status.RELEASED)
    return held.filter(status=Assignment.Status.COMPLETED).count(), held.count()


@dataclass
class ShownExplanation:
    explanation: Explanation
    side: str
    saved: dict[int, int] = field(default_factory=dict)


def screen_explanations(annotator: Annotator, assignment: Assignment) -> list[ShownExplanation]:
    """The explanations of a screen in display order, with answers saved so far (to resume a reload)."""
    ids = [assignment.explanation_id, assignment.second_explanation_id]
    ids = [i for i in ids if i is not None]
    if assignment.left_right_swapped:
        ids.reverse()
    explanations = Explanation.objects.in_bulk(ids)
    saved: dict[int, dict[int, int]] = {}
    for rating in Rating.objects.filter(annotator=annotator, explanation_id__in=ids):
        saved.setdefault(rating.explanation_id, {})[rating.construct_id] = rating.value
    sides = ["left", "right"] if len(ids) == 2 else ["only"] * len(ids)
    return [ShownExplanation(explanations[i], side, saved.get(i, {})) for i, side in zip(ids, sides, strict=True)]


@dataclass
class ConditionProgress:
    label: str
    explanations: int
    ratings_done: int
    ratings_wanted: int
    mean_per_construct: dict[str, float | None]
    # Ratings of versions a regeneration has since replaced: kept (they rate the text shown), counted apart.
    superseded_ratings: int = 0


@dataclass
class Dashboard:
    study: Study
    conditions: list[ConditionProgress]
    items_complete: int
    items_total: int
    annotators_started: int
    annotators_finished: int
    attention_failures: int
    median_seconds_per_screen: float | None
    straight_liners: list[str]
    too_fast: list[str]
    under_target: list[dict[str, Any]]


def study_dashboard(study: Study) -> Dashboard:
    constructs = list(study.constructs.all())
    completed = Assignment.objects.filter(annotator__study=study, status=Assignment.Status.COMPLETED)
    screens_per_explanation = _completed_screens_per_explanation(completed)
    explanations = list(
        Explanation.objects.filter(item__study=study, is_current=True).select_related("condition", "item")
    )
    conditions = [
        _condition_progress(condition, explanations, screens_per_explanation, study, constructs)
        for condition in Condition.objects.filter(study=study)
    ]
    items: dict[int, bool] = {}
    for explanation in explanations:
        full = screens_per_explanation.get(explanation.pk, 0) >= study.ratings_per_explanation
        items[explanation.item_id] = items.get(explanation.item_id, True) and full
    annotators = Annotator.objects.filter(study=study)
    seconds = list(
        completed.exclude(kind=Assignment.Kind.ATTENTION)
        .exclude(seconds_spent=None)
        .values_list("seconds_spent", flat=True)
    )
    under = sorted(
        (e for e in explanations if screens_per_explanation.get(e.pk, 0) < study.ratings_per_explanation),
        key=lambda e: screens_per_explanation.get(e.pk, 0),
    )[:20]
    return Dashboard(
        study=study,
        conditions=conditions,
        items_complete=sum(items.values()),
        items_total=len(items),
        annotators_started=annotators.count(),
        annotators_finished=annotators.exclude(finished_at=None).count(),
        attention_failures=annotators.filter(attention_failures__gt=0).count(),
        median_seconds_per_screen=statistics.median(seconds) if seconds else None,
        straight_liners=list(annotators.filter(flags__straight_lining=True).values_list("external_id", flat=True)),
        too_fast=list(annotators.filter(flags__too_fast=True).values_list("external_id", flat=True)),
        under_target=[
            {
                "item": e.item.source_id,
                "condition": e.condition.label,
                "done": screens_per_explanation.get(e.pk, 0),
            }
            for e in under
        ],
    )


def _completed_screens_per_explanation(completed) -> dict[int, int]:
    counts: dict[int, int] = {}
    for field_name in ("explanation_id", "second_explanation_id"):
        rows = completed.exclude(**{field_name: None}).values(field_name).annotate(n=Count("id"))
        for row in rows:
            counts[row[field_name]] = counts.get(row[field_name], 0) + row["n"]
    return counts


def _condition_progress(
    condition: Condition,
    explanations: list[Explanation],
    screens: dict[int, int],
    study: Study,
    constructs: list[Construct],
) -> ConditionProgress:
    mine = [e for e in explanations if e.condition_id == condition.pk]
    ratings = Rating.objects.filter(explanation__condition=condition, assignment__status=Assignment.Status.COMPLETED)
    # Progress and means are of the current versions (what annotators are shown from now on).
    of_current = ratings.filter(explanation__is_current=True)
    means = {c.label: of_current.filter(construct=c).aggregate(m=Avg("value"))["m"] for c in constructs}
    return ConditionProgress(
        label=condition.label,
        explanations=len(mine),
        ratings_done=sum(min(screens.get(e.pk, 0), study.ratings_per_explanation) for e in mine),
        ratings_wanted=len(mine) * study.ratings_per_explanation,
        mean_per_construct={k: (round(v, 2) if v is not None else None) for k, v in means.items()},
        superseded_ratings=ratings.filter(explanation__is_current=False).count(),
    )


def completed_ratings(study: Study):
    """Ratings from completed screens only: partial answers on abandoned screens are not data."""
    return Rating.objects.filter(
        Q(construct__study=study) & Q(assignment__status=Assignment.Status.COMPLETED)
    ).select_related("annotator", "explanation__item", "explanation__condition", "construct")
