"""Reads of the annotations app: an annotator's current screen, and a study's progress dashboard."""

from __future__ import annotations

import functools
import hashlib
import json
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.cache import caches
from django.db import connections, router
from django.db.models import Avg, Count, IntegerField, Max, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Length
from django.utils.html import escape

from annotations import prepared_reads
from annotations.models import (
    Annotator,
    Assignment,
    Condition,
    Construct,
    Explanation,
    ExplanationMetric,
    Item,
    Rating,
    Study,
)
from distillation.models import StudentRun
from distillation.services.students import teacher_prompt_version

if TYPE_CHECKING:
    import pandas as pd

# A study's constructs and conditions are read on every annotator request but change only while it is set
# up, so each process keeps them this long (an edit to an open study shows within that time).
STUDY_SETUP_CACHE_S = 60


def study_for_slug(slug: str) -> Study | None:
    """The study with this slug, read fresh (its status and settings are never cached).

    Every entry link reads it, so its SQL is written once per process (see `prepared_reads`): what
    `Study.objects.filter(slug=slug).first()` sends, less the ORDER BY (slugs are unique).
    """
    using = router.db_for_read(Study)
    sql, columns = _study_for_slug_statement(using)
    row = prepared_reads.first_row(sql, [slug], using=using)
    return None if row is None else columns.instance(row, using=using)


@functools.cache
def _study_for_slug_statement(using: str) -> tuple[str, prepared_reads.ModelColumns]:
    quote = connections[using].ops.quote_name
    columns = prepared_reads.ModelColumns.of(Study, "s", using=using)
    sql = (
        f"SELECT {columns.sql} FROM {quote(Study._meta.db_table)} s"
        f" WHERE s.{quote(Study._meta.get_field('slug').column)} = %s LIMIT 1"
    )
    return sql, columns


def annotator_by_identity(study: Study, source: str, external_id: str) -> Annotator | None:
    """The study's annotator with this platform identity (unique: `annotator_unique_identity`), with `study`
    as their study; every entry link reads it, so its SQL is written once per process: what
    `Annotator.objects.filter(study=study, source=source, external_id=external_id).first()` sends, less the
    ORDER BY."""
    using = router.db_for_read(Annotator)
    sql, columns = _annotator_by_identity_statement(using)
    row = prepared_reads.first_row(sql, [study.pk, source, external_id], using=using)
    if row is None:
        return None
    annotator = columns.instance(row, using=using)
    Annotator.study.field.set_cached_value(annotator, study)
    return annotator


@functools.cache
def _annotator_by_identity_statement(using: str) -> tuple[str, prepared_reads.ModelColumns]:
    quote = connections[using].ops.quote_name
    columns = prepared_reads.ModelColumns.of(Annotator, "a", using=using)
    column = Annotator._meta.get_field
    sql = (
        f"SELECT {columns.sql} FROM {quote(Annotator._meta.db_table)} a"
        f" WHERE a.{quote(column('study').column)} = %s AND a.{quote(column('source').column)} = %s"
        f" AND a.{quote(column('external_id').column)} = %s LIMIT 1"
    )
    return sql, columns


def annotator_by_public_id(study: Study, public_id: str) -> Annotator | None:
    return Annotator.objects.filter(study=study, public_id=public_id).select_related("study").first()


def annotator_in_study(slug: str, public_id: str) -> Annotator | None:
    """The annotator with their study, in one query (the study's slug must match).

    Read on every annotator request, so its SQL is written once per process (see `prepared_reads`): what
    `filter(study__slug=slug, public_id=public_id).select_related("study")` sends, without compiling it.
    Both rows are read fresh each time (a study's status and settings are never stale here).
    """
    using = router.db_for_read(Annotator)
    sql, annotator_columns, study_columns = _annotator_in_study_statement(using)
    public_id_param = Annotator._meta.get_field("public_id").get_db_prep_value(
        public_id, connections[using], prepared=False
    )
    row = prepared_reads.first_row(sql, [slug, public_id_param], using=using)
    if row is None:
        return None
    annotator = annotator_columns.instance(row, using=using)
    Annotator.study.field.set_cached_value(annotator, study_columns.instance(row, using=using))
    return annotator


