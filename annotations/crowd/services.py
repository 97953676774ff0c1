"""Writes for crowd batches: create, launch, sync, review, bonus, expire, notify, block; one call per platform act."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotations.crowd import selectors
from annotations.crowd.costs import MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE, PROLIFIC_FEE_RATE, mturk_fee_rate
from annotations.crowd.mturk import check_public_url
from annotations.crowd.platforms import provider_for
from annotations.crowd.prolific import REJECTION_CATEGORIES, check_rejection
from annotations.crowd.providers import CrowdPlatformError, CrowdProvider, RemoteSubmission
from annotations.crowd.review import FAILING_FLAGS, KEPT_FLAGS, AnnotatorFacts, submission_flags, verdict
from annotations.models import Annotator, BlockedWorker, CrowdBatch, CrowdPlatform, CrowdSubmission, CrowdTask, Study
from evalsite.jobs import NO_PROGRESS, Progress

logger = logging.getLogger("evalsite.crowd")

LAUNCHABLE = (CrowdBatch.Status.DRAFT, CrowdBatch.Status.LAUNCHING, CrowdBatch.Status.FAILED)
DEFAULT_REJECTION_CATEGORY = "FAILED_CHECK"


def _provider(batch: CrowdBatch, provider: CrowdProvider | None) -> CrowdProvider:
    return provider or provider_for(batch.platform)


# -- create and launch -----------------------------------------------------------------------------------------


def default_fee_rate(*, platform: str, assignments_per_task: int, masters: bool = False) -> Decimal:
    if platform == CrowdPlatform.MTURK:
        return mturk_fee_rate(assignments_per_hit=assignments_per_task, masters=masters)
    if platform == CrowdPlatform.PROLIFIC:
        return PROLIFIC_FEE_RATE
    return Decimal("0")


def crowd_batch_create(
    *,
    study: Study,
    platform: str,
    title: str,
    reward_cents: int,
    n_tasks: int = 1,
    assignments_per_task: int = MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE,
    description: str = "",
    sandbox: bool = True,
    fee_rate: Decimal | None = None,
    planned_bonus_cents: int = 0,
    params: dict[str, Any] | None = None,
    created_by: Any = None,
) -> CrowdBatch:
    """A draft batch. MTurk HITs keep to 9 assignments unless ``params['allow_ten_or_more']`` (fee 40%)."""
    params = dict(params or {})
    too_many = platform == CrowdPlatform.MTURK and assignments_per_task > MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE
    if too_many and not params.get("allow_ten_or_more"):
        raise CrowdPlatformError(
            f"at most {MTURK_MAX_ASSIGNMENTS_AT_BASE_FEE} assignments per HIT (MTurk's fee rises from 20% to 40% "
            "at 10 or more); use more HITs, or allow_ten_or_more"
        )
    if platform != CrowdPlatform.MTURK and n_tasks != 1:
        raise CrowdPlatformError("a Prolific or manual batch is one study: n_tasks must be 1 (set its places instead)")
    if platform == CrowdPlatform.MANUAL and not str(params.get("prolific_study_id", "")).strip():
        raise CrowdPlatformError(
            "a manual batch needs the id of the study you made on the platform (prolific_study_id): "
            "entries are admitted only with that STUDY_ID"
        )
    if platform in (CrowdPlatform.PROLIFIC, CrowdPlatform.MANUAL) and not params.get("screenout_code"):
        # Sent back by a participant for whom no work is left (the study is full for them).
        params["screenout_code"] = secrets.token_hex(4).upper()
    if fee_rate is None:
        fee_rate = default_fee_rate(
            platform=platform, assignments_per_task=assignments_per_task, masters=bool(params.get("masters"))
        )
    batch = CrowdBatch(
        study=study,
        platform=platform,
        sandbox=sandbox if platform == CrowdPlatform.MTURK else False,
        title=title,
        description=description,
        reward_cents=reward_cents,
        n_tasks=n_tasks,
        assignments_per_task=assignments_per_task,
        fee_rate=Decimal(fee_rate),
        planned_bonus_cents=planned_bonus_cents,
        params=params,
    )
    if created_by is not None and getattr(created_by, "is_authenticated", False):
        batch.created_by = created_by
    batch.full_clean()
    batch.save()
    return batch


def _record_intents(batch: CrowdBatch) -> list[CrowdTask]:
    """Write every task's intent (its idempotency key) before any platform call."""
    with transaction.atomic():
        for index in range(batch.n_tasks):
            intent_key = f"{batch.launch_key}-{index}"
            if not CrowdTask.objects.filter(intent_key=intent_key).exists():
                task = CrowdTask(batch=batch, intent_key=intent_key, max_assignments=batch.assignments_per_task)
                task.full_clean()
                task.save()
    return list(batch.tasks.order_by("id"))


