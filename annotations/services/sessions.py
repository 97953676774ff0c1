"""An annotator's session: entry, consent, demographics, allocation of screens, answers and completion."""

from __future__ import annotations

import functools
import logging
import random
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.cache import caches
from django.db import IntegrityError, connections, router, transaction
from django.db.models import F, Q
from django.utils import timezone

from annotations import prepared_reads, selectors
from annotations.assignment import AssignmentPlan, AttentionChecks, Candidate, plan_assignment
from annotations.models import Annotator, Assignment, Condition, Construct, Explanation, Rating, Study
from annotations.models.studies import ITEM_ORDER_MODULUS, ITEM_ORDER_MULTIPLIER

logger = logging.getLogger("evalsite.annotators")

MAX_FREE_TEXT = 120
ALLOCATION_RETRIES = 3
# Allocation reads, per condition, this many times the screens it plans (at least MIN_CANDIDATES) of the
# least-reserved open explanations: with at least as many items per condition as screens, a plan that
# fits exists (any slot has more free items than there are slots); it reads further only when it did not.
CANDIDATE_SLACK = 2
MIN_CANDIDATES = 8
# Rows read per condition for each candidate wanted: the annotator's own order picks among them, so annotators
# arriving together mostly choose different rows of the same first rows of the study's order.
BAND_PER_CANDIDATE = 8
_PRIME = 2_147_483_647  # for the per-annotator order of tied items
STALE_RELEASE_EVERY_S = 60
TOUCH_EVERY_S = 30


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
    existing = selectors.annotator_by_identity(study, source, external_id)
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
    """Note that the annotator is active. Written at most every `TOUCH_EVERY_S` seconds: it only feeds the
    stale-screen release, whose timeout is in minutes, and a write per request would be much of the work."""
    now = timezone.now()
    if annotator.last_seen_at is not None and (now - annotator.last_seen_at).total_seconds() < TOUCH_EVERY_S:
        return
    Annotator.objects.filter(pk=annotator.pk).update(last_seen_at=now)
    annotator.last_seen_at = now


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
    return _release(stale)


def assignments_release_unfinished(*, annotator: Annotator) -> int:
    """Release the screens an annotator has not done (their time limit ran out)."""
    return _release(Assignment.objects.filter(annotator=annotator, status=Assignment.Status.ASSIGNED))


def _release(assignments) -> int:
    """Release screens and give their places back to their explanations, in one transaction. Screens being
    submitted right now are locked by the submit and skipped: they are not stale."""
    with transaction.atomic():
        rows = list(
            assignments.select_for_update(skip_locked=True, of=("self",)).values_list(
                "pk", "explanation_id", "second_explanation_id"
            )
        )
        if not rows:
            return 0
        Assignment.objects.filter(pk__in=[pk for pk, *_ in rows], status=Assignment.Status.ASSIGNED).update(
            status=Assignment.Status.RELEASED
        )
        freed = Counter(eid for _, *eids in rows for eid in eids if eid is not None)
        # In primary-key order, as allocation locks them, so that the two cannot deadlock.
        list(Explanation.objects.select_for_update().filter(pk__in=freed).order_by("pk").values_list("pk"))
        by_amount: dict[int, list[int]] = defaultdict(list)
        for explanation_id, n in freed.items():
            by_amount[n].append(explanation_id)
        for n, ids in sorted(by_amount.items()):
            Explanation.objects.filter(pk__in=ids).update(reserved=F("reserved") - n)
    return len(rows)


def _release_stale_now_and_then(study: Study) -> None:
    # Once a minute per study and process is plenty for a timeout counted in minutes; doing it on every
    # allocation would put a study-wide scan on the first screen of every annotator.
    if caches["default"].add(f"evalsite:stale-release:{study.pk}", 1, timeout=STALE_RELEASE_EVERY_S):
        released = assignments_release_stale(study=study)
        if released:
            logger.info("released %s stale screens in %s", released, study.slug)


@dataclass(frozen=True)
class _Held:
    """What an annotator already holds: items seen, screens counted, the last position used."""

    seen_items: set[int]
    rating_screens: int
    last_position: int
    unfinished: bool