@functools.cache
def _annotator_in_study_statement(using: str) -> tuple[str, prepared_reads.ModelColumns, prepared_reads.ModelColumns]:
    quote = connections[using].ops.quote_name
    annotator = prepared_reads.ModelColumns.of(Annotator, "a", using=using)
    study = prepared_reads.ModelColumns.of(Study, "s", using=using, start=annotator.end)
    sql = (
        f"SELECT {annotator.sql}, {study.sql} FROM {quote(Annotator._meta.db_table)} a"
        f" INNER JOIN {quote(Study._meta.db_table)} s"
        f" ON s.{quote(Study._meta.pk.column)} = a.{quote(Annotator._meta.get_field('study').column)}"
        f" WHERE s.{quote(Study._meta.get_field('slug').column)} = %s"
        f" AND a.{quote(Annotator._meta.get_field('public_id').column)} = %s"
    )
    return sql, annotator, study


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
    """A screen with what it shows: its explanations and their item.

    What `select_related("explanation__item", "second_explanation").get(pk=assignment_id)` sends, from SQL
    written once per process (see `prepared_reads`; every screen shown reads it).
    """
    using = router.db_for_read(Assignment)
    sql, columns = _assignment_for_screen_statement(using)
    row = prepared_reads.first_row(sql, [assignment_id], using=using)
    if row is None:
        raise Assignment.DoesNotExist(f"no screen {assignment_id}")
    assignment_columns, explanation_columns, item_columns, second_columns = columns
    assignment = assignment_columns.instance(row, using=using)
    explanation = explanation_columns.instance(row, using=using)
    if explanation is not None:
        Explanation.item.field.set_cached_value(explanation, item_columns.instance(row, using=using))
    Assignment.explanation.field.set_cached_value(assignment, explanation)
    Assignment.second_explanation.field.set_cached_value(assignment, second_columns.instance(row, using=using))
    return assignment


@functools.cache
def _assignment_for_screen_statement(using: str) -> tuple[str, tuple[prepared_reads.ModelColumns, ...]]:
    quote = connections[using].ops.quote_name
    assignment = prepared_reads.ModelColumns.of(Assignment, "a", using=using)
    explanation = prepared_reads.ModelColumns.of(Explanation, "e", using=using, start=assignment.end)
    item = prepared_reads.ModelColumns.of(Item, "i", using=using, start=explanation.end)
    second = prepared_reads.ModelColumns.of(Explanation, "e2", using=using, start=item.end)
    explanation_table, pk = quote(Explanation._meta.db_table), quote(Explanation._meta.pk.column)
    sql = (
        f"SELECT {assignment.sql}, {explanation.sql}, {item.sql}, {second.sql}"
        f" FROM {quote(Assignment._meta.db_table)} a"
        f" LEFT OUTER JOIN {explanation_table} e"
        f" ON e.{pk} = a.{quote(Assignment._meta.get_field('explanation').column)}"
        f" LEFT OUTER JOIN {quote(Item._meta.db_table)} i"
        f" ON i.{quote(Item._meta.pk.column)} = e.{quote(Explanation._meta.get_field('item').column)}"
        f" LEFT OUTER JOIN {explanation_table} e2"
        f" ON e2.{pk} = a.{quote(Assignment._meta.get_field('second_explanation').column)}"
        f" WHERE a.{quote(Assignment._meta.pk.column)} = %s"
    )
    return sql, (assignment, explanation, item, second)


@dataclass(frozen=True)
class SessionState:
    """An annotator's screens at a glance (one query, read on every screen request): screens done and
    held (released ones aside), the first one left, and whether screens were ever allocated."""

    done: int
    total: int
    current_id: int | None
    ever_allocated: bool


def session_state(annotator: Annotator) -> SessionState:
    # What `annotator.assignments.order_by("position").values_list("pk", "status")` sends, from SQL written
    # once per process: every screen request reads it.
    using = router.db_for_read(Assignment)
    with connections[using].cursor() as cursor:
        cursor.execute(_session_state_statement(using), [annotator.pk])
        rows = cursor.fetchall()
    held = [(pk, status) for pk, status in rows if status != Assignment.Status.RELEASED]
    assigned = [pk for pk, status in held if status == Assignment.Status.ASSIGNED]
    return SessionState(
        done=sum(1 for _, status in held if status == Assignment.Status.COMPLETED),
        total=len(held),
        current_id=assigned[0] if assigned else None,
        ever_allocated=bool(rows),
    )