def crowd_batch_launch(
    *, batch: CrowdBatch, provider: CrowdProvider | None = None, progress: Progress = NO_PROGRESS
) -> CrowdBatch:
    """Create the batch's HITs (or Prolific study) and publish them; safe to run again after any crash.

    Each task's intent key is stored first and sent as MTurk's UniqueRequestToken (and RequesterAnnotation),
    so a retry finds or dedupes a HIT made by a call whose answer was lost; HIT ids are stored as they come.
    """
    batch.refresh_from_db()
    if batch.status not in LAUNCHABLE:
        return batch
    if batch.platform == CrowdPlatform.MTURK:
        try:
            check_public_url(settings.EVALSITE_PUBLIC_URL)  # before any request goes out
        except CrowdPlatformError as exc:
            CrowdBatch.objects.filter(pk=batch.pk).update(status=CrowdBatch.Status.FAILED, last_error=str(exc))
            raise
    provider = _provider(batch, provider)
    CrowdBatch.objects.filter(pk=batch.pk).update(status=CrowdBatch.Status.LAUNCHING, last_error="")
    batch.status = CrowdBatch.Status.LAUNCHING
    try:
        if batch.platform == CrowdPlatform.MTURK and not batch.external_id:
            progress(0, batch.n_tasks, stage="creating HIT type")
            if not batch.exclusion_qualification_id:
                batch.exclusion_qualification_id = selectors.previous_exclusion_qualification(
                    study=batch.study, sandbox=batch.sandbox
                )
            prepared = provider.prepare(selectors.batch_spec(batch))
            batch.external_id = prepared.external_id
            batch.exclusion_qualification_id = prepared.exclusion_qualification_id or batch.exclusion_qualification_id
            batch.save(update_fields=["external_id", "exclusion_qualification_id"])
        if not (batch.params or {}).get("currency"):
            currency = provider.account_currency(selectors.batch_spec(batch))
            if currency:
                batch.params = {**(batch.params or {}), "currency": currency}
                batch.save(update_fields=["params"])
        tasks = _record_intents(batch)
        spec = selectors.batch_spec(batch)
        for done, task in enumerate(tasks):
            progress(done, len(tasks), stage="creating tasks")
            if not task.external_id:
                _create_task(task, spec, provider)
        for done, task in enumerate(tasks):
            progress(done, len(tasks), stage="publishing")
            if task.status != "published":
                provider.publish(spec, task_external_id=task.external_id)
                task.status = "published"
                task.published_at = task.published_at or timezone.now()
                task.save(update_fields=["status", "published_at"])
        progress(len(tasks), len(tasks), stage="publishing")
    except Exception as exc:
        CrowdBatch.objects.filter(pk=batch.pk).update(status=CrowdBatch.Status.FAILED, last_error=str(exc)[:2000])
        raise
    if batch.platform != CrowdPlatform.MTURK and tasks:
        batch.external_id = tasks[0].external_id
    batch.status = CrowdBatch.Status.LIVE
    batch.launched_at = batch.launched_at or timezone.now()
    batch.last_error = ""
    batch.save(update_fields=["status", "launched_at", "external_id", "last_error"])
    return batch


def _create_task(task: CrowdTask, spec, provider: CrowdProvider) -> None:
    if task.status == "creating":
        # An earlier try died during the create call: the task may exist on the platform already.
        found = provider.find_task(spec, intent_key=task.intent_key)
        if found:
            _task_record_created(task, found)
            return
    CrowdTask.objects.filter(pk=task.pk).update(status="creating")
    task.status = "creating"
    external_id = provider.create_task(spec, intent_key=task.intent_key, max_assignments=task.max_assignments)
    _task_record_created(task, external_id)


def _task_record_created(task: CrowdTask, external_id: str) -> None:
    task.external_id = external_id
    task.status = "created"
    task.full_clean()
    task.save(update_fields=["external_id", "status"])


# -- sync ------------------------------------------------------------------------------------------------------


