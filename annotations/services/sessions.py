"""An annotator's session: entry, consent, demographics, allocation of screens, answers and completion."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotations.assignment import AttentionChecks, Candidate, plan_assignment
from annotations.models import Annotator, Assignment, Construct, Explanation, Rating, Study

logger = logging.getLogger("evalsite.annotators")

MAX_FREE_TEXT = 120
ALLOCATION_RETRIES = 3


class SessionError(Exception):
    """A request an annotator's session cannot accept. `status` is the HTTP status the view answers with."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class StudyNotOpen(SessionError):
    status = 403


class WorkerExcluded(SessionError):
    status = 403


class NoWorkLeft(SessionError):
    status = 409


class EntryRefused(SessionError):
    status = 403


BLOCKED_MESSAGE = (
    "This study is not open to your account. If you think this is a mistake, please write to the researchers."
)
TOOK_PART_MESSAGE = "You have taken part in this study already, so you cannot take part again."


def _crowd_entry_batch_id(study: Study, source: str, external_id: str, external_assignment_id: str, data: dict) -> int:
    """The launched crowd batch behind an MTurk or Prolific entry, or a refusal (the crowd app decides)."""
    from annotations.crowd import entry
    from annotations.crowd.selectors import exclusion_reason

    try:
        batch = entry.entry_batch(
            study=study, source=source, worker_id=external_id, assignment_id=external_assignment_id, platform_data=data
        )
    except entry.EntryRefused as exc:
        raise EntryRefused(str(exc)) from exc
    reason = exclusion_reason(study=study, platform=source, worker_id=external_id)
    if reason:
        raise WorkerExcluded(BLOCKED_MESSAGE if reason == "blocked" else TOOK_PART_MESSAGE)
    if batch.params.get("screenout_code"):
        data["screenout_code"] = batch.params["screenout_code"]  # shown if no work is left for them
    return batch.pk


def _crowd_exclude_after_entry(batch_id: int, worker_id: str) -> None:
    from annotations.crowd.entry import crowd_worker_exclude_at_entry

    crowd_worker_exclude_at_entry(batch_id=batch_id, worker_id=worker_id)


def annotator_enter(
    *,
    study: Study,
    source: str,
    external_id: str,
    external_assignment_id: str = "",
    platform_data: dict[str, Any] | None = None,
) -> Annotator:
    """Find or create the annotator behind an entry link; a returning annotator resumes their session.

    A new MTurk or Prolific annotator needs a launched batch of the study behind the entry (a HIT or Prolific
    study of it, an assignment no other worker used); otherwise nothing is stored and EntryRefused says why.
    """
    external_id = external_id.strip()
    if not external_id or len(external_id) > 128:
        raise SessionError("missing or malformed participant id")
    existing = Annotator.objects.filter(study=study, source=source, external_id=external_id).first()
    if existing is not None:
        return existing
    if study.status != Study.Status.OPEN:
        raise StudyNotOpen("this study is not taking participants now")
    platform_data = dict(platform_data or {})
    batch_id = None
    if source != Annotator.Source.LINK:
        batch_id = _crowd_entry_batch_id(study, source, external_id, external_assignment_id, platform_data)
        platform_data["batch_id"] = batch_id
    annotator = Annotator(
        study=study,
        source=source,
        external_id=external_id,
        external_assignment_id=external_assignment_id[:128],
        platform_data=platform_data,
        assignment_seed=secrets.randbits(62),
    )
    annotator.full_clean()
    try:
        with transaction.atomic():
            annotator.save()
    except IntegrityError:
        # Two tabs entering at once: the other one won, use its row.
        return Annotator.objects.get(study=study, source=source, external_id=external_id)
    if batch_id is not None and source == Annotator.Source.MTURK:
        transaction.on_commit(lambda: _crowd_exclude_after_entry(batch_id, external_id))
    return annotator


def annotator_touch(annotator: Annotator) -> None:
    Annotator.objects.filter(pk=annotator.pk).update(last_seen_at=timezone.now())


def annotator_consent(*, annotator: Annotator) -> None:
    if annotator.consented_at is None:
        annotator.consented_at = timezone.now()
        annotator.save(update_fields=["consented_at"])


