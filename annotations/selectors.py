"""Reads of the annotations app: an annotator's current screen, and a study's progress dashboard."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import caches
from django.db.models import Avg, Count, Q

from annotations.models import Annotator, Assignment, Condition, Construct, Explanation, Rating, Study

# A study's constructs and conditions are read on every annotator request but change only while it is set
# up, so each process keeps them this long (an edit to an open study shows within that time).
STUDY_SETUP_CACHE_S = 60


def study_for_slug(slug: str) -> Study | None:
    return Study.objects.filter(slug=slug).first()


def annotator_by_public_id(study: Study, public_id: str) -> Annotator | None:
    return Annotator.objects.filter(study=study, public_id=public_id).select_related("study").first()


def annotator_in_study(slug: str, public_id: str) -> Annotator | None:
    """The annotator with their study, in one query (the study's slug must match)."""
    # Unique, so no ORDER BY: `.first()` would order by the model's ordering, which costs a join to compile.
    found = Annotator.objects.filter(study__slug=slug, public_id=public_id).select_related("study").order_by()
    return next(iter(found[:1]), None)


def _study_setup(study: Study, what: str, load) -> list:
    cache = caches["default"]
    key = f"evalsite:study:{study.pk}:{what}"
    found = cache.get(key)
    if found is None:
        found = load()
        cache.set(key, found, timeout=STUDY_SETUP_CACHE_S)
    return found


def study_constructs(study: Study) -> list[Construct]:
    """The study's constructs in display order (kept a minute per process, see `STUDY_SETUP_CACHE_S`)."""
    return _study_setup(study, "constructs", lambda: list(Construct.objects.filter(study=study)))


def study_conditions(study: Study) -> list[Condition]:
    """The study's conditions in order (kept a minute per process, see `STUDY_SETUP_CACHE_S`)."""
    return _study_setup(study, "conditions", lambda: list(Condition.objects.filter(study=study)))


def current_assignment(annotator: Annotator) -> Assignment | None:
    return (
        annotator.assignments.filter(status=Assignment.Status.ASSIGNED)
        .select_related("explanation__item", "second_explanation")
        .order_by("position")
        .first()
    )


def assignment_for_screen(assignment_id: int) -> Assignment:
    """A screen with what it shows: its explanations and their item."""
    return Assignment.objects.select_related("explanation__item", "second_explanation").get(pk=assignment_id)


@dataclass(frozen=True)
class SessionState:
    """An annotator's screens at a glance (one query, read on every screen request): screens done and
    held (released ones aside), the first one left, and whether screens were ever allocated."""

    done: int
    total: int
    current_id: int | None
    ever_allocated: bool


def session_state(annotator: Annotator) -> SessionState:
    rows = list(annotator.assignments.order_by("position").values_list("pk", "status"))
    held = [(pk, status) for pk, status in rows if status != Assignment.Status.RELEASED]
    assigned = [pk for pk, status in held if status == Assignment.Status.ASSIGNED]
    return SessionState(
        done=sum(1 for _, status in held if status == Assignment.Status.COMPLETED),
        total=len(held),
        current_id=assigned[0] if assigned else None,
        ever_allocated=bool(rows),
    )


def session_progress(annotator: Annotator) -> tuple[int, int]:
    """(screens done, screens in the session) for the progress bar."""
    state = session_state(annotator)
    return state.done, state.total


@dataclass(frozen=True)
class ScalePoint:
    value: int
    anchor: str
    checked: bool


@dataclass(frozen=True)
class ScaleRow:
    """One construct's row of points under an explanation, the saved answer checked (built here, not in the
    template: the template's nested loops were a good part of a screen's rendering time)."""

    construct: Construct
    points: list[ScalePoint]


@dataclass
class ShownExplanation:
    explanation: Explanation
    side: str
    saved: dict[int, int] = field(default_factory=dict)
    rows: list[ScaleRow] = field(default_factory=list)


def screen_explanations(
    annotator: Annotator, assignment: Assignment, constructs: list[Construct], *, with_saved: bool = True
) -> list[ShownExplanation]:
    """The explanations of a screen in display order, with answers saved so far (to resume a reload).

    The explanations come with the assignment (`current_assignment` joins them). `with_saved=False` skips
    looking for saved answers: a screen shown for the first time has none, as only its page sends them.
    """
    shown = [e for e in (assignment.explanation, assignment.second_explanation) if e is not None]
    if assignment.left_right_swapped:
        shown.reverse()
    saved: dict[int, dict[int, int]] = {}
    if with_saved and shown:
        ratings = Rating.objects.filter(annotator=annotator, explanation_id__in=[e.pk for e in shown])
        for explanation_id, construct_id, value in ratings.values_list("explanation_id", "construct_id", "value"):
            saved.setdefault(explanation_id, {})[construct_id] = value
    sides = ["left", "right"] if len(shown) == 2 else ["only"] * len(shown)
    return [
        ShownExplanation(e, side, saved.get(e.pk, {}), _rows(constructs, saved.get(e.pk, {})))
        for e, side in zip(shown, sides, strict=True)
    ]


def _rows(constructs: list[Construct], saved: dict[int, int]) -> list[ScaleRow]:
    return [
        ScaleRow(
            construct,
            [
                ScalePoint(point, anchor, saved.get(construct.pk) == point)
                for point, anchor in enumerate(construct.anchors, start=1)
            ],
        )
        for construct in constructs
    ]


@dataclass
class ConditionProgress:
    label: str
    explanations: int
    ratings_done: int
    ratings_wanted: int
    mean_per_construct: dict[str, float | None]


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
    means = {c.label: ratings.filter(construct=c).aggregate(m=Avg("value"))["m"] for c in constructs}
    return ConditionProgress(
        label=condition.label,
        explanations=len(mine),
        ratings_done=sum(min(screens.get(e.pk, 0), study.ratings_per_explanation) for e in mine),
        ratings_wanted=len(mine) * study.ratings_per_explanation,
        mean_per_construct={k: (round(v, 2) if v is not None else None) for k, v in means.items()},
    )


def completed_ratings(study: Study):
    """Ratings from completed screens only: partial answers on abandoned screens are not data."""
    return Rating.objects.filter(
        Q(construct__study=study) & Q(assignment__status=Assignment.Status.COMPLETED)
    ).select_related("annotator", "explanation__item", "explanation__condition", "construct")