def _facts(annotator: Annotator | None, *, duplicate: bool = False) -> AnnotatorFacts:
    if duplicate:
        return AnnotatorFacts(found=False, duplicate=True)
    if annotator is None:
        return AnnotatorFacts(found=False)
    flags = annotator.flags or {}
    return AnnotatorFacts(
        found=True,
        finished=annotator.finished_at is not None,
        attention_failures=annotator.attention_failures,
        too_fast=bool(flags.get("too_fast")),
        straight_lining=bool(flags.get("straight_lining")),
    )


def _match_annotator(batch: CrowdBatch, remote: RemoteSubmission) -> tuple[Annotator | None, bool]:
    """The annotator behind a submission, and whether the submission is a worker's second one.

    A submission matches the annotator who entered with its assignment (MTurk assignmentId, Prolific
    SESSION_ID). A worker's other assignment in the same study matches nobody: it is flagged duplicate_worker,
    so the one session is never approved or bonused twice. Only an annotator who entered without an assignment
    id is matched by worker id alone.
    """
    source = batch.platform if batch.platform != CrowdPlatform.MANUAL else batch.params.get("annotator_source", "")
    candidates = Annotator.objects.filter(study=batch.study, source=source, external_id=remote.worker_id)
    exact = candidates.filter(external_assignment_id=remote.assignment_id).first()
    if exact is not None:
        return exact, False
    other = candidates.first()
    if other is None:
        return None, False
    if other.external_assignment_id:
        return None, True
    return other, False


def _manual_submissions(batch: CrowdBatch) -> list[RemoteSubmission]:
    """Manual mode: finished annotators who came in through the pasted link after launch stand for submissions."""
    source = batch.params.get("annotator_source", Annotator.Source.PROLIFIC)
    annotators = Annotator.objects.filter(study=batch.study, source=source, finished_at__isnull=False)
    if batch.launched_at:
        annotators = annotators.filter(started_at__gte=batch.launched_at)
    return [
        RemoteSubmission(
            task_external_id="",
            worker_id=annotator.external_id,
            assignment_id=annotator.external_assignment_id or f"annotator-{annotator.public_id}",
            status=CrowdSubmission.Status.SUBMITTED,
            platform_status="manual",
            submitted_at=annotator.finished_at,
        )
        for annotator in annotators
    ]


def crowd_batch_sync(
    *, batch: CrowdBatch, provider: CrowdProvider | None = None, progress: Progress = NO_PROGRESS
) -> dict[str, int]:
    """Pull submissions, match them to annotators, flag them, and shut participants out of later batches."""
    provider = _provider(batch, provider)
    spec = selectors.batch_spec(batch)
    tasks = {task.external_id: task for task in batch.tasks.exclude(external_id="")}
    progress(0, None, stage="listing submissions")
    if batch.platform == CrowdPlatform.MANUAL:
        remote_submissions = _manual_submissions(batch)
    else:
        remote_submissions = list(provider.list_submissions(spec, task_external_ids=list(tasks)))
    created = updated = 0
    for done, remote in enumerate(remote_submissions):
        progress(done, len(remote_submissions), stage="matching submissions")
        annotator, duplicate = _match_annotator(batch, remote)
        submission, was_created = CrowdSubmission.objects.get_or_create(
            batch=batch,
            external_assignment_id=remote.assignment_id,
            defaults={"worker_id": remote.worker_id, "task": tasks.get(remote.task_external_id)},
        )
        submission.worker_id = remote.worker_id
        submission.task = tasks.get(remote.task_external_id) or submission.task
        submission.annotator = annotator
        submission.platform_status = remote.platform_status
        kept = {name: True for name in KEPT_FLAGS if (submission.flags or {}).get(name)}
        submission.flags = {**submission_flags(_facts(annotator, duplicate=duplicate)), **kept}
        if batch.platform != CrowdPlatform.MANUAL or was_created:
            submission.status = remote.status
        submission.submitted_at = remote.submitted_at or submission.submitted_at
        submission.full_clean()
        submission.save()
        created += was_created
        updated += not was_created
    excluded = _exclude_participants(batch, provider, spec, progress)
    batch.synced_at = timezone.now()
    batch.save(update_fields=["synced_at"])
    return {"submissions": len(remote_submissions), "created": created, "updated": updated, "excluded": excluded}