def clean_demographics(questions: list[dict[str, Any]], answers: dict[str, str]) -> dict[str, str]:
    """Every question answered; a closed question with one of its choices; free text kept short."""
    cleaned: dict[str, str] = {}
    missing = []
    for question in questions:
        name = question["name"]
        value = (answers.get(name) or "").strip()
        if not value:
            missing.append(question.get("label", name))
            continue
        choices = question.get("choices") or []
        if choices and value not in choices:
            raise SessionError(f"{question.get('label', name)}: {value!r} is not one of the choices")
        cleaned[name] = value[:MAX_FREE_TEXT]
    if missing:
        raise SessionError("please answer: " + ", ".join(missing))
    return cleaned


def annotator_save_demographics(*, annotator: Annotator, answers: dict[str, str]) -> None:
    if annotator.consented_at is None:
        raise SessionError("consent comes first", status=409)
    annotator.demographics = clean_demographics(annotator.study.demographics_questions or [], answers)
    annotator.demographics_at = timezone.now()
    annotator.save(update_fields=["demographics", "demographics_at"])


def assignments_release_stale(*, study: Study) -> int:
    """Release unfinished screens of annotators who went quiet, so others can rate those explanations."""
    cutoff = timezone.now() - timedelta(minutes=study.assignment_timeout_minutes)
    stale = Assignment.objects.filter(
        annotator__study=study, status=Assignment.Status.ASSIGNED, annotator__finished_at__isnull=True
    ).filter(Q(annotator__last_seen_at__lt=cutoff) | Q(annotator__last_seen_at__isnull=True, assigned_at__lt=cutoff))
    return stale.update(status=Assignment.Status.RELEASED)


def _reserved_counts(study: Study) -> dict[int, int]:
    """Per explanation: screens that hold it and are not released (done or in progress)."""
    live = Assignment.objects.filter(annotator__study=study).exclude(status=Assignment.Status.RELEASED)
    counts: dict[int, int] = {}
    for field in ("explanation_id", "second_explanation_id"):
        for row in live.exclude(**{field: None}).values(field).annotate(n=Count("id")):
            counts[row[field]] = counts.get(row[field], 0) + row["n"]
    return counts


def _plan_for(annotator: Annotator, study: Study) -> tuple[list, str]:
    held = annotator.assignments.exclude(status=Assignment.Status.RELEASED)
    seen_items = set(held.exclude(explanation=None).values_list("explanation__item_id", flat=True))
    done_screens = held.exclude(kind=Assignment.Kind.ATTENTION).count()
    wanted = study.explanations_per_annotator - done_screens
    if wanted <= 0:
        return [], ""
    counts = _reserved_counts(study)
    explanations = Explanation.objects.filter(item__study=study, is_current=True).select_related("condition")
    candidates = [
        Candidate(e.pk, e.item_id, e.condition.label, counts.get(e.pk, 0), study.ratings_per_explanation)
        for e in explanations
    ]
    scale = study.constructs.order_by("-scale_size").values_list("scale_size", flat=True).first() or 5
    positions = tuple(study.attention_check_positions or [])
    plan = plan_assignment(
        candidates,
        mode=study.mode,
        wanted=wanted,
        seed=annotator.assignment_seed + done_screens,
        seen_item_ids=seen_items,
        attention=AttentionChecks(positions=positions, scale_size=scale),
        conditions=list(study.conditions.values_list("label", flat=True)),
    )
    return plan.screens, plan.reason


def assignments_allocate(*, annotator: Annotator) -> list[Assignment]:
    """Give the annotator their screens. Serialised per study, so a target is never overshot."""
    for _ in range(ALLOCATION_RETRIES):
        try:
            return _allocate_once(annotator)
        except _Overshoot:
            continue
    raise NoWorkLeft("the study is busy; please reload in a moment")


class _Overshoot(Exception):
    pass


def _allocate_once(annotator: Annotator) -> list[Assignment]:
    with transaction.atomic():
        # The study row is the lock: one allocation at a time per study, others wait a few milliseconds.
        study = Study.objects.select_for_update().get(pk=annotator.study_id)
        if annotator.assignments.filter(status=Assignment.Status.ASSIGNED).exists():
            return list(annotator.assignments.filter(status=Assignment.Status.ASSIGNED))
        assignments_release_stale(study=study)
        screens, reason = _plan_for(annotator, study)
        if not screens:
            if reason:
                logger.info("no work for annotator %s in %s: %s", annotator.pk, study.slug, reason)
            return []
        start = annotator.assignments.order_by("-position").values_list("position", flat=True).first() or 0
        created = [_assignment_from_screen(annotator, start, screen) for screen in screens]
        Assignment.objects.bulk_create(created)
        _check_targets(study, [eid for screen in screens for eid in screen.explanation_ids])
        return created