@functools.cache
def _session_state_statement(using: str) -> str:
    quote = connections[using].ops.quote_name
    field = Assignment._meta.get_field
    return (
        f"SELECT {quote(Assignment._meta.pk.column)}, {quote(field('status').column)}"
        f" FROM {quote(Assignment._meta.db_table)} WHERE {quote(field('annotator').column)} = %s"
        f" ORDER BY {quote(field('position').column)}"
    )


def session_progress(annotator: Annotator) -> tuple[int, int]:
    """(screens done, screens in the session) for the progress bar."""
    state = session_state(annotator)
    return state.done, state.total


# The screen's numbers reach the template as text, and its repeated texts escaped once: an int rendered by the
# template goes through Django's localised number formatting (about 40% of the screen's rendering time, for
# some 60 numbers a screen), and each anchor label is shown twice per point on every row.


@dataclass(frozen=True)
class ScalePoint:
    value: str
    anchor: str
    checked: bool


@dataclass(frozen=True)
class ScaleRow:
    """One construct's row of points under an explanation, the saved answer checked (built here, not in the
    template: the template's nested loops were a good part of a screen's rendering time)."""

    construct: Construct
    points: list[ScalePoint]
    explanation_id: str
    construct_id: str
    input_name: str


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
        ShownExplanation(e, side, saved.get(e.pk, {}), _rows(e.pk, constructs, saved.get(e.pk, {})))
        for e, side in zip(shown, sides, strict=True)
    ]