def _exclude_participants(batch: CrowdBatch, provider: CrowdProvider, spec, progress: Progress) -> int:
    pending = list(batch.submissions.filter(excluded_at__isnull=True).values_list("worker_id", flat=True).distinct())
    if not pending:
        return 0
    progress(0, len(pending), stage="excluding participants from later batches")
    provider.exclude_workers(spec, worker_ids=pending)
    return batch.submissions.filter(worker_id__in=pending, excluded_at__isnull=True).update(excluded_at=timezone.now())


# -- review ----------------------------------------------------------------------------------------------------


def _check_reviewable(submission: CrowdSubmission) -> bool:
    """Only submitted work can be approved or rejected; a repeat of a done decision is a no-op."""
    return submission.status == CrowdSubmission.Status.SUBMITTED


def _same_person_in_study(submission: CrowdSubmission):
    """The worker's other submissions for the same study, on the same platform (any batch of it)."""
    return CrowdSubmission.objects.filter(
        batch__study_id=submission.batch.study_id,
        batch__platform=submission.batch.platform,
        worker_id=submission.worker_id,
    ).exclude(pk=submission.pk)


def _check_one_payment(submission: CrowdSubmission, *, what: str) -> None:
    """One payment per person per study: a second assignment of a worker is never approved or bonused."""
    if (submission.flags or {}).get("duplicate_worker"):
        raise CrowdPlatformError(
            f"{submission.worker_id} did this study in another assignment; {what} refused (one payment per "
            "person): reject this one with a reason, or ask the worker to return it"
        )
    others = _same_person_in_study(submission)
    paid = (
        others.filter(status=CrowdSubmission.Status.APPROVED) if what == "approval" else others.exclude(bonus_token="")
    )
    first = paid.first()
    if first is not None:
        raise CrowdPlatformError(
            f"{submission.worker_id} already has a{'n approval' if what == 'approval' else ' bonus'} for this study "
            f"(assignment {first.external_assignment_id}); {what} refused: one payment per person"
        )


def crowd_submission_approve(
    *, submission: CrowdSubmission, feedback: str = "", provider: CrowdProvider | None = None
) -> bool:
    if not _check_reviewable(submission):
        return False
    _check_one_payment(submission, what="approval")
    batch = submission.batch
    _provider(batch, provider).approve(
        selectors.batch_spec(batch),
        assignment_id=submission.external_assignment_id,
        worker_id=submission.worker_id,
        feedback=feedback,
    )
    submission.status = CrowdSubmission.Status.APPROVED
    submission.feedback = feedback
    submission.reviewed_at = timezone.now()
    submission.save(update_fields=["status", "feedback", "reviewed_at"])
    return True


def clean_rejection(*, platform: str, feedback: str, category: str) -> str:
    """The rejection category to send; raises when the feedback would be refused by the platform."""
    if not feedback.strip():
        raise CrowdPlatformError("a rejection needs feedback that tells the worker why")
    category = category or DEFAULT_REJECTION_CATEGORY
    if platform == CrowdPlatform.PROLIFIC:
        check_rejection(feedback, category)
    elif category not in REJECTION_CATEGORIES:
        raise CrowdPlatformError(f"unknown rejection category {category!r}")
    return category


def crowd_submission_reject(
    *, submission: CrowdSubmission, feedback: str, category: str = "", provider: CrowdProvider | None = None
) -> bool:
    batch = submission.batch
    category = clean_rejection(platform=batch.platform, feedback=feedback, category=category)
    if not _check_reviewable(submission):
        return False
    _provider(batch, provider).reject(
        selectors.batch_spec(batch),
        assignment_id=submission.external_assignment_id,
        worker_id=submission.worker_id,
        feedback=feedback,
        category=category,
    )
    submission.status = CrowdSubmission.Status.REJECTED
    submission.feedback = feedback
    submission.rejection_category = category
    submission.reviewed_at = timezone.now()
    submission.save(update_fields=["status", "feedback", "rejection_category", "reviewed_at"])
    return True