def _assignment_from_screen(annotator: Annotator, start: int, screen) -> Assignment:
    ids = list(screen.explanation_ids)
    return Assignment(
        annotator=annotator,
        position=start + screen.position,
        block=screen.block or 0,
        kind=screen.kind,
        explanation_id=ids[0] if ids else None,
        second_explanation_id=ids[1] if len(ids) > 1 else None,
        left_right_swapped=bool(screen.left_right_swapped),
        expected_value=screen.expected_value,
    )


def _check_targets(study: Study, explanation_ids: list[int]) -> None:
    """Belt and braces for databases without row locks (SQLite): undo an allocation that overshot."""
    counts = _reserved_counts(study)
    if any(counts.get(eid, 0) > study.ratings_per_explanation for eid in explanation_ids):
        raise _Overshoot()


@dataclass(frozen=True)
class ScreenAnswer:
    explanation_id: int
    construct_id: int
    value: int


def _checked_assignment(annotator: Annotator, assignment_id: int) -> Assignment:
    assignment = (
        Assignment.objects.select_for_update()
        .filter(pk=assignment_id, annotator=annotator)
        .exclude(status=Assignment.Status.RELEASED)
        .first()
    )
    if assignment is None:
        logger.warning("annotator %s sent a screen that is not theirs: %s", annotator.pk, assignment_id)
        raise SessionError("this screen is not part of your assignment", status=403)
    if assignment.status == Assignment.Status.COMPLETED:
        logger.warning("annotator %s resent completed screen %s", annotator.pk, assignment_id)
        raise SessionError("this screen was submitted already", status=409)
    return assignment


def _validate_answers(assignment: Assignment, answers: list[ScreenAnswer], constructs: dict[int, Construct]) -> None:
    allowed = {assignment.explanation_id, assignment.second_explanation_id} - {None}
    for answer in answers:
        if answer.explanation_id not in allowed:
            raise SessionError("that explanation is not on this screen", status=403)
        construct = constructs.get(answer.construct_id)
        if construct is None:
            raise SessionError("unknown construct", status=400)
        if not 1 <= answer.value <= construct.scale_size:
            raise SessionError(f"{construct.label}: {answer.value} is not on the 1-{construct.scale_size} scale")


def _upsert_ratings(annotator: Annotator, assignment: Assignment, answers: list[ScreenAnswer]) -> None:
    for answer in answers:
        Rating.objects.update_or_create(
            annotator=annotator,
            explanation_id=answer.explanation_id,
            construct_id=answer.construct_id,
            defaults={"value": answer.value, "assignment": assignment},
        )


def answer_save(*, annotator: Annotator, assignment_id: int, answer: ScreenAnswer) -> None:
    """Store one answer as it is given, so a reload resumes with it."""
    with transaction.atomic():
        assignment = _checked_assignment(annotator, assignment_id)
        if assignment.kind == Assignment.Kind.ATTENTION:
            raise SessionError("attention rows are sent with the screen", status=400)
        constructs = {c.pk: c for c in annotator.study.constructs.all()}
        _validate_answers(assignment, [answer], constructs)
        _upsert_ratings(annotator, assignment, [answer])


def preference_save(*, annotator: Annotator, assignment_id: int, preference: str) -> None:
    """Store a pair screen's preference as it is given ("none" for equally good, else an explanation id),
    so a reload resumes with it; submitting the screen stores it again."""
    with transaction.atomic():
        assignment = _checked_assignment(annotator, assignment_id)
        if assignment.kind != Assignment.Kind.PAIR or not annotator.study.ask_preference:
            raise SessionError("this screen asks for no preference", status=400)
        if preference != "none" and not preference.isdigit():
            raise SessionError("the preference is not a number")
        shown = {assignment.explanation_id, assignment.second_explanation_id} - {None}
        preferred = int(preference) if preference.isdigit() else None
        _record_preference(assignment, shown, preferred, preference == "none")
        assignment.save(update_fields=["preferred_explanation", "no_preference"])