def _held(annotator: Annotator) -> _Held:
    using = router.db_for_read(Assignment)
    with connections[using].cursor() as cursor:
        cursor.execute(_held_statement(using), [annotator.pk, Assignment.Status.RELEASED])
        rows = cursor.fetchall()
    return _Held(
        seen_items={item for *_, item in rows if item is not None},
        rating_screens=sum(1 for _, kind, *_ in rows if kind != Assignment.Kind.ATTENTION),
        last_position=max((position for _, _, position, _ in rows), default=0),
        unfinished=any(status == Assignment.Status.ASSIGNED for status, *_ in rows),
    )


@functools.cache
def _held_statement(using: str) -> str:
    """What `annotator.assignments.exclude(status=RELEASED).values_list("status", "kind", "position",
    "explanation__item_id")` sends, written once per process, less the ORDER BY of the models' default
    ordering (which joined annotator and study only to sort rows that are read as a set)."""
    quote = connections[using].ops.quote_name
    column = Assignment._meta.get_field
    return (
        f"SELECT a.{quote(column('status').column)}, a.{quote(column('kind').column)},"
        f" a.{quote(column('position').column)}, e.{quote(Explanation._meta.get_field('item').column)}"
        f" FROM {quote(Assignment._meta.db_table)} a"
        f" LEFT OUTER JOIN {quote(Explanation._meta.db_table)} e"
        f" ON a.{quote(column('explanation').column)} = e.{quote(Explanation._meta.pk.column)}"
        f" WHERE a.{quote(column('annotator').column)} = %s AND NOT (a.{quote(column('status').column)} = %s)"
    )


class _Busy(Exception):
    """Another allocation held explanations this plan needed: roll back and try again."""


def assignments_allocate(*, annotator: Annotator) -> list[Assignment]:
    """Give the annotator their screens; targets are never overshot.

    Allocations of different annotators run side by side: each locks only the explanations it reads, a
    bounded set (see `_open_candidates`), and skips those another allocation has locked. When that leaves
    the plan short it tries again; the last try waits for the locks instead of skipping them.
    """
    _release_stale_now_and_then(annotator.study)
    for attempt in range(ALLOCATION_RETRIES):
        try:
            return _allocate_once(annotator, wait_for_locks=attempt == ALLOCATION_RETRIES - 1)
        except _Busy:
            time.sleep(random.uniform(0.005, 0.03))
    raise NoWorkLeft("the study is busy; please reload in a moment")


def _allocate_once(annotator: Annotator, *, wait_for_locks: bool) -> list[Assignment]:
    study = annotator.study
    with transaction.atomic():
        # Two tabs of one annotator allocate one after the other; different annotators do not wait.
        list(Annotator.objects.select_for_update().filter(pk=annotator.pk).values_list("pk"))
        held = _held(annotator)
        if held.unfinished:
            return list(annotator.assignments.filter(status=Assignment.Status.ASSIGNED))
        wanted = study.explanations_per_annotator - held.rating_screens
        if wanted <= 0:
            return []
        conditions = selectors.study_conditions(study)
        constructs = selectors.study_constructs(study)
        plan = _plan(annotator, study, held, wanted, conditions, constructs, wait_for_locks=wait_for_locks)
        if plan.reason:
            logger.info("allocation for annotator %s in %s: %s", annotator.pk, study.slug, plan.reason)
        if not plan.screens:
            return []
        created = [_assignment_from_screen(annotator, held.last_position, screen) for screen in plan.screens]
        _insert_assignments(created)
        reserved = plan.explanation_ids
        # The rows are locked (PostgreSQL) or the database is (SQLite, IMMEDIATE transactions), so this
        # always matches; the condition makes an overshoot impossible even if it did not.
        updated = _reserve_explanations(reserved, target=study.ratings_per_explanation)
        if updated != len(reserved):
            raise _Busy()
        return created


def _reserve_explanations(explanation_ids: list[int], *, target: int) -> int:
    """Add one to `reserved` of each explanation still under `target`; how many rows changed. What
    `Explanation.objects.filter(pk__in=ids, reserved__lt=target).update(reserved=F("reserved") + 1)` sends,
    from SQL written once per process."""
    if not explanation_ids:
        return 0
    using = router.db_for_write(Explanation)
    quote = connections[using].ops.quote_name
    reserved = quote(Explanation._meta.get_field("reserved").column)
    sql = (
        f"UPDATE {quote(Explanation._meta.db_table)} SET {reserved} = ({reserved} + %s)"
        f" WHERE {quote(Explanation._meta.pk.column)} IN ({_placeholders(len(explanation_ids))}) AND {reserved} < %s"
    )
    with connections[using].cursor() as cursor:
        cursor.execute(sql, [1, *explanation_ids, target])
        return cursor.rowcount