def crowd_submission_bonus(
    *, submission: CrowdSubmission, amount_cents: int, reason: str, provider: CrowdProvider | None = None
) -> bool:
    """Pay a bonus once. Returns whether this call paid it (False: it was paid before).

    The token is stored before the platform call, so a retry after a lost answer reuses it (MTurk dedupes on
    it) after asking MTurk whether the bonus exists. Prolific cannot dedupe, so an attempt with an unknown
    outcome is never resent there: it raises until an admin checks the platform.
    """
    if amount_cents <= 0:
        raise CrowdPlatformError("a bonus must be positive")
    if not reason.strip():
        raise CrowdPlatformError("a bonus needs a reason the worker will read")
    submission.refresh_from_db()
    if submission.bonus_paid_at is not None:
        return False
    if not submission.bonus_token:
        _check_one_payment(submission, what="bonus")
    batch = submission.batch
    provider = _provider(batch, provider)
    spec = selectors.batch_spec(batch)
    if submission.bonus_token and submission.bonus_cents != amount_cents:
        raise CrowdPlatformError(
            f"a bonus of {submission.bonus_cents} cents was already started for {submission.worker_id}; "
            "finish that one first"
        )
    retry = submission.bonus_attempted_at is not None
    if retry and not provider.bonus_retry_safe:
        raise CrowdPlatformError(
            f"the bonus for {submission.worker_id} was sent once without a confirmed answer; check it on "
            f"{batch.get_platform_display()} before paying again"
        )
    if not submission.bonus_token:
        submission.bonus_token = uuid.uuid4().hex
        submission.bonus_cents = amount_cents
        submission.bonus_reason = reason
    submission.bonus_attempted_at = timezone.now()
    submission.full_clean()
    submission.save(update_fields=["bonus_token", "bonus_cents", "bonus_reason", "bonus_attempted_at"])
    already = retry and provider.bonus_already_paid(
        spec,
        assignment_id=submission.external_assignment_id,
        worker_id=submission.worker_id,
        amount_cents=submission.bonus_cents,
    )
    if not already:
        provider.send_bonus(
            spec,
            assignment_id=submission.external_assignment_id,
            worker_id=submission.worker_id,
            amount_cents=submission.bonus_cents,
            reason=submission.bonus_reason,
            token=submission.bonus_token,
        )
    submission.bonus_paid_at = timezone.now()
    submission.save(update_fields=["bonus_paid_at"])
    return not already


def crowd_submission_mark_bonus_paid(*, submission: CrowdSubmission) -> None:
    """After an admin saw on the platform that an unconfirmed bonus went through."""
    if not submission.bonus_token:
        raise CrowdPlatformError("no bonus was started for this submission")
    submission.bonus_paid_at = submission.bonus_paid_at or timezone.now()
    submission.save(update_fields=["bonus_paid_at"])


class CrowdActionsFailed(CrowdPlatformError):
    """Some submissions of a bulk action failed; the job shows it as failed, with who and why in one line."""


def crowd_submissions_act(
    *,
    submissions: Iterable[CrowdSubmission],
    action: str,
    feedback: str = "",
    category: str = "",
    amount_cents: int = 0,
    provider: CrowdProvider | None = None,
    progress: Progress = NO_PROGRESS,
) -> dict[str, Any]:
    """Approve, reject or bonus many submissions; one failure is counted and the rest go on.

    ``skipped`` lists who was left alone and why (already decided, bonus paid before), ``errors`` who failed.
    """
    submissions = list(submissions)
    if action == "reject" and submissions:
        clean_rejection(platform=submissions[0].batch.platform, feedback=feedback, category=category)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    errors: list[str] = []
    skipped: list[str] = []
    if action == "approve" and submissions and submissions[0].batch.platform == CrowdPlatform.PROLIFIC:
        submissions = _approve_in_bulk(submissions, feedback, provider, counts, errors, skipped)
    for done, submission in enumerate(submissions):
        progress(done, len(submissions), stage=f"{action} submissions")
        try:
            if action == "approve":
                acted = crowd_submission_approve(submission=submission, feedback=feedback, provider=provider)
            elif action == "reject":
                acted = crowd_submission_reject(
                    submission=submission, feedback=feedback, category=category, provider=provider
                )
            elif action == "bonus":
                acted = crowd_submission_bonus(
                    submission=submission, amount_cents=amount_cents, reason=feedback, provider=provider
                )
            elif action == "request_return":
                acted = crowd_submission_request_return(submission=submission, reasons=[feedback], provider=provider)
            elif action == "overturn":
                acted = crowd_submission_overturn(submission=submission, feedback=feedback, provider=provider)
            else:
                raise CrowdPlatformError(f"unknown action {action!r}")
        except Exception as exc:
            logger.warning("%s of submission %s failed: %s", action, submission.pk, exc)
            counts["failed"] += 1
            if len(errors) < 20:
                errors.append(f"{submission.worker_id}: {' '.join(str(exc).split())}")
            continue
        if not acted:
            skipped.append(f"{submission.worker_id}: {_why_skipped(submission, action)}")
        counts["done" if acted else "skipped"] += 1
    summary = action_summary(action, counts, errors, skipped)
    progress(len(submissions), len(submissions), stage=f"{action} submissions", message=summary)
    return {**counts, "errors": errors, "skipped_why": skipped[:20], "summary": summary}