def _rows(explanation_id: int, constructs: list[Construct], saved: dict[int, int]) -> list[ScaleRow]:
    return [
        ScaleRow(
            construct,
            [
                ScalePoint(escape(point), escape(anchor), saved.get(construct.pk) == point)
                for point, anchor in enumerate(construct.anchors, start=1)
            ],
            explanation_id=escape(explanation_id),
            construct_id=escape(construct.pk),
            input_name=escape(f"r-{explanation_id}-{construct.pk}"),
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
    text_quality: dict[str, Any] = field(default_factory=dict)
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
    preferences: list[dict[str, Any]] = field(default_factory=list)  # pair mode: see pair_preference_counts


def study_dashboard(study: Study) -> Dashboard:
    constructs = list(study.constructs.all())
    completed = Assignment.objects.filter(annotator__study=study, status=Assignment.Status.COMPLETED)
    screens_per_explanation = _completed_screens_per_explanation(completed)
    explanations = list(
        Explanation.objects.filter(item__study=study, is_current=True).select_related("condition", "item")
    )
    condition_rows = list(Condition.objects.filter(study=study).select_related("student_run__teacher_run"))
    vocabulary = _study_vocabulary(condition_rows)
    conditions = [
        _condition_progress(condition, explanations, screens_per_explanation, study, constructs, vocabulary)
        for condition in condition_rows
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
        preferences=pair_preference_counts(study) if study.mode == Study.Mode.PAIR else [],
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
    vocabulary: frozenset[str] | None = None,
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
        text_quality=explanation_text_quality(mine, vocabulary),
        superseded_ratings=ratings.filter(explanation__is_current=False).count(),
    )


def _study_vocabulary(conditions: list[Condition]) -> frozenset[str] | None:
    """The training corpus the study's students learnt from (the newest teacher run when none says)."""
    from distillation.selectors import corpus_vocabulary
    from distillation.services.students import default_teacher_run

    runs = [c.student_run.teacher_run for c in conditions if c.student_run and c.student_run.teacher_run]
    return corpus_vocabulary(teacher_run=runs[0] if runs else default_teacher_run())


def explanation_text_quality(explanations: list[Explanation], vocabulary: frozenset[str] | None) -> dict[str, Any]:
    """Text-quality measures of explanations (items selected with them), as percentages for display."""
    from annotations.services.explanations import NO_EXPLANATION_TEXT
    from distillation.ml.answers import normalise
    from distillation.ml.text_quality import ExplainedQuestion, text_quality

    # Exact match; a condition that recorded no answers at all (a file without them) has no accuracy.
    answered = any(e.predicted_answer for e in explanations)
    items = [
        ExplainedQuestion(
            "" if e.text == NO_EXPLANATION_TEXT else e.text,
            e.item.question_text,
            e.item.choices,
            normalise(e.predicted_answer) == normalise(e.item.answer) if answered and e.item.answer else None,
        )
        for e in explanations
    ]
    quality = text_quality(items, vocabulary).as_dict()
    return {
        key: (round(100 * value, 1) if key not in {"n", "mean_length"} else round(value)) if value is not None else None
        for key, value in quality.items()
    }


def completed_ratings(study: Study):
    """Ratings from completed screens only: partial answers on abandoned screens are not data."""
    return Rating.objects.filter(
        Q(construct__study=study) & Q(assignment__status=Assignment.Status.COMPLETED)
    ).select_related("annotator", "explanation__item", "explanation__condition", "construct")


# --- Ratings as tables, for the analysis and the exports --------------------------------------------------

# Columns the analysis reads beside the tidy ones: the covariate every model gets (as the paper's
# rationale_length), and what the exclusion rules look at.
LENGTH = "explanation_length"
SECONDS = "seconds"
ATTENTION_FAILED = "attention_failed"

DEMOGRAPHIC_PREFIX = "demographic_"
# A stored automatic metric's column (per explanation, repeated on each of its ratings); the analysis reads
# every column with this prefix (`annotations.analysis.metrics_agreement.METRIC_PREFIX`).
METRIC_COLUMN_PREFIX = "metric:"

# Column name -> rating field path. Computed columns are annotations under their own names.
_ANALYSIS_FIELDS = {
    "annotator_id": "annotator_id",
    "item_id": "explanation__item__source_id",
    "explanation_id": "explanation_id",
    "condition": "explanation__condition__label",
    "construct": "construct__label",
    "value": "value",
    LENGTH: LENGTH,
    SECONDS: "assignment__seconds_spent",
    "_attention_failures": "annotator__attention_failures",
    "_kind": "assignment__kind",
    "_swapped": "assignment__left_right_swapped",
    "_first": "assignment__explanation_id",
    "_preferred": "assignment__preferred_explanation_id",
    "_tie": "assignment__no_preference",
    # What wrote the text that was rated: the explanation's version and the prediction set behind it (run,
    # checkpoint and step, task format). Explanations imported from files have no set: those stay blank.
    "explanation_version": "explanation__version",
    "student_run_id": "student_run_id",
    "prediction_set": "explanation__prediction__prediction_set__number",
    "checkpoint": "explanation__prediction__prediction_set__checkpoint_path",
    "checkpoint_step": "explanation__prediction__prediction_set__checkpoint_step",
    "task_format": "explanation__prediction__prediction_set__task_format",
    "_set_prompt_version": "explanation__prediction__prediction_set__prompt_version",
}
# Exports add where each explanation came from and who rated it. Worker ids are left out on purpose: they
# identify people on the crowd platforms, and the annotator id (the database key) is enough to join.
_EXPORT_FIELDS = {
    "explanation_source": "explanation__source",
    "_provenance": "explanation__provenance",
    "annotator_source": "annotator__source",
    "rated_at": "updated_at",
    "_demographics": "annotator__demographics",
}


def ratings_fingerprint(study: Study) -> str:
    """Count and latest change of the study's completed ratings, plus a digest of its stored automatic metrics
    (which enter the analysis too): any new, changed or completed rating, or newly stored metric, alters it."""
    stats = completed_ratings(study).aggregate(n=Count("id"), latest=Max("updated_at"))
    latest = stats["latest"].isoformat() if stats["latest"] else "none"
    metrics = metrics_fingerprint(study)
    return f"{stats['n']}@{latest}" + (f";m{metrics}" if metrics else "")


def metrics_fingerprint(study: Study) -> str:
    """A short digest of the count and newest of the study's stored metrics ('' when none); short because the
    ratings fingerprint it is appended to has a length limit."""
    stats = ExplanationMetric.objects.filter(explanation__item__study=study).aggregate(
        n=Count("id"), latest=Max("created_at")
    )
    if not stats["n"]:
        return ""
    return hashlib.sha256(f"{stats['n']}@{stats['latest'].isoformat()}".encode()).hexdigest()[:12]


def metric_values(study: Study) -> dict[int, dict[str, float | None]]:
    """Per explanation id, the newest stored value of each metric name (None where that one failed)."""
    values: dict[int, dict[str, float | None]] = {}
    rows = (
        ExplanationMetric.objects.filter(explanation__item__study=study)
        .order_by("explanation_id", "name", "created_at", "id")
        .values_list("explanation_id", "name", "value")
    )
    for explanation_id, name, value in rows:
        values.setdefault(explanation_id, {})[name] = value
    return values


def study_ratings_frame(study: Study, *, for_export: bool = False) -> pd.DataFrame:
    """One row per rating of a completed screen, with the tidy columns of `annotations.analysis.io` plus
    explanation_length, seconds (on that screen), attention_failed (the annotator failed any check), and for
    pair screens `side` (left/right: where this explanation was shown) and `preference` (this, other or tie:
    the answer to "which explanation is better?"); both are empty on single-explanation screens; and one
    `metric:<name>` column per automatic metric stored for the study's explanations.

    With `for_export`, also the explanation's version, source and provenance (JSON text), its student run
    and the teacher prompt versions behind it, and the annotator's source and demographics (one column each).
    """
    import pandas as pd

    fields = {**_ANALYSIS_FIELDS, **(_EXPORT_FIELDS if for_export else {})}
    ratings = completed_ratings(study).annotate(
        **{LENGTH: Length("explanation__text")},
        # A generated explanation names its run through its prediction's set (kept: the link is PROTECTed);
        # one generated before sets existed whose prediction was lost, through its provenance; one imported
        # from a file, through its condition.
        student_run_id=Coalesce(
            "explanation__prediction__prediction_set__run_id",
            Cast(KeyTextTransform("student_run", "explanation__provenance"), IntegerField()),
            "explanation__condition__student_run_id",
        ),
    )
    rows = ratings.order_by("annotator_id", "explanation_id", "construct__position", "construct_id").values_list(
        *fields.values()
    )
    frame = pd.DataFrame(list(rows), columns=list(fields))
    frame[ATTENTION_FAILED] = frame.pop("_attention_failures").fillna(0).astype(int) > 0
    frame[SECONDS] = frame[SECONDS].astype(float)
    _with_pair_columns(frame)
    frame = _with_text_origin(frame)
    _with_metric_columns(frame, study)
    if for_export:
        frame = _with_provenance(frame, study)
    return frame


def _with_text_origin(frame: pd.DataFrame) -> pd.DataFrame:
    """Typed run and set columns, and the teacher prompt version: the set's, else (no set) the run's now."""
    import pandas as pd

    for column in ("student_run_id", "prediction_set", "checkpoint_step", "explanation_version"):
        frame[column] = frame[column].astype("Int64")
    for column in ("checkpoint", "task_format"):
        frame[column] = frame[column].fillna("")
    run_ids = {int(i) for i in frame["student_run_id"].dropna()}
    runs = StudentRun.objects.select_related("teacher_run").in_bulk(run_ids)
    from_set = frame.pop("_set_prompt_version")
    frame["prompt_version"] = [
        stored if pd.notna(number) else (teacher_prompt_version(runs[run]) if pd.notna(run) and run in runs else "")
        for stored, number, run in zip(from_set, frame["prediction_set"], frame["student_run_id"], strict=True)
    ]
    return frame


def _with_provenance(frame: pd.DataFrame, study: Study) -> pd.DataFrame:
    import pandas as pd

    frame["provenance"] = [json.dumps(p or {}, sort_keys=True) for p in frame.pop("_provenance")]
    run_ids = {int(i) for i in frame["student_run_id"].dropna()}
    runs = StudentRun.objects.in_bulk(run_ids)
    frame["student_run"] = [str(runs[i]) if pd.notna(i) and i in runs else "" for i in frame["student_run_id"]]
    frame["student_checkpoint"] = [
        runs[i].base_checkpoint if pd.notna(i) and i in runs else "" for i in frame["student_run_id"]
    ]
    frame["rated_at"] = pd.to_datetime(frame["rated_at"], utc=True)
    demographics = frame.pop("_demographics")
    for name in _demographic_names(study, demographics):
        frame[DEMOGRAPHIC_PREFIX + name] = [(d or {}).get(name, "") for d in demographics]
    return frame


def _demographic_names(study: Study, answers: pd.Series) -> list[str]:
    """The study's questions in their order, then any other keys stored (questions edited mid-study)."""
    names = [q["name"] for q in study.demographics_questions or []]
    for given in answers:
        names.extend(k for k in (given or {}) if k not in names)
    return names


def _with_pair_columns(frame: pd.DataFrame) -> None:
    import numpy as np

    kind, swapped, first = frame.pop("_kind"), frame.pop("_swapped").astype(bool), frame.pop("_first")
    preferred, tie = frame.pop("_preferred"), frame.pop("_tie").astype(bool)
    pair = (kind == Assignment.Kind.PAIR).to_numpy()
    is_first = (frame["explanation_id"] == first).to_numpy()
    # The second explanation is shown on the left when the pair is swapped.
    frame["side"] = np.where(pair, np.where(is_first != swapped.to_numpy(), "left", "right"), "")
    this = (preferred == frame["explanation_id"]).to_numpy()
    answered = (preferred.notna() | tie).to_numpy()
    frame["preference"] = np.where(
        pair & answered, np.where(tie.to_numpy(), "tie", np.where(this, "this", "other")), ""
    )


def _with_metric_columns(frame: pd.DataFrame, study: Study) -> None:
    """One float `metric:<name>` column per stored metric name, the explanation's newest value on each of its
    ratings (NaN where it has none or it failed); no columns when the study has no metrics."""
    import pandas as pd

    values = metric_values(study)
    for name in sorted({name for by_name in values.values() for name in by_name}):
        column = [values.get(int(explanation_id), {}).get(name) for explanation_id in frame["explanation_id"]]
        frame[METRIC_COLUMN_PREFIX + name] = pd.Series(column, index=frame.index, dtype=float)


def study_pairs_frame(study: Study) -> pd.DataFrame:
    """One row per completed pair screen with a preference: annotator_id, item_id, condition_a (shown on the
    left), condition_b (on the right) and outcome: a (left preferred), b (right preferred) or tie."""
    import pandas as pd

    rows = (
        Assignment.objects.filter(annotator__study=study, kind=Assignment.Kind.PAIR, status=Assignment.Status.COMPLETED)
        .filter(Q(no_preference=True) | Q(preferred_explanation__isnull=False))
        .order_by("annotator_id", "position")
        .values_list(
            "annotator_id",
            "explanation__item__source_id",
            "explanation_id",
            "explanation__condition__label",
            "second_explanation__condition__label",
            "left_right_swapped",
            "preferred_explanation_id",
            "no_preference",
        )
    )
    out = []
    for annotator, item, first, first_label, second_label, swapped, preferred, tie in rows:
        left, right = (second_label, first_label) if swapped else (first_label, second_label)
        left_is_first = not swapped
        outcome = "tie" if tie else ("a" if (preferred == first) == left_is_first else "b")
        out.append((annotator, item, left, right, outcome))
    return pd.DataFrame(out, columns=["annotator_id", "item_id", "condition_a", "condition_b", "outcome"])


def pair_preference_counts(study: Study) -> list[dict[str, Any]]:
    """Per pair of conditions (labels in sorted order): how often each was preferred, and ties."""
    counts: dict[tuple[str, str], dict[str, Any]] = {}
    frame = study_pairs_frame(study)
    for a, b, outcome in frame[["condition_a", "condition_b", "outcome"]].itertuples(index=False):
        first, second = sorted((a, b))
        row = counts.setdefault(
            (first, second), {"a": first, "b": second, "a_preferred": 0, "b_preferred": 0, "ties": 0}
        )
        if outcome == "tie":
            row["ties"] += 1
        else:
            winner = a if outcome == "a" else b
            row["a_preferred" if winner == first else "b_preferred"] += 1
    return [counts[key] for key in sorted(counts)]