def screen_submit(
    *,
    annotator: Annotator,
    assignment_id: int,
    answers: list[ScreenAnswer],
    attention_value: int | None = None,
    preferred_explanation_id: int | None = None,
    no_preference: bool = False,
) -> Assignment:
    """Complete a screen: every construct of every explanation on it answered, values on their scales."""
    with transaction.atomic():
        assignment = _checked_assignment(annotator, assignment_id)
        study = annotator.study
        constructs = {c.pk: c for c in study.constructs.all()}
        if assignment.kind == Assignment.Kind.ATTENTION:
            _record_attention(annotator, assignment, attention_value, max(c.scale_size for c in constructs.values()))
        else:
            _validate_answers(assignment, answers, constructs)
            given = {(a.explanation_id, a.construct_id) for a in answers}
            shown = {assignment.explanation_id, assignment.second_explanation_id} - {None}
            missing = [constructs[cid].label for eid in shown for cid in constructs if (eid, cid) not in given]
            if missing:
                raise SessionError("please answer every statement: " + ", ".join(sorted(set(missing))))
            if assignment.kind == Assignment.Kind.PAIR and study.ask_preference:
                _record_preference(assignment, shown, preferred_explanation_id, no_preference)
            _upsert_ratings(annotator, assignment, answers)
        now = timezone.now()
        assignment.status = Assignment.Status.COMPLETED
        assignment.completed_at = now
        if assignment.first_shown_at is not None:
            assignment.seconds_spent = (now - assignment.first_shown_at).total_seconds()
        assignment.save()
        return assignment


def _record_attention(annotator: Annotator, assignment: Assignment, value: int | None, scale_size: int) -> None:
    if value is None or not 1 <= value <= scale_size:
        raise SessionError(f"please choose a point from 1 to {scale_size}")
    assignment.attention_value = value
    if value != assignment.expected_value:
        Annotator.objects.filter(pk=annotator.pk).update(attention_failures=annotator.attention_failures + 1)
        annotator.attention_failures += 1


def _record_preference(assignment: Assignment, shown: set[int], preferred: int | None, no_preference: bool) -> None:
    if no_preference:
        assignment.no_preference, assignment.preferred_explanation_id = True, None
        return
    if preferred is None:
        raise SessionError("please say which explanation is better, or that they are equally good")
    if preferred not in shown:
        raise SessionError("that explanation is not on this screen", status=403)
    assignment.preferred_explanation_id, assignment.no_preference = preferred, False


def mark_shown(assignment: Assignment) -> None:
    if assignment.first_shown_at is None:
        Assignment.objects.filter(pk=assignment.pk, first_shown_at__isnull=True).update(first_shown_at=timezone.now())
        assignment.first_shown_at = timezone.now()


def annotator_finish(*, annotator: Annotator) -> str:
    """Close the session and give the completion code (the failure code after a failed attention check)."""
    with transaction.atomic():
        annotator = Annotator.objects.select_for_update().get(pk=annotator.pk)
        if annotator.finished_at is not None:
            return annotator.completion_code
        if annotator.assignments.filter(status=Assignment.Status.ASSIGNED).exists():
            raise SessionError("there are screens left to rate", status=409)
        study = annotator.study
        annotator.completion_code = (
            study.failed_attention_code if annotator.attention_failures else study.completion_code
        )
        annotator.flags = {**annotator.flags, **_quality_flags(annotator, study)}
        annotator.finished_at = timezone.now()
        annotator.save(update_fields=["completion_code", "flags", "finished_at"])
        return annotator.completion_code


def _quality_flags(annotator: Annotator, study: Study) -> dict[str, bool]:
    done = annotator.assignments.filter(status=Assignment.Status.COMPLETED).exclude(kind=Assignment.Kind.ATTENTION)
    seconds = [s for s in done.values_list("seconds_spent", flat=True) if s is not None]
    values = set(
        annotator.ratings.filter(assignment__status=Assignment.Status.COMPLETED).values_list("value", flat=True)
    )
    return {
        "too_fast": bool(seconds) and sorted(seconds)[len(seconds) // 2] < study.min_seconds_per_screen,
        "straight_lining": len(values) == 1 and done.count() > 1,
    }