def _insert_assignments(assignments: list[Assignment]) -> None:
    """What `Assignment.objects.bulk_create(assignments)` sends, from SQL written once per process (compiling
    the bulk insert was the largest CPU cost of allocation): one INSERT of every concrete field but the
    primary key, each value prepared as the ORM prepares it (`pre_save` sets `assigned_at`), RETURNING the
    primary keys in the order given, which are set on the instances as bulk_create sets them."""
    using = router.db_for_write(Assignment)
    connection = connections[using]
    insert, row_placeholders, returning, fields = _insert_assignments_statement(using)
    params = [
        field.get_db_prep_save(field.pre_save(assignment, add=True), connection=connection)
        for assignment in assignments
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"{insert} {', '.join([row_placeholders] * len(assignments))} {returning}", params)
        returned = cursor.fetchall()
    for assignment, (pk,) in zip(assignments, returned, strict=True):
        assignment.pk = pk
        assignment._state.adding = False
        assignment._state.db = using


@functools.cache
def _insert_assignments_statement(using: str) -> tuple[str, str, str, tuple]:
    connection = connections[using]
    if not connection.features.can_return_rows_from_bulk_insert:
        raise NotImplementedError("allocation needs a database that returns the ids of a bulk insert")
    quote = connection.ops.quote_name
    fields = tuple(f for f in Assignment._meta.concrete_fields if f is not Assignment._meta.pk)
    return (
        f"INSERT INTO {quote(Assignment._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) VALUES",
        f"({', '.join(['%s'] * len(fields))})",
        f"RETURNING {quote(Assignment._meta.pk.column)}",
        fields,
    )