def _approve_in_bulk(
    submissions: list[CrowdSubmission],
    feedback: str,
    provider: CrowdProvider | None,
    counts: dict[str, int],
    errors: list[str],
    skipped: list[str],
) -> list[CrowdSubmission]:
    """Prolific: check each submission, approve the good ones in one bulk call; returns what is left to do."""
    ready: list[CrowdSubmission] = []
    workers: set[str] = set()
    for submission in submissions:
        if not _check_reviewable(submission):
            counts["skipped"] += 1
            skipped.append(f"{submission.worker_id}: {_why_skipped(submission, 'approve')}")
            continue
        try:
            _check_one_payment(submission, what="approval")
            if submission.worker_id in workers:
                raise CrowdPlatformError(f"{submission.worker_id} is twice in this approval; one payment per person")
        except CrowdPlatformError as exc:
            counts["failed"] += 1
            errors.append(f"{submission.worker_id}: {exc}")
            continue
        workers.add(submission.worker_id)
        ready.append(submission)
    if not ready:
        return []
    batch = ready[0].batch
    try:
        _provider(batch, provider).approve_many(
            selectors.batch_spec(batch), assignment_ids=[s.external_assignment_id for s in ready], feedback=feedback
        )
    except CrowdPlatformError as exc:
        logger.warning("bulk approval failed (%s); approving one by one", exc)
        return ready  # the loop approves them one at a time, each with its own outcome
    now = timezone.now()
    for submission in ready:
        submission.status = CrowdSubmission.Status.APPROVED
        submission.feedback = feedback
        submission.reviewed_at = now
        submission.save(update_fields=["status", "feedback", "reviewed_at"])
    counts["done"] += len(ready)
    return []


def _why_skipped(submission: CrowdSubmission, action: str) -> str:
    if action == "bonus":
        return "bonus paid before"
    return f"already {submission.status}"


def action_summary(action: str, counts: dict[str, int], errors: list[str], skipped: list[str]) -> str:
    """One line for the job: what was done, what was skipped and why, who failed and why."""
    line = f"{action}: {counts['done']} done"
    if counts["skipped"]:
        line += f", {counts['skipped']} skipped ({'; '.join(skipped[:5])})"
    if counts["failed"]:
        line += f", {counts['failed']} failed ({'; '.join(errors[:5])})"
    return line


def raise_if_failed(result: dict[str, Any]) -> dict[str, Any]:
    """For jobs: a bulk action with failures ends the job as failed, its summary as the message."""
    if result.get("failed"):
        raise CrowdActionsFailed(result.get("summary") or f"{result['failed']} failed")
    return result


def rejection_reasons(flags: dict[str, bool]) -> tuple[str, ...]:
    return tuple(flag for flag in FAILING_FLAGS if (flags or {}).get(flag))


# Prolific's category for each ground of rejection (MTurk has no categories).
REASON_CATEGORY = {"attention_failed": "FAILED_CHECK", "incomplete": "NO_DATA"}


def crowd_batch_review(
    *,
    batch: CrowdBatch,
    approve_passing: bool,
    reject_failing: bool,
    approve_feedback: str = "",
    reject_feedback: str = "",
    category: str = "",
    provider: CrowdProvider | None = None,
    progress: Progress = NO_PROGRESS,
) -> dict[str, Any]:
    """Approve submissions with no flag, reject those with a failing flag; suspect ones wait for a person.

    Each rejected worker is told their own reasons (unless ``reject_feedback`` is given for all). On Prolific,
    work that is only unfinished is not rejected: the participant is asked to return it, as Prolific asks.
    """
    pending = list(batch.submissions.filter(status=CrowdSubmission.Status.SUBMITTED).select_related("batch"))
    passing = [s for s in pending if verdict(s.flags or {}) == "approve"]
    failing = [s for s in pending if verdict(s.flags or {}) == "reject"]
    result: dict[str, Any] = {"approved": 0, "rejected": 0, "returns_requested": 0, "left_for_review": len(pending)}
    outcomes: list[dict[str, Any]] = []
    if reject_failing and failing:
        groups: dict[tuple[str, ...], list[CrowdSubmission]] = {}
        for submission in failing:
            groups.setdefault(rejection_reasons(submission.flags), []).append(submission)
        for reasons, members in groups.items():
            if batch.platform == CrowdPlatform.PROLIFIC and reasons == ("incomplete",):
                counts = crowd_submissions_act(
                    submissions=members,
                    action="request_return",
                    feedback=RETURN_REASON,
                    provider=provider,
                    progress=progress,
                )
                result["returns_requested"] += counts["done"]
            else:
                counts = crowd_submissions_act(
                    submissions=members,
                    action="reject",
                    feedback=reject_feedback or default_rejection_feedback(list(reasons)),
                    category=category or REASON_CATEGORY[reasons[0]],
                    provider=provider,
                    progress=progress,
                )
                result["rejected"] += counts["done"]
            outcomes.append(counts)
    if approve_passing and passing:
        counts = crowd_submissions_act(
            submissions=passing, action="approve", feedback=approve_feedback, provider=provider, progress=progress
        )
        result["approved"] = counts["done"]
        outcomes.append(counts)
    result["left_for_review"] = batch.submissions.filter(status=CrowdSubmission.Status.SUBMITTED).count()
    result["failed"] = sum(counts["failed"] for counts in outcomes)
    result["skipped"] = sum(counts["skipped"] for counts in outcomes)
    result["summary"] = " | ".join(counts["summary"] for counts in outcomes) or "nothing to review"
    progress(1, 1, stage="review", message=result["summary"])
    return result


RETURN_REASON = "The study was not finished: not every screen was submitted."


def default_rejection_feedback(reasons: list[str]) -> str:
    why = {
        "attention_failed": "the task included an instructed-response check (a row that told you which answer "
        "to pick), and the answer given did not follow that instruction",
        "incomplete": "the rating task was not finished: not every screen of the study was submitted",
    }
    parts = [why[reason] for reason in reasons if reason in why] or ["the work did not meet the stated criteria"]
    return (
        "Thank you for your time. We could not accept this submission because "
        + "; and ".join(parts)
        + ". These criteria were stated in the instructions. If you believe this is a mistake, please contact us."
    )


def crowd_submission_overturn(
    *, submission: CrowdSubmission, feedback: str = "", provider: CrowdProvider | None = None
) -> bool:
    """Approve a rejected submission after all (MTurk: ApproveAssignment with OverrideRejection)."""
    if submission.status != CrowdSubmission.Status.REJECTED:
        return False
    _check_one_payment(submission, what="approval")
    batch = submission.batch
    _provider(batch, provider).overturn(
        selectors.batch_spec(batch),
        assignment_id=submission.external_assignment_id,
        worker_id=submission.worker_id,
        feedback=feedback,
    )
    submission.status = CrowdSubmission.Status.APPROVED
    submission.feedback = feedback
    submission.rejection_category = ""
    submission.reviewed_at = timezone.now()
    submission.save(update_fields=["status", "feedback", "rejection_category", "reviewed_at"])
    return True


def crowd_submission_request_return(
    *, submission: CrowdSubmission, reasons: list[str], provider: CrowdProvider | None = None
) -> bool:
    """Ask the participant to return unfinished work (Prolific) instead of rejecting it."""
    if not _check_reviewable(submission):
        return False
    batch = submission.batch
    _provider(batch, provider).request_return(
        selectors.batch_spec(batch),
        assignment_id=submission.external_assignment_id,
        worker_id=submission.worker_id,
        reasons=reasons,
    )
    submission.flags = {**(submission.flags or {}), "return_requested": True}
    submission.feedback = "; ".join(reasons)
    submission.reviewed_at = timezone.now()
    submission.save(update_fields=["flags", "feedback", "reviewed_at"])
    return True