def _plan(
    annotator: Annotator,
    study: Study,
    held: _Held,
    wanted: int,
    conditions: list[Condition],
    constructs: list[Construct],
    *,
    wait_for_locks: bool,
) -> AssignmentPlan:
    units = len(conditions) if study.mode == Study.Mode.SINGLE else len(conditions) * (len(conditions) - 1) // 2
    slots = max(1, wanted // max(units, 1) * max(units, 1))
    limit = max(MIN_CANDIDATES, CANDIDATE_SLACK * slots)
    seed = annotator.assignment_seed + held.rating_screens
    while True:
        candidates, skipped, exhausted = _open_candidates(
            study, conditions, held.seen_items, limit=limit, seed=seed, wait_for_locks=wait_for_locks
        )
        plan = plan_assignment(
            candidates,
            mode=study.mode,
            wanted=wanted,
            seed=seed,
            seen_item_ids=held.seen_items,
            attention=AttentionChecks(
                positions=tuple(study.attention_check_positions or []),
                scale_size=max((c.scale_size for c in constructs), default=5),
            ),
            conditions=[c.label for c in conditions],
        )
        if plan.blocks_planned == plan.blocks_wanted or not units:
            return plan
        if skipped:
            raise _Busy()
        if exhausted:
            return plan
        limit *= 4  # the first rows read did not fit together (items seen, or shared): read further


def _open_candidates(
    study: Study, conditions: list[Condition], seen_items: set[int], *, limit: int, seed: int, wait_for_locks: bool
) -> tuple[list[Candidate], bool, bool]:
    """Per condition, the `limit` least-reserved explanations under target on items not seen yet, locked.

    Ties go in an order of items drawn for this annotator (a multiplicative hash of the item id), so that
    annotators arriving together read different rows and rarely meet on a lock; in pair mode it also puts
    the conditions' candidates on the same items. Two queries, each reading a bounded number of rows whatever
    the study's size (see `_open_candidates_statements`). Returns the
    candidates, whether rows another allocation had locked were skipped, and whether every open row was read.
    """
    target = study.ratings_per_explanation
    label_of = {c.pk: c.label for c in conditions}
    if not label_of:
        return [], False, True
    multiplier, offset = seed % (_PRIME - 1) + 1, (seed >> 31) % _PRIME
    using = router.db_for_write(Explanation)
    connection = connections[using]
    statements = _open_candidates_statements(using)
    # The open rows: current explanations of these conditions under target, on items not seen yet.
    seen = list(seen_items)
    not_seen = statements.not_seen.replace("{items}", _placeholders(len(seen))) if seen else ""
    open_where = statements.open_rows.replace("{conditions}", _placeholders(len(label_of))) + not_seen
    open_params = [*label_of, target, *seen]
    bands, band_params = [], []
    for n, condition_id in enumerate(label_of):
        bands.append(statements.band.replace("{not_seen}", not_seen).replace("{n}", str(n)))
        band_params += [condition_id, target, *seen, BAND_PER_CANDIDATE * limit]
    with connection.cursor() as cursor:
        cursor.execute(
            statements.ranked.replace("{bands}", " UNION ALL ".join(bands)),
            [multiplier, offset, _PRIME, *band_params, limit],
        )
        ranked = cursor.fetchall()
    per_condition = Counter(condition_id for *_, condition_id in ranked)
    exhausted = all(n < limit for n in per_condition.values())
    if not ranked:  # as the ORM answers an empty IN list: no rows, and no query
        return [], False, exhausted
    if study.mode == Study.Mode.SINGLE:
        wanted_column, wanted = statements.pk_column, [pk for pk, *_ in ranked]
    else:
        # A pair needs both of its explanations on one item: take every open explanation of those items.
        wanted_column, wanted = statements.item_column, list({item for _, item, _ in ranked})
    locking = statements.locking.replace("{open_rows}", open_where)
    locking = locking.replace("{wanted}", f"{wanted_column} IN ({_placeholders(len(wanted))})")
    if connection.features.has_select_for_update:  # SQLite locks the whole database instead
        locking += " FOR UPDATE" if wait_for_locks else " FOR UPDATE SKIP LOCKED"
    with connection.cursor() as cursor:
        cursor.execute(locking, [*open_params, *wanted])
        rows = cursor.fetchall()
    # Waiting for the locks, a row that is missing reached its target meanwhile: it is full, not skipped.
    skipped = not wait_for_locks and not {pk for pk, *_ in ranked} <= {pk for pk, *_ in rows}
    candidates = [Candidate(pk, item, label_of[cond], reserved, target) for pk, item, cond, reserved in rows]
    return candidates, skipped, exhausted


def _placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


@dataclass(frozen=True)
class _OpenCandidatesStatements:
    open_rows: str  # WHERE clause; {conditions} is filled with one placeholder per condition
    not_seen: str  # appended to a WHERE clause when the annotator has seen items; {items} likewise
    band: str  # one condition's first open rows in the study's order; {not_seen} is "" or the clause above
    ranked: str  # {bands} is the UNION ALL of the conditions' bands
    locking: str  # {open_rows} as above, {wanted} the IN list of the rows to lock
    pk_column: str
    item_column: str


@functools.cache
def _open_candidates_statements(using: str) -> _OpenCandidatesStatements:
    """The two statements of `_open_candidates`, written once per process.

    The ranked one reads, per condition, the first `band` open rows (current, under target, items not seen) in
    the order of the `explanation_open_order` index (least reserved, then the study's item order): an index
    range read, as long in a study of 20,000 explanations as in one of 200. It ranks those rows per condition
    by reserved count, then by this annotator's order of items (a multiplicative hash of the item id), then
    by id, and keeps `rank <= limit`. The locking one reads the chosen rows again `FOR UPDATE [SKIP LOCKED]`.
    Compiling such queries through the ORM was the largest CPU cost of a first screen, hence the SQL."""
    quote = connections[using].ops.quote_name
    column = Explanation._meta.get_field

    def col(name: str) -> str:
        return f"e.{quote(column(name).column)}"

    pk, item, condition, reserved = col("id"), col("item"), col("condition"), col("reserved")
    table = quote(Explanation._meta.db_table)
    # As the index spells it; "%%" is the modulo operator in a statement sent with parameters.
    study_order = f"(({item} * {ITEM_ORDER_MULTIPLIER}) %% {ITEM_ORDER_MODULUS})"
    return _OpenCandidatesStatements(
        open_rows=f"{condition} IN ({{conditions}}) AND {col('is_current')} AND {reserved} < %s",
        not_seen=f" AND NOT ({item} IN ({{items}}))",
        band=(
            f"SELECT * FROM (SELECT {pk} AS pk, {item} AS item_id, {condition} AS condition_id,"
            f" {reserved} AS reserved FROM {table} e"
            f" WHERE {condition} = %s AND {col('is_current')} AND {reserved} < %s{{not_seen}}"
            f" ORDER BY {reserved} ASC, {study_order} ASC LIMIT %s) band_{{n}}"
        ),
        ranked=(
            "SELECT pk, item_id, condition_id FROM (SELECT pk, item_id, condition_id,"
            " ROW_NUMBER() OVER (PARTITION BY condition_id"
            " ORDER BY reserved ASC, MOD(((item_id * %s) + %s), %s) ASC, pk ASC) AS candidate_rank"
            " FROM ({bands}) bands) ranked WHERE candidate_rank <= %s"
        ),
        locking=(
            f"SELECT {pk}, {item}, {condition}, {reserved} FROM {table} e"
            f" WHERE {{open_rows}} AND {{wanted}} ORDER BY {pk} ASC"
        ),
        pk_column=pk,
        item_column=item,
    )


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


@dataclass(frozen=True)
class ScreenAnswer:
    explanation_id: int
    construct_id: int
    value: int


def _checked_assignment(annotator: Annotator, assignment_id: int) -> Assignment:
    assignment = _locked_assignment_of(annotator, assignment_id)
    if assignment is None:
        logger.warning("annotator %s sent a screen that is not theirs: %s", annotator.pk, assignment_id)
        raise SessionError("this screen is not part of your assignment", status=403)
    if assignment.status == Assignment.Status.COMPLETED:
        logger.warning("annotator %s resent completed screen %s", annotator.pk, assignment_id)
        raise SessionError("this screen was submitted already", status=409)
    return assignment


def _locked_assignment_of(annotator: Annotator, assignment_id: int) -> Assignment | None:
    """The annotator's screen, not released, locked until the transaction ends: what
    `select_for_update().filter(pk=..., annotator=...).exclude(status=RELEASED)` sends, from SQL written once
    per process (every autosave and submit reads it; compiling it was much of their CPU time)."""
    using = router.db_for_write(Assignment)
    if connections[using].get_autocommit():  # as the ORM refuses: a lock outside a transaction holds nothing
        raise transaction.TransactionManagementError("select_for_update cannot be used outside of a transaction.")
    sql, columns = _locked_assignment_statement(using)
    row = prepared_reads.first_row(sql, [assignment_id, annotator.pk, Assignment.Status.RELEASED], using=using)
    return None if row is None else columns.instance(row, using=using)


@functools.cache
def _locked_assignment_statement(using: str) -> tuple[str, prepared_reads.ModelColumns]:
    connection = connections[using]
    quote = connection.ops.quote_name
    columns = prepared_reads.ModelColumns.of(Assignment, "a", using=using)
    sql = (
        f"SELECT {columns.sql} FROM {quote(Assignment._meta.db_table)} a"
        f" WHERE a.{quote(Assignment._meta.pk.column)} = %s"
        f" AND a.{quote(Assignment._meta.get_field('annotator').column)} = %s"
        f" AND NOT (a.{quote(Assignment._meta.get_field('status').column)} = %s)"
    )
    if connection.features.has_select_for_update:  # SQLite locks the whole database instead
        sql += " FOR UPDATE"
    return sql, columns


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
    """One statement whatever the number of constructs: insert, or on a second answer change the value.

    What `Rating.objects.bulk_create(..., update_conflicts=True, unique_fields=["annotator", "explanation",
    "construct"], update_fields=["value", "assignment", "updated_at"])` sends, from SQL written once per
    process: every autosave and submit writes it, and compiling the bulk insert was a good part of their CPU.
    """
    latest = {(a.explanation_id, a.construct_id): a.value for a in answers}
    if not latest:
        return
    using = router.db_for_write(Rating)
    connection = connections[using]
    insert, row_placeholders, on_conflict = _upsert_ratings_statement(using)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    params = [
        param
        for (explanation_id, construct_id), value in latest.items()
        for param in (annotator.pk, explanation_id, construct_id, assignment.pk, value, now, now)
    ]
    with connection.cursor() as cursor:
        cursor.execute(f"{insert} {', '.join([row_placeholders] * len(latest))} {on_conflict}", params)


@functools.cache
def _upsert_ratings_statement(using: str) -> tuple[str, str, str]:
    quote = connections[using].ops.quote_name
    field = Rating._meta.get_field
    names = ["annotator", "explanation", "construct", "assignment", "value", "created_at", "updated_at"]
    columns = [quote(field(name).column) for name in names]
    unique = ", ".join(columns[:3])  # the constraint rating_unique_per_construct
    updated = ", ".join(f"{quote(field(name).column)} = EXCLUDED.{quote(field(name).column)}" for name in names[3:5])
    updated_at = quote(field("updated_at").column)
    return (
        f"INSERT INTO {quote(Rating._meta.db_table)} ({', '.join(columns)}) VALUES",
        f"({', '.join(['%s'] * len(columns))})",
        f"ON CONFLICT ({unique}) DO UPDATE SET {updated}, {updated_at} = EXCLUDED.{updated_at}",
    )


def answer_save(*, annotator: Annotator, assignment_id: int, answer: ScreenAnswer) -> None:
    """Store one answer as it is given, so a reload resumes with it."""
    with transaction.atomic():
        assignment = _checked_assignment(annotator, assignment_id)
        if assignment.kind == Assignment.Kind.ATTENTION:
            raise SessionError("attention rows are sent with the screen", status=400)
        constructs = {c.pk: c for c in selectors.study_constructs(annotator.study)}
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
        constructs = {c.pk: c for c in selectors.study_constructs(study)}
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
        assignment.save(
            update_fields=[
                "status",
                "completed_at",
                "seconds_spent",
                "attention_value",
                "preferred_explanation",
                "no_preference",
            ]
        )
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


def mark_shown(assignment: Assignment) -> bool:
    """Note when a screen was first shown (its time on screen counts from then); True if it was before."""
    if assignment.first_shown_at is not None:
        return True
    now = timezone.now()
    # What `Assignment.objects.filter(pk=..., first_shown_at__isnull=True).update(first_shown_at=now)` sends,
    # from SQL written once per process (every screen's first showing writes it).
    using = router.db_for_write(Assignment)
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(_mark_shown_statement(using), [connection.ops.adapt_datetimefield_value(now), assignment.pk])
    assignment.first_shown_at = now
    return False


@functools.cache
def _mark_shown_statement(using: str) -> str:
    quote = connections[using].ops.quote_name
    shown_at = quote(Assignment._meta.get_field("first_shown_at").column)
    return (
        f"UPDATE {quote(Assignment._meta.db_table)} SET {shown_at} = %s"
        f" WHERE {quote(Assignment._meta.pk.column)} = %s AND {shown_at} IS NULL"
    )


@dataclass(frozen=True)
class NextScreen:
    """What an annotator's visit shows: a screen (`assignment`), the completion page (`finished`), or,
    with neither, the page that says there is no work left."""

    assignment: Assignment | None
    shown_before: bool
    done: int
    total: int
    finished: bool


def time_is_up(annotator: Annotator) -> bool:
    limit = annotator.study.time_limit_minutes
    return bool(limit) and (timezone.now() - annotator.started_at).total_seconds() > limit * 60


def session_next_screen(*, annotator: Annotator) -> NextScreen:
    """The screen to show next, with the writes a visit implies: screens allocated on the first visit, those
    left released once the time limit has run out, the session closed after its last screen, and each
    screen's first showing noted."""
    expired = time_is_up(annotator)
    if expired:
        assignments_release_unfinished(annotator=annotator)
    state = selectors.session_state(annotator)
    if not state.ever_allocated and not expired:
        created = sorted(assignments_allocate(annotator=annotator), key=lambda a: a.position)
        state = selectors.SessionState(
            done=0, total=len(created), current_id=created[0].pk if created else None, ever_allocated=bool(created)
        )
    if state.current_id is None:
        if not state.done:
            return NextScreen(None, False, state.done, state.total, finished=False)
        annotator_finish(annotator=annotator)
        annotator.refresh_from_db(fields=["finished_at", "completion_code", "flags"])
        return NextScreen(None, False, state.done, state.total, finished=True)
    assignment = selectors.assignment_for_screen(state.current_id)
    shown_before = mark_shown(assignment)
    return NextScreen(assignment, shown_before, state.done, state.total, finished=False)


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