def crowd_batch_refill(*, batch: CrowdBatch, provider: CrowdProvider | None = None) -> dict[str, int]:
    """Add places for work that freed its place: rejected (MTurk), and rejected, returned or timed out (Prolific).

    What each task may get is ``selectors.refill_plan``; the new total is stored on the task after the call and
    sent as the request token (MTurk's UniqueRequestToken, Prolific's target place count), so a retry after a
    lost answer adds nothing twice.
    """
    provider = _provider(batch, provider)
    spec = selectors.batch_spec(batch)
    added = 0
    for task, extra in selectors.refill_plan(batch):
        new_total = task.max_assignments + extra
        provider.add_places(
            spec, task_external_id=task.external_id, extra=extra, token=f"{task.intent_key}-refill-{new_total}"
        )
        CrowdTask.objects.filter(pk=task.pk).update(max_assignments=new_total)
        added += extra
    return {"added": added}


def crowd_batch_pause(*, batch: CrowdBatch, provider: CrowdProvider | None = None) -> CrowdBatch:
    """Stop new participants for a while (Prolific PAUSE); ``crowd_batch_resume`` starts it again."""
    return _batch_switch(batch, provider, "pause", CrowdBatch.Status.LIVE, CrowdBatch.Status.PAUSED)


def crowd_batch_resume(*, batch: CrowdBatch, provider: CrowdProvider | None = None) -> CrowdBatch:
    return _batch_switch(batch, provider, "resume", CrowdBatch.Status.PAUSED, CrowdBatch.Status.LIVE)


def _batch_switch(batch: CrowdBatch, provider: CrowdProvider | None, verb: str, before: str, after: str) -> CrowdBatch:
    """Ask the platform to pause or resume every task of a batch in status ``before``, then store ``after``."""
    if batch.status != before:
        raise CrowdPlatformError(f"only a {before} batch can be {verb}d; this one is {batch.status}")
    task_ids = list(batch.tasks.exclude(external_id="").values_list("external_id", flat=True))
    getattr(_provider(batch, provider), verb)(selectors.batch_spec(batch), task_external_ids=task_ids)
    batch.status = after
    batch.save(update_fields=["status"])
    return batch


# -- expire, notify, block -------------------------------------------------------------------------------------


def crowd_batch_expire(*, batch: CrowdBatch, provider: CrowdProvider | None = None) -> CrowdBatch:
    """Stop new work at once (MTurk: expiry set to the past; Prolific: STOP). Submitted work can still be reviewed."""
    task_ids = list(batch.tasks.exclude(external_id="").values_list("external_id", flat=True))
    _provider(batch, provider).expire(selectors.batch_spec(batch), task_external_ids=task_ids)
    batch.tasks.exclude(external_id="").update(status="expired")
    batch.status = CrowdBatch.Status.EXPIRED
    batch.save(update_fields=["status"])
    return batch


def crowd_batch_notify(
    *,
    batch: CrowdBatch,
    subject: str,
    message: str,
    worker_ids: list[str] | None = None,
    provider: CrowdProvider | None = None,
) -> int:
    if not subject.strip() or not message.strip():
        raise CrowdPlatformError("a notification needs a subject and a message")
    if worker_ids is None:
        worker_ids = list(batch.submissions.values_list("worker_id", flat=True).distinct().order_by("worker_id"))
    return _provider(batch, provider).notify(
        selectors.batch_spec(batch), worker_ids=worker_ids, subject=subject, message=message
    )


def blocked_worker_add(*, platform: str, worker_id: str, reason: str = "") -> BlockedWorker:
    worker_id = worker_id.strip()
    blocked = BlockedWorker.objects.filter(platform=platform, worker_id=worker_id).first()
    if blocked is not None:
        return blocked
    blocked = BlockedWorker(platform=platform, worker_id=worker_id, reason=reason)
    blocked.full_clean()
    blocked.save()
    return blocked


# -- jobs --------------------------------------------------------------------------------------------------------


def crowd_batch_enqueue(*, batch: CrowdBatch, action: str, params: dict[str, Any] | None = None, user: Any = None):
    """Start a crowd job for a batch in the background (RQ, or a thread without Redis), after commit."""
    from annotations.crowd.jobs import JOB_FUNCTIONS  # the job module imports this one
    from evalsite.jobs import enqueue_job

    if action not in JOB_FUNCTIONS:
        raise CrowdPlatformError(f"unknown crowd job {action!r}")
    return enqueue_job(
        kind=f"crowd_{action}",
        function=JOB_FUNCTIONS[action],
        params={"batch_id": batch.pk, **(params or {})},
        target=batch,
        user=user,
    )
